public import IdentityPorts
public import Logging
public import ServiceLifecycle

/// One process's link to RabbitMQ: a single connection on its own thread, shared by the
/// pieces made from it (command bus, worker, event publisher).
///
/// Make the pieces first, then run the broker as a service (or call `start()`/`stop()`):
/// each piece declares what it needs on every (re)connect. While the broker is unreachable
/// the connection retries with exponential backoff (0.1 s doubling to 5 s) and the pieces
/// fail fast or fall back as their documentation says.
public final class AMQPBroker: Service, Sendable {
    let connection: BrokerConnection
    private let logger: Logger

    /// Creates the broker link; nothing connects before `run()` or `start()`.
    public init(configuration settings: AMQPConfiguration, logger: Logger = Logger(label: "identity.amqp")) {
        self.connection = BrokerConnection(settings: settings, logger: logger)
        self.logger = logger
    }

    /// Whether the connection is up right now.
    public var isConnected: Bool { connection.isConnected }

    /// A command bus over the broker that signs every command with the first of `keys`;
    /// `local` applies the commands that do not travel (`RevokeToken`).
    public func commandBus(local: any CommandHandler, keys: CommandSigningKeys) -> AMQPCommandBus {
        AMQPCommandBus(connection: connection, local: local, keys: keys)
    }

    /// A worker that applies commands from `identity.commands` with `handler`, up to
    /// `prefetch` at a time, if one of `keys` verifies their MAC (otherwise it dead-letters
    /// them). `beforeAcknowledging` runs after a command is applied and before its reply and
    /// acknowledgement: a hook for fault-injection tests.
    public func worker(
        handler: any CommandHandler, keys: CommandSigningKeys, prefetch: Int = 16,
        beforeAcknowledging: (@Sendable (CommandEnvelope) -> Void)? = nil
    ) -> AMQPCommandWorker {
        AMQPCommandWorker(
            connection: connection, handler: handler, keys: keys, prefetch: max(1, prefetch), logger: logger,
            beforeAcknowledging: beforeAcknowledging
        )
    }

    /// Publishes events to `identity.events`.
    public func eventPublisher() -> AMQPEventPublisher {
        AMQPEventPublisher(connection: connection)
    }

    /// Starts the connection thread.
    public func start() {
        connection.start()
    }

    /// Closes the connection and ends its thread.
    public func stop() {
        connection.stop()
    }

    /// Runs until graceful shutdown, then closes the connection.
    public func run() async throws {
        start()
        await withGracefulShutdownHandler {
            try? await gracefulShutdown()
        } onGracefulShutdown: {}
        await Task.detached { [connection] in connection.stop() }.value
    }
}

/// Readiness: the broker connection is up.
public struct AMQPHealthCheck: HealthCheck {
    private let broker: AMQPBroker
    public let backendName = "rabbitmq"

    /// Creates the check for `broker`.
    public init(broker: AMQPBroker) {
        self.broker = broker
    }

    public func checkHealth() async throws {
        guard broker.isConnected else { throw BackendUnavailable(backend: backendName) }
    }
}
