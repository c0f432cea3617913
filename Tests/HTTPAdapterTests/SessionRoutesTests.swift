import Foundation
import HTTPTypes
import HummingbirdTesting
@testable import HTTPAdapter
import IdentityPorts
import IdentityTestSupport
import InMemoryAdapter
import Testing

@Suite("HTTP: sessions and refresh tokens")
struct SessionRoutesTests {
    /// Logs `email` (registered) in and returns the login body.
    func login(_ client: some TestClientProtocol, _ email: String = "ada@example.com") async throws -> [String: Any] {
        let response = try await client.postJSON(
            "/auth/login", #"{"email":"\#(email)","password":"\#(password)"}"#, headers: [.userAgent: "curl/8"]
        )
        #expect(response.status == .ok)
        return try response.json()
    }

    func refresh(_ client: some TestClientProtocol, _ token: String) async throws -> TestResponse {
        try await client.postJSON("/auth/refresh", #"{"refresh_token":"\#(token)"}"#)
    }

    @Test("POST /auth/refresh (JSON and the OAuth2 form) answers like a login, rotating the refresh token; no-store")
    func refreshRoute() async throws {
        try await withIdentityApp { client, _ in
            _ = try await client.registerAndLogin()
            let first = try await login(client)
            let refreshed = try await refresh(client, try #require(first["refresh_token"] as? String))
            #expect(refreshed.status == .ok)
            #expect(refreshed.headers[.cacheControl] == "no-store" && refreshed.headers[.pragma] == "no-cache")
            let body = try refreshed.json()
            #expect(Set(body.keys) == ["access_token", "token_type", "expires_in", "refresh_token"])
            #expect(body["refresh_token"] as? String != first["refresh_token"] as? String)
            let next = try #require(body["refresh_token"] as? String)
            let form = "grant_type=refresh_token&refresh_token=\(next)&client_id=app"
            let viaForm = try await client.postBytes("/auth/refresh", Array(form.utf8), contentType: "application/x-www-form-urlencoded")
            #expect(viaForm.status == .ok)
            #expect(try await client.get("/users/me", token: try #require(try viaForm.json()["access_token"] as? String)).status == .ok)
        }
    }

    @Test("a replay outside the grace rule is 401 refresh-token-reused, and the session's access tokens are refused")
    func reused() async throws {
        try await withIdentityApp { client, identity in
            _ = try await client.registerAndLogin()
            let first = try await login(client)
            let token = try #require(first["refresh_token"] as? String)
            #expect(try await refresh(client, token).status == .ok)
            identity.clock.advance(by: 11)
            let replay = try await refresh(client, token).expectProblem(.unauthorized)
            #expect(replay["type"] as? String == "urn:identity:problem:refresh-token-reused")
            try await client.get("/users/me", token: try #require(first["access_token"] as? String)).expectProblem(.unauthorized)
        }
    }

    @Test("bad refresh tokens are 401 problem+json without saying which; a missing field 422; another grant 400; a bad media type 415")
    func badInput() async throws {
        try await withIdentityApp { client, _ in
            _ = try await client.registerAndLogin()
            let access = try #require(try await login(client)["access_token"] as? String)
            var bodies: Set<String> = []
            for token in ["", "garbage", String(repeating: "A", count: 5_000), "\\u00e9\\u00e9", access, String(repeating: "A", count: 65), String(repeating: "A", count: 96)] {
                let response = try await refresh(client, token)
                let problem = try response.expectProblem(.unauthorized)
                #expect(problem["type"] as? String == "urn:identity:problem:unauthorized")
                bodies.insert(problem["detail"] as? String ?? "")
            }
            #expect(bodies.count == 1, "one answer for every bad token")
            try await client.postJSON("/auth/refresh", "{}").expectProblem(.unprocessableContent)
            try await client.postJSON("/auth/refresh", #"{"refresh_token":1}"#).expectProblem(.unprocessableContent)
            try await client.postJSON("/auth/refresh", #"{"refresh_token":"x","admin":true}"#).expectProblem(.unprocessableContent)
            try await client.postBytes("/auth/refresh", Array("grant_type=password&refresh_token=x".utf8),
                                       contentType: "application/x-www-form-urlencoded").expectProblem(.badRequest)
            try await client.postBytes("/auth/refresh", Array("refresh_token=x".utf8),
                                       contentType: "application/x-www-form-urlencoded").expectProblem(.badRequest)
            try await client.postBytes("/auth/refresh", Array("x".utf8), contentType: "text/plain").expectProblem(.unsupportedMediaType)
        }
    }

    @Test("GET /sessions lists the caller's open sessions, newest first, the current one marked; logout ends one")
    func list() async throws {
        try await withIdentityApp { client, identity in
            _ = try await client.registerAndLogin()
            identity.clock.advance(by: 1)
            let current = try await login(client)
            let access = try #require(current["access_token"] as? String)
            let response = try await client.get("/sessions", token: access)
            #expect(response.status == .ok && response.headers[.cacheControl] == "no-store")
            let sessions = try #require(try response.json()["sessions"] as? [[String: Any]])
            #expect(sessions.count == 2)
            #expect(sessions.map { $0["current"] as? Bool } == [true, false])
            #expect(Set(sessions[0].keys) == ["id", "created_at", "last_used_at", "user_agent", "ip", "current"])
            #expect(sessions[0]["user_agent"] as? String == "curl/8")
            #expect(sessions[1]["user_agent"] is NSNull, "registerAndLogin sends no User-Agent")
            #expect(try await client.get("/auth/logout", token: access, method: .post).status == .noContent)
            try await client.get("/sessions", token: access).expectProblem(.unauthorized)
            try await refresh(client, try #require(current["refresh_token"] as? String)).expectProblem(.unauthorized)
        }
    }

    @Test("DELETE /sessions/{id} ends one (204); another's, unknown and malformed ids are 404")
    func deleteOne() async throws {
        try await withIdentityApp { client, _ in
            _ = try await client.registerAndLogin()
            _ = try await client.registerAndLogin("bob@example.com", name: "Bob")
            let ada = try await login(client)
            let adaAccess = try #require(ada["access_token"] as? String)
            let phone = try await login(client)
            let bob = try await login(client, "bob@example.com")
            let bobSession = try #require(try await client.get("/sessions", token: try #require(bob["access_token"] as? String)).json()["sessions"]
                as? [[String: Any]]).first?["id"] as? String
            for id in [try #require(bobSession), UUID().uuidString, "not-a-uuid", "%00", String(repeating: "a", count: 2_000)] {
                try await client.get("/sessions/\(id)", token: adaAccess, method: .delete).expectProblem(.notFound)
            }
            let phoneAccess = try #require(phone["access_token"] as? String)
            let phoneID = try #require(try await client.get("/sessions", token: phoneAccess).json()["sessions"] as? [[String: Any]])
                .first { $0["current"] as? Bool == true }?["id"] as? String
            #expect(try await client.get("/sessions/\(try #require(phoneID))", token: adaAccess, method: .delete).status == .noContent)
            try await client.get("/users/me", token: phoneAccess).expectProblem(.unauthorized)
            #expect(try await client.get("/users/me", token: adaAccess).status == .ok)
        }
    }

    @Test("DELETE /sessions?scope=others keeps the caller's; scope=all ends it too; no or another scope is 400")
    func deleteScopes() async throws {
        try await withIdentityApp { client, _ in
            _ = try await client.registerAndLogin()
            let mine = try #require(try await login(client)["access_token"] as? String)
            let other = try #require(try await login(client)["access_token"] as? String)
            for query in ["", "?scope=", "?scope=mine", "?scope=others&scope=all"] {
                try await client.get("/sessions\(query)", token: mine, method: .delete).expectProblem(.badRequest)
            }
            #expect(try await client.get("/sessions?scope=others", token: mine, method: .delete).status == .noContent)
            try await client.get("/users/me", token: other).expectProblem(.unauthorized)
            #expect(try await client.get("/users/me", token: mine).status == .ok)
            #expect(try await client.get("/sessions?scope=all", token: mine, method: .delete).status == .noContent)
            try await client.get("/users/me", token: mine).expectProblem(.unauthorized)
        }
    }

    @Test("the session routes need a bearer token, and PUT /sessions is 405 with Allow")
    func protected() async throws {
        try await withIdentityApp { client, _ in
            try await client.get("/sessions").expectProblem(.unauthorized)
            try await client.get("/sessions?scope=all", method: .delete).expectProblem(.unauthorized)
            try await client.get("/sessions/\(UUID().uuidString)", method: .delete).expectProblem(.unauthorized)
            let put = try await client.get("/sessions", method: .put)
            try put.expectProblem(.methodNotAllowed)
            #expect(put.headers[.allow] == "GET, DELETE")
        }
    }
}
