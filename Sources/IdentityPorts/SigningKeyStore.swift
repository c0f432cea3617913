public import Foundation

/// Where a signing key is in its rotation (contract §10).
public enum SigningKeyState: String, Sendable, Hashable, CaseIterable {
    /// Published in the JWKS, not signing yet (it signs from `activatesAt`).
    case next
    /// Signs new tokens, and is published.
    case active
    /// Signs no more; published until the last token it signed has expired (`publishedUntil`).
    case retired
    /// Unpublished: no live token was signed with it. Its private key is erased; the record
    /// stays for `keys list` until the rotation deletes it.
    case gone
}

/// One key pair as a `SigningKeyStore` keeps it.
///
/// The store sees the private key only sealed (AES-GCM under a key-encryption key the store
/// never holds): `sealedPrivateKey` is opaque bytes to it, kept exactly as given. Instants are
/// kept to the millisecond.
public struct SigningKeyRecord: Sendable, Hashable {
    /// The key's id, the `kid` of every token it signs and of its JWK.
    public var kid: String
    /// The JWS algorithm it signs with (`ES256`, `EdDSA`).
    public var algorithm: String
    /// The public key: for ES256 the P-256 point `x ‖ y` (64 bytes), for EdDSA the Ed25519 key (32 bytes).
    public var publicKey: Data
    /// The private key, sealed; empty once the key is `gone`.
    public var sealedPrivateKey: Data
    /// Where it is in its rotation.
    public var state: SigningKeyState
    /// When it was made, and published.
    public var createdAt: Date
    /// When it starts (or started) to sign: at least the publication lead after `createdAt`,
    /// except for a first key, which has nothing to replace.
    public var activatesAt: Date
    /// When it stopped signing: the `activatesAt` of the key that replaced it.
    public var retiredAt: Date?
    /// Until when it stays published: past the expiry of the last token it can have signed.
    public var publishedUntil: Date?

    /// Creates a record.
    public init(
        kid: String, algorithm: String, publicKey: Data, sealedPrivateKey: Data, state: SigningKeyState, createdAt: Date,
        activatesAt: Date, retiredAt: Date? = nil, publishedUntil: Date? = nil
    ) {
        self.kid = kid
        self.algorithm = algorithm
        self.publicKey = publicKey
        self.sealedPrivateKey = sealedPrivateKey
        self.state = state
        self.createdAt = createdAt
        self.activatesAt = activatesAt
        self.retiredAt = retiredAt
        self.publishedUntil = publishedUntil
    }
}

/// The stored keys with the revision they were read at.
public struct SigningKeySet: Sendable, Equatable {
    /// Goes up with every commit; what a commit compares against.
    public var revision: Int64
    /// Every stored key, oldest (`createdAt`, then `kid`) first.
    public var keys: [SigningKeyRecord]

    /// Creates the value.
    public init(revision: Int64, keys: [SigningKeyRecord]) {
        self.revision = revision
        self.keys = keys
    }
}

/// One change of a commit.
public enum SigningKeyChange: Sendable, Equatable {
    /// Adds a key whose `kid` is not stored.
    case insert(SigningKeyRecord)
    /// Replaces the stored key with the same `kid`.
    case update(SigningKeyRecord)
    /// Removes the stored key with `kid`.
    case delete(kid: String)
}

/// A commit that does not fit the stored keys: an insert of a `kid` already stored, or an
/// update or delete of one that is not. Nothing of the commit was applied.
public struct SigningKeyConflict: Error, Sendable, Equatable, CustomStringConvertible {
    /// The `kid` the change named.
    public let kid: String

    /// Creates the error.
    public init(kid: String) {
        self.kid = kid
    }

    public var description: String { "signing key \(kid) does not fit the stored keys (a duplicate insert, or a missing key)" }
}

/// The signing key pairs (contract §10), shared by every instance.
///
/// A rotation reads the whole set, decides, and commits its changes with the revision it read:
/// a compare-and-swap, so that two instances rotating at once make one new key, not two. The
/// store is told instants by its caller and never reads a clock.
public protocol SigningKeyStore: Sendable {
    /// Every stored key, oldest first, and the current revision.
    func keySet() async throws -> SigningKeySet

    /// Applies `changes` in one atomic step if the stored revision is still `expectedRevision`,
    /// and moves the revision on: true. Another commit came first: nothing changes, false.
    /// A change that does not fit throws `SigningKeyConflict`, and nothing changes.
    func commit(_ changes: [SigningKeyChange], expectedRevision: Int64) async throws -> Bool
}
