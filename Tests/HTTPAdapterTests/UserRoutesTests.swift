import Foundation
import HTTPTypes
import HummingbirdTesting
@testable import HTTPAdapter
import IdentityTestSupport
import InMemoryAdapter
import Testing

@Suite("HTTP: users")
struct UserRoutesTests {
    @Test("POST /users gives 201, Location, the self view and no-store")
    func register() async throws {
        try await withIdentityApp { client, _ in
            let response = try await client.postJSON("/users", #"{"email":" Ada@Example.COM ","password":"\#(password)","name":"Ada"}"#)
            #expect(response.status == .created)
            let body = try response.json()
            let id = try #require(body["id"] as? String)
            #expect(response.headers[.location] == "/users/\(id)")
            #expect(response.headers[.cacheControl] == "no-store")
            #expect(response.headers[.contentType] == "application/json")
            #expect(Set(body.keys) == ["id", "email", "name", "email_verified", "created_at", "updated_at"])
            #expect(body["email"] as? String == "ada@example.com")
            let created = try #require(body["created_at"] as? String)
            #expect(created.range(of: #"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$"#, options: .regularExpression) != nil)
            #expect(id == id.lowercased() && UUID(uuidString: id) != nil)
            #expect(!response.text.contains("argon2"), "no hash in the response")
        }
    }

    @Test("POST /users with a taken email (any case) gives 409")
    func duplicate() async throws {
        try await withIdentityApp { client, _ in
            _ = try await client.registerAndLogin()
            let response = try await client.postJSON("/users", #"{"email":"ADA@example.com","password":"\#(password)","name":"Twin"}"#)
            try response.expectProblem(.conflict)
        }
    }

    @Test("POST /users lists every bad field with a pointer, and never echoes the password")
    func validation() async throws {
        try await withIdentityApp { client, _ in
            let response = try await client.postJSON("/users", #"{"email":"nope","password":"hunter2","name":"  "}"#)
            try response.expectProblem(.unprocessableContent)
            #expect(try response.pointers() == ["/email", "/password", "/name"])
            #expect(!response.text.contains("hunter2"))
            let missing = try await client.postJSON("/users", #"{"email":5}"#)
            try missing.expectProblem(.unprocessableContent)
            #expect(try missing.pointers() == ["/email", "/password", "/name"])
        }
    }

    @Test("structural problems and broken value rules are reported together, one entry per bad field")
    func mergedReport() async throws {
        try await withIdentityApp { client, _ in
            let response = try await client.postJSON("/users", #"{"email":"nope","password":7,"name":"Ada","role":"admin"}"#)
            try response.expectProblem(.unprocessableContent)
            #expect(Set(try response.pointers()) == ["/email", "/password", "/role"])
            #expect(try response.pointers().count == 3)
        }
    }

    @Test("unknown fields are refused, not silently assigned", arguments: ["id", "created_at", "password_hash", "is_admin"])
    func massAssignment(field: String) async throws {
        try await withIdentityApp { client, _ in
            let response = try await client.postJSON(
                "/users", #"{"email":"a@example.com","password":"\#(password)","name":"A","\#(field)":"x"}"#)
            try response.expectProblem(.unprocessableContent)
            #expect(try response.pointers() == ["/\(field)"])
        }
    }

    @Test("GET /users/me gives the self view; without a token 401 with a Bearer challenge")
    func me() async throws {
        try await withIdentityApp { client, _ in
            let (id, token) = try await client.registerAndLogin()
            let response = try await client.get("/users/me", token: token)
            #expect(response.status == .ok)
            #expect(try response.json()["id"] as? String == id)
            #expect(response.headers[.cacheControl] == "no-store")
            let anonymous = try await client.get("/users/me")
            try anonymous.expectProblem(.unauthorized)
            #expect(anonymous.headers[.wwwAuthenticate] == "Bearer")
            let basic = try await client.execute(uri: "/users/me", method: .get, headers: [.authorization: "Basic YTpi"])
            #expect(basic.headers[.wwwAuthenticate] == "Bearer")
            let bad = try await client.get("/users/me", token: "not.a.token")
            try bad.expectProblem(.unauthorized)
            #expect(bad.headers[.wwwAuthenticate] == #"Bearer error="invalid_token""#)
        }
    }

    @Test("GET /users/{id}: the self view for the owner, the public view for others, 404 for unknown or non-UUID ids")
    func byID() async throws {
        try await withIdentityApp { client, _ in
            let (adaID, adaToken) = try await client.registerAndLogin()
            let (bobID, _) = try await client.registerAndLogin("bob@example.com", name: "Bob")
            let own = try await client.get("/users/\(adaID)", token: adaToken)
            #expect(Set(try own.json().keys) == ["id", "email", "name", "email_verified", "created_at", "updated_at"])
            let other = try await client.get("/users/\(bobID)", token: adaToken)
            #expect(other.status == .ok)
            #expect(Set(try other.json().keys) == ["id", "name", "created_at"])
            #expect(try other.json()["name"] as? String == "Bob")
            #expect(other.headers[.cacheControl] == "no-store")
            try await client.get("/users/\(UUID().uuidString.lowercased())", token: adaToken).expectProblem(.notFound)
            try await client.get("/users/not-a-uuid", token: adaToken).expectProblem(.notFound)
            try await client.get("/users/\(bobID)").expectProblem(.unauthorized)
            let upper = try await client.get("/users/\(bobID.uppercased())", token: adaToken)
            #expect(upper.status == .ok)
        }
    }

    @Test("PUT /users/me: 200 with updated_at moved; 401; 403 wrong current_password; 409 taken; 422 bad or empty")
    func update() async throws {
        try await withIdentityApp { client, _ in
            let (_, token) = try await client.registerAndLogin()
            _ = try await client.registerAndLogin("bob@example.com", name: "Bob")
            let auth: HTTPFields = [.authorization: "Bearer \(token)"]
            let before = try await client.get("/users/me", token: token).json()["updated_at"] as? String
            let renamed = try await client.postJSON("/users/me", #"{"name":"Countess"}"#, headers: auth, method: .put)
            #expect(renamed.status == .ok)
            #expect(try renamed.json()["name"] as? String == "Countess")
            #expect((try renamed.json()["updated_at"] as? String ?? "") > (before ?? "~"))
            try await client.postJSON("/users/me", #"{"name":"X"}"#, method: .put).expectProblem(.unauthorized)
            try await client.postJSON("/users/me", #"{"email":"new@example.com","current_password":"wrong password"}"#,
                                      headers: auth, method: .put).expectProblem(.forbidden)
            try await client.postJSON("/users/me", #"{"email":"bob@example.com","current_password":"\#(password)"}"#,
                                      headers: auth, method: .put).expectProblem(.conflict)
            let missing = try await client.postJSON("/users/me", #"{"password":"another password"}"#, headers: auth, method: .put)
            try missing.expectProblem(.unprocessableContent)
            #expect(try missing.pointers() == ["/current_password"])
            let empty = try await client.postJSON("/users/me", "{}", headers: auth, method: .put)
            try empty.expectProblem(.unprocessableContent)
            #expect(try empty.pointers() == [""])
            let unknown = try await client.postJSON("/users/me", #"{"name":"Y","id":"x"}"#, headers: auth, method: .put)
            #expect(try unknown.pointers() == ["/id"])
        }
    }

    @Test("PUT /users/me: after 5 wrong current_password checks, 429 with Retry-After, without checking the password")
    func currentPasswordThrottled() async throws {
        try await withIdentityApp { client, _ in
            let (_, token) = try await client.registerAndLogin()
            let auth: HTTPFields = [.authorization: "Bearer \(token)"]
            for _ in 0..<5 {
                let wrong = try await client.postJSON("/users/me", #"{"email":"x@example.com","current_password":"a wrong guess"}"#, headers: auth, method: .put)
                try wrong.expectProblem(.forbidden)
            }
            let throttled = try await client.postJSON("/users/me", #"{"email":"x@example.com","current_password":"\#(password)"}"#, headers: auth, method: .put)
            try throttled.expectProblem(.tooManyRequests)
            #expect(throttled.headers[.retryAfter].flatMap(Int.init) ?? 0 > 0)
            #expect(try await client.get("/users/me", token: token).json()["email"] as? String == "ada@example.com", "nothing changed")
        }
    }

    @Test("a password change revokes the current token; a token issued right after works")
    func passwordChange() async throws {
        try await withIdentityApp { client, identity in
            let (_, token) = try await client.registerAndLogin()
            let changed = try await client.postJSON(
                "/users/me", #"{"password":"a whole new password","current_password":"\#(password)"}"#,
                headers: [.authorization: "Bearer \(token)"], method: .put)
            #expect(changed.status == .ok)
            try await client.get("/users/me", token: token).expectProblem(.unauthorized)
            identity.clock.advance(by: 0.001)  // a millisecond later, within the same second
            let login = try await client.postJSON("/auth/login", #"{"email":"ada@example.com","password":"a whole new password"}"#)
            let fresh = try #require(try login.json()["access_token"] as? String)
            #expect(try await client.get("/users/me", token: fresh).status == .ok)
        }
    }

    @Test("DELETE /users/me: 204, then the token is refused, the account is 404 and the email registers again")
    func delete() async throws {
        try await withIdentityApp { client, _ in
            let (adaID, token) = try await client.registerAndLogin()
            let (_, bobToken) = try await client.registerAndLogin("bob@example.com", name: "Bob")
            let deleted = try await client.get("/users/me", token: token, method: .delete)
            #expect(deleted.status == .noContent)
            #expect(deleted.headers[.requestID] != nil)
            try await client.get("/users/me", token: token).expectProblem(.unauthorized)
            try await client.get("/users/\(adaID)", token: bobToken).expectProblem(.notFound)
            try await client.get("/users/me", method: .delete).expectProblem(.unauthorized)
            _ = try await client.registerAndLogin()
        }
    }
}
