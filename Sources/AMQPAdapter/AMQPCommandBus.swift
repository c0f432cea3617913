public import IdentityPorts
import IdentityDomain
import Foundation
import Synchronization
import IdentityAdapterSupport
import Tracing

/// The distributed-mode command bus (contract §6): a command becomes a persistent message on
/// `identity.commands` with `message_id`, `correlation_id` and `reply_to`, and the caller
/// awaits a worker's reply on this instance's exclusive reply queue. With the broker down it
/// fails at once, and after `AMQPConfiguration.commandTimeout` without a reply it gives up; both
/// throw `BackendUnavailable` (503). Every command carries a MAC made with the first of
/// `CommandSigningKeys` (header `x-identity-mac`), without which no worker applies it.
///
/// `RevokeToken` does not travel: it is applied by `local` in this process, straight to the
/// database, so that a logout is durable before its 204 and works while the broker is down.
public final class AMQPCommandBus: CommandBus, Sendable {
    private let connection: BrokerConnection
    private let local: any CommandHandler
    private let keys: CommandSigningKeys
    private let timeout: Duration
    private let state = Mutex(State())

    private struct State {
        var replyQueue: String?
        var waiting: [String: CheckedContinuation<CommandReply, any Error>] = [:]
    }

    init(connection: BrokerConnection, local: any CommandHandler, keys: CommandSigningKeys) {
        self.connection = connection
        self.local = local
        self.keys = keys
        self.timeout = connection.settings.commandTimeout
        connection.add(ReplyConsumer(bus: self))
    }

    public func dispatch(_ envelope: CommandEnvelope) async throws -> CommandReply {
        if case .revokeToken = envelope.command {
            return try await local.handle(envelope)
        }
        return try await traced("send", envelope) { try await send(envelope) }
    }

    /// Publishes `envelope` without a reply queue or deadline and returns once the broker has
    /// confirmed it (a persistent message: a worker applies it whenever one is up); throws
    /// `BackendUnavailable` when the broker is down or does not confirm within the command
    /// timeout. `RevokeToken` is applied locally, as by `dispatch`.
    public func post(_ envelope: CommandEnvelope) async throws {
        if case .revokeToken = envelope.command {
            _ = try await local.handle(envelope)
            return
        }
        try await traced("post", envelope) {
            guard connection.isConnected else { throw BackendUnavailable(backend: "rabbitmq") }
            let message = message(envelope, replyTo: nil)
            try await Deadline.run(timeout, timeoutError: { BackendUnavailable(backend: "rabbitmq") }) { [self] in
                try await publish(message)
            }
        }
    }

    /// Runs `body` in a producer span for the command; its context travels in the message's
    /// headers, so that the worker's span is its child.
    private func traced<T: Sendable>(_ verb: String, _ envelope: CommandEnvelope, _ body: () async throws -> T) async throws -> T {
        try await withSpan("\(verb) \(envelope.command.name)", ofKind: .producer) { span in
            TraceHeaders.describe(span, operation: "send", command: envelope.command.name, messageID: envelope.messageID)
            return try await body()
        }
    }

    /// The command's body and signed properties. With `replyTo` (a caller waiting), the message
    /// expires, and carries a deadline, when the caller stops waiting.
    private func message(_ envelope: CommandEnvelope, replyTo: String?) -> (body: Data, properties: MessageProperties) {
        let id = envelope.messageID
        let body = CommandWire.body(of: envelope.command)
        var properties = MessageProperties(
            messageID: id, correlationID: id, replyTo: replyTo, type: envelope.command.name, traceHeaders: TraceHeaders.current()
        )
        if replyTo != nil {
            let timeoutMilliseconds = timeout.wholeMilliseconds
            properties.expirationMilliseconds = timeoutMilliseconds
            properties.deadlineMilliseconds = Date().epochMilliseconds + Int64(timeoutMilliseconds)
        }
        return (body, keys.sign(properties, body: body))
    }

    private func publish(_ message: (body: Data, properties: MessageProperties)) async throws {
        try await connection.publish(exchange: "", routingKey: AMQPTopology.commandQueue, body: message.body, properties: message.properties)
    }

    private func send(_ envelope: CommandEnvelope) async throws -> CommandReply {
        guard let replyQueue = state.withLock({ $0.replyQueue }), connection.isConnected else {
            throw BackendUnavailable(backend: "rabbitmq")
        }
        let id = envelope.messageID
        let message = message(envelope, replyTo: replyQueue)
        // At the deadline the caller gets 503 and the body is cancelled, which forgets the wait.
        return try await Deadline.run(timeout, timeoutError: { BackendUnavailable(backend: "rabbitmq") }) { [self] in
            try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { continuation in
                    state.withLock { $0.waiting[id] = continuation }
                    if Task.isCancelled { return finish(id, with: .failure(CancellationError())) }
                    Task {
                        do {
                            try await publish(message)
                        } catch {
                            finish(id, with: .failure(error))
                        }
                    }
                }
            } onCancel: {
                finish(id, with: .failure(CancellationError()))
            }
        }
    }

    /// Resumes the caller waiting for `id`, if it still is.
    fileprivate func finish(_ id: String, with result: Result<CommandReply, any Error>) {
        state.withLock { $0.waiting.removeValue(forKey: id) }?.resume(with: result)
    }

    fileprivate func setReplyQueue(_ name: String?) {
        let orphaned = state.withLock { state in
            state.replyQueue = name
            guard name == nil else { return [CheckedContinuation<CommandReply, any Error>]() }
            // The exclusive reply queue died with the connection: no reply can come any more.
            defer { state.waiting.removeAll() }
            return Array(state.waiting.values)
        }
        for continuation in orphaned { continuation.resume(throwing: BackendUnavailable(backend: "rabbitmq")) }
    }

    /// Declares the command queues and consumes this instance's reply queue.
    private struct ReplyConsumer: BrokerClient {
        let bus: AMQPCommandBus

        func setUp(_ session: BrokerSession) throws(BrokerError) -> [String] {
            try declareCommandQueues(session)
            let queue = try session.declareQueue(nil)
            let tag = try session.consume(queue, noAck: true)
            bus.setReplyQueue(queue)
            return [tag]
        }

        func receive(_ delivery: Delivery) {
            guard let id = delivery.correlationID else { return }
            bus.finish(id, with: Result { try CommandWire.reply(from: delivery.body) })
        }

        func disconnected() {
            bus.setReplyQueue(nil)
        }
    }
}

/// The durable command queue (quorum, dead-lettering after `AMQPTopology.deliveryLimit`
/// redeliveries) and its dead-letter queue; declared by senders and workers alike.
func declareCommandQueues(_ session: BrokerSession) throws(BrokerError) {
    try session.declareQueue(AMQPTopology.deadLetterQueue)
    try session.declareWorkQueue(
        AMQPTopology.commandQueue, deadLetterQueue: AMQPTopology.deadLetterQueue, deliveryLimit: AMQPTopology.deliveryLimit
    )
}

extension Duration {
    /// The duration in whole milliseconds (librabbitmq's and AMQP's unit).
    var wholeMilliseconds: Int {
        let parts = components
        return Int(parts.seconds) * 1000 + Int(parts.attoseconds / 1_000_000_000_000_000)
    }
}
