import AMQPAdapter
import Foundation
import IdentityComposition
import IdentityPorts
import Logging

/// The configuration's choice of store and transport, as one call to the composition API.
enum Wiring {
    /// What the process does with commands.
    enum Role: Sendable, Equatable {
        /// HTTP; with a broker, also a worker unless `worker` is false.
        case serve(worker: Bool)
        /// A broker worker only: no HTTP.
        case worker
    }

    /// Composes the stack the configuration chooses; with `metrics`, it records into its registry.
    static func stack(
        settings: ServerConfiguration, logger: Logger, metrics: ServerMetrics? = nil, role: Role = .serve(worker: true)
    ) async throws -> IdentityStack {
        if role == .worker, settings.rabbitmq == nil {
            throw ConfigurationError("RABBITMQ_HOST must be set for `DemoServer worker` (without a broker there are no commands to consume)")
        }
        if settings.mail.smtp != nil, settings.publicBaseURL == nil {
            logger.warning("SMTP_HOST is set but PUBLIC_BASE_URL is not: mail links point at \(settings.mail.baseURL.absoluteString)")
        }
        if settings.usesRandomJWTSecret {
            logger.warning("JWT_SECRET is unset: using a random secret, so tokens will not survive a restart")
        }
        let store: IdentityStore
        if let postgres = settings.postgres {
            // Our own fixed pool, not PostgresClient: see Docs/decisions.md ("Our own connection pool").
            store = .postgres(postgres, timeout: settings.postgresTimeout)
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
        return try await IdentityStack.make(store: store, transport: transport, configuration: IdentityConfiguration(
            tokens: settings.tokens, keyPairs: settings.keyPairs, argon2: settings.argon2, hashQueueLimit: settings.hashQueueLimit, throttle: settings.throttle,
            sessions: settings.sessions, mail: try settings.mail.setup(),
            logger: logger, metrics: metrics?.factory
        ))
    }
}
