import Foundation
import IdentityDomain
import IdentityPorts
import Testing
import IdentityAdapterSupport

@Suite("Event JSON")
struct EventCodecTests {
    static let user = UserID(UUID(uuidString: "3f2504e0-4f89-11d3-9a0c-0305e82c3301")!)
    static let at = Date(timeIntervalSince1970: 1_795_514_400.123)

    static let events: [IdentityEvent] = [
        IdentityEvent(eventID: UUID(), occurredAt: at, payload: .userRegistered(
            userID: user, email: Email(trustedCanonical: "ada@example.com"), name: DisplayName(trusted: "Ada \"A\" 👩‍💻"))),
        IdentityEvent(eventID: UUID(), occurredAt: at, payload: .userUpdated(userID: user, changed: [.name, .email, .password])),
        IdentityEvent(eventID: UUID(), occurredAt: at, payload: .userDeleted(userID: user)),
        IdentityEvent(eventID: UUID(), occurredAt: at, payload: .tokenRevoked(userID: user, jti: "abc", expiresAt: at.addingTimeInterval(3600))),
        IdentityEvent(eventID: UUID(), occurredAt: at, payload: .sessionStarted(userID: user, sessionID: session)),
    ] + SessionEndReason.allCases.map {
        IdentityEvent(eventID: UUID(), occurredAt: at, payload: .sessionEnded(userID: user, sessionID: session, reason: $0))
    }
    static let session = SessionID(UUID(uuidString: "9b2e6a1c-7d3f-4e58-a0b1-c2d3e4f5a6b7")!)

    @Test("every event type round-trips through its document and through its data", arguments: events)
    func roundTrip(event: IdentityEvent) throws {
        #expect(try EventCodec.event(document: EventCodec.document(of: event)) == event)
        #expect(try EventCodec.event(id: event.eventID, type: event.type, occurredAt: event.occurredAt, data: EventCodec.data(of: event)) == event)
    }

    @Test("documents have the contract's fields and never a password or hash")
    func shape() throws {
        let document = try #require(try JSONSerialization.jsonObject(with: EventCodec.document(of: Self.events[0])) as? [String: Any])
        #expect(Set(document.keys) == ["event_id", "type", "occurred_at", "data"])
        #expect(document["type"] as? String == "user.registered")
        #expect(document["occurred_at"] as? String == "2026-11-24T10:00:00.123Z")
        #expect(document["data"] as? [String: String] == ["user_id": Self.user.description, "email": "ada@example.com", "name": "Ada \"A\" 👩‍💻"])
        let updated = try #require(try JSONSerialization.jsonObject(with: EventCodec.data(of: Self.events[1])) as? [String: Any])
        #expect(updated["changed"] as? [String] == ["name", "email", "password"])
        for event in Self.events {
            let text = String(decoding: EventCodec.document(of: event), as: UTF8.self)
            #expect(!text.contains("hash") && !text.contains("$argon2"))
        }
    }

    @Test("session events carry the user, the session and (ended) the contract's reason, and nothing else")
    func sessionShape() throws {
        let started = try #require(try JSONSerialization.jsonObject(with: EventCodec.document(of: Self.events[4])) as? [String: Any])
        #expect(Set(started.keys) == ["event_id", "type", "occurred_at", "data"])
        #expect(started["type"] as? String == "session.started")
        #expect(started["event_id"] as? String == Self.events[4].eventID.uuidString.lowercased())
        #expect(started["occurred_at"] as? String == "2026-11-24T10:00:00.123Z")
        #expect(started["data"] as? [String: String] == ["user_id": Self.user.description, "session_id": "9b2e6a1c-7d3f-4e58-a0b1-c2d3e4f5a6b7"])
        let reasons = try Self.events.dropFirst(5).map { event in
            let document = try #require(try JSONSerialization.jsonObject(with: EventCodec.document(of: event)) as? [String: Any])
            #expect(document["type"] as? String == "session.ended")
            let data = try #require(document["data"] as? [String: String])
            #expect(Set(data.keys) == ["user_id", "session_id", "reason"])
            #expect(data["user_id"] == Self.user.description && data["session_id"] == Self.session.description)
            return data["reason"] ?? ""
        }
        #expect(reasons == ["logout", "revoked", "reuse", "password_change", "account_deleted"], "the contract's five, spelled as it does")
        let exact = IdentityEvent(
            eventID: UUID(uuidString: "5e8f1b2a-0c3d-4f6e-9a7b-8c9d0e1f2a3b")!, occurredAt: Self.at,
            payload: .sessionEnded(userID: Self.user, sessionID: Self.session, reason: .passwordChange)
        )
        #expect(String(decoding: EventCodec.document(of: exact), as: UTF8.self) == #"{"data":{"reason":"password_change","session_id":"9b2e6a1c-7d3f-4e58-a0b1-c2d3e4f5a6b7","user_id":"3f2504e0-4f89-11d3-9a0c-0305e82c3301"},"event_id":"5e8f1b2a-0c3d-4f6e-9a7b-8c9d0e1f2a3b","occurred_at":"2026-11-24T10:00:00.123Z","type":"session.ended"}"#,
                "byte for byte, keys sorted as Docs/events.md shows them")
    }

    @Test("malformed input is refused with a reason", arguments: [
        ("user.registered", #"{"user_id":"3f2504e0-4f89-11d3-9a0c-0305e82c3301"}"#),
        ("token.revoked", #"{"user_id":"3f2504e0-4f89-11d3-9a0c-0305e82c3301","jti":"x"}"#),
        ("user.deleted", #"{"user_id":"nope"}"#),
        ("user.exploded", #"{"user_id":"3f2504e0-4f89-11d3-9a0c-0305e82c3301"}"#),
        ("user.deleted", "not json"),
        ("session.started", #"{"user_id":"3f2504e0-4f89-11d3-9a0c-0305e82c3301"}"#),
        ("session.started", #"{"user_id":"3f2504e0-4f89-11d3-9a0c-0305e82c3301","session_id":"nope"}"#),
        ("session.ended", #"{"user_id":"3f2504e0-4f89-11d3-9a0c-0305e82c3301","session_id":"9b2e6a1c-7d3f-4e58-a0b1-c2d3e4f5a6b7"}"#),
        ("session.ended", #"{"user_id":"3f2504e0-4f89-11d3-9a0c-0305e82c3301","session_id":"9b2e6a1c-7d3f-4e58-a0b1-c2d3e4f5a6b7","reason":"expired"}"#),
    ])
    func malformed(type: String, data: String) {
        #expect(throws: EventCodec.DecodingFailure.self) {
            try EventCodec.event(id: UUID(), type: type, occurredAt: Self.at, data: Data(data.utf8))
        }
    }

    @Test("a document that is not an event is refused")
    func badDocument() {
        #expect(throws: EventCodec.DecodingFailure.self) { try EventCodec.event(document: Data(#"{"type":"user.deleted"}"#.utf8)) }
        #expect(throws: EventCodec.DecodingFailure.self) {
            try EventCodec.event(document: Data(#"{"event_id":"x","type":"user.deleted","occurred_at":"now","data":{"user_id":"x"}}"#.utf8))
        }
    }
}
