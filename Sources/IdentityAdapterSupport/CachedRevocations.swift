public import Foundation
public import IdentityDomain
public import IdentityPorts
import Synchronization

/// The memory of a revocation cache that an ordered feed keeps current (PostgreSQL's
/// announcements): a `RevocationSet`, the place in the order of revocations up to which it has
/// every one, and whether it may answer.
///
/// It answers (`answer(jti:userID:accountVersion:)` gives a value) only while it is sure it has
/// heard everything: after a catch-up (`synchronise(with:upTo:if:)`), with no gap seen since,
/// and with the feed heard from within `silenceLimit`. Otherwise it gives nil and the cache asks
/// its durable store. A message numbered past the next expected one, or a heartbeat naming a
/// later place than it has, is a gap: `receive(_:)` says so and the feed catches up. Nothing
/// is forgotten when the feed breaks (revocations only add up and expire by themselves), so a
/// catch-up reads only what came after the place it has.
///
/// Every change reports the number of entries to `onCountChange` (a gauge). A message for an
/// entry that lapsed before the last purge comes late, since the purge already removed it, and
/// is not taken in.
public final class CachedRevocations: Sendable {
    /// What a message from the feed meant.
    public enum Reception: Sendable, Equatable {
        /// Taken in (or already known); nothing is missing.
        case inOrder
        /// Something before it is missing, or the cache has not caught up yet: catch up from the
        /// durable store.
        case gap
        /// Not a revocation or heartbeat this cache understands; skipped.
        case notUnderstood
    }

    private struct State {
        var synchronised = false
        var entries = RevocationSet()
        var purgedBefore = Date.distantPast
        /// Every revocation numbered up to here has been taken in.
        var last: Int64 = 0
        /// Numbers taken in past `last + 1`, waiting for the ones between.
        var ahead: Set<Int64> = []
        var lastHeard = ContinuousClock.now
    }

    private let state = Mutex(State())
    private let silenceLimit: Duration
    private let onCountChange: @Sendable (Int) -> Void

    /// An empty, unsynchronised cache that stops answering when the feed has been silent for
    /// `silenceLimit`; `onCountChange` hears the entry count after every change.
    public init(silenceLimit: Duration = .seconds(1), onCountChange: @escaping @Sendable (Int) -> Void = { _ in }) {
        self.silenceLimit = silenceLimit
        self.onCountChange = onCountChange
        onCountChange(0)
    }

    /// Whether answers come from memory.
    public var isSynchronised: Bool { state.withLock { $0.synchronised && !Self.isSilent($0, limit: silenceLimit) } }

    /// Entries held.
    public var count: Int { state.withLock { $0.entries.count } }

    /// The place in the order of revocations up to which every one has been taken in.
    public var lastSequence: Int64 { state.withLock { $0.last } }

    /// How long since the feed was last heard from.
    public var silence: Duration { state.withLock { $0.lastHeard.duration(to: .now) } }

    /// The answer from memory, or nil while the cache cannot be sure it has heard everything.
    public func answer(jti: String, userID: UserID, accountVersion: Int64) -> Bool? {
        state.withLock { state in
            guard state.synchronised, !Self.isSilent(state, limit: silenceLimit) else { return nil }
            return state.entries.isRevoked(jti: jti, userID: userID, accountVersion: accountVersion)
        }
    }

    /// Takes in revocations this process knows have committed, ahead of their announcement.
    public func apply(_ revocations: [Revocation]) {
        change { state in
            for revocation in revocations { Self.take(revocation, into: &state) }
        }
    }

    /// Takes in one message of the feed: a numbered revocation or a heartbeat.
    @discardableResult
    public func receive(_ message: RevocationMessage) -> Reception {
        change { state in
            state.lastHeard = .now
            if let last = message.last, message.revocation == nil {
                return Self.notice(upTo: last, in: &state)
            }
            guard let revocation = message.revocation else { return .notUnderstood }
            Self.take(revocation, into: &state)
            guard let sequence = message.sequence else { return .inOrder }
            if sequence > state.last { state.ahead.insert(sequence) }
            Self.advance(&state)
            return Self.notice(upTo: sequence, in: &state)
        }
    }

    /// Merges what a catch-up read (every revocation after `lastSequence` that has not expired,
    /// and the newest place `upTo`), then answers from memory again if `stillCurrent()` holds
    /// (checked under the lock, so a feed lost meanwhile leaves it unsynchronised). Returns
    /// whether it did.
    @discardableResult
    public func synchronise(with messages: [RevocationMessage], upTo last: Int64, if stillCurrent: () -> Bool = { true }) -> Bool {
        change { state in
            for revocation in messages.compactMap(\.revocation) { Self.take(revocation, into: &state) }
            state.last = max(state.last, last)
            state.ahead = state.ahead.filter { $0 > state.last }
            Self.advance(&state)
            state.lastHeard = .now
            guard stillCurrent() else { return false }
            state.synchronised = true
            return true
        }
    }

    /// Stops answering from memory until the next catch-up; what is held stays.
    public func desynchronise() {
        change { state in state.synchronised = false }
    }

    /// Drops entries that expired before `now`, and later messages about such entries.
    public func purge(expiredBefore now: Date) {
        change { state in
            state.purgedBefore = max(state.purgedBefore, now)
            state.entries.purge(expiredBefore: now)
        }
    }

    private static func take(_ revocation: Revocation, into state: inout State) {
        guard revocation.until >= state.purgedBefore else { return }
        state.entries.apply(revocation)
    }

    private static func advance(_ state: inout State) {
        while state.ahead.remove(state.last + 1) != nil { state.last += 1 }
    }

    /// A place at or before `last` names nothing missing; a later one is a gap, and the cache
    /// stops answering until it has caught up. While it has not, every message says so again.
    private static func notice(upTo place: Int64, in state: inout State) -> Reception {
        if place > state.last { state.synchronised = false }
        return state.synchronised ? .inOrder : .gap
    }

    private static func isSilent(_ state: State, limit: Duration) -> Bool {
        state.lastHeard.duration(to: .now) > limit
    }

    private func change<T: Sendable>(_ body: (inout State) -> T) -> T {
        let (result, count) = state.withLock { state in (body(&state), state.entries.count) }
        onCountChange(count)
        return result
    }
}
