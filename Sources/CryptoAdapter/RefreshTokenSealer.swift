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
        let id = withUnsafeBytes(of: session.uuid.uuid) { Array($0) }
        let secret = SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) }
        return Base64URL.encode(id) + Base64URL.encode(secret)
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
    /// each part in its one canonical spelling (read byte by byte: every refresh does this).
    static func tokenBytes(_ token: String) -> (SessionID, Data)? {
        let utf8 = token.utf8
        guard utf8.count == tokenLength else { return nil }
        let split = utf8.index(utf8.startIndex, offsetBy: 22)
        guard let id = Base64URL.decode(utf8[..<split]), id.count == 16,
              let secret = Base64URL.decode(utf8[split...]), secret.count == 32
        else { return nil }
        let uuid = id.withUnsafeBytes { $0.loadUnaligned(as: uuid_t.self) }
        return (SessionID(UUID(uuid: uuid)), Data(id + secret))
    }

    private static func sealingKey(_ token: String) -> SymmetricKey? {
        guard let (_, bytes) = tokenBytes(token) else { return nil }
        return HKDF<SHA256>.deriveKey(
            inputKeyMaterial: SymmetricKey(data: bytes), info: Data("identity refresh token sealing v1".utf8), outputByteCount: 32
        )
    }
}

/// A refresh token that cannot be sealed under (it is not one of ours).
public struct RefreshTokenSealingError: Error, Sendable, CustomStringConvertible {
    /// What went wrong.
    public let description: String
    init(_ description: String) { self.description = description }
}
