import Foundation
import IdentityPorts
#if SQLite
import SQLiteAdapter
#endif
#if PostgreSQL
public import PostgresAdapter
public import PostgresNIO
#endif

/// Where accounts, revocations and login failures live: a preset per adapter, or stores of
/// your own.
///
/// The presets this build offers depend on the package traits the host enables: `SQLite`,
/// `PostgreSQL`, `RabbitMQ` (all three by default); the in-memory store is always there.
public enum IdentityStore: Sendable {
    /// In memory: one process, nothing survives it.
    case inMemory
    #if SQLite
    /// A SQLite file, opened and migrated at composition (`:memory:` for a private database).
    case sqlite(path: String)
    #endif
    #if PostgreSQL
    /// PostgreSQL through a fixed pool the stack makes and runs itself (one of its `services`).
    /// `timeout` bounds each statement.
    case postgres(PostgresConfiguration, timeout: Duration = .seconds(5))
    /// PostgreSQL through the host's own client, which the host runs (`client.run()` or as a
    /// service of its own). `configuration` names the same database: the revocation feed
    /// holds one connection of its own, made from it.
    case postgresClient(PostgresClient, configuration: PostgresConfiguration, timeout: Duration = .seconds(5))
    #endif
    /// Stores of your own (an adapter that passes the conformance suites).
    case custom(IdentityStores)

    /// Opens the stores with the configuration's clock, limits, logger and metrics.
    func open(_ configuration: IdentityConfiguration) async throws -> IdentityStores {
        switch self {
        case .inMemory:
            return .inMemory(clock: configuration.clock, throttle: configuration.throttle, sessions: configuration.sessions)
        #if SQLite
        case .sqlite(let path):
            return try await .sqlite(path: path, configuration: configuration)
        #endif
        #if PostgreSQL
        case .postgres(let postgres, let timeout):
            let pool = try postgres.makePool(logger: configuration.logger)
            var stores = try IdentityStores.postgres(
                source: .pool(pool), listeningWith: postgres, timeout: timeout, configuration: configuration
            )
            stores.services.insert(pool, at: 0)
            return stores
        case .postgresClient(let client, let postgres, let timeout):
            return try IdentityStores.postgres(source: .client(client), listeningWith: postgres, timeout: timeout, configuration: configuration)
        #endif
        case .custom(let stores):
            return stores
        }
    }
}

extension IdentityStores {
    /// What every durable store purges: revocations, login failures and sessions past their time.
    static func expiryPurges(
        revocations: any RevocationStore, sessions: any SessionStore, loginFailures: @escaping @Sendable (Date) async throws -> Int
    ) -> [ExpiryPurge.PurgeTask] {
        [
            .init("revocations") { try await revocations.purgeExpired(now: $0) },
            .init("login failures", purge: loginFailures),
            .init("sessions") { try await sessions.purgeExpired(now: $0) },
        ]
    }
}

/// How long delivered and given-up mail is kept: a day, well beyond the hour a `MailLimit` counts,
/// for an operator to look at.
let finishedMailKept: TimeInterval = 86_400

/// The events no relay publishes, in a deployment without a broker: the newest are kept, as
/// the in-memory outbox keeps them.
let unrelayedEventsKept = 10_000

#if SQLite
extension IdentityStores {
    /// The SQLite stores on one file, opened and migrated now.
    public static func sqlite(path: String, configuration: IdentityConfiguration) async throws -> IdentityStores {
        let database = try await IdentitySQLiteDatabase.open(path: path, logger: configuration.logger)
        let store = SQLiteUserStore(database: database)
        let revocations = SQLiteRevocationStore(database: database)
        let throttle = SQLiteLoginThrottle(database: database, limits: configuration.throttle)
        let sessions = SQLiteSessionStore(database: database, configuration: configuration.sessions)
        return IdentityStores(
            users: store, outbox: store, revocations: revocations, throttle: throttle, sessions: sessions,
            sessionConfiguration: configuration.sessions, signingKeys: SQLiteSigningKeyStore(database: database),
            purges: expiryPurges(revocations: revocations, sessions: sessions) { try await throttle.purgeExpired(now: $0) } + [
                .init("account tokens") { try await store.purgeExpiredAccountTokens(now: $0) },
                .init("finished mail") { try await store.purgeFinishedMail(before: $0.addingTimeInterval(-finishedMailKept)) },
            ],
            trimOutbox: { try await store.trimOutbox(keeping: $0) },
            summary: "sqlite(\(path))"
        )
    }
}
#endif

#if PostgreSQL
extension IdentityStores {
    /// How long applied-command records are kept: far longer than any redelivery.
    static let appliedCommandsKept: TimeInterval = 7 * 86_400

    /// The PostgreSQL stores; revocations are checked through a cache kept current by the
    /// database's numbered announcements (`PostgresRevocationCache`, one of the `services`).
    static func postgres(
        source: PostgresConnectionSource, listeningWith postgres: PostgresConfiguration, timeout: Duration, configuration: IdentityConfiguration
    ) throws -> IdentityStores {
        let logger = configuration.logger
        let store = PostgresUserStore(source: source, timeout: timeout, logger: logger)
        let base = PostgresRevocationStore(source: source, timeout: timeout, logger: logger)
        let throttle = PostgresLoginThrottle(source: source, limits: configuration.throttle, timeout: timeout, logger: logger)
        let sessions = PostgresSessionStore(source: source, configuration: configuration.sessions, timeout: timeout, logger: logger)
        let migrator = try PostgresMigrator(source: source, logger: logger)
        let health = PostgresHealthCheck(source: source)
        let cache = PostgresRevocationCache(
            base: base, listeningWith: postgres, logger: logger, metrics: configuration.metricsFactory
        )
        return IdentityStores(
            users: store, outbox: store, revocations: cache, throttle: throttle, sessions: sessions,
            sessionConfiguration: configuration.sessions,
            signingKeys: PostgresSigningKeyStore(source: source, timeout: timeout, logger: logger),
            // The cache prunes itself and its table.
            purges: expiryPurges(revocations: cache, sessions: sessions) { try await throttle.purgeExpired(now: $0) } + [
                .init("applied commands") { try await store.purgeAppliedCommands(before: $0.addingTimeInterval(-appliedCommandsKept)) },
                .init("account tokens") { try await store.purgeExpiredAccountTokens(now: $0) },
                .init("finished mail") { try await store.purgeFinishedMail(before: $0.addingTimeInterval(-finishedMailKept)) },
            ],
            trimOutbox: { try await store.trimOutbox(keeping: $0) },
            services: [cache], readiness: [health],
            prepare: { policy in
                switch policy {
                case .requireCurrent:
                    try await PostgresMigrator.withDeadline(startupDeadline) { try await migrator.ensureCurrent() }
                case .migrate:
                    // Reach the server within the deadline; applying migrations may take longer.
                    _ = try await PostgresMigrator.withDeadline(startupDeadline) { try await migrator.status() }
                    _ = try await migrator.up()
                }
            },
            isShared: true, summary: "postgres(\(postgres.summary))"
        )
    }

    /// How long start-up waits for PostgreSQL before giving up.
    public static let startupDeadline: Duration = .seconds(10)
}
#endif
