public import Foundation
public import IdentityDomain
import IdentityPorts

/// The JSON form of events (contract §6 and §9): `{"event_id","type","occurred_at","data":{...}}`.
///
/// `data` is `{user_id,email,name}` for `user.registered`, `{user_id,changed}` for
/// `user.updated`, `{user_id}` for `user.deleted`, `user.email_verified` and `user.password_reset`, `{user_id,jti,expires_at}` for
/// `token.revoked`, `{user_id,session_id}` for `session.started` and
/// `{user_id,session_id,reason}` for `session.ended`; never a password, a hash or a token. Stores keep `data` as they like; brokers
/// publish the whole document.
public enum EventCodec {
    /// Why stored or received JSON is not an event.
    public struct DecodingFailure: Error, Sendable, Equatable, CustomStringConvertible {
        /// What is wrong.
        public let description: String
    }

    /// The `data` object of `event`, as JSON.
    public static func data(of event: IdentityEvent) -> Data {
        // The encoder cannot fail on these plain strings and arrays.
        (try? encoder.encode(EventData(event.payload))) ?? Data("{}".utf8)
    }

    /// The whole event document, as JSON.
    public static func document(of event: IdentityEvent) -> Data {
        let document = EventDocument(
            event_id: event.eventID.uuidString.lowercased(), type: event.type, occurred_at: event.occurredAt.rfc3339,
            data: EventData(event.payload)
        )
        return (try? encoder.encode(document)) ?? Data("{}".utf8)
    }

    /// Rebuilds an event from its id, type, time and `data` JSON.
    public static func event(id: UUID, type: String, occurredAt: Date, data: Data) throws(DecodingFailure) -> IdentityEvent {
        guard let fields = try? JSONDecoder().decode(EventData.self, from: data) else {
            throw DecodingFailure(description: "event data is not valid JSON for \(type)")
        }
        return IdentityEvent(eventID: id, occurredAt: occurredAt, payload: try fields.payload(type: type))
    }

    /// Rebuilds an event from a whole document.
    public static func event(document: Data) throws(DecodingFailure) -> IdentityEvent {
        guard let parsed = try? JSONDecoder().decode(EventDocument.self, from: document),
              let id = UUID(uuidString: parsed.event_id), let occurredAt = parseDate(parsed.occurred_at)
        else { throw DecodingFailure(description: "not an event document") }
        return IdentityEvent(eventID: id, occurredAt: occurredAt, payload: try parsed.data.payload(type: parsed.type))
    }

    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()

    static func parseDate(_ text: String) -> Date? {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.date(from: text)
    }
}

// Field names are the published JSON's, hence snake_case.
private struct EventDocument: Codable {
    var event_id: String
    var type: String
    var occurred_at: String
    var data: EventData
}

private struct EventData: Codable {
    var user_id: String
    var email: String?
    var name: String?
    var changed: [String]?
    var jti: String?
    var expires_at: String?
    var session_id: String?
    var reason: String?

    init(_ payload: IdentityEvent.Payload) {
        switch payload {
        case .userRegistered(let id, let email, let name):
            user_id = id.description
            self.email = email.value
            self.name = name.value
        case .userUpdated(let id, let changed):
            user_id = id.description
            self.changed = changed.map(\.rawValue)
        case .userDeleted(let id), .emailVerified(let id), .passwordReset(let id):
            user_id = id.description
        case .tokenRevoked(let id, let jti, let expiresAt):
            user_id = id.description
            self.jti = jti
            expires_at = expiresAt.rfc3339
        case .sessionStarted(let id, let session):
            user_id = id.description
            session_id = session.description
        case .sessionEnded(let id, let session, let reason):
            user_id = id.description
            session_id = session.description
            self.reason = reason.rawValue
        }
    }

    func payload(type: String) throws(EventCodec.DecodingFailure) -> IdentityEvent.Payload {
        guard let userID = UserID(user_id) else { throw EventCodec.DecodingFailure(description: "user_id is not a UUID") }
        switch type {
        case "user.registered":
            guard let email, let name else { throw EventCodec.DecodingFailure(description: "user.registered without email or name") }
            return .userRegistered(userID: userID, email: Email(trustedCanonical: email), name: DisplayName(trusted: name))
        case "user.updated":
            let fields = (changed ?? []).compactMap(User.Field.init(rawValue:))
            return .userUpdated(userID: userID, changed: fields)
        case "user.deleted":
            return .userDeleted(userID: userID)
        case "user.email_verified":
            return .emailVerified(userID: userID)
        case "user.password_reset":
            return .passwordReset(userID: userID)
        case "token.revoked":
            guard let jti, let expires = expires_at.flatMap(EventCodec.parseDate) else {
                throw EventCodec.DecodingFailure(description: "token.revoked without jti or expires_at")
            }
            return .tokenRevoked(userID: userID, jti: jti, expiresAt: expires)
        case "session.started":
            return .sessionStarted(userID: userID, sessionID: try sessionID(type))
        case "session.ended":
            guard let reason = reason.flatMap(SessionEndReason.init(rawValue:)) else {
                throw EventCodec.DecodingFailure(description: "session.ended without a known reason")
            }
            return .sessionEnded(userID: userID, sessionID: try sessionID(type), reason: reason)
        default:
            throw EventCodec.DecodingFailure(description: "unknown event type \(type)")
        }
    }

    private func sessionID(_ type: String) throws(EventCodec.DecodingFailure) -> SessionID {
        guard let id = session_id.flatMap(SessionID.init) else {
            throw EventCodec.DecodingFailure(description: "\(type) without a session_id UUID")
        }
        return id
    }
}
