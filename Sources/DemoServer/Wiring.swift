import AMQPAdapter
import CryptoAdapter
import Foundation
import IdentityPorts
import IdentityComposition
import Logging
import PostgresAdapter

/// The settings' choice of store and transport, as one call to the composition API.
enum Wiring {
    /// What the process does with commands.
    enum Role: Sendable, Equatable {
        /// HTTP; with a broker, also a worker unless `worker` is false.
        case serve(worker: Bool)
        /// A broker worker only: no HTTP.
        case worker
    }

    /// Composes the stack the settings choose; with `metrics`, it records into its registry.
    static func stack(settings: Settings, logger: Logger, metrics: ServerMetrics? = nil, role: Role = .serve(worker: true)) async throws
        -> IdentityStack
    {
        if role == .worker, settings.rabbitmq == nil {
            throw ConfigurationError("RABBITMQ_HOST must be set for `DemoServer worker` (without a broker there are no commands to consume)")
        }
        let configuration = IdentityConfiguration(
            tokens: try tokens(settings, logger: logger), argon2: try argon2(settings), hashQueueLimit: settings.hashQueueLimit,
            throttle: LoginThrottleConfiguration(
                maxFailuresPerEmail: settings.loginMaxFailures, maxFailuresPerClient: settings.loginMaxFailuresPerClient,
                window: TimeInterval(settings.loginFailureWindowSeconds)
            ),
            logger: logger, metrics: metrics?.factory
        )
        let store: IdentityStore
        if let postgres = settings.postgres {
            // Our own fixed pool, not PostgresClient: see Docs/decisions.md ("Our own connection pool").
            store = .postgres(postgres, timeout: .seconds(settings.postgresTimeoutSeconds))
        } else if settings.sqlitePath != ":memory:" {
            store = .sqlite(path: settings.sqlitePath)
        } else {
            store = .inMemory
        }
        var transport = CommandTransport.inProcess
        if let rabbitmq = settings.rabbitmq, let keys = settings.commandSigningKeys {
            // Fault injection for the redelivery test: die after the commit, before the ack.
            var fault: (@Sendable (CommandEnvelope) -> Void)?
            if settings.exitBeforeAcknowledging { fault = { _ in _exit(86) } }
            transport = .amqp(rabbitmq, signingKeys: keys, consumesCommands: role != .serve(worker: false), beforeAcknowledging: fault)
        }
        return try await IdentityStack.make(store: store, transport: transport, configuration: configuration)
    }

    private static func tokens(_ settings: Settings, logger: Logger) throws -> TokenConfiguration {
        let secret: String
        if let configured = settings.jwtSecret {
            secret = configured
        } else {
            secret = TokenConfiguration.randomSecret()
            logger.warning("JWT_SECRET is unset: using a random secret, so tokens will not survive a restart")
        }
        do {
            return try TokenConfiguration(
                secret: secret, algorithm: JWTAlgorithm(rawValue: settings.jwtAlgorithm) ?? .hs256,
                issuer: settings.jwtIssuer, audience: settings.jwtAudience, lifetime: TimeInterval(settings.jwtExpireMinutes * 60)
            )
        } catch {
            throw ConfigurationError("JWT_SECRET: \(error)")
        }
    }

    private static func argon2(_ settings: Settings) throws -> Argon2Configuration {
        do {
            return try Argon2Configuration(
                memoryKiB: settings.argon2MemoryKiB, iterations: settings.argon2Iterations, parallelism: settings.argon2Parallelism
            )
        } catch {
            throw ConfigurationError("ARGON2_*: \(error)")
        }
    }
}
