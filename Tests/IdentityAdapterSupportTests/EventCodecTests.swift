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
    ]

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

    @Test("malformed input is refused with a reason", arguments: [
        ("user.registered", #"{"user_id":"3f2504e0-4f89-11d3-9a0c-0305e82c3301"}"#),
        ("token.revoked", #"{"user_id":"3f2504e0-4f89-11d3-9a0c-0305e82c3301","jti":"x"}"#),
        ("user.deleted", #"{"user_id":"nope"}"#),
        ("user.exploded", #"{"user_id":"3f2504e0-4f89-11d3-9a0c-0305e82c3301"}"#),
        ("user.deleted", "not json"),
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
