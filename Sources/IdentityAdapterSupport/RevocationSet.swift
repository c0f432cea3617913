public import Foundation
public import IdentityDomain
public import IdentityPorts

/// Revocations held in memory: the rule every in-memory revocation store and cache applies.
///
/// Entries only add up: a token revoked twice keeps the later expiry, a user's cut-offs merge
/// to the higher version and the later expiry. So merging the same entries in any order, or
/// twice, gives the same set, which is what lets a cache apply a snapshot and a feed of
/// changes in whatever order they arrive.
public struct RevocationSet: Sendable {
    private var tokens: [String: (userID: UserID, until: Date)] = [:]
    private var cutoffs: [UserID: (belowVersion: Int64, until: Date)] = [:]

    /// An empty set.
    public init() {}

    /// How many entries (tokens and cut-offs) are held.
    public var count: Int { tokens.count + cutoffs.count }

    /// Adds a revoked token, lasting until `until`.
    public mutating func revoke(jti: String, userID: UserID, until: Date) {
        tokens[jti] = (userID, max(until, tokens[jti]?.until ?? until))
    }

    /// Adds a cut-off: `userID`'s tokens with an account version below `belowVersion`, lasting
    /// until `until`.
    public mutating func revokeAll(userID: UserID, belowVersion: Int64, until: Date) {
        let existing = cutoffs[userID]
        cutoffs[userID] = (max(belowVersion, existing?.belowVersion ?? belowVersion), max(until, existing?.until ?? until))
    }

    /// Adds `revocation`.
    public mutating func apply(_ revocation: Revocation) {
        switch revocation {
        case .token(let jti, let userID, let until): revoke(jti: jti, userID: userID, until: until)
        case .account(let userID, let version, let until): revokeAll(userID: userID, belowVersion: version, until: until)
        }
    }

    /// Adds every entry of `snapshot`.
    public mutating func merge(_ snapshot: RevocationSnapshot) {
        for token in snapshot.tokens { revoke(jti: token.jti, userID: token.userID, until: token.expiresAt) }
        for cutoff in snapshot.cutoffs { revokeAll(userID: cutoff.userID, belowVersion: cutoff.belowVersion, until: cutoff.until) }
    }

    /// Whether a token is revoked: by its `jti`, or by a cut-off above its account version.
    public func isRevoked(jti: String, userID: UserID, accountVersion: Int64) -> Bool {
        if tokens[jti] != nil { return true }
        if let entry = cutoffs[userID], accountVersion < entry.belowVersion { return true }
        return false
    }

    /// Drops entries that expired before `now`; returns how many were dropped.
    @discardableResult
    public mutating func purge(expiredBefore now: Date) -> Int {
        let before = count
        tokens = tokens.filter { $0.value.until >= now }
        cutoffs = cutoffs.filter { $0.value.until >= now }
        return before - count
    }

    /// Drops every entry.
    public mutating func removeAll() {
        tokens.removeAll()
        cutoffs.removeAll()
    }

    /// The entries that have not expired at `now`.
    public func snapshot(now: Date) -> RevocationSnapshot {
        RevocationSnapshot(
            tokens: tokens.filter { $0.value.until >= now }
                .map { RevocationSnapshot.Token(jti: $0.key, userID: $0.value.userID, expiresAt: $0.value.until) },
            cutoffs: cutoffs.filter { $0.value.until >= now }.map {
                RevocationSnapshot.Cutoff(userID: $0.key, belowVersion: $0.value.belowVersion, until: $0.value.until)
            }
        )
    }
}
