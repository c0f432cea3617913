import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
@testable import HTTPAdapter
import IdentityDomain
import IdentityPorts
import IdentityTestSupport
import Testing

/// Contract §3, load shedding: with the hashing queue full (`HashingJam` holds the hasher's one
/// thread and fills its queue), the routes that hash answer 503 at once and the others as usual.
@Suite("HTTP: load shedding")
struct LoadSheddingTests {
    @Test("hashing overloaded: login, registration and a password change get 503 problem+json with Retry-After; reads still 200")
    func overloaded() async throws {
        try await HashingJam.with(queueLimit: 1) { jam in
            let identity = try await TestIdentity.make(hasher: jam.hasher)
            let app = Application(router: IdentityHTTP.makeRouter(service: identity.service))
            try await app.test(.router) { client in
                let (id, token) = try await client.registerAndLogin()
                let hash = try await identity.hasher.hash(try Password(HashingJam.password))
                try await jam.jam()
                let waiting = try await jam.fill(1, against: hash)

                // More shed logins than the email's failure limit (5): a shed login is not a failure.
                for _ in 0..<6 {
                    let shed = try await jam.refusedAtOnce {
                        try await client.postJSON("/auth/login", #"{"email":"ada@example.com","password":"\#(password)"}"#)
                    }
                    try shed.expectProblem(.serviceUnavailable)
                }
                let login = try await jam.refusedAtOnce {
                    try await client.postJSON("/auth/login", #"{"email":"ada@example.com","password":"\#(password)"}"#)
                }
                let problem = try login.expectProblem(.serviceUnavailable)
                #expect(login.headers[.retryAfter] == "1")
                #expect((problem["detail"] as? String)?.contains("overloaded") == true)
                #expect(problem["type"] as? String == "urn:identity:problem:unavailable")

                let register = try await jam.refusedAtOnce {
                    try await client.postJSON("/users", #"{"email":"bob@example.com","password":"\#(password)","name":"Bob"}"#)
                }
                try register.expectProblem(.serviceUnavailable)
                #expect(register.headers[.retryAfter] == "1")
                var headers: HTTPFields = [.authorization: "Bearer \(token)"]
                let change = try await jam.refusedAtOnce { [headers] in
                    try await client.postJSON(
                        "/users/me", #"{"password":"another good password","current_password":"\#(password)"}"#, headers: headers, method: .put
                    )
                }
                try change.expectProblem(.serviceUnavailable)
                #expect(change.headers[.retryAfter] == "1")

                #expect(try await client.get("/users/me", token: token).status == .ok, "a route that does not hash is unaffected")
                #expect(try await client.get("/users/\(id)", token: token).status == .ok)
                headers[.contentType] = "application/json"
                #expect(try await client.postJSON("/users/me", #"{"name":"Ada L."}"#, headers: headers, method: .put).status == .ok,
                        "a change that hashes nothing is unaffected")
                #expect(jam.waitingJobs == 1, "the queue is still full: nothing above waited for a thread")

                jam.release()
                for task in waiting { #expect(try await task.value) }
                let retried = try await client.postJSON("/auth/login", #"{"email":"ada@example.com","password":"\#(password)"}"#)
                #expect(retried.status == .ok, "once the queue drains, the same login succeeds: the seven shed ones counted for nothing")
            }
        }
    }

    @Test("the OpenAPI document lists 503 with Retry-After for the routes that hash")
    func documented() throws {
        let document = try #require(try JSONSerialization.jsonObject(with: Data(OpenAPIDocument.json.utf8)) as? [String: Any])
        let paths = try #require(document["paths"] as? [String: [String: Any]])
        for (path, method) in [("/users", "post"), ("/auth/login", "post"), ("/users/me", "put")] {
            let operation = try #require(paths[path]?[method] as? [String: Any])
            let responses = try #require(operation["responses"] as? [String: Any])
            let unavailable = try #require(responses["503"] as? [String: Any], "\(method) \(path)")
            let headers = unavailable["headers"] as? [String: Any]
            #expect(headers?["Retry-After"] != nil, "\(method) \(path)")
        }
    }
}
