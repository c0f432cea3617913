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
