import AMQPAdapter
import CoreMetrics
import CryptoAdapter
import Foundation
import IdentityApplication
import IdentityPorts
import InMemoryAdapter
import Logging
import PostgresAdapter
import SQLiteAdapter
import ServiceLifecycle

/// The adapters chosen by the settings, wired into the service.
struct Wiring: Sendable {
    /// What the process does with commands.
    enum Role: Sendable, Equatable {
        /// HTTP; with a broker, also a worker unless `worker` is false.
        case serve(worker: Bool)
        /// A broker worker only: no HTTP.
        case worker
    }

    let service: IdentityService
    let readiness: [any HealthCheck]
    let services: [any Service]
    let summary: String
    private let migrator: PostgresMigrator?

    /// Wires the adapters; with `metrics`, they record into its registry.
    init(settings: ServerConfiguration, logger: Logger, metrics: ServerMetrics? = nil, role: Role = .serve(worker: true)) async throws {
        if role == .worker, settings.rabbitmq == nil {
            throw ConfigurationError("RABBITMQ_HOST must be set for `DemoServer worker` (without a broker there are no commands to consume)")
        }
        if settings.usesRandomJWTSecret {
            logger.warning("JWT_SECRET is unset: using a random secret, so tokens will not survive a restart")
        }
        let tokens = await JWTTokenService(configuration: settings.tokens)
        let argon2 = settings.argon2
        let clock = SystemClock()
        let factory: any MetricsFactory = metrics?.factory ?? MetricsSystem.factory

        let limits = settings.throttle
        let users: any UserRepository
        let outbox: any EventOutbox
        let revocations: any RevocationStore
        let throttle: any LoginThrottle
        var services: [any Service] = []
        var readiness: [any HealthCheck] = []
        let storeSummary: String
        var broker: AMQPBroker?
        if let postgres = settings.postgres {
            // Our own fixed pool, not PostgresClient: see Docs/decisions.md ("Our own connection pool").
            let pool = try postgres.makePool(logger: logger)
            let timeout = settings.postgresTimeout
            let store = PostgresUserStore(pool: pool, timeout: timeout, logger: logger)
            let revocationStore = PostgresRevocationStore(pool: pool, timeout: timeout, logger: logger)
            let sharedThrottle = PostgresLoginThrottle(pool: pool, limits: limits, timeout: timeout, logger: logger)
            services = [pool]
            readiness = [PostgresHealthCheck(pool: pool)]
            // Revocations cached in memory on every instance, kept current by the database's own
            // numbered announcements and heartbeats (with or without a broker), so a request
            // checks its token without a query.
            let cache = PostgresRevocationCache(base: revocationStore, listeningWith: postgres, logger: logger, metrics: factory)
            services.append(RevocationCacheService(cache: cache))
            if let rabbitmq = settings.rabbitmq {
                // Distributed mode: commands over the broker.
                let link = AMQPBroker(configuration: rabbitmq, logger: logger)
                let relay = OutboxRelay(outbox: store, publisher: link.eventPublisher())
                services += [link, OutboxRelayService(relay: relay, logger: logger)]
                readiness.append(AMQPHealthCheck(broker: link))
                broker = link
            }
            (users, outbox, revocations, throttle) = (store, store, cache, sharedThrottle)
            var purges: [(name: String, purge: ExpiryPurge.Task)] = [
                // The cache prunes itself and its base.
                ("revocations", { try await cache.purgeExpired(now: $0) }),
                ("login failures", { try await sharedThrottle.purgeExpired(now: $0) }),
                ("applied commands", { try await store.purgeAppliedCommands(before: $0.addingTimeInterval(-7 * 86_400)) }),
            ]
            if broker == nil {
                purges.append(Self.trimUnrelayed { try await store.trimOutbox(keeping: $0) })
            }
            services.append(ExpiryPurge(tasks: purges, clock: clock, interval: .seconds(600), logger: logger))
            migrator = try PostgresMigrator(pool: pool, logger: logger)
            storeSummary = "postgres(\(postgres.summary))"
        } else if settings.sqlitePath != ":memory:" {
            let database = try await Self.openSQLite(settings.sqlitePath, logger: logger)
            let store = SQLiteUserStore(database: database)
            let revocationStore = SQLiteRevocationStore(database: database)
            let localThrottle = SQLiteLoginThrottle(database: database, limits: limits)
            (users, outbox, revocations, throttle) = (store, store, revocationStore, localThrottle)
            services = [ExpiryPurge(
                tasks: [("revocations", { try await revocationStore.purgeExpired(now: $0) }),
                        ("login failures", { try await localThrottle.purgeExpired(now: $0) }),
                        Self.trimUnrelayed { try await store.trimOutbox(keeping: $0) }],
                clock: clock, interval: .seconds(600), logger: logger
            )]
            migrator = nil
            storeSummary = "sqlite(\(settings.sqlitePath))"
        } else {
            let store = InMemoryUserStore(revocations: InMemoryRevocationStore(clock: clock))
            (users, outbox, revocations) = (store, store, store.revocations)
            throttle = InMemoryLoginThrottle(limits: limits)
            migrator = nil
            storeSummary = "in-memory"
        }
        let handler = IdentityCommandHandler(users: users, outbox: outbox, revocations: revocations, tokens: tokens, clock: clock)
        var bus: any CommandBus = InProcessCommandBus(handler: handler)
        var busSummary = "in-process"
        if let broker, let rabbitmq = settings.rabbitmq {
            guard let keys = settings.commandSigningKeys else {
                throw ConfigurationError("RABBITMQ_HOST is set, so COMMAND_SIGNING_KEY must be too")
            }
            bus = broker.commandBus(local: handler, keys: keys)
            let consumes = role != .serve(worker: false)
            if consumes {
                var fault: (@Sendable (CommandEnvelope) -> Void)?
                if settings.exitBeforeAcknowledging {
                    // Fault injection for the redelivery test: die after the commit, before the ack.
                    fault = { _ in _exit(86) }
                }
                _ = broker.worker(handler: handler, keys: keys, beforeAcknowledging: fault)
            }
            // Key ids, never keys: which key signs, and how many more are accepted.
            let accepted = keys.keyIDs.count > 1 ? "+\(keys.keyIDs.count - 1)" : ""
            busSummary = "amqp(\(rabbitmq.summary)) worker=\(consumes ? "on" : "off") signing-key=\(keys.keyIDs[0])\(accepted)"
        }
        self.service = IdentityService(IdentityDependencies(
            users: users, outbox: outbox, revocations: revocations, hasher: Argon2idHasher(
                parameters: argon2, pool: Argon2idHasher.makePool(), metrics: factory, yieldsToOtherWork: true,
                queueLimit: settings.hashQueueLimit
            ),
            tokens: tokens, throttle: throttle, bus: MeasuredCommandBus(bus, factory: factory),
            clock: clock
        ))
        if metrics != nil {
            services.append(OutboxLagSampler(outbox: outbox, clock: clock, factory: factory, logger: logger))
        }
        self.readiness = readiness
        self.services = services
        self.summary = "store=\(storeSummary) bus=\(busSummary) hasher=argon2id(\(argon2),queue=\(settings.hashQueueLimit)) tokens=\(settings.tokens.algorithm.rawValue)"
    }

    /// Without a broker nothing relays events: a store keeps only the newest, as the in-memory
    /// outbox does.
    private static func trimUnrelayed(
        _ trim: @escaping @Sendable (Int) async throws -> Int
    ) -> (name: String, purge: ExpiryPurge.Task) {
        ("unrelayed events", { _ in try await trim(10_000) })
    }

    /// Opens the embedded store's file (migrating it), or stops start-up with one line (exit 69).
    private static func openSQLite(_ path: String, logger: Logger) async throws -> IdentitySQLiteDatabase {
        do {
            return try await IdentitySQLiteDatabase.open(path: path, logger: logger)
        } catch {
            exitCannotStart("\(error)")
        }
    }

    /// How long start-up waits for PostgreSQL before giving up with one line.
    static let startupDeadline: Duration = .seconds(10)

    /// Work before the server accepts requests: the schema must be current, and the dummy hash made.
    func prepare() async throws {
        if let migrator {
            try await PostgresMigrator.withDeadline(Self.startupDeadline) { try await migrator.ensureCurrent() }
        }
        try await service.warmUp()
    }
}
