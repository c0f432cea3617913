public import Foundation
public import IdentityDomain
public import IdentityPorts
import Crypto

/// Refresh tokens as contract §9 asks, with swift-crypto. A token is 96 base64url characters,
/// 72 bytes: the session's id (16 bytes), the account's id (16), the account version the token
/// was made for (8, big-endian), then 256 random bits (32). The store keeps a SHA-256 digest of
/// the whole token; what must be handed out again is sealed with AES-256-GCM under a key
/// derived from the token by SHA-256 with another label (`sealingKey(_:)`).
///
/// Digest and sealing key come from the token by two functions with different labels, so
/// neither yields the other: a copy of the database (digests and sealed pairs) opens nothing.
/// The session, the account and the version are no secrets (access tokens carry them as
/// `sid`, `sub` and `ver`): they let a refresh make the new pair before its one statement,
/// and the digest covers them, so a token with any of them altered is unknown.
///
/// Tokens of the earlier format, 65 characters (the session's id, then 256 random bits), still
/// parse, without an account: a refresh of one reads its session first, and hands out a token
/// of the current format.
public struct RefreshTokenSealer: RefreshTokenSealing {
    /// The length of every token this sealer makes, in characters.
    public static let tokenLength = 96
    /// The length of a token of the earlier format (session and secret only), in characters.
    public static let sessionOnlyTokenLength = 65

    /// Creates the sealer.
    public init() {}

    public func makeToken(for session: SessionID, userID: UserID, accountVersion: Int64) -> String {
        var bytes = withUnsafeBytes(of: session.uuid.uuid) { Array($0) }
        bytes.reserveCapacity(72)
        withUnsafeBytes(of: userID.uuid.uuid) { bytes += $0 }
        withUnsafeBytes(of: UInt64(bitPattern: accountVersion).bigEndian) { bytes += $0 }
        SymmetricKey(size: .bits256).withUnsafeBytes { bytes += $0 }
        return Base64URL.encode(bytes)
    }

    public func parse(_ token: String) -> RefreshTokenParts? {
        guard let (session, account, bytes) = Self.tokenBytes(token) else { return nil }
        var hash = SHA256()
        hash.update(data: Data("identity refresh token digest v1".utf8))
        hash.update(data: bytes)
        guard let digest = RefreshDigest(Data(hash.finalize())) else { return nil }
        return RefreshTokenParts(sessionID: session, account: account, digest: digest)
    }

    public func seal(_ plaintext: Data, under token: String) throws -> Data {
        guard let key = Self.sealingKey(token) else { throw RefreshTokenSealingError("not a refresh token of ours") }
        guard let combined = try AES.GCM.seal(plaintext, using: key).combined else {
            throw RefreshTokenSealingError("AES-GCM gave no combined form")
        }
        return combined
    }

    public func open(_ sealed: Data, with token: String) -> Data? {
        guard let (_, _, bytes) = Self.tokenBytes(token), let box = try? AES.GCM.SealedBox(combined: sealed) else { return nil }
        // A pair sealed by an earlier build, under HKDF, opens too (a grace across the upgrade).
        return (try? AES.GCM.open(box, using: Self.sealingKey(bytes))) ?? (try? AES.GCM.open(box, using: Self.earlierSealingKey(bytes)))
    }

    /// The session, the account (current format only) and the bytes of a well-formed token:
    /// exactly 96 base64url characters (72 bytes), or 65 of the earlier format (a 22-character
    /// session id, then 43 for the secret), each part in its one canonical spelling.
    static func tokenBytes(_ token: String) -> (SessionID, (userID: UserID, version: Int64)?, [UInt8])? {
        let utf8 = token.utf8
        switch utf8.count {
        case tokenLength:
            guard let bytes = Base64URL.decode(utf8), bytes.count == 72 else { return nil }
            return bytes.withUnsafeBytes { raw in
                let session = SessionID(UUID(uuid: raw.loadUnaligned(as: uuid_t.self)))
                let user = UserID(UUID(uuid: raw.loadUnaligned(fromByteOffset: 16, as: uuid_t.self)))
                let version = Int64(bitPattern: UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 32, as: UInt64.self)))
                return (session, (user, version), bytes)
            }
        case sessionOnlyTokenLength:
            let split = utf8.index(utf8.startIndex, offsetBy: 22)
            guard let id = Base64URL.decode(utf8[..<split]), id.count == 16,
                  let secret = Base64URL.decode(utf8[split...]), secret.count == 32
            else { return nil }
            let uuid = id.withUnsafeBytes { $0.loadUnaligned(as: uuid_t.self) }
            return (SessionID(UUID(uuid: uuid)), nil, id + secret)
        default:
            return nil
        }
    }

    private static func sealingKey(_ token: String) -> SymmetricKey? {
        tokenBytes(token).map { sealingKey($0.2) }
    }

    /// The key that seals under a token with these bytes: NIST SP 800-56C's one-step key
    /// derivation with SHA-256 (one block: the counter 1, the token's bytes, a label). The
    /// token holds 256 random bits, so one hash is enough; HKDF (the earlier derivation) cost
    /// ten times as much, a twentieth of a refresh's CPU.
    static func sealingKey(_ bytes: [UInt8]) -> SymmetricKey {
        var hash = SHA256()
        hash.update(data: [0, 0, 0, 1])
        hash.update(data: bytes)
        hash.update(data: Data("identity refresh token sealing v2".utf8))
        return SymmetricKey(data: hash.finalize())
    }

    /// The key of builds before `sealingKey(_:)`: HKDF-SHA256 of the token's bytes.
    static func earlierSealingKey(_ bytes: [UInt8]) -> SymmetricKey {
        HKDF<SHA256>.deriveKey(
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
