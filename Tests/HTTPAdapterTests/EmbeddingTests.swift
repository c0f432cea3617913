import Foundation
import HTTPAdapter
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import IdentityApplication
import IdentityTestSupport
import Logging
import NIOCore
import Testing

/// A host application's own context: the identity routes and the authenticator need only
/// what `IdentityContext` asks for.
struct HostContext: IdentityContext {
    var coreContext: CoreRequestContextStorage
    let remoteAddress: SocketAddress?
    var requestID = ""
    var principal: Principal?
    var tenant = "acme"

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress
    }
}

@Suite("Embedding in a host application")
struct EmbeddingTests {
    func withHost(_ body: @escaping @Sendable (any TestClientProtocol) async throws -> Void) async throws {
        let identity = try await TestIdentity.make()
        let router = Router(context: HostContext.self)
        IdentityHTTP.addRoutes(to: router, atPath: "/identity", service: identity.service)
        router.group("/notes")
            .add(middleware: IdentityHTTP.bearerAuthenticator(service: identity.service))
            .get { _, context in "notes of \(try context.requirePrincipal().userID) at \(context.tenant)" }
        router.get("/open") { _, context in "open; signed in: \(context.principal != nil)" }
        try await Application(router: router).test(.router) { client in try await body(client) }
    }

    @Test("the routes answer under the host's prefix, and nowhere else")
    func prefix() async throws {
        try await withHost { client in
            let registered = try await client.postJSON(
                "/identity/users", #"{"email":"host@example.com","password":"\#(password)","name":"Host"}"#)
            #expect(registered.status == .created)
            #expect(try await client.postJSON("/users", #"{"email":"x@example.com","password":"\#(password)","name":"X"}"#).status == .notFound)
            let bad = try await client.postJSON("/identity/users", #"{"email":"nope"}"#)
            #expect(bad.status == .unprocessableContent && bad.headers[.contentType] == "application/problem+json")
            #expect(bad.headers[HTTPField.Name("X-Request-ID")!] != nil, "problem+json and request ids on the mounted routes")
        }
    }

    @Test("the host's own route needs a token we honour, and reads its user; a logged-out token is refused")
    func protectedRoute() async throws {
        try await withHost { client in
            let registered = try await client.postJSON(
                "/identity/users", #"{"email":"host@example.com","password":"\#(password)","name":"Host"}"#)
            let id = try #require(try registered.json()["id"] as? String)
            let login = try await client.postJSON("/identity/auth/login", #"{"email":"host@example.com","password":"\#(password)"}"#)
            let token = try #require(try login.json()["access_token"] as? String)

            let anonymous = try await client.get("/notes")
            #expect(anonymous.status == .unauthorized && anonymous.headers[.wwwAuthenticate] == "Bearer")
            #expect(anonymous.headers[.contentType] == "application/problem+json")
            let forged = try await client.get("/notes", token: token + "x")
            #expect(forged.status == .unauthorized && forged.headers[.wwwAuthenticate] == #"Bearer error="invalid_token""#)

            let notes = try await client.get("/notes", token: token)
            #expect(notes.status == .ok && notes.text == "notes of \(id) at acme", "the principal and the host's own context")
            #expect(try await client.get("/open", token: token).text == "open; signed in: false", "only routes behind it authenticate")

            #expect(try await client.get("/identity/auth/logout", token: token, method: .post).status == .noContent)
            #expect(try await client.get("/notes", token: token).status == .unauthorized, "revocation reaches the host's routes")
        }
    }
}
