import CryptoAdapter
import HTTPAdapter
import Hummingbird
import IdentityComposition

/// A notes service that embeds Identity in memory: the users and auth routes under
/// `/identity`, and a route of its own that only a signed-in user reaches.
public func makeApplication(jwtSecret: String, port: Int = 8080) async throws -> some ApplicationProtocol {
    // --- wiring ---
    let identity = try await IdentityStack.make(
        store: .inMemory, configuration: IdentityConfiguration(tokens: try TokenConfiguration(secret: jwtSecret))
    )
    let router = Router(context: IdentityRequestContext.self)
    IdentityHTTP.addRoutes(to: router, atPath: "/identity", service: identity.service)
    addNotes(to: router, identity: identity)
    var app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: port)), services: identity.services)
    app.beforeServerStarts { try await identity.prepare() }
    // --- end of wiring ---
    return app
}

/// The host's own route: `GET /notes`, behind Identity's bearer authenticator.
func addNotes(to router: Router<IdentityRequestContext>, identity: IdentityStack) {
    router.group("/notes")
        .add(middleware: IdentityHTTP.bearerAuthenticator(service: identity.service))
        .get { _, context in "the notes of \(try context.requirePrincipal().userID)\n" }
}
