public import Foundation

/// An identifier that is a UUID, written lower-case and hyphenated: what `UserID` and
/// `SessionID` share, so that each parses and prints ids one way.
public protocol UUIDIdentifier: Hashable, Sendable, CustomStringConvertible {
    /// The underlying UUID.
    var uuid: UUID { get }
    /// Wraps a UUID.
    init(_ uuid: UUID)
}

extension UUIDIdentifier {
    /// Parses a hyphenated UUID in either case; nil when `string` is not one.
    public init?(_ string: some StringProtocol) {
        guard string.utf8.count == 36, let uuid = UUID(uuidString: String(string)) else { return nil }
        self.init(uuid)
    }

    /// The lower-case hyphenated form.
    public var description: String { uuid.uuidString.lowercased() }
}

/// A user's identifier: a UUID, written lower-case and hyphenated.
public struct UserID: UUIDIdentifier {
    /// The underlying UUID.
    public let uuid: UUID

    /// Wraps a UUID.
    public init(_ uuid: UUID) {
        self.uuid = uuid
    }
}

extension UserID: Codable {
    /// Decodes the hyphenated string form.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let string = try container.decode(String.self)
        guard let id = UserID(string) else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "not a UUID")
        }
        self = id
    }

    /// Encodes the lower-case hyphenated string form.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}
