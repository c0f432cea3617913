public import Foundation
public import IdentityPorts
import Crypto
import JWTKit
import Synchronization

/// The key pairs a `JWTTokenService` signs and verifies ES256 or EdDSA tokens with, read from
/// a `SigningKeyStore` and kept in memory.
///
/// Keys change at run time, without a restart: the set is read again at least every
/// `refreshInterval` when a token is issued, and when a token names a `kid` it does not know
/// (at most once per `refreshInterval / 12`, so a flood of made-up ids cannot flood the
/// store). A key is stored `SigningKeyPolicy.minimumPublicationLead` (600 s) before it signs,
/// so every instance knows it, and verifies with it, before any instance signs with it. It
/// never signs with a set read more than 300 s ago (`SigningKeyError.stale`): a key that
/// activated since would have been in the store for 300 s already.
public final class SigningKeys: Sendable {
    /// The algorithm of the keys: ES256 or EdDSA.
    public let algorithm: JWTAlgorithm
    private let store: any SigningKeyStore
    private let keyEncryptionKey: KeyEncryptionKey
    private let clock: any IdentityClock
    private let refreshInterval: TimeInterval
    private let snapshot: Mutex<(keys: KeySnapshot, lastMiss: Date?)>

    /// The longest a set may have been read before it is not signed with.
    static let maximumStaleness = SigningKeyPolicy.minimumPublicationLead / 2

    /// Creates the source with nothing read yet (`load` reads at once); throws
    /// `TokenConfigurationError` for an HMAC algorithm.
    public init(
        store: any SigningKeyStore, algorithm: JWTAlgorithm, keyEncryptionKey: KeyEncryptionKey, clock: any IdentityClock = SystemClock(),
        refreshInterval: TimeInterval = 60
    ) throws {
        guard algorithm.isAsymmetric else { throw TokenConfigurationError("\(algorithm.rawValue) signs with JWT_SECRET, not key pairs") }
        self.algorithm = algorithm
        self.store = store
        self.keyEncryptionKey = keyEncryptionKey
        self.clock = clock
        self.refreshInterval = min(refreshInterval, Self.maximumStaleness)
        self.snapshot = Mutex((KeySnapshot.empty(algorithm), nil))
    }

    /// A source that has read the store once: throws `SigningKeyError` when a stored key does
    /// not open with `keyEncryptionKey` (the wrong `JWT_KEY_ENCRYPTION_KEY`), so that a
    /// misconfigured instance stops at start.
    public static func load(
        store: any SigningKeyStore, algorithm: JWTAlgorithm, keyEncryptionKey: KeyEncryptionKey, clock: any IdentityClock = SystemClock(),
        refreshInterval: TimeInterval = 60
    ) async throws -> SigningKeys {
        let keys = try SigningKeys(store: store, algorithm: algorithm, keyEncryptionKey: keyEncryptionKey, clock: clock, refreshInterval: refreshInterval)
        try await keys.refresh()
        return keys
    }

    /// Reads the keys again: what a rotation committed is used from now on.
    public func refresh() async throws {
        let now = clock.now()
        let set = try await store.keySet()
        let fresh = try await KeySnapshot(set, algorithm: algorithm, kek: keyEncryptionKey, loadedAt: now)
        snapshot.withLock { state in
            if fresh.revision >= state.keys.revision || state.keys.revision == KeySnapshot.unread { state.keys = fresh }
        }
    }

    /// The public keys that may verify a live token now, as the JWKS lists them.
    public func jwks() -> JSONWebKeySet {
        let now = clock.now()
        let keys = current.published.filter { $0.publishedUntil.map { now <= $0 } ?? true }
        return JSONWebKeySet(keys: keys.map { JSONWebKey(algorithm: algorithm, kid: $0.kid, publicKey: $0.publicKey) })
    }

    /// The keys as last read.
    var current: KeySnapshot { snapshot.withLock { $0.keys } }

    /// The key that signs at `instant` (by the rotation rule), reading the keys first when
    /// they were read `refreshInterval` ago or longer.
    func signer(at instant: Date) async throws -> (kid: String, key: PrivateSigningKey) {
        let now = clock.now()
        var keys = current
        if now.timeIntervalSince(keys.loadedAt) >= refreshInterval {
            do {
                try await refresh()
            } catch let error as SigningKeyError {
                throw error
            } catch {
                // The store is unreachable: the set read before still serves while it is recent.
                guard now.timeIntervalSince(keys.loadedAt) < Self.maximumStaleness else { throw SigningKeyError.stale }
            }
            keys = current
        }
        // An instant before every activation is a clock a little behind the one that made the
        // first key (created `active`, signing at once): that key signs, a `next` one never early.
        let record = SigningKeyPolicy.signingKey(in: keys.published, algorithm: algorithm, now: instant)
            ?? keys.published.filter { $0.state == .active }.min { $0.activatesAt < $1.activatesAt }
        guard let record, let key = keys.privateKeys[record.kid]
        else { throw SigningKeyError.noActiveKey(algorithm: algorithm.rawValue) }
        return (record.kid, key)
    }

