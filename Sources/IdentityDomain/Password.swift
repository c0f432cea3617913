import Foundation

/// A plaintext password, held only as long as it takes to hash or verify it.
///
/// Rules: 8–128 Unicode code points counted on its NFKC form, which is what is hashed; never
/// trimmed, never truncated. Its `description` is redacted so that it cannot reach a log line.
public struct Password: Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    /// The NFKC form: the exact text given to the password hasher.
    public let normalized: String

    /// The fewest code points accepted.
    public static let minLength = 8
    /// The most code points accepted.
    public static let maxLength = 128

    /// Normalises and validates a new password; throws a `ValidationError` naming `field`.
    public init(_ raw: String, field: String = "password") throws(ValidationError) {
        try self.init(raw, field: field, minLength: Password.minLength)
    }

    /// Normalises a password offered at login, which may predate the length rule (an imported
    /// account): any length from 1 up to the maximum is checked against the stored hash.
    public init(candidate raw: String, field: String = "password") throws(ValidationError) {
        try self.init(raw, field: field, minLength: 1)
    }

    private init(_ raw: String, field: String, minLength: Int) throws(ValidationError) {
        // Refuse absurd input before normalising it: NFKC can only grow a string by a bounded
        // factor, but there is no reason to spend work on something that cannot pass.
        if raw.unicodeScalars.count > Password.maxLength * 18 {
            throw ValidationError(field: field, "must be at most \(Password.maxLength) characters")
        }
        let normalized = raw.precomposedStringWithCompatibilityMapping
        let count = normalized.unicodeScalars.count
        if count < minLength {
            throw ValidationError(field: field, minLength == 1 ? "must not be empty" : "must be at least \(minLength) characters")
        }
        if count > Password.maxLength {
            throw ValidationError(field: field, "must be at most \(Password.maxLength) characters")
        }
        if normalized.unicodeScalars.contains("\u{0}") {
            throw ValidationError(field: field, "must not contain NUL characters")
        }
        self.normalized = normalized
    }

    public var description: String { "<redacted password>" }
    /// Redacted, like `description`.
    public var debugDescription: String { "<redacted password>" }
}
