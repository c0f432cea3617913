import CryptoAdapter
import HTTPAdapter
import Hummingbird
import IdentityComposition

/// A notes service that embeds Identity in memory: the users and auth routes under
/// `/identity`, and a route of its own that only a signed-in user reaches. Tokens are HS256
/// under `jwtSecret`, or ES256 with key pairs kept in memory when `keyPairs` is true.
public func makeApplication(jwtSecret: String, port: Int = 8080, keyPairs: Bool = false) async throws -> some ApplicationProtocol {
    // --- wiring ---
    let identity = try await IdentityStack.make(
        store: .inMemory,
        configuration: keyPairs
            ? IdentityConfiguration(tokens: try TokenConfiguration(keyPairs: .es256), keyPairs: KeyPairSigning(keyEncryptionKey: .random()))
            : IdentityConfiguration(tokens: try TokenConfiguration(secret: jwtSecret))
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
