public import Foundation

/// Something that happened to an account or one of its sessions, published after commit
/// (contract §6 and §9).
public struct IdentityEvent: Sendable, Equatable {
    /// Unique id; consumers deduplicate on it.
    public let eventID: UUID
    /// When it happened (millisecond precision).
    public let occurredAt: Date
    /// What happened.
    public let payload: Payload

    /// The event kinds. None carries a password, a hash or a token.
    public enum Payload: Sendable, Equatable {
        /// `user.registered`
        case userRegistered(userID: UserID, email: Email, name: DisplayName)
        /// `user.updated`, with the names of the changed fields.
        case userUpdated(userID: UserID, changed: [User.Field])
        /// `user.deleted`
        case userDeleted(userID: UserID)
        /// `token.revoked`
        case tokenRevoked(userID: UserID, jti: String, expiresAt: Date)
        /// `user.email_verified`: the owner proved the account's email.
        case emailVerified(userID: UserID)
        /// `user.password_reset`: a reset token set a new password.
        case passwordReset(userID: UserID)
        /// `session.started`: a login opened the session.
        case sessionStarted(userID: UserID, sessionID: SessionID)
        /// `session.ended`, with why. A session that merely lapsed has no such event.
        case sessionEnded(userID: UserID, sessionID: SessionID, reason: SessionEndReason)
    }

    /// Creates an event.
    public init(eventID: UUID, occurredAt: Date, payload: Payload) {
        self.eventID = eventID
        self.occurredAt = occurredAt.truncatedToMilliseconds
        self.payload = payload
    }

    /// The event type as published (`user.registered`, `session.ended`, ...).
    public var type: String {
        switch payload {
        case .userRegistered: "user.registered"
        case .userUpdated: "user.updated"
        case .userDeleted: "user.deleted"
        case .tokenRevoked: "token.revoked"
        case .emailVerified: "user.email_verified"
        case .passwordReset: "user.password_reset"
        case .sessionStarted: "session.started"
        case .sessionEnded: "session.ended"
        }
    }

    /// The user the event is about: events are ordered per user.
    public var userID: UserID {
        switch payload {
        case .userRegistered(let id, _, _), .userUpdated(let id, _), .userDeleted(let id), .tokenRevoked(let id, _, _),
             .emailVerified(let id), .passwordReset(let id),
             .sessionStarted(let id, _), .sessionEnded(let id, _, _):
            id
        }
    }
}
