public import Foundation
public import IdentityDomain
public import IdentityPorts

/// The caller behind a verified, unrevoked bearer token.
public struct Principal: Sendable, Equatable {
    /// The account the token was issued to.
    public let userID: UserID
    /// The token's `jti`.
    public let tokenID: String
    /// The token's `iat`.
    public let issuedAt: Date
    /// The token's `exp`.
    public let expiresAt: Date
    /// The token's `sid`: the session it belongs to (nil for a token issued outside one).
    public let sessionID: SessionID?

    /// Creates a principal.
    public init(userID: UserID, tokenID: String, issuedAt: Date, expiresAt: Date, sessionID: SessionID? = nil) {
        self.userID = userID
        self.tokenID = tokenID
        self.issuedAt = issuedAt
        self.expiresAt = expiresAt
        self.sessionID = sessionID
    }
}

/// What `GET /users/{id}` shows: the whole record to its owner, the public profile to others.
public enum UserView: Sendable, Equatable {
    /// The caller's own account.
    case own(UserRecord)
    /// Someone else's account: id, name and registration time only.
    case publicProfile(id: UserID, name: String, createdAt: Date)
}

