import CryptoAdapter
public import IdentityApplication
public import IdentityPorts
public import ServiceLifecycle
public import CoreMetrics
public import Logging
import InMemoryAdapter
#if RabbitMQ
import AMQPAdapter
#endif

/// Identity composed on chosen stores: the use cases, the health checks, and the background
/// work a host runs in its `ServiceGroup`.
///
/// ```swift
/// let identity = try await IdentityStack.make(
///     store: .postgresClient(client, configuration: postgres),
///     configuration: IdentityConfiguration(tokens: try TokenConfiguration(secret: secret))
/// )
/// IdentityHTTP.addRoutes(to: router, atPath: "/identity", service: identity.service)
/// var app = Application(router: router, services: [client] + identity.services)
/// app.beforeServerStarts { try await identity.prepare() }
/// ```
///
/// `services` holds, as each store and transport needs them: the connection pool the stack
/// made, the PostgreSQL revocation feed, the broker connection, the outbox relay (with a
/// broker) or outbox trimming (without), the expiry purge and the outbox-lag sampler.
public struct IdentityStack: Sendable {
    /// The use cases, for a driving adapter (`IdentityHTTP`) or the host's own code.
    public let service: IdentityService
    /// The write side: what a worker applies commands with.
    public let commandHandler: IdentityCommandHandler
    /// What readiness asks (`/health/ready`).
    public let readiness: [any HealthCheck]
    /// The background work, to run beside the server.
    public let services: [any Service]
    /// One line for the start-up log: stores, transport, hasher, token algorithm; no secret.
    public private(set) var summary: String
    private let stores: IdentityStores
    private let schema: SchemaPolicy

    /// Composes Identity on `store` with Argon2id hashing and JWT tokens as `configuration`
    /// sets them, commands carried by `transport`.
    public static func make(
        store: IdentityStore, transport: CommandTransport = .inProcess, configuration: IdentityConfiguration
    ) async throws -> IdentityStack {
        let hasher = Argon2idHasher(
            parameters: configuration.argon2, pool: Argon2idHasher.makePool(), metrics: configuration.metricsFactory,
            yieldsToOtherWork: true, queueLimit: configuration.hashQueueLimit
        )
        let tokens = await JWTTokenService(configuration: configuration.tokens)
        var stack = try assemble(
            stores: try await store.open(configuration), hasher: hasher, tokens: tokens, transport: transport,
            clock: configuration.clock, ids: configuration.ids, logger: configuration.logger, metrics: configuration.metrics,
            purgeInterval: configuration.purgeInterval, schema: configuration.schema
        )
        stack.summary += " hasher=argon2id(\(configuration.argon2),queue=\(configuration.hashQueueLimit))"
            + " tokens=\(configuration.tokens.algorithm.rawValue)"
        return stack
    }

    /// Composes Identity from stores, a hasher and a token service already made: the one place
    /// where the write side, the bus and the use cases are put together. The other values are
    /// those of ``IdentityConfiguration``.
    public static func assemble(
        stores: IdentityStores, hasher: any PasswordHasher, tokens: any TokenService, transport: CommandTransport = .inProcess,
        clock: any IdentityClock = SystemClock(), ids: any IDGenerator = RandomIDGenerator(),
        logger: Logger = Logger(label: "identity"), metrics: (any MetricsFactory)? = nil, purgeInterval: Duration = .seconds(600),
        schema: SchemaPolicy = .requireCurrent
    ) throws -> IdentityStack {
        let factory = metrics ?? MetricsSystem.factory
        let handler = IdentityCommandHandler(
            users: stores.users, outbox: stores.outbox, revocations: stores.revocations, tokens: tokens, sessions: stores.sessions,
            clock: clock, ids: ids
        )
        var services = stores.services
        var readiness = stores.readiness
        var purges = stores.purges
        let bus: any CommandBus
        let transportSummary: String
        switch transport {
        case .inProcess:
            bus = InProcessCommandBus(handler: handler)
            transportSummary = "in-process"
            if let trim = stores.trimOutbox {
                purges.append(.init("unrelayed events") { _ in try await trim(unrelayedEventsKept) })
            }
        #if RabbitMQ
        case .amqp(let amqp, let keys, let consumes, let beforeAcknowledging):
            guard stores.isShared else {
                throw IdentityCompositionError(
                    "a broker needs stores every instance shares (PostgreSQL), not \(stores.summary): workers and HTTP nodes share the database"
                )
            }
            let broker = AMQPBroker(configuration: amqp, logger: logger)
            bus = broker.commandBus(local: handler, keys: keys)
            if consumes {
                _ = broker.worker(handler: handler, keys: keys, beforeAcknowledging: beforeAcknowledging)
            }
            let relay = OutboxRelay(outbox: stores.outbox, publisher: broker.eventPublisher())
            services += [broker, OutboxRelayService(relay: relay, logger: logger)]
            readiness.append(AMQPHealthCheck(broker: broker))
            // Key ids, never keys: which key signs, and how many more are accepted.
            let accepted = keys.keyIDs.count > 1 ? "+\(keys.keyIDs.count - 1)" : ""
            transportSummary = "amqp(\(amqp.summary)) worker=\(consumes ? "on" : "off") signing-key=\(keys.keyIDs[0])\(accepted)"
        #endif
        }
        if !purges.isEmpty {
            services.append(ExpiryPurge(tasks: purges, clock: clock, interval: purgeInterval, logger: logger))
        }
        services.append(OutboxLagSampler(outbox: stores.outbox, clock: clock, factory: factory, logger: logger))
        let service = IdentityService(IdentityDependencies(
            users: stores.users, outbox: stores.outbox, revocations: stores.revocations, hasher: hasher, tokens: tokens,
            throttle: stores.throttle, sessions: stores.sessions, refreshTokens: RefreshTokenSealer(),
            sessionConfiguration: stores.sessionConfiguration, bus: MeasuredCommandBus(bus, factory: factory), clock: clock,
            ids: ids
        ))
        return IdentityStack(
            service: service, commandHandler: handler, readiness: readiness, services: services,
            summary: "store=\(stores.summary) bus=\(transportSummary)", stores: stores, schema: schema
        )
    }

    /// The work before the first request: the schema current (as `configuration.schema`
    /// says), and the dummy hash that keeps unknown-email logins as slow as others made.
    /// Run it once the store's services have started, e.g. in `beforeServerStarts`.
    public func prepare() async throws {
        try await stores.prepare(schema)
        try await service.warmUp()
    }
}
