import Foundation

/// An email address in canonical form: trimmed, Unicode NFKC, then lower-cased.
///
/// The canonical form is what is stored, compared, returned and published, so
/// `Foo@Example.com` and `ｆｏｏ@example.com` name the same account. Lengths are counted in
/// UTF-8 octets, as RFC 5321 and RFC 6531 count them.
public struct Email: Hashable, Sendable, CustomStringConvertible {
    /// The canonical address.
    public let value: String

    /// The longest address accepted, in UTF-8 octets.
    public static let maxLength = 254
    /// The longest local part accepted, in UTF-8 octets.
    public static let maxLocalPartLength = 64

    /// Canonicalises and validates `raw`; throws a `ValidationError` on field `email`.
    public init(_ raw: String, field: String = "email") throws(ValidationError) {
        let canonical = Email.canonicalize(raw)
        if let problem = Email.problem(in: canonical) {
            throw ValidationError(field: field, problem)
        }
        self.value = canonical
    }

    /// Wraps a value already known to be canonical and valid (read back from a store).
    public init(trustedCanonical value: String) {
        self.value = value
    }

    /// The canonical form of `raw`: trimmed, NFKC, lower-cased. Does not validate.
    public static func canonicalize(_ raw: String) -> String {
        raw.trimmingCharacters(in: .whitespacesAndNewlines)
            .precomposedStringWithCompatibilityMapping
            .lowercased()
    }

    private static func problem(in email: String) -> String? {
        if email.isEmpty { return "must not be empty" }
        if email.unicodeScalars.contains(where: \.isForbiddenInEmail) {
            return "must not contain whitespace or control characters"
        }
        if email.utf8.count > maxLength { return "must be at most \(maxLength) bytes" }
        let parts = email.split(separator: "@", omittingEmptySubsequences: false)
        guard parts.count == 2 else { return "must contain exactly one @" }
        let local = parts[0]
        let domain = parts[1]
        if local.isEmpty { return "must have a local part before the @" }
        if local.utf8.count > maxLocalPartLength {
            return "local part must be at most \(maxLocalPartLength) bytes"
        }
        let labels = domain.split(separator: ".", omittingEmptySubsequences: false)
        if labels.count < 2 { return "domain must contain a dot" }
        if labels.contains(where: \.isEmpty) { return "domain must not have an empty label" }
        return nil
    }

    public var description: String { value }
}
