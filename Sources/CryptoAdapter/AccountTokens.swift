public import Foundation
public import IdentityPorts
import Crypto

/// Email-verification and password-reset tokens as contract §11 asks, with swift-crypto: 256
/// random bits as 43 base64url characters; a store keeps their SHA-256 digest (under a label
/// of its own, so it is no refresh token's); the mail outbox keeps them sealed with
/// AES-256-GCM under a key derived by HKDF-SHA256 from a server secret that the store does not
/// hold. A copy of the database alone yields no usable token.
public struct AccountTokens: AccountTokenMinting {
    /// The length of every token, in characters.
    public static let tokenLength = 43
    /// The shortest server secret accepted, in bytes.
    public static let minimumSecretLength = 32

    private let sealingKey: SymmetricKey

    /// Tokens sealed under a key derived from `secret` (`JWT_KEY_ENCRYPTION_KEY`, or else
    /// `JWT_SECRET`): every process sharing the store must be given the same one. Throws when
    /// it is shorter than 32 bytes.
    public init(secret: String) throws {
        let bytes = Array(secret.utf8)
        guard bytes.count >= Self.minimumSecretLength else { throw AccountTokenSecretTooShort(length: bytes.count) }
        self.init(material: bytes)
    }

    /// Tokens sealed under a random key, for an outbox that lives and dies with the process.
    public static func random() -> AccountTokens {
        AccountTokens(material: SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) })
    }

    private init(material: [UInt8]) {
        sealingKey = HKDF<SHA256>.deriveKey(
            inputKeyMaterial: SymmetricKey(data: material), info: Data("identity account token sealing v1".utf8), outputByteCount: 32
        )
    }

    public func makeToken() -> String {
        Base64URL.encode(SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) })
    }

    public func digest(of token: String) -> Data? {
        guard token.utf8.count == Self.tokenLength, let bytes = Base64URL.decode(token.utf8), bytes.count == 32 else { return nil }
        var hash = SHA256()
        hash.update(data: Data("identity account token digest v1".utf8))
        hash.update(data: bytes)
        return Data(hash.finalize())
    }

    public func seal(_ token: String) throws -> String {
        guard let combined = try AES.GCM.seal(Data(token.utf8), using: sealingKey).combined else {
            throw CryptoKitError.incorrectParameterSize
        }
        return Base64URL.encode(Array(combined))
    }

    public func open(_ sealed: String) -> String? {
        guard let bytes = Base64URL.decode(sealed.utf8), let box = try? AES.GCM.SealedBox(combined: bytes),
              let plain = try? AES.GCM.open(box, using: sealingKey)
        else { return nil }
        return String(decoding: plain, as: UTF8.self)
    }
}

/// The server secret for account tokens is shorter than 32 bytes.
public struct AccountTokenSecretTooShort: Error, Sendable, CustomStringConvertible {
    /// Its length in bytes.
    public let length: Int

    public var description: String {
        "the secret that seals mail tokens must be at least \(AccountTokens.minimumSecretLength) bytes (got \(length))"
    }
}
