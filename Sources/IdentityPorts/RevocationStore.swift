public import Foundation
public import IdentityDomain

/// Which tokens are no longer honoured: single tokens by `jti` (logout), and every token of a
/// user issued before a cut-off (password change, deletion). Entries expire with the tokens
/// they concern, so the store does not grow without bound.
public protocol RevocationStore: Sendable {
    /// Revokes one token until `expiresAt` (when the token would have expired anyway).
    func revoke(jti: String, userID: UserID, expiresAt: Date) async throws
    /// Revokes every token of `userID` issued at or before `cutoff` (millisecond precision);
    /// the entry lasts until `until`.
    func revokeAll(userID: UserID, issuedBefore cutoff: Date, until: Date) async throws
    /// Whether a token is revoked: by its `jti`, or by a cut-off at or after its `issuedAt`.
    func isRevoked(jti: String, userID: UserID, issuedAt: Date) async throws -> Bool
    /// Drops entries that expired before `now`; returns how many were dropped.
    @discardableResult
    func purgeExpired(now: Date) async throws -> Int
}

/// A revocation store that can list what it holds, so that a cache can start from it.
public protocol RevocationSnapshotting: RevocationStore {
    /// Every entry that has not expired at `now`.
    func snapshot(now: Date) async throws -> RevocationSnapshot
}

/// The unexpired entries of a revocation store.
public struct RevocationSnapshot: Sendable, Equatable {
    /// One revoked token.
    public struct Token: Sendable, Equatable, Hashable {
        /// The revoked token's `jti`.
        public let jti: String
        /// Owner of the token, or of the tokens the cut-off revokes.
        public let userID: UserID
        /// When the entry lapses (the token's own expiry).
        public let expiresAt: Date

        /// Creates the entry.
        public init(jti: String, userID: UserID, expiresAt: Date) {
            self.jti = jti
            self.userID = userID
            self.expiresAt = expiresAt
        }
    }

    /// One per-user cut-off: tokens issued at or before `issuedBefore` are revoked.
    public struct Cutoff: Sendable, Equatable, Hashable {
        /// Owner of the token, or of the tokens the cut-off revokes.
        public let userID: UserID
        /// Tokens issued at or before this instant are revoked.
        public let issuedBefore: Date
        /// When the entry lapses.
        public let until: Date

        /// Creates the entry.
        public init(userID: UserID, issuedBefore: Date, until: Date) {
            self.userID = userID
            self.issuedBefore = issuedBefore
            self.until = until
        }
    }

    /// Revoked tokens.
    public var tokens: [Token]
    /// Per-user cut-offs.
    public var cutoffs: [Cutoff]

    /// Creates a snapshot.
    public init(tokens: [Token] = [], cutoffs: [Cutoff] = []) {
        self.tokens = tokens
        self.cutoffs = cutoffs
    }
}

/// Revocations held in memory: the rule every in-memory revocation store and cache applies.
///
/// Entries only add up: a token revoked twice keeps the later expiry, a user's cut-offs merge
/// to the later instant and the later expiry. So merging the same entries in any order, or
/// twice, gives the same set, which is what lets a cache apply a snapshot and a feed of
/// changes in whatever order they arrive. Cut-offs compare in whole epoch milliseconds, the
/// precision of token `iat`s.
public struct RevocationSet: Sendable {
    private var tokens: [String: (userID: UserID, until: Date)] = [:]
    private var cutoffs: [UserID: (cutoffMilliseconds: Int64, until: Date)] = [:]

    /// An empty set.
    public init() {}

    /// How many entries (tokens and cut-offs) are held.
    public var count: Int { tokens.count + cutoffs.count }

    /// Adds a revoked token, lasting until `until`.
    public mutating func revoke(jti: String, userID: UserID, until: Date) {
        tokens[jti] = (userID, max(until, tokens[jti]?.until ?? until))
    }

    /// Adds a cut-off: `userID`'s tokens issued at or before `issuedBefore` (milliseconds since
    /// the epoch), lasting until `until`.
    public mutating func revokeAll(userID: UserID, issuedBeforeMilliseconds cutoff: Int64, until: Date) {
        let existing = cutoffs[userID]
        cutoffs[userID] = (max(cutoff, existing?.cutoffMilliseconds ?? cutoff), max(until, existing?.until ?? until))
    }

    /// Adds every entry of `snapshot`.
    public mutating func merge(_ snapshot: RevocationSnapshot) {
        for token in snapshot.tokens { revoke(jti: token.jti, userID: token.userID, until: token.expiresAt) }
        for cutoff in snapshot.cutoffs {
            revokeAll(userID: cutoff.userID, issuedBeforeMilliseconds: cutoff.issuedBefore.epochMilliseconds, until: cutoff.until)
        }
    }

    /// Whether a token is revoked: by its `jti`, or by a cut-off at or after its `issuedAt`.
    public func isRevoked(jti: String, userID: UserID, issuedAt: Date) -> Bool {
        if tokens[jti] != nil { return true }
        if let entry = cutoffs[userID], issuedAt.epochMilliseconds <= entry.cutoffMilliseconds { return true }
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
                RevocationSnapshot.Cutoff(
                    userID: $0.key, issuedBefore: Date(timeIntervalSince1970: Double($0.value.cutoffMilliseconds) / 1000), until: $0.value.until
                )
            }
        )
    }
}

/// One revocation as it travels between instances, on the AMQP fan-out exchange
/// `identity.revocations` and on PostgreSQL's channel `identity_revocations`: a token (`jti`)
/// or a per-user cut-off (`cutoff_ms`), as a JSON document
/// (`{"jti": …, "user_id": …, "expires_at_ms": …}` or `{"user_id": …, "cutoff_ms": …, "expires_at_ms": …}`).
public struct RevocationMessage: Codable, Sendable, Equatable {
    /// The revoked token's `jti`, for a token.
    public var jti: String?
    /// The user, as a UUID string.
    public var userID: String
    /// Tokens issued at or before this instant (epoch milliseconds) are revoked, for a cut-off.
    public var cutoffMilliseconds: Int64?
    /// When the entry lapses (epoch milliseconds).
    public var expiresAtMilliseconds: Int64

    /// A revoked token.
    public init(jti: String, userID: UserID, expiresAt: Date) {
        self.jti = jti
        self.userID = userID.description
        self.expiresAtMilliseconds = expiresAt.epochMilliseconds
    }

    /// A per-user cut-off.
    public init(userID: UserID, issuedBefore cutoff: Date, until: Date) {
        self.userID = userID.description
        self.cutoffMilliseconds = cutoff.epochMilliseconds
        self.expiresAtMilliseconds = until.epochMilliseconds
    }

    /// When the entry lapses.
    public var expiresAt: Date { Date(timeIntervalSince1970: Double(expiresAtMilliseconds) / 1000) }

    enum CodingKeys: String, CodingKey {
        case jti
        case userID = "user_id"
        case cutoffMilliseconds = "cutoff_ms"
        case expiresAtMilliseconds = "expires_at_ms"
    }
}

extension RevocationSet {
    /// Adds what `message` announces. Returns false, changing nothing, for a message that
    /// names no valid user, or neither a token nor a cut-off.
    @discardableResult
    public mutating func apply(_ message: RevocationMessage) -> Bool {
        guard let userID = UserID(message.userID) else { return false }
        if let jti = message.jti {
            revoke(jti: jti, userID: userID, until: message.expiresAt)
        } else if let cutoff = message.cutoffMilliseconds {
            revokeAll(userID: userID, issuedBeforeMilliseconds: cutoff, until: message.expiresAt)
        } else {
            return false
        }
        return true
    }
}
