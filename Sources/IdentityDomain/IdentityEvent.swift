public import Foundation

/// Something that happened to an account, published after commit (contract §6).
public struct IdentityEvent: Sendable, Equatable {
    /// Unique id; consumers deduplicate on it.
    public let eventID: UUID
    /// When it happened (millisecond precision).
    public let occurredAt: Date
    /// What happened.
    public let payload: Payload

    /// The four event kinds. None carries a password or a hash.
    public enum Payload: Sendable, Equatable {
        /// `user.registered`
        case userRegistered(userID: UserID, email: Email, name: DisplayName)
        /// `user.updated`, with the names of the changed fields.
        case userUpdated(userID: UserID, changed: [User.Field])
        /// `user.deleted`
        case userDeleted(userID: UserID)
        /// `token.revoked`
        case tokenRevoked(userID: UserID, jti: String, expiresAt: Date)
    }

    /// Creates an event.
    public init(eventID: UUID, occurredAt: Date, payload: Payload) {
        self.eventID = eventID
        self.occurredAt = occurredAt.truncatedToMilliseconds
        self.payload = payload
    }

    /// The event type as published (`user.registered`, ...).
    public var type: String {
        switch payload {
        case .userRegistered: "user.registered"
        case .userUpdated: "user.updated"
        case .userDeleted: "user.deleted"
        case .tokenRevoked: "token.revoked"
        }
    }

    /// The user the event is about: events are ordered per user.
    public var userID: UserID {
        switch payload {
        case .userRegistered(let id, _, _), .userUpdated(let id, _), .userDeleted(let id), .tokenRevoked(let id, _, _):
            id
        }
    }
}
