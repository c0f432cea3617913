public import Foundation
public import IdentityDomain
public import IdentityPorts
import Crypto

/// Refresh tokens as contract §9 asks, with swift-crypto. A token is 65 base64url characters:
/// the session's id (16 bytes, 22 characters), then 256 random bits (43 characters). The
/// store keeps a SHA-256 digest of the whole token; what must be handed out again is sealed
/// with AES-256-GCM under a key derived from the token by HKDF-SHA256.
///
/// Digest and sealing key come from the token by two functions with different labels, so
/// neither yields the other: a copy of the database (digests and sealed pairs) opens nothing.
/// The session id in the token is no secret (access tokens carry it as `sid`); it only spares
/// the lookup of a digest, and the digest covers it.
public struct RefreshTokenSealer: RefreshTokenSealing {
    /// The length of every token this sealer makes, in characters.
    public static let tokenLength = 65

    /// Creates the sealer.
    public init() {}

    public func makeToken(for session: SessionID) -> String {
        let id = withUnsafeBytes(of: session.uuid.uuid) { Data($0) }
        let secret = SymmetricKey(size: .bits256).withUnsafeBytes { Data($0) }
        return Self.base64URL(id) + Self.base64URL(secret)
    }

    public func parse(_ token: String) -> RefreshTokenParts? {
        guard let (session, bytes) = Self.tokenBytes(token) else { return nil }
        var hash = SHA256()
        hash.update(data: Data("identity refresh token digest v1".utf8))
        hash.update(data: bytes)
        guard let digest = RefreshDigest(Data(hash.finalize())) else { return nil }
        return RefreshTokenParts(sessionID: session, digest: digest)
    }

    public func seal(_ plaintext: Data, under token: String) throws -> Data {
        guard let key = Self.sealingKey(token) else { throw RefreshTokenSealingError("not a refresh token of ours") }
        guard let combined = try AES.GCM.seal(plaintext, using: key).combined else {
            throw RefreshTokenSealingError("AES-GCM gave no combined form")
        }
        return combined
    }

    public func open(_ sealed: Data, with token: String) -> Data? {
        guard let key = Self.sealingKey(token), let box = try? AES.GCM.SealedBox(combined: sealed) else { return nil }
        return try? AES.GCM.open(box, using: key)
    }

    /// The session and the 48 bytes of a well-formed token: exactly 65 base64url characters,
    /// each part in its one canonical spelling.
    static func tokenBytes(_ token: String) -> (SessionID, Data)? {
        guard token.utf8.count == tokenLength else { return nil }
        let split = token.index(token.startIndex, offsetBy: 22)
        guard let id = decode(token[..<split], count: 16), let secret = decode(token[split...], count: 32) else { return nil }
        let uuid = id.withUnsafeBytes { $0.loadUnaligned(as: uuid_t.self) }
        return (SessionID(UUID(uuid: uuid)), id + secret)
    }

    private static func decode(_ part: Substring, count: Int) -> Data? {
        guard part.utf8.allSatisfy(isBase64URL) else { return nil }
        var base64 = part.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        base64 += String(repeating: "=", count: (4 - base64.utf8.count % 4) % 4)
        // Only the canonical spelling: the unused low bits of the last character must be 0.
        guard let bytes = Data(base64Encoded: base64), bytes.count == count, base64URL(bytes) == part else { return nil }
        return bytes
    }

    private static func sealingKey(_ token: String) -> SymmetricKey? {
        guard let (_, bytes) = tokenBytes(token) else { return nil }
        return HKDF<SHA256>.deriveKey(
            inputKeyMaterial: SymmetricKey(data: bytes), info: Data("identity refresh token sealing v1".utf8), outputByteCount: 32
        )
    }

    private static func isBase64URL(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
             UInt8(ascii: "-"), UInt8(ascii: "_"):
            true
        default:
            false
        }
    }

    private static func base64URL(_ data: Data) -> String {
        data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}

/// A refresh token that cannot be sealed under (it is not one of ours).
public struct RefreshTokenSealingError: Error, Sendable, CustomStringConvertible {
    /// What went wrong.
    public let description: String
    init(_ description: String) { self.description = description }
}
