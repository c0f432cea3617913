import Foundation
public import IdentityPorts
import Crypto

/// Runs the rotation of contract §10 against a `SigningKeyStore`: reads the keys, asks
/// `SigningKeyPolicy.plan` what to do, makes and seals a key pair if one is needed, and
/// commits with the revision it read. When another instance committed first it reads again
/// and decides again, so two instances rotating at once make one key.
///
/// Run it at start, before `SigningKeys.load` (the first start makes a key), then
/// `maintain(_:every:)` in the background, and `rotate(rotateNow: true)` for `keys rotate`.
public struct SigningKeyRotator: Sendable {
    private let store: any SigningKeyStore
    private let policy: SigningKeyPolicy
    private let keyEncryptionKey: KeyEncryptionKey
    private let clock: any IdentityClock

    /// Creates the rotator.
    public init(store: any SigningKeyStore, policy: SigningKeyPolicy, keyEncryptionKey: KeyEncryptionKey, clock: any IdentityClock = SystemClock()) {
        self.store = store
        self.policy = policy
        self.keyEncryptionKey = keyEncryptionKey
        self.clock = clock
    }

    /// One rotation at the clock's `now`; returns the steps it committed (empty when nothing
    /// was due, or another instance did it first). `rotateNow` makes a new key although the
    /// signing key is not due.
    @discardableResult
    public func rotate(rotateNow: Bool = false) async throws -> [SigningKeyStep] {
        // A lost race means another instance changed the keys: decide again on what it wrote.
        // The second plan then finds that key and has nothing to make.
        for _ in 0..<8 {
            // Whole milliseconds: what every store keeps.
            let now = Date(timeIntervalSince1970: (clock.now().timeIntervalSince1970 * 1000).rounded(.down) / 1000)
            let set = try await store.keySet()
            let steps = policy.plan(set.keys, now: now, rotateNow: rotateNow)
            guard !steps.isEmpty else { return [] }
            var created: SigningKeyRecord?
            if case .create(let activatesAt)? = steps.first(where: { if case .create = $0 { true } else { false } }) {
                created = try Self.makeKey(algorithm: policy.algorithm, sealedWith: keyEncryptionKey, now: now, activatesAt: activatesAt)
            }
            let changes = policy.changes(applying: steps, to: set.keys, created: created)
            if try await store.commit(changes, expectedRevision: set.revision) { return steps }
        }
        return []
    }

    /// The automatic rotation of contract §10: every `interval`, a rotation (a new key when
    /// one is due, promotions, retirements) and then `keys` read again, until the task is
    /// cancelled. A failed round is handed to `onError` and the next one tries again; `sleep`
    /// waits between rounds (injected, so that a test moves a manual clock instead).
    public func maintain(
        _ keys: SigningKeys, every interval: Duration = .seconds(60), onError: @escaping @Sendable (any Error) -> Void = { _ in },
        sleep: @escaping @Sendable (Duration) async throws -> Void = { try await Task.sleep(for: $0) }
    ) async {
        while !Task.isCancelled {
            do {
                try await rotate()
                try await keys.refresh()
            } catch {
                onError(error)
            }
            do { try await sleep(interval) } catch { return }
        }
    }

    /// A fresh key pair for `algorithm`, sealed, `next` (or `active` when it signs at once).
    static func makeKey(algorithm: JWTAlgorithm, sealedWith kek: KeyEncryptionKey, now: Date, activatesAt: Date) throws -> SigningKeyRecord {
        let (publicKey, privateKey): (Data, Data)
        switch algorithm {
        case .es256:
            let key = P256.Signing.PrivateKey()
            (publicKey, privateKey) = (key.publicKey.rawRepresentation, key.rawRepresentation)
        case .eddsa:
            let key = Curve25519.Signing.PrivateKey()
            (publicKey, privateKey) = (key.publicKey.rawRepresentation, key.rawRepresentation)
        case .hs256, .hs384, .hs512:
            throw TokenConfigurationError("\(algorithm.rawValue) has no key pairs to make")
        }
        let kid = JSONWebKey(algorithm: algorithm, kid: "", publicKey: publicKey).thumbprint
        return SigningKeyRecord(
            kid: kid, algorithm: algorithm.rawValue, publicKey: publicKey,
            sealedPrivateKey: try kek.seal(privateKey, kid: kid, algorithm: algorithm.rawValue, publicKey: publicKey),
            state: activatesAt <= now ? .active : .next, createdAt: now, activatesAt: activatesAt
        )
    }
}
