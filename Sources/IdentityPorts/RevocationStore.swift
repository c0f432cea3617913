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
