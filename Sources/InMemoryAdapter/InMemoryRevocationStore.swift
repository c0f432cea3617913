public import IdentityPorts
public import IdentityDomain
public import Foundation

/// Revoked tokens and per-user cut-offs in memory. Expired entries are purged as it goes
/// (at most once a minute, on a write) and by `purgeExpired(now:)`.
public actor InMemoryRevocationStore: RevocationSnapshotting {
    private var revokedTokens: [String: (userID: UserID, expiresAt: Date)] = [:]
    private var cutoffs: [UserID: (cutoff: Date, until: Date)] = [:]
    private let clock: any IdentityClock
    private var lastPurge: Date

    /// Creates an empty store; `clock` drives the automatic purge.
    public init(clock: any IdentityClock = SystemClock()) {
        self.clock = clock
        self.lastPurge = clock.now()
    }

    /// How many entries (tokens and cut-offs) are held.
    public var count: Int { revokedTokens.count + cutoffs.count }

    public func revoke(jti: String, userID: UserID, expiresAt: Date) {
        revokedTokens[jti] = (userID, max(expiresAt, revokedTokens[jti]?.expiresAt ?? expiresAt))
        purgeIfDue()
    }

    public func revokeAll(userID: UserID, issuedBefore cutoff: Date, until: Date) {
        if let existing = cutoffs[userID] {
            cutoffs[userID] = (max(existing.cutoff, cutoff), max(existing.until, until))
        } else {
            cutoffs[userID] = (cutoff, until)
        }
        purgeIfDue()
    }

    public func isRevoked(jti: String, userID: UserID, issuedAt: Date) -> Bool {
        if revokedTokens[jti] != nil { return true }
        if let entry = cutoffs[userID], issuedAt.epochMilliseconds <= entry.cutoff.epochMilliseconds { return true }
        return false
    }

    @discardableResult
    public func purgeExpired(now: Date) -> Int {
        let before = count
        revokedTokens = revokedTokens.filter { $0.value.expiresAt >= now }
        cutoffs = cutoffs.filter { $0.value.until >= now }
        lastPurge = now
        return before - count
    }

    public func snapshot(now: Date) -> RevocationSnapshot {
        RevocationSnapshot(
            tokens: revokedTokens.filter { $0.value.expiresAt >= now }
                .map { RevocationSnapshot.Token(jti: $0.key, userID: $0.value.userID, expiresAt: $0.value.expiresAt) },
            cutoffs: cutoffs.filter { $0.value.until >= now }
                .map { RevocationSnapshot.Cutoff(userID: $0.key, issuedBefore: $0.value.cutoff, until: $0.value.until) }
        )
    }

    private func purgeIfDue() {
        let now = clock.now()
        if now.timeIntervalSince(lastPurge) >= 60 { purgeExpired(now: now) }
    }
}
