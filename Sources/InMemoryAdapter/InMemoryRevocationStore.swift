public import IdentityPorts
public import IdentityDomain
public import Foundation
import Synchronization
import IdentityAdapterSupport

/// Revoked tokens and per-account cut-offs in memory. Expired entries are purged as it goes
/// (at most once a minute, on a write) and by `purgeExpired(now:)`.
///
/// State sits behind a lock rather than in an actor: answering `isRevoked` on every
/// authenticated request costs no hop, and `InMemoryUserStore` writes a change's revocations
/// in the same step as the change itself.
public final class InMemoryRevocationStore: RevocationSnapshotting {
    private struct State {
        var entries = RevocationSet()
        var lastPurge: Date
        var writeFailure: (any Error)?
    }

    private let state: Mutex<State>
    private let clock: any IdentityClock

    /// Creates an empty store; `clock` drives the automatic purge.
    public init(clock: any IdentityClock = SystemClock()) {
        self.clock = clock
        self.state = Mutex(State(lastPurge: clock.now()))
    }

    /// How many entries (tokens and cut-offs) are held.
    public var count: Int { state.withLock { $0.entries.count } }

    public func revoke(jti: String, userID: UserID, until: Date) throws {
        try write([.token(jti: jti, userID: userID, until: until)])
    }

    public func revokeAll(userID: UserID, belowVersion: Int64, until: Date) throws {
        try write([.account(userID: userID, belowVersion: belowVersion, until: until)])
    }

    public func isRevoked(jti: String, userID: UserID, accountVersion: Int64) -> Bool {
        state.withLock { $0.entries.isRevoked(jti: jti, userID: userID, accountVersion: accountVersion) }
    }

    @discardableResult
    public func purgeExpired(now: Date) -> Int {
        state.withLock { state in
            state.lastPurge = now
            return state.entries.purge(expiredBefore: now)
        }
    }

    public func snapshot(now: Date) -> RevocationSnapshot {
        state.withLock { $0.entries.snapshot(now: now) }
    }

    /// Makes every later write throw `error` (nil: writes work again), to show that a change and
    /// its revocation commit together or not at all.
    @_spi(FaultInjection) public func failWrites(with error: (any Error)?) {
        state.withLock { $0.writeFailure = error }
    }

    /// Adds `revocations` in one step, or nothing when writes are made to fail.
    func write(_ revocations: [Revocation]) throws {
        guard !revocations.isEmpty else { return }
        let now = clock.now()
        try state.withLock { (state: inout State) throws in
            if let failure = state.writeFailure { throw failure }
            for revocation in revocations { state.entries.apply(revocation) }
            if now.timeIntervalSince(state.lastPurge) >= 60 {
                state.lastPurge = now
                state.entries.purge(expiredBefore: now)
            }
        }
    }
}
