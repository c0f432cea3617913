public import Foundation
import Crypto

/// The keys that authenticate commands on `identity.commands` (Docs/messaging.md, "Signed
/// commands"): the command bus signs every command with the first key, and a worker applies
/// only a command whose MAC one of the keys verifies. More than one key is for rotation.
///
/// A key is opaque bytes, at least `minimumKeyBytes` of them; it is never logged, printed or
/// put in an error. Each key has an id derived from it (`keyIDs`), which is safe to log and
/// travels with every command so that a worker knows which key to check it against.
public struct CommandSigningKeys: Sendable {
    /// The fewest bytes a key may have (the output size of SHA-256).
    public static let minimumKeyBytes = 32

    struct Key: Sendable {
        let id: String
        let key: SymmetricKey
    }

    /// The signing key first, then the ones that are only accepted.
    let keys: [Key]

    /// Creates the key ring: `keys[0]` signs, every key verifies. Throws when `keys` is
    /// empty or a key is shorter than `minimumKeyBytes`.
    public init(_ keys: [Data]) throws(InvalidCommandSigningKey) {
        guard !keys.isEmpty else { throw InvalidCommandSigningKey(description: "no key given") }
        for (index, key) in keys.enumerated() where key.count < Self.minimumKeyBytes {
            let which = keys.count == 1 ? "the key" : "key \(index + 1) of \(keys.count)"
            throw InvalidCommandSigningKey(
                description: "\(which) has \(key.count) bytes; a key must have at least \(Self.minimumKeyBytes)"
            )
        }
        self.keys = keys.map { bytes in
            let key = SymmetricKey(data: bytes)
            return Key(id: CommandMAC.keyID(of: key), key: key)
        }
    }

    /// Each key's id, signing key first: 8 hexadecimal digits derived from the key (an HMAC
    /// of a fixed label), which identify it in headers and logs without revealing it.
    public var keyIDs: [String] { keys.map(\.id) }

    /// `properties` with the header `x-identity-mac` set for a command with `body`.
    func sign(_ properties: MessageProperties, body: Data) -> MessageProperties {
        var signed = properties
        let signer = keys[0]
        let fields = CommandMAC.Fields(properties, body: body)
        signed.mac = CommandMAC.headerValue(keyID: signer.id, code: CommandMAC.code(fields, key: signer.key))
        return signed
    }

    /// Whether `delivery` carries a MAC one of the keys verifies: the key's id, or why not.
    func verify(_ delivery: Delivery) -> Result<String, CommandMAC.Refusal> {
        guard let header = delivery.mac else { return .failure(.init(description: "no x-identity-mac header")) }
        guard let (keyID, claimed) = CommandMAC.parse(header) else {
            return .failure(.init(description: "a malformed x-identity-mac header"))
        }
        let candidates = keys.filter { $0.id == keyID }
        guard !candidates.isEmpty else {
            return .failure(.init(description: "signed with key \(keyID), which is not configured here"))
        }
        let fields = CommandMAC.Fields(delivery)
        for candidate in candidates where CommandMAC.code(fields, key: candidate.key) == claimed {
            return .success(keyID)
        }
        return .failure(.init(description: "the MAC (key \(keyID)) does not match the message"))
    }
}

/// Why command signing keys were refused. Its description never contains a key.
public struct InvalidCommandSigningKey: Error, CustomStringConvertible, Equatable {
    /// What is wrong, in one line.
    public let description: String
}

/// HMAC-SHA256 over what a worker acts on, version 1 (Docs/messaging.md, "Signed commands").
///
/// The authenticated bytes are the ASCII label `identity-command-v1`, then, in this order,
/// `message_id`, `correlation_id`, `reply_to`, `type`, the header `x-identity-deadline-ms`
/// (as decimal digits) and the body, each as one byte 0 when absent (an empty string counts
/// as absent) or as one byte 1, its length as 8 bytes big-endian and its bytes. The header
/// `x-identity-mac` is `v1.<key id>.<MAC in unpadded base64url>`.
enum CommandMAC {
    static let label = Data("identity-command-v1".utf8)
    static let version = "v1"

    /// A worker's reason for refusing a command's MAC; never contains a key or the body.
    struct Refusal: Error, CustomStringConvertible, Equatable {
        let description: String
    }

    /// The authenticated properties and body of a command.
    struct Fields {
        var messageID: String?
        var correlationID: String?
        var replyTo: String?
        var type: String?
        var deadlineMilliseconds: Int64?
        var body: Data

        /// As sent: the session leaves out empty strings and a deadline that is not positive.
        init(_ properties: MessageProperties, body: Data) {
            messageID = properties.messageID
            correlationID = properties.correlationID
            replyTo = properties.replyTo
            type = properties.type
            deadlineMilliseconds = properties.deadlineMilliseconds.flatMap { $0 > 0 ? $0 : nil }
            self.body = body
        }

        /// As received: what the worker acts on.
        init(_ delivery: Delivery) {
            messageID = delivery.messageID
            correlationID = delivery.correlationID
            replyTo = delivery.replyTo
            type = delivery.type
            deadlineMilliseconds = delivery.deadlineMilliseconds
            body = delivery.body
        }
    }

    /// The MAC of `fields` under `key`.
    static func code(_ fields: Fields, key: SymmetricKey) -> HashedAuthenticationCode<SHA256> {
        var mac = HMAC<SHA256>(key: key)
        mac.update(data: label)
        func add(_ bytes: Data?) {
            guard let bytes, !bytes.isEmpty else { return mac.update(data: [0]) }
            mac.update(data: [1])
            withUnsafeBytes(of: UInt64(bytes.count).bigEndian) { mac.update(data: $0) }
            mac.update(data: bytes)
        }
        add(fields.messageID.map { Data($0.utf8) })
        add(fields.correlationID.map { Data($0.utf8) })
        add(fields.replyTo.map { Data($0.utf8) })
        add(fields.type.map { Data($0.utf8) })
        add(fields.deadlineMilliseconds.map { Data(String($0).utf8) })
        add(fields.body)
        return mac.finalize()
    }

    /// A key's id: the first 4 bytes of HMAC(key, "identity-command-key-id"), in hexadecimal.
    static func keyID(of key: SymmetricKey) -> String {
        let code = HMAC<SHA256>.authenticationCode(for: Data("identity-command-key-id".utf8), using: key)
        return code.prefix(4).map { String(format: "%02x", $0) }.joined()
    }

    static func headerValue(keyID: String, code: HashedAuthenticationCode<SHA256>) -> String {
        "\(version).\(keyID).\(base64URL(Data(code)))"
    }

    /// The key id and the MAC's bytes of a header value; nil unless it is well formed.
    static func parse(_ header: String) -> (keyID: String, code: Data)? {
        let parts = header.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == version, parts[1].count == 8,
              parts[1].allSatisfy({ $0.isHexDigit && !$0.isUppercase }),
              parts[2].count == 43, let code = data(base64URL: String(parts[2])), code.count == SHA256.byteCount
        else { return nil }
        return (String(parts[1]), code)
    }

    static func base64URL(_ data: Data) -> String {
        data.base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    static func data(base64URL text: String) -> Data? {
        guard text.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }) else { return nil }
        var standard = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        standard += String(repeating: "=", count: (4 - standard.count % 4) % 4)
        return Data(base64Encoded: standard)
    }
}
