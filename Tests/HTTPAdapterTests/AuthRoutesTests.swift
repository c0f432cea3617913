import Foundation
import HTTPTypes
import HummingbirdTesting
@testable import HTTPAdapter
import IdentityPorts
import Testing

@Suite("HTTP: auth")
struct AuthRoutesTests {
    @Test("POST /auth/login with JSON gives a bearer token, no-store")
    func loginJSON() async throws {
        try await withIdentityApp { client, _ in
            _ = try await client.registerAndLogin()
            let response = try await client.postJSON("/auth/login", #"{"email":"ADA@example.com","password":"\#(password)"}"#)
            #expect(response.status == .ok)
            let body = try response.json()
            #expect(Set(body.keys) == ["access_token", "token_type", "expires_in", "refresh_token"])
            #expect(body["token_type"] as? String == "bearer")
            #expect(body["expires_in"] as? Int == 3600)
            #expect(response.headers[.cacheControl] == "no-store")
        }
    }

    @Test("POST /auth/login accepts the OAuth2 password form, with its optional fields")
    func loginForm() async throws {
        try await withIdentityApp { client, _ in
            _ = try await client.registerAndLogin("a+b@example.com")
            let form = "grant_type=password&username=a%2Bb%40example.com&password=correct+horse+battery&scope=&client_id=x&client_secret="
            let response = try await client.postBytes("/auth/login", Array(form.utf8), contentType: "application/x-www-form-urlencoded")
            #expect(response.status == .ok)
            #expect(try response.json()["token_type"] as? String == "bearer")
            let noGrant = "username=a%2Bb%40example.com&password=correct%20horse%20battery"
            #expect(try await client.postBytes("/auth/login", Array(noGrant.utf8), contentType: "application/x-www-form-urlencoded").status == .ok)
        }
    }

    @Test("the form refuses another grant_type (400), bad encoding (400) and unknown fields (422)")
    func formErrors() async throws {
        try await withIdentityApp { client, _ in
            let form = "application/x-www-form-urlencoded"
            try await client.postBytes("/auth/login", Array("grant_type=client_credentials&username=a@b.co&password=x".utf8), contentType: form)
                .expectProblem(.badRequest)
            try await client.postBytes("/auth/login", Array("username=a%ZZ&password=x".utf8), contentType: form).expectProblem(.badRequest)
            try await client.postBytes("/auth/login", Array("username=%FF&password=x".utf8), contentType: form).expectProblem(.badRequest)
            try await client.postBytes("/auth/login", Array("username=a%00&password=x".utf8), contentType: form).expectProblem(.badRequest)
            try await client.postBytes("/auth/login", Array("username=a&username=b&password=x".utf8), contentType: form).expectProblem(.badRequest)
            let unknown = try await client.postBytes("/auth/login", Array("username=a@b.co&password=x&admin=1".utf8), contentType: form)
            try unknown.expectProblem(.unprocessableContent)
            #expect(try unknown.pointers() == ["/admin"])
            let badEmail = try await client.postBytes("/auth/login", Array("username=not-an-email&password=x".utf8), contentType: form)
            try badEmail.expectProblem(.unprocessableContent)
            #expect(try badEmail.pointers() == ["/username"], "errors name the form's own field")
        }
    }

    @Test("unknown email and wrong password give the same 401 body")
    func sameFailure() async throws {
        try await withIdentityApp { client, _ in
            _ = try await client.registerAndLogin()
            let wrong = try await client.postJSON("/auth/login", #"{"email":"ada@example.com","password":"wrong password"}"#)
            let unknown = try await client.postJSON("/auth/login", #"{"email":"ghost@example.com","password":"wrong password"}"#)
            try wrong.expectProblem(.unauthorized)
            #expect(wrong.text == unknown.text)
            #expect(wrong.headers[.wwwAuthenticate] == unknown.headers[.wwwAuthenticate])
        }
    }

    @Test("POST /auth/login with missing fields gives 422")
    func loginValidation() async throws {
        try await withIdentityApp { client, _ in
            let response = try await client.postJSON("/auth/login", #"{"email":"ada@example.com"}"#)
            try response.expectProblem(.unprocessableContent)
            #expect(try response.pointers() == ["/password"])
        }
    }

    @Test("after 5 failures the email gets 429 with Retry-After, without checking the password")
    func throttle() async throws {
        try await withIdentityApp(limits: LoginThrottleConfiguration(maxFailuresPerEmail: 5, maxFailuresPerClient: 100, window: 900)) { client, _ in
            _ = try await client.registerAndLogin()
            for _ in 0..<5 {
                try await client.postJSON("/auth/login", #"{"email":"ada@example.com","password":"wrong password"}"#).expectProblem(.unauthorized)
            }
            let throttled = try await client.postJSON("/auth/login", #"{"email":"ada@example.com","password":"\#(password)"}"#)
            try throttled.expectProblem(.tooManyRequests)
            let retry = try #require(throttled.headers[.retryAfter].flatMap(Int.init))
            #expect((1...900).contains(retry))
        }
    }

    @Test("POST /auth/logout gives 204 and the token is refused afterwards; other tokens still work")
    func logout() async throws {
        try await withIdentityApp { client, _ in
            let (_, token) = try await client.registerAndLogin()
            let second = try #require(try await client.postJSON("/auth/login", #"{"email":"ada@example.com","password":"\#(password)"}"#)
                .json()["access_token"] as? String)
            let response = try await client.get("/auth/logout", token: token, method: .post)
            #expect(response.status == .noContent)
            let after = try await client.get("/users/me", token: token)
            try after.expectProblem(.unauthorized)
            #expect(after.headers[.wwwAuthenticate] == #"Bearer error="invalid_token""#)
            try await client.get("/auth/logout", token: token, method: .post).expectProblem(.unauthorized)
            #expect(try await client.get("/users/me", token: second).status == .ok)
            try await client.get("/auth/logout", method: .post).expectProblem(.unauthorized)
        }
    }
}
