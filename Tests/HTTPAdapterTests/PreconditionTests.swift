import Foundation
import HTTPTypes
import HummingbirdTesting
@testable import HTTPAdapter
import IdentityTestSupport
import Testing

@Suite("HTTP: ETag, If-Match and concurrent changes of one account")
struct PreconditionTests {
    @Test("every self view carries the account's version as a strong ETag; the public view none")
    func etags() async throws {
        try await withIdentityApp { client, _ in
            let registered = try await client.postJSON("/users", #"{"email":"ada@example.com","password":"\#(password)","name":"Ada"}"#)
            #expect(registered.headers[.eTag] == #""v1""#)
            let (id, token) = try await client.registerAndLogin("grace@example.com", name: "Grace")
            #expect(try await client.get("/users/me", token: token).headers[.eTag] == #""v1""#)
            #expect(try await client.get("/users/\(id)", token: token).headers[.eTag] == #""v1""#, "the own account by id")
            let other = try #require(try registered.json()["id"] as? String)
            #expect(try await client.get("/users/\(other)", token: token).headers[.eTag] == nil, "not on someone else's")
            let renamed = try await client.postJSON("/users/me", #"{"name":"G"}"#, headers: [.authorization: "Bearer \(token)"], method: .put)
            #expect(renamed.headers[.eTag] == #""v2""#, "a change moves it")
        }
    }

    @Test("PUT /users/me with If-Match: the current tag or * applies; a stale, weak or foreign one gives 412 and changes nothing")
    func ifMatch() async throws {
        try await withIdentityApp { client, _ in
            let (_, token) = try await client.registerAndLogin()
            let auth: HTTPFields = [.authorization: "Bearer \(token)"]
            func put(_ name: String, ifMatch: String) async throws -> TestResponse {
                var headers = auth
                headers[.ifMatch] = ifMatch
                return try await client.postJSON("/users/me", #"{"name":"\#(name)"}"#, headers: headers, method: .put)
            }
            #expect(try await put("One", ifMatch: #""v1""#).status == .ok)
            for stale in [#""v1""#, #"W/"v2""#, #""2""#, "v2", #""v""#, #""v99999999999999999999""#, "garbage"] {
                let refused = try await put("Stale", ifMatch: stale)
                try refused.expectProblem(.preconditionFailed)
                #expect(try refused.json()["type"] as? String == "urn:identity:problem:precondition-failed", "\(stale)")
            }
            let me = try await client.get("/users/me", token: token)
            #expect(try me.json()["name"] as? String == "One" && me.headers[.eTag] == #""v2""#, "nothing changed")
            #expect(try await put("Two", ifMatch: #""v7", "v2""#).status == .ok, "one tag of a list that matches")
            #expect(try await put("Three", ifMatch: "*").status == .ok, "* matches any current account")
        }
    }

    @Test("concurrent PUTs without If-Match are all applied, one after another: none answers 409")
    func concurrentRenames() async throws {
        try await withIdentityApp { client, _ in
            let (_, token) = try await client.registerAndLogin()
            let auth: HTTPFields = [.authorization: "Bearer \(token)"]
            let statuses = try await withThrowingTaskGroup(of: HTTPResponse.Status.self) { group in
                for index in 0..<20 {
                    group.addTask { try await client.postJSON("/users/me", #"{"name":"N\#(index)"}"#, headers: auth, method: .put).status }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(statuses.allSatisfy { $0 == .ok }, "\(statuses)")
            #expect(try await client.get("/users/me", token: token).headers[.eTag] == #""v21""#, "twenty changes, each applied once")
        }
    }
}
