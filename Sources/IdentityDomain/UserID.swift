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
        let parsed = string.utf8.withContiguousStorageIfAvailable(UUIDText.parse) ?? Array(string.utf8).withUnsafeBufferPointer(UUIDText.parse)
        guard let uuid = parsed else { return nil }
        self.init(uuid)
    }

    /// The lower-case hyphenated form.
    public var description: String { UUIDText.format(uuid) }
}

/// The hyphenated text form of a UUID, read and written without Foundation's formatter.
enum UUIDText {
    private static let digits = Array("0123456789abcdef".utf8)

    static func parse(_ text: UnsafeBufferPointer<UInt8>) -> UUID? {
        guard text.count == 36 else { return nil }
        var uuid: uuid_t = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        let complete = withUnsafeMutableBytes(of: &uuid) { bytes -> Bool in
            var position = 0
            for index in 0..<16 {
                if index == 4 || index == 6 || index == 8 || index == 10 {
                    guard text[position] == UInt8(ascii: "-") else { return false }
                    position += 1
                }
                guard let high = hexValue(text[position]), let low = hexValue(text[position + 1]) else { return false }
                bytes[index] = high << 4 | low
                position += 2
            }
            return true
        }
        return complete ? UUID(uuid: uuid) : nil
    }

    private static func hexValue(_ character: UInt8) -> UInt8? {
        switch character {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): character &- UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): character &- UInt8(ascii: "a") &+ 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): character &- UInt8(ascii: "A") &+ 10
        default: nil
        }
    }

    static func format(_ uuid: UUID) -> String {
        withUnsafeBytes(of: uuid.uuid) { raw in
            String(unsafeUninitializedCapacity: 36) { output in
                var position = 0
                for index in 0..<16 {
                    let byte = raw[index]
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
