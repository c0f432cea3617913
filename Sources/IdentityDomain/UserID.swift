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
    ///
    /// Read byte by byte: every bearer token names its user and session, and Foundation's
    /// `UUID(uuidString:)` goes through `sscanf` (a visible share of a request's CPU).
    public init?(_ string: some StringProtocol) {
        guard let uuid = UUIDText.parse(string.utf8) else { return nil }
        self.init(uuid)
    }

    /// The lower-case hyphenated form.
    public var description: String { UUIDText.format(uuid) }
}

/// The hyphenated text form of a UUID, read and written without Foundation's formatter.
enum UUIDText {
    private static let digits = Array("0123456789abcdef".utf8)

    static func parse(_ text: some Collection<UInt8>) -> UUID? {
        guard text.count == 36 else { return nil }
        var bytes = [UInt8](repeating: 0, count: 16)
        var index = 0
        var high: UInt8?
        for (position, character) in text.enumerated() {
            if position == 8 || position == 13 || position == 18 || position == 23 {
                guard character == UInt8(ascii: "-") else { return nil }
                continue
            }
            let value: UInt8
            switch character {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): value = character &- UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): value = character &- UInt8(ascii: "a") &+ 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): value = character &- UInt8(ascii: "A") &+ 10
            default: return nil
            }
            if let first = high {
                bytes[index] = first << 4 | value
                index += 1
                high = nil
            } else {
                high = value
            }
        }
        return bytes.withUnsafeBytes { raw in UUID(uuid: raw.loadUnaligned(as: uuid_t.self)) }
    }

    static func format(_ uuid: UUID) -> String {
        withUnsafeBytes(of: uuid.uuid) { raw in
            String(unsafeUninitializedCapacity: 36) { output in
                var position = 0
                for (index, byte) in raw.enumerated() {
                    if index == 4 || index == 6 || index == 8 || index == 10 {
                        output[position] = UInt8(ascii: "-")
                        position += 1
                    }
                    output[position] = digits[Int(byte >> 4)]
                    output[position + 1] = digits[Int(byte & 0x0F)]
                    position += 2
                }
                return position
            }
        }
    }
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
