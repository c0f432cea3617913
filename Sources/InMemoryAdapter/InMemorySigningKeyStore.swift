public import IdentityPorts
import IdentityDomain
import Foundation
import Synchronization

/// Signing key pairs in memory, behind one lock: a commit checks the revision and applies its
/// changes in one step, so concurrent rotations in one process make one key.
///
/// Keys live as long as the process; the key-encryption key of an in-memory deployment may
/// therefore be random (`KeyEncryptionKey.random()` in CryptoAdapter).
public final class InMemorySigningKeyStore: SigningKeyStore {
    private struct State {
        var revision: Int64 = 0
        var keys: [String: SigningKeyRecord] = [:]
    }

    private let state = Mutex(State())

    /// Creates an empty store.
    public init() {}

    public func keySet() -> SigningKeySet {
        state.withLock { state in
            let keys = state.keys.values.sorted { ($0.createdAt, $0.kid) < ($1.createdAt, $1.kid) }
            return SigningKeySet(revision: state.revision, keys: keys)
        }
    }

    public func commit(_ changes: [SigningKeyChange], expectedRevision: Int64) throws -> Bool {
        try state.withLock { state in
            guard state.revision == expectedRevision else { return false }
            var keys = state.keys
            for change in changes {
                switch change {
                case .insert(let record):
                    guard keys[record.kid] == nil else { throw SigningKeyConflict(kid: record.kid) }
                    keys[record.kid] = Self.stored(record)
                case .update(let record):
                    guard keys[record.kid] != nil else { throw SigningKeyConflict(kid: record.kid) }
                    keys[record.kid] = Self.stored(record)
                case .delete(let kid):
                    guard keys.removeValue(forKey: kid) != nil else { throw SigningKeyConflict(kid: kid) }
                }
            }
            state.keys = keys
            state.revision += 1
            return true
        }
    }

    /// The record as every store keeps it: instants to the millisecond, rounded down.
    private static func stored(_ record: SigningKeyRecord) -> SigningKeyRecord {
        var record = record
        record.createdAt = record.createdAt.truncatedToMilliseconds
        record.activatesAt = record.activatesAt.truncatedToMilliseconds
        record.retiredAt = record.retiredAt?.truncatedToMilliseconds
        record.publishedUntil = record.publishedUntil?.truncatedToMilliseconds
        return record
    }
}
