import Foundation

/// One invalid input field: a JSON pointer to it (`/email`) and what is wrong, safe to show a client.
public struct FieldError: Sendable, Equatable, CustomStringConvertible {
    /// JSON pointer of the offending field, such as `/email`.
    public let pointer: String
    /// Human-readable reason; never echoes a password.
    public let detail: String

    /// Creates a field error for `pointer`.
    public init(pointer: String, detail: String) {
        self.pointer = pointer
        self.detail = detail
    }

    public var description: String { "\(pointer): \(detail)" }

    /// The RFC 6901 pointer to a top-level field (`"/"` for the empty key).
    public static func pointer(to field: String) -> String {
        "/" + field.replacingOccurrences(of: "~", with: "~0").replacingOccurrences(of: "/", with: "~1")
    }
}

/// Input that breaks a value rule; carries one `FieldError` per bad field (HTTP 422).
public struct ValidationError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Every bad field, in the order they were found.
    public let errors: [FieldError]

    /// Creates a validation error from its field errors.
    public init(_ errors: [FieldError]) {
        self.errors = errors
    }

    /// Creates a validation error about one top-level field.
    public init(field: String, _ detail: String) {
        self.errors = [FieldError(pointer: FieldError.pointer(to: field), detail: detail)]
    }

    public var description: String {
        "invalid input: " + errors.map(\.description).joined(separator: "; ")
    }
}

/// Collects validation failures across several fields so that one response lists them all.
public struct ValidationCollector: Sendable {
    /// The failures so far.
    public private(set) var errors: [FieldError] = []

    /// Creates an empty collector.
    public init() {}

    /// Runs `make`; on a `ValidationError` records it and returns nil.
    public mutating func attempt<T>(_ make: () throws(ValidationError) -> T) -> T? {
        do {
            return try make()
        } catch {
            errors.append(contentsOf: error.errors)
            return nil
        }
    }

    /// Records a failure of one top-level field.
    public mutating func add(field: String, _ detail: String) {
        errors.append(FieldError(pointer: FieldError.pointer(to: field), detail: detail))
    }

    /// Records a failure of the document as a whole (pointer `""`).
    public mutating func addDocumentError(_ detail: String) {
        errors.append(FieldError(pointer: "", detail: detail))
    }

    /// Throws the collected failures, if any.
    public func check() throws(ValidationError) {
        if !errors.isEmpty { throw ValidationError(errors) }
    }
}

extension Unicode.Scalar {
    /// Control (Cc) characters: never acceptable in an email or a name.
    var isControl: Bool { properties.generalCategory == .control }

    /// Invisible or spacing characters that have no place in an email address.
    var isForbiddenInEmail: Bool {
        switch properties.generalCategory {
        case .control, .format, .spaceSeparator, .lineSeparator, .paragraphSeparator, .surrogate,
            .privateUse, .unassigned:
            return true
        default:
            return properties.isWhitespace
        }
    }
}
