import CryptoAdapter
import HTTPAdapter
import Hummingbird
import IdentityComposition
import Logging
import PostgresAdapter
import PostgresNIO

/// The same notes service on PostgreSQL: the host makes and runs its own `PostgresClient`,
/// and Identity's background work (revocation feed, expiry purge, outbox trimming) runs in
/// the host's service group beside it. The schema is migrated at start-up.
public func makePostgresApplication(
    postgres: PostgresConfiguration, jwtSecret: String, port: Int = 8080, logger: Logger = Logger(label: "host-app")
) async throws -> some ApplicationProtocol {
    // --- wiring ---
    let client = postgres.makeClient(logger: logger)
    let identity = try await IdentityStack.make(
        store: .postgresClient(client, configuration: postgres),
        configuration: IdentityConfiguration(tokens: try TokenConfiguration(secret: jwtSecret), schema: .migrate, logger: logger)
    )
    let router = Router(context: IdentityRequestContext.self)
    IdentityHTTP.addRoutes(to: router, atPath: "/identity", service: identity.service)
    addNotes(to: router, identity: identity)
    var app = Application(
        router: router, configuration: .init(address: .hostname("127.0.0.1", port: port)), services: [client] + identity.services
    )
    app.beforeServerStarts { try await identity.prepare() }
    // --- end of wiring ---
    return app
}
