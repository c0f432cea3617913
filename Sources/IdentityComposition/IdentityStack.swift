public import CryptoAdapter
import Foundation
import Synchronization
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
    public private(set) var services: [any Service]
    /// One line for the start-up log: stores, transport, hasher, token algorithm; no secret.
    public private(set) var summary: String
    private let stores: IdentityStores
    private let schema: SchemaPolicy
    /// Opened at the end of `prepare()` (the schema current, the stored keys opened): the
    /// background work that writes (mail delivery, key rotation) waits for it.
    private let prepared: PreparedGate
    /// The key pairs, with ES256 or EdDSA.
    private var keyRing: KeyRing?

    /// Composes Identity on `store` with Argon2id hashing and JWT tokens as `configuration`
    /// sets them, commands carried by `transport`.
    public static func make(
        store: IdentityStore, transport: CommandTransport = .inProcess, configuration: IdentityConfiguration
    ) async throws -> IdentityStack {
        let hasher = Argon2idHasher(
            parameters: configuration.argon2, pool: Argon2idHasher.makePool(), metrics: configuration.metricsFactory,
            yieldsToOtherWork: true, queueLimit: configuration.hashQueueLimit
        )
        let stores = try await store.open(configuration)
        var tokenConfiguration = configuration.tokens
        var ring: KeyRing?
        if tokenConfiguration.algorithm.isAsymmetric, tokenConfiguration.signingKeys == nil {
            ring = try keyRing(for: store, stores: stores, configuration: configuration)
            tokenConfiguration = tokenConfiguration.signing(with: ring!.keys)
        }
        let tokens = await JWTTokenService(configuration: tokenConfiguration)
        var stack = try assemble(
            stores: stores, hasher: hasher, tokens: tokens, transport: transport,
            clock: configuration.clock, ids: configuration.ids, logger: configuration.logger, metrics: configuration.metrics,
            purgeInterval: configuration.purgeInterval, schema: configuration.schema, mail: configuration.mail
        )
        stack.summary += " hasher=argon2id(\(configuration.argon2),queue=\(configuration.hashQueueLimit))"
            + " tokens=\(configuration.tokens.algorithm.rawValue)"
        if let ring {
            stack.keyRing = ring
            stack.services.append(SigningKeyMaintenance(ring: ring, after: stack.prepared, logger: configuration.logger))
            stack.summary += "(rotation=\(Self.days(configuration.keyPairs?.rotationInterval ?? KeyPairSigning.defaultRotationInterval)))"
        }
        return stack
    }

    /// The key pairs for `configuration`'s ES256 or EdDSA, over `stores.signingKeys`.
    private static func keyRing(for store: IdentityStore, stores: IdentityStores, configuration: IdentityConfiguration) throws -> KeyRing {
        let tokens = configuration.tokens
        let settings: KeyPairSigning
        if let keyPairs = configuration.keyPairs {
            settings = keyPairs
        } else if case .inMemory = store {
            // The keys live and die with the process: nothing sealed now is opened after it.
            settings = KeyPairSigning(keyEncryptionKey: .random())
        } else {
            throw IdentityCompositionError(
                "JWT_ALGORITHM=\(tokens.algorithm.rawValue) needs JWT_KEY_ENCRYPTION_KEY (at least \(KeyEncryptionKey.minimumLength) bytes) "
                    + "to seal the signing keys in \(stores.summary)"
            )
        }
        do {
            let policy = try SigningKeyPolicy(
                algorithm: tokens.algorithm, tokenLifetime: tokens.lifetime, leeway: tokens.leeway, rotationInterval: settings.rotationInterval
            )
            let keys = try SigningKeys(
                store: stores.signingKeys, algorithm: tokens.algorithm, keyEncryptionKey: settings.keyEncryptionKey, clock: configuration.clock
            )
            let rotator = SigningKeyRotator(
                store: stores.signingKeys, policy: policy, keyEncryptionKey: settings.keyEncryptionKey, clock: configuration.clock
            )
            return KeyRing(keys: keys, rotator: rotator, store: stores.signingKeys, checkInterval: settings.checkInterval)
        } catch let error as TokenConfigurationError {
            throw IdentityCompositionError(error.description)
        }
    }

    private static func days(_ interval: TimeInterval) -> String {
        interval.truncatingRemainder(dividingBy: 86_400) == 0 ? "\(Int(interval / 86_400))d" : "\(Int(interval))s"
    }

    /// Composes Identity from stores, a hasher and a token service already made: the one place
    /// where the write side, the bus and the use cases are put together. The other values are
    /// those of ``IdentityConfiguration``.
    public static func assemble(
        stores: IdentityStores, hasher: any PasswordHasher, tokens: any TokenService, transport: CommandTransport = .inProcess,
        clock: any IdentityClock = SystemClock(), ids: any IDGenerator = RandomIDGenerator(),
        logger: Logger = Logger(label: "identity"), metrics: (any MetricsFactory)? = nil, purgeInterval: Duration = .seconds(600),
        schema: SchemaPolicy = .requireCurrent, mail: MailSetup? = nil
    ) throws -> IdentityStack {
        let factory = metrics ?? MetricsSystem.factory
        let prepared = PreparedGate()
        var mailing: AccountMailing?
        var delivery: MailDeliveryService?
        if let mail {
            guard let accountTokens = stores.accountTokens, let mailOutbox = stores.mailOutbox else {
                throw IdentityCompositionError("mail needs stores that keep account tokens and a mail outbox; \(stores.summary) keeps none")
            }
            mailing = AccountMailing(tokens: accountTokens, minting: mail.minting, policy: mail.policy)
            let deliverer = MailDelivery(
                outbox: mailOutbox, mailer: mail.mailer, composer: mail.composer, minting: mail.minting, tokens: accountTokens, clock: clock,
                policy: mail.delivery
            )
            delivery = MailDeliveryService(
                delivery: deliverer, outbox: mailOutbox, pollInterval: mail.pollInterval, factory: factory, logger: logger, after: prepared
            )
        }
        let handler = IdentityCommandHandler(
            users: stores.users, outbox: stores.outbox, revocations: stores.revocations, tokens: tokens, sessions: stores.sessions,
            mailing: mailing, clock: clock, ids: ids
        )
        var services = stores.services
        var readiness = stores.readiness
        var purges = stores.purges
        let bus: any CommandBus
        let transportSummary: String
        switch transport {
        case .inProcess:
            bus = InProcessCommandBus(handler: handler) { failure in
                // Given up (lost) is an error; an attempt that will be tried again a warning.
                logger.log(level: failure.retryIn == nil ? .error : .warning, "\(failure)", metadata: ["command": "\(failure.command)"])
            }
            transportSummary = "in-process"
            if let delivery { services.append(delivery) }
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
                // Mail goes out where commands are applied: on the workers.
                if let delivery { services.append(delivery) }
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
            ids: ids, mailing: mailing
        ))
        return IdentityStack(
            service: service, commandHandler: handler, readiness: readiness, services: services,
            summary: "store=\(stores.summary) bus=\(transportSummary)" + (mail == nil ? "" : " mail=on"), stores: stores, schema: schema,
            prepared: prepared
        )
    }

    /// The work before the first request: the schema current (as `configuration.schema`
    /// says), and the dummy hash that keeps unknown-email logins as slow as others made.
    /// Run it once the store's services have started, e.g. in `beforeServerStarts`.
    ///
    /// With ES256 or EdDSA it then opens the stored keys (a `SigningKeyError` when they do not
    /// open: the wrong `JWT_KEY_ENCRYPTION_KEY`), runs the rotation once (the first start makes
    /// a key) and reads the keys again. The keys are opened before anything is written, so an
    /// instance with the wrong key-encryption key never stores a key the others cannot open.
    public func prepare() async throws {
        try await stores.prepare(schema)
        if keyRing != nil {
            try await maintainSigningKeys()
        }
        try await service.warmUp()
        prepared.open()
    }

    // MARK: signing keys

    /// Makes a new signing key now (`DemoServer keys rotate`): published at once, signing from
    /// the publication lead (600 s) on, unless a key is already waiting to sign. Returns the
    /// key made, or nil when none was. Run `prepare()` first. Throws `IdentityCompositionError`
    /// when tokens are signed with a shared secret.
    @discardableResult
    public func rotateSigningKeys() async throws -> SigningKeyRecord? {
        let ring = try requireKeyRing()
        // Opened first: a key-encryption key that does not open the stored keys writes nothing.
        try await ring.keys.refresh()
        let before = Set(try await ring.store.keySet().keys.map(\.kid))
        try await ring.rotator.rotate(rotateNow: true)
        try await ring.keys.refresh()
        return try await ring.store.keySet().keys.first { !before.contains($0.kid) }
    }

    /// Runs the rotation as the background service does (a key when one is due, promotions,
    /// retirements, unpublications) and reads the keys again; returns the steps taken. Like
    /// `rotateSigningKeys()`, it opens the stored keys first and writes nothing if they do not open.
    /// Throws `IdentityCompositionError` when tokens are signed with a shared secret.
    @discardableResult
    public func maintainSigningKeys() async throws -> [SigningKeyStep] {
        let ring = try requireKeyRing()
        try await ring.keys.refresh()
        let steps = try await ring.rotator.rotate()
        try await ring.keys.refresh()
        return steps
    }

    /// Every stored signing key, oldest first (`DemoServer keys list`). Throws
    /// `IdentityCompositionError` when tokens are signed with a shared secret.
    public func signingKeyRecords() async throws -> [SigningKeyRecord] {
        try await requireKeyRing().store.keySet().keys
    }

    private func requireKeyRing() throws -> KeyRing {
        guard let keyRing else {
            throw IdentityCompositionError("tokens are signed with JWT_SECRET (an HMAC algorithm): there are no key pairs; set JWT_ALGORITHM to ES256 or EdDSA")
        }
        return keyRing
    }
}
