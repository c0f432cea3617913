public import Foundation
public import IdentityDomain
import Synchronization

/// The memory of a revocation cache that a feed keeps current (the AMQP fan-out, PostgreSQL's
/// announcements): a `RevocationSet` and whether it is synchronised with the durable store.
///
/// Until `synchronise(with:if:)` has merged a snapshot, and after `desynchronise()`,
/// `answer(jti:userID:issuedAt:)` gives nil: the cache must ask its durable store. Every change
/// reports the number of entries to `onCountChange` (a gauge). A message for an entry that lapsed
/// before the last purge comes late, since the purge already removed it, and is not taken in.
public final class CachedRevocations: Sendable {
    private struct State {
        var synchronised = false
        var entries = RevocationSet()
        var purgedBefore = Date.distantPast
    }

    private let state = Mutex(State())
    private let onCountChange: @Sendable (Int) -> Void

    /// An empty, unsynchronised cache; `onCountChange` hears the entry count after every change.
    public init(onCountChange: @escaping @Sendable (Int) -> Void = { _ in }) {
        self.onCountChange = onCountChange
        onCountChange(0)
    }

    /// Whether answers come from memory.
    public var isSynchronised: Bool { state.withLock { $0.synchronised } }

    /// Entries held.
    public var count: Int { state.withLock { $0.entries.count } }

    /// The answer from memory, or nil while unsynchronised.
    public func answer(jti: String, userID: UserID, issuedAt: Date) -> Bool? {
        state.withLock { $0.synchronised ? $0.entries.isRevoked(jti: jti, userID: userID, issuedAt: issuedAt) : nil }
    }

    /// Adds a revocation this instance wrote (or the feed delivered); returns false for a
    /// message that names no valid user, or neither a token nor a cut-off.
    @discardableResult
    public func apply(_ message: RevocationMessage) -> Bool {
        change { state in
            guard message.expiresAt >= state.purgedBefore else { return true }
            return state.entries.apply(message)
        }
    }

    /// Merges `snapshot`, then marks the cache synchronised if `stillCurrent()` holds (checked
    /// under the lock, so a feed lost meanwhile leaves it unsynchronised). Returns whether it did.
    @discardableResult
    public func synchronise(with snapshot: RevocationSnapshot, if stillCurrent: () -> Bool = { true }) -> Bool {
        change { state in
            state.entries.merge(snapshot)
            guard stillCurrent() else { return false }
            state.synchronised = true
            return true
        }
    }

    /// Forgets everything: answers come from the durable store until the next synchronisation.
    public func desynchronise() {
        change { state in
            state.synchronised = false
            state.entries.removeAll()
        }
    }

    /// Drops entries that expired before `now`, and later messages about such entries.
    public func purge(expiredBefore now: Date) {
        change { state in
            state.purgedBefore = max(state.purgedBefore, now)
            state.entries.purge(expiredBefore: now)
        }
    }

    private func change<T: Sendable>(_ body: (inout State) -> T) -> T {
        let (result, count) = state.withLock { state in (body(&state), state.entries.count) }
        onCountChange(count)
        return result
    }
}
