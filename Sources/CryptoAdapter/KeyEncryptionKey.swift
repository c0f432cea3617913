import Foundation
import Crypto

/// The key that seals signing keys at rest (`JWT_KEY_ENCRYPTION_KEY`, contract §10).
///
/// The store keeps only what `seal` makes: AES-256-GCM under a key derived from the secret
/// with HKDF-SHA256 (so the AES key has exactly 256 bits whatever the secret's length, and
/// the same secret used for anything else gives an unrelated key), with the key's `kid`,
/// algorithm and public key as associated data: a sealed private key copied onto another
/// record does not open. Never printed.
public struct KeyEncryptionKey: Sendable, CustomStringConvertible {
    /// The shortest secret accepted, in bytes.
    public static let minimumLength = 32

    private let key: SymmetricKey

    /// The key from `secret` (the UTF-8 bytes of `JWT_KEY_ENCRYPTION_KEY` as given), required
    /// with `algorithm` ES256 or EdDSA; throws `TokenConfigurationError` naming the variable
    /// when it is missing or shorter than 32 bytes.
    public init(_ secret: String?, for algorithm: JWTAlgorithm) throws {
        guard let secret, !secret.isEmpty else {
            throw TokenConfigurationError(
                "JWT_KEY_ENCRYPTION_KEY is required with JWT_ALGORITHM=\(algorithm.rawValue) (at least \(Self.minimumLength) bytes)"
            )
        }
        let bytes = Array(secret.utf8)
        guard bytes.count >= Self.minimumLength else {
            throw TokenConfigurationError("JWT_KEY_ENCRYPTION_KEY must be at least \(Self.minimumLength) bytes (got \(bytes.count))")
        }
        self.init(material: bytes)
    }

    /// A random key, for a store that lives and dies with the process (in memory): nothing it
    /// sealed needs opening after a restart.
    public static func random() -> KeyEncryptionKey {
        KeyEncryptionKey(material: Array(SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) }))
    }

    private init(material: [UInt8]) {
        key = HKDF<SHA256>.deriveKey(
            inputKeyMaterial: SymmetricKey(data: material), salt: Array("identity signing keys".utf8),
            info: Array("JWT_KEY_ENCRYPTION_KEY AES-256-GCM v1".utf8), outputByteCount: 32
        )
    }

    public var description: String { "KeyEncryptionKey(redacted)" }

    /// The form of a sealed key: one version byte, then AES-GCM's nonce, ciphertext and tag.
    private static let version: UInt8 = 1

    /// `privateKey` sealed for the record `kid`, `algorithm`, `publicKey`.
    func seal(_ privateKey: Data, kid: String, algorithm: String, publicKey: Data) throws -> Data {
        let box = try AES.GCM.seal(privateKey, using: key, authenticating: Self.context(kid: kid, algorithm: algorithm, publicKey: publicKey))
        guard let combined = box.combined else { throw SigningKeyError.cannotOpen(kid: kid) }
        return Data([Self.version]) + combined
    }

    /// The private key sealed in `sealed` for that record; throws `SigningKeyError` when it was
    /// sealed under another key-encryption key, for another record, or is damaged.
    func open(_ sealed: Data, kid: String, algorithm: String, publicKey: Data) throws -> Data {
        guard sealed.first == Self.version, let box = try? AES.GCM.SealedBox(combined: sealed.dropFirst()),
              let opened = try? AES.GCM.open(box, using: key, authenticating: Self.context(kid: kid, algorithm: algorithm, publicKey: publicKey))
        else { throw SigningKeyError.cannotOpen(kid: kid) }
        return opened
    }

    private static func context(kid: String, algorithm: String, publicKey: Data) -> Data {
        Data("identity-signing-key\u{0}\(algorithm)\u{0}\(kid)\u{0}".utf8) + publicKey
    }
}

/// A signing key that cannot be used: none to sign with, or a stored key that does not open.
public struct SigningKeyError: Error, Sendable, Equatable, CustomStringConvertible {
    private enum Reason: Equatable {
        case cannotOpen(String)
        case damaged(String)
        case noActiveKey(String)
        case stale
    }

    private let reason: Reason

    /// The stored private key `kid` does not open: `JWT_KEY_ENCRYPTION_KEY` is not the key it
    /// was sealed with, or the record was altered.
    public static func cannotOpen(kid: String) -> SigningKeyError { SigningKeyError(reason: .cannotOpen(kid)) }
    /// The stored key `kid` opened but is not a key of its algorithm, or not its public key's pair.
    public static func damaged(kid: String) -> SigningKeyError { SigningKeyError(reason: .damaged(kid)) }
    /// No stored key of `algorithm` signs now.
    public static func noActiveKey(algorithm: String) -> SigningKeyError { SigningKeyError(reason: .noActiveKey(algorithm)) }
    /// The keys could not be read for longer than it is safe to sign with what was read before.
    public static let stale = SigningKeyError(reason: .stale)

    /// Whether the configuration is to blame (a key that does not open, `JWT_KEY_ENCRYPTION_KEY`
    /// not the one it was sealed with) rather than the stored keys or the store.
    public var isConfigurationError: Bool {
        if case .cannotOpen = reason { true } else { false }
    }

    public var description: String {
        switch reason {
        case .cannotOpen(let kid):
            "the stored signing key \(kid) cannot be decrypted: JWT_KEY_ENCRYPTION_KEY is not the key it was sealed with, or the record was altered"
        case .damaged(let kid): "the stored signing key \(kid) is damaged: its private key is not the pair of its public key"
        case .noActiveKey(let algorithm): "no \(algorithm) signing key is active: run a key rotation (the first start makes one)"
        case .stale: "the signing keys could not be read for too long to sign safely"
        }
    }
}
