import CryptoAdapter
import HTTPAdapter
import Hummingbird
import IdentityApplication
import InMemoryAdapter

/// A notes service that embeds Identity: the users and auth routes under `/identity`, and a
/// route of its own that only a signed-in user reaches.
public func makeApplication(jwtSecret: String, port: Int = 8080) async throws -> some ApplicationProtocol {
    // --- wiring: our adapters (in memory, Argon2id, JWT) ---
    let store = InMemoryUserStore()
    let tokens = await JWTTokenService(configuration: try TokenConfiguration(secret: jwtSecret))
    let handler = IdentityCommandHandler(users: store, outbox: store, revocations: store.revocations, tokens: tokens)
    let identity = IdentityService(IdentityDependencies(
        users: store, outbox: store, revocations: store.revocations, hasher: Argon2idHasher(), tokens: tokens,
        throttle: InMemoryLoginThrottle(), bus: InProcessCommandBus(handler: handler)
    ))
    let router = Router(context: IdentityRequestContext.self)
    IdentityHTTP.addRoutes(to: router, atPath: "/identity", service: identity)
    router.group("/notes")
        .add(middleware: IdentityHTTP.bearerAuthenticator(service: identity))
        .get { _, context in "the notes of \(try context.requirePrincipal().userID)\n" }
    // --- end of wiring ---
    return Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: port)))
}
