public import IdentityPorts
public import IdentityDomain
public import Foundation

/// Revoked tokens and per-user cut-offs in memory. Expired entries are purged as it goes
/// (at most once a minute, on a write) and by `purgeExpired(now:)`.
public actor InMemoryRevocationStore: RevocationSnapshotting {
    private var entries = RevocationSet()
    private let clock: any IdentityClock
    private var lastPurge: Date

    /// Creates an empty store; `clock` drives the automatic purge.
    public init(clock: any IdentityClock = SystemClock()) {
        self.clock = clock
        self.lastPurge = clock.now()
    }

    /// How many entries (tokens and cut-offs) are held.
    public var count: Int { entries.count }

    public func revoke(jti: String, userID: UserID, expiresAt: Date) {
        entries.revoke(jti: jti, userID: userID, until: expiresAt)
        purgeIfDue()
    }

    public func revokeAll(userID: UserID, issuedBefore cutoff: Date, until: Date) {
        entries.revokeAll(userID: userID, issuedBeforeMilliseconds: cutoff.epochMilliseconds, until: until)
        purgeIfDue()
    }

    public func isRevoked(jti: String, userID: UserID, issuedAt: Date) -> Bool {
        entries.isRevoked(jti: jti, userID: userID, issuedAt: issuedAt)
    }

    @discardableResult
    public func purgeExpired(now: Date) -> Int {
        lastPurge = now
        return entries.purge(expiredBefore: now)
    }

    public func snapshot(now: Date) -> RevocationSnapshot {
        entries.snapshot(now: now)
    }

    private func purgeIfDue() {
        let now = clock.now()
        if now.timeIntervalSince(lastPurge) >= 60 { purgeExpired(now: now) }
    }
}
