import Foundation

/// A user's display name: trimmed, 1–100 characters (grapheme clusters), no control characters.
public struct DisplayName: Hashable, Sendable, CustomStringConvertible {
    /// The trimmed name.
    public let value: String

    /// The most characters accepted.
    public static let maxLength = 100

    /// Trims and validates `raw`; throws a `ValidationError` on field `name`.
    public init(_ raw: String, field: String = "name") throws(ValidationError) {
        let trimmed = raw.trimmingCharacters(in: .whitespacesAndNewlines)
        if trimmed.isEmpty { throw ValidationError(field: field, "must not be empty") }
        // Bound the work before counting grapheme clusters.
        if trimmed.unicodeScalars.count > DisplayName.maxLength * 8 || trimmed.count > DisplayName.maxLength {
            throw ValidationError(field: field, "must be at most \(DisplayName.maxLength) characters")
        }
        if trimmed.unicodeScalars.contains(where: { $0.isControl || $0.properties.generalCategory == .lineSeparator
            || $0.properties.generalCategory == .paragraphSeparator }) {
            throw ValidationError(field: field, "must not contain control characters")
        }
        self.value = trimmed
    }

    /// Wraps a value already known to be valid (read back from a store).
    public init(trusted value: String) {
        self.value = value
    }

    public var description: String { value }
}