    /// The published key `kid`, reading the keys again first when it is unknown (rate-limited).
    func verificationKey(kid: String) async -> VerificationKey? {
        if let key = current.verifiers[kid] { return key }
        let now = clock.now()
        let due = snapshot.withLock { state -> Bool in
            if let last = state.lastMiss, now.timeIntervalSince(last) < refreshInterval / 12 { return false }
            state.lastMiss = now
            return true
        }
        guard due else { return nil }
        try? await refresh()
        return current.verifiers[kid]
    }
}

/// A private key ready to sign.
enum PrivateSigningKey: Sendable {
    case p256(P256.Signing.PrivateKey)
    case ed25519(Curve25519.Signing.PrivateKey)

    /// The JWS signature of `input`: ES256 as `r ‖ s` with a low `s`, EdDSA as 64 bytes.
    func sign(_ input: [UInt8]) throws -> [UInt8] {
        switch self {
        case .p256(let key): ECDSASignatureForm.canonical(Array(try key.signature(for: input).rawRepresentation))
        case .ed25519(let key): Array(try key.signature(for: input))
        }
    }
}

/// A published public key, for both ways of verifying.
struct VerificationKey: Sendable {
    let record: SigningKeyRecord
    /// jwt-kit with this one key, for the general path: no other key to fall back on.
    let collection: JWTKeyCollection
}

/// One reading of the store: the published keys, opened and ready.
final class KeySnapshot: Sendable {
    static let unread: Int64 = .min

    let revision: Int64
    let loadedAt: Date
    /// The keys of the algorithm that were published when read (the time rule is applied again when used).
    let published: [SigningKeyRecord]
    let verifiers: [String: VerificationKey]
    let privateKeys: [String: PrivateSigningKey]
    let compact: CompactTokenVerifier

    static func empty(_ algorithm: JWTAlgorithm) -> KeySnapshot {
        KeySnapshot(revision: unread, loadedAt: .distantPast, published: [], verifiers: [:], privateKeys: [:],
                    compact: CompactTokenVerifier(keys: [], algorithm: algorithm))
    }

    private init(
        revision: Int64, loadedAt: Date, published: [SigningKeyRecord], verifiers: [String: VerificationKey],
        privateKeys: [String: PrivateSigningKey], compact: CompactTokenVerifier
    ) {
        self.revision = revision
        self.loadedAt = loadedAt
        self.published = published
        self.verifiers = verifiers
        self.privateKeys = privateKeys
        self.compact = compact
    }

    convenience init(_ set: SigningKeySet, algorithm: JWTAlgorithm, kek: KeyEncryptionKey, loadedAt: Date) async throws {
        let published = SigningKeyPolicy.published(set.keys, algorithm: algorithm, now: loadedAt)
        var verifiers: [String: VerificationKey] = [:]
        var privateKeys: [String: PrivateSigningKey] = [:]
        var compactKeys: [(kid: String, key: CompactTokenVerifier.Key, until: Date?)] = []
        for record in published {
            let collection = JWTKeyCollection()
            let kid = JWKIdentifier(string: record.kid)
            let compactKey: CompactTokenVerifier.Key
            switch algorithm {
            case .es256:
                guard let key = try? P256.Signing.PublicKey(rawRepresentation: record.publicKey) else { throw SigningKeyError.damaged(kid: record.kid) }
                await collection.add(ecdsa: try ES256PublicKey(backing: key), kid: kid)
                compactKey = .p256(key)
            default:
                guard let key = try? Curve25519.Signing.PublicKey(rawRepresentation: record.publicKey) else {
                    throw SigningKeyError.damaged(kid: record.kid)
                }
                await collection.add(eddsa: EdDSA.PublicKey(backing: key), kid: kid)
                compactKey = .ed25519(key)
            }
            verifiers[record.kid] = VerificationKey(record: record, collection: collection)
            compactKeys.append((record.kid, compactKey, record.state == .retired ? record.publishedUntil : nil))
            // Only a key that signs or will sign is opened; a retired one only verifies.
            guard record.state != .retired else { continue }
            let opened = try kek.open(record.sealedPrivateKey, kid: record.kid, algorithm: record.algorithm, publicKey: record.publicKey)
            switch algorithm {
            case .es256:
                guard let key = try? P256.Signing.PrivateKey(rawRepresentation: opened), key.publicKey.rawRepresentation == record.publicKey else {
                    throw SigningKeyError.damaged(kid: record.kid)
                }
                privateKeys[record.kid] = .p256(key)
            default:
                guard let key = try? Curve25519.Signing.PrivateKey(rawRepresentation: opened), key.publicKey.rawRepresentation == record.publicKey
                else { throw SigningKeyError.damaged(kid: record.kid) }
                privateKeys[record.kid] = .ed25519(key)
            }
        }
        self.init(revision: set.revision, loadedAt: loadedAt, published: published, verifiers: verifiers, privateKeys: privateKeys,
                  compact: CompactTokenVerifier(keys: compactKeys, algorithm: algorithm))
    }
}
