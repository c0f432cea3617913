import Foundation
import IdentityDomain
import Testing

@Suite("DisplayName")
struct DisplayNameTests {
    @Test("is trimmed and keeps its text")
    func trimmed() throws {
        #expect(try DisplayName("  Ada Lovelace \t").value == "Ada Lovelace")
        #expect(try DisplayName("👩‍👩‍👧‍👦 family").value == "👩‍👩‍👧‍👦 family")
    }

    @Test("1 to 100 characters, counted as a reader counts them")
    func length() throws {
        _ = try DisplayName("A")
        _ = try DisplayName(String(repeating: "é", count: 100))
        _ = try DisplayName(String(repeating: "e\u{301}", count: 100))  // 100 characters, 200 code points
        #expect(throws: ValidationError(field: "name", "must not be empty")) { try DisplayName("   ") }
        #expect(throws: ValidationError(field: "name", "must be at most 100 characters")) {
            try DisplayName(String(repeating: "x", count: 101))
        }
    }

    @Test("refuses control characters", arguments: ["a\u{0}b", "line\nbreak", "bell\u{7}", "del\u{7F}", "a\u{2028}b"])
    func control(raw: String) {
        #expect(throws: ValidationError(field: "name", "must not contain control characters")) { try DisplayName(raw) }
    }
}

@Suite("UserID")
struct UserIDTests {
    @Test("parses a hyphenated UUID in either case and prints it lower-case")
    func parse() throws {
        let id = try #require(UserID("3F2504E0-4F89-11D3-9A0C-0305E82C3301"))
        #expect(id.description == "3f2504e0-4f89-11d3-9a0c-0305e82c3301")
        #expect(UserID("3f2504e0-4f89-11d3-9a0c-0305e82c3301") == id)
    }

    @Test("refuses anything else", arguments: [
        "", "me", "3f2504e04f8911d39a0c0305e82c3301", "{3f2504e0-4f89-11d3-9a0c-0305e82c3301}", "3f2504e0-4f89-11d3-9a0c-0305e82c330g",
        "3f2504e0-4f89-11d3-9a0c-0305e82c33011", "3f2504e0-4f89-11d3-9a0c-0305e82c330", "3f2504e0_4f89-11d3-9a0c-0305e82c3301",
        "3f2504e0-4f8911d3--9a0c-0305e82c3301", "-3f2504e04f89-11d3-9a0c-0305e82c3301", "3f2504e0-4f89-11d3-9a0c-0305e82c330é",
        "3f2504e0-4f89-11d3-9a0c-0305e82c33\u{0}1", " 3f2504e0-4f89-11d3-9a0c-0305e82c330", "3f2504e0-4f89-11d3-9a0c-0305e82c33:1",
        "3f2504e0-4f89-11d3-9a0c-0305e82c33G1", "3f2504e0-4f89-11d3-9a0c-0305e82c33`1", "3f2504e0-4f89-11d3-9a0c-0305e82c33@1",
    ])
    func refuse(raw: String) {
        #expect(UserID(raw) == nil)
    }

    @Test("reads and writes exactly as Foundation does, for 10,000 random UUIDs in both cases")
    func agreesWithFoundation() throws {
        for _ in 0..<10_000 {
            let uuid = UUID()
            let id = UserID(uuid)
            #expect(id.description == uuid.uuidString.lowercased())
            #expect(UserID(uuid.uuidString)?.uuid == uuid && UserID(uuid.uuidString.lowercased())?.uuid == uuid)
            #expect(SessionID(id.description)?.uuid == uuid)
        }
        // A substring (what a token's claim is sliced into) reads the same.
        let text = "sid:3f2504e0-4f89-11d3-9a0c-0305e82c3301"
        #expect(SessionID(text.dropFirst(4))?.description == String(text.dropFirst(4)))
    }

    @Test("round-trips through JSON as its string")
    func codable() throws {
        let id = UserID(UUID())
        let data = try JSONEncoder().encode([id])
        #expect(String(decoding: data, as: UTF8.self) == "[\"\(id)\"]")
        #expect(try JSONDecoder().decode([UserID].self, from: data) == [id])
        #expect(throws: DecodingError.self) { try JSONDecoder().decode([UserID].self, from: Data("[\"nope\"]".utf8)) }
    }
}

@Suite("Timestamps")
struct TimestampTests {
    @Test("RFC 3339 in UTC with milliseconds and Z", arguments: [
        (0.0, "1970-01-01T00:00:00.000Z"),
        (1_795_514_400.123, "2026-11-24T10:00:00.123Z"),
        (951_782_400.5, "2000-02-29T00:00:00.500Z"),
        (4_102_444_799.999, "2099-12-31T23:59:59.999Z"),
        (-1.0, "1969-12-31T23:59:59.000Z"),
    ])
    func format(seconds: Double, expected: String) {
        #expect(Date(timeIntervalSince1970: seconds).rfc3339 == expected)
    }

    @Test("agrees with Foundation's ISO 8601 formatter")
    func agrees() {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        for seconds in stride(from: 1_000_000_000.0, to: 2_000_000_000.0, by: 12_345_678.901) {
            let date = Date(timeIntervalSince1970: seconds).truncatedToMilliseconds
            #expect(date.rfc3339 == formatter.string(from: date))
        }
    }
}

@Suite("User")
struct UserTests {
    func ada() throws -> User {
        User.register(id: UserID(UUID()), email: try Email("ada@example.com"), name: try DisplayName("Ada"),
                      passwordHash: "$argon2id$x", at: Date(timeIntervalSince1970: 100.1234))
    }

    @Test("registration stamps both times at millisecond precision, version 1")
    func register() throws {
        let user = try ada()
        #expect(user.createdAt == Date(timeIntervalSince1970: 100.123))
        #expect(user.updatedAt == user.createdAt)
        #expect(user.version == 1)
    }

    @Test("a change reports the fields that really changed and moves updated_at forward even on a frozen clock")
    func apply() throws {
        var user = try ada()
        let frozen = user.createdAt
        #expect(user.apply(name: try DisplayName("Ada"), email: nil, passwordHash: nil, at: frozen) == [], "same name: no change")
        #expect(user.version == 1 && user.updatedAt == frozen)
        let changed = user.apply(name: try DisplayName("Countess"), email: try Email("c@example.com"), passwordHash: "$new", at: frozen)
        #expect(changed == [.name, .email, .password])
        #expect(user.updatedAt > frozen)
        #expect(user.version == 2)
    }
}

@Suite("Errors")
struct ErrorTests {
    @Test("business errors match by value and describe themselves")
    func identityErrors() {
        #expect(IdentityError.emailTaken == .emailTaken)
        #expect(IdentityError.emailTaken != .userNotFound)
        #expect(IdentityError.invalidCredentials.description == "invalid email or password")
        #expect(LoginThrottled(retryAfterSeconds: 0).retryAfterSeconds == 1, "Retry-After is at least one second")
    }

    @Test("a collector gathers failures from several fields")
    func collector() {
        var check = ValidationCollector()
        _ = check.attempt { () throws(ValidationError) in try Email("bad") }
        _ = check.attempt { () throws(ValidationError) in try DisplayName("") }
        #expect(check.errors.map(\.pointer) == ["/email", "/name"])
        #expect(throws: ValidationError.self) { try check.check() }
    }
}
