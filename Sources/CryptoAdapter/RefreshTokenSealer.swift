public import Foundation
public import IdentityPorts
public import IdentityDomain
import Crypto

/// Refresh tokens as contract §9 asks, with swift-crypto: 256 random bits in base64url
/// (43 characters); the store keeps a SHA-256 digest of the token; what must be handed out
/// again is sealed with AES-256-GCM under a key derived from the token by HKDF-SHA256.
///
/// Digest and sealing key come from the token by two functions with different labels, so
/// neither yields the other: a copy of the database (digests and sealed pairs) opens nothing.
public struct RefreshTokenSealer: RefreshTokenSealing {
    /// The length of every token this sealer makes, in characters.
    public static let tokenLength = 43

    /// Creates the sealer.
    public init() {}

    public func makeToken() -> String {
        Self.base64URL(SymmetricKey(size: .bits256).withUnsafeBytes { Data($0) })
    }

    public func digest(of token: String) -> RefreshDigest? {
        guard let bytes = Self.tokenBytes(token) else { return nil }
        var hash = SHA256()
        hash.update(data: Data("identity refresh token digest v1".utf8))
        hash.update(data: bytes)
        return RefreshDigest(Data(hash.finalize()))
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

    /// The 32 bytes of a well-formed token: exactly 43 base64url characters, no padding.
    static func tokenBytes(_ token: String) -> Data? {
        let utf8 = token.utf8
        guard utf8.count == tokenLength, utf8.allSatisfy(Self.isBase64URL) else { return nil }
        var base64 = token.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        base64 += "="
        guard let bytes = Data(base64Encoded: base64), bytes.count == 32 else { return nil }
        // Only the canonical spelling: the last character carries 2 unused bits, which must be 0.
        guard base64URL(bytes) == token else { return nil }
        return bytes
    }

    private static func sealingKey(_ token: String) -> SymmetricKey? {
        guard let bytes = tokenBytes(token) else { return nil }
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
