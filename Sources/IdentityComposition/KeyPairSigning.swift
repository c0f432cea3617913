public import CryptoAdapter
public import Foundation
import IdentityPorts
import Logging
public import ServiceLifecycle

/// How the key pairs of ES256 and EdDSA signing are sealed and rotated (contract §10): what
/// `IdentityConfiguration.keyPairs` holds when `tokens` was made with
/// `TokenConfiguration(keyPairs:)`.
public struct KeyPairSigning: Sendable {
    /// Seals the private keys at rest (`JWT_KEY_ENCRYPTION_KEY`): every instance sharing the
    /// store needs the same one.
    public var keyEncryptionKey: KeyEncryptionKey
    /// How long a key signs before the next one replaces it (`JWT_KEY_ROTATION_DAYS`, 30 days).
    public var rotationInterval: TimeInterval
    /// How often each instance runs the rotation and reads the keys again, so that it learns of
    /// a rotation made elsewhere without a restart.
    public var checkInterval: Duration

    /// `JWT_KEY_ROTATION_DAYS`' default: 30 days.
    public static let defaultRotationInterval: TimeInterval = 30 * 86_400

    /// Creates the settings.
    public init(keyEncryptionKey: KeyEncryptionKey, rotationInterval: TimeInterval = defaultRotationInterval, checkInterval: Duration = .seconds(60)) {
        self.keyEncryptionKey = keyEncryptionKey
        self.rotationInterval = rotationInterval
        self.checkInterval = checkInterval
    }
}

/// The key pairs of one stack: the keys it signs and verifies with, and the rotation that
/// keeps them current.
final class KeyRing: Sendable {
    let keys: SigningKeys
    let rotator: SigningKeyRotator
    let store: any SigningKeyStore
    let checkInterval: Duration

    init(keys: SigningKeys, rotator: SigningKeyRotator, store: any SigningKeyStore, checkInterval: Duration) {
        self.keys = keys
        self.rotator = rotator
        self.store = store
        self.checkInterval = checkInterval
    }
}

/// Runs the rotation of contract §10 in the background (`SigningKeyRotator.maintain`): every
/// `KeyPairSigning.checkInterval` a new key when one is due, promotions and retirements, and
/// the keys read again, so that every instance learns of a rotation without a restart. A failed
/// round is logged and the next tries again. It starts once the stack is prepared, so that an
/// instance with the wrong key-encryption key (its `prepare()` fails to open the stored keys)
/// never writes a key the others cannot open.
public struct SigningKeyMaintenance: Service {
    let ring: KeyRing
    let gate: PreparedGate
    let logger: Logger

    init(ring: KeyRing, after gate: PreparedGate, logger: Logger) {
        self.ring = ring
        self.gate = gate
        self.logger = logger
    }

    public func run() async throws {
        guard await gate.wait() else { return }
        await cancelWhenGracefulShutdown {
            let logger = logger
            await ring.rotator.maintain(ring.keys, every: ring.checkInterval) { error in
                logger.warning("signing-key rotation failed; will retry", metadata: ["error": "\(error)"])
            }
        }
    }
}
