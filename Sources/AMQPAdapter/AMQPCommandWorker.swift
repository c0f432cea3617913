import IdentityPorts
import IdentityDomain
import Foundation
import Logging
import Tracing

/// Consumes `identity.commands` and applies each command with `handler` (contract §6).
///
/// The handler runs under `CommandContext.messageID`, so the stores record the message id in
/// the transaction of the change and a redelivered command is applied once. The reply goes
/// to the message's `reply_to`, and the message is acknowledged only after that: a worker
/// that dies first leaves it to be redelivered. A message without a MAC that one of
/// `CommandSigningKeys` verifies is dead-lettered unapplied and unanswered, with one warning
/// that names neither its body nor a key. A message that cannot be decoded, or whose
/// command fails on an infrastructure error (the caller is told 503), is dead-lettered to
/// `identity.commands.dlq`; a posted command (no `reply_to`: its caller waits for nothing)
/// that fails so goes back to the queue after a pause instead. One that keeps killing workers,
/// or failing, is dead-lettered by the broker on its fifth delivery.
public final class AMQPCommandWorker: Sendable {
    private let connection: BrokerConnection
    private let handler: any CommandHandler
    private let keys: CommandSigningKeys
    private let prefetch: Int
    private let logger: Logger
    private let beforeAcknowledging: (@Sendable (CommandEnvelope) -> Void)?

    init(
        connection: BrokerConnection, handler: any CommandHandler, keys: CommandSigningKeys, prefetch: Int, logger: Logger,
        beforeAcknowledging: (@Sendable (CommandEnvelope) -> Void)?
    ) {
        self.connection = connection
        self.handler = handler
        self.keys = keys
        self.prefetch = prefetch
        self.logger = logger
        self.beforeAcknowledging = beforeAcknowledging
        connection.add(Consumer(worker: self))
    }

    /// Processes `delivery` in a consumer span whose parent is the sender's span, carried in the
    /// message's trace headers: followed only when the MAC verifies, since they are not signed.
    private func process(_ delivery: Delivery) async {
        let verification = keys.verify(delivery)
        var context = ServiceContext.topLevel
        if case .success = verification { context = TraceHeaders.context(from: delivery.traceHeaders) }
        let command = TraceHeaders.commandName(delivery.type)
        await withSpan("process \(command)", context: context, ofKind: .consumer) { span in
            TraceHeaders.describe(span, operation: "process", command: command, messageID: delivery.messageID)
            if delivery.deliveryCount > 0 { span.attributes["messaging.rabbitmq.delivery_count"] = delivery.deliveryCount + 1 }
            await apply(delivery, verification: verification, span: span)
        }
    }

    private func apply(_ delivery: Delivery, verification: Result<String, CommandMAC.Refusal>, span: any Span) async {
        if case .failure(let refusal) = verification {
            span.setStatus(SpanStatus(code: .error, message: "no valid MAC"))
            // Not from an identity process (or altered on the way): never applied, never
            // answered (its reply_to is as untrusted as the rest).
            logger.warning("dead-lettering a command without a valid MAC", metadata: [
                "reason": "\(refusal)", "message_id": "\(Self.loggable(delivery.messageID))",
            ])
            settle(delivery, reply: nil, requeue: false)
            return
        }
        let envelope: CommandEnvelope
        do {
            guard let id = delivery.messageID, !id.isEmpty else {
                throw CommandWire.Undecodable(description: "no message_id")
            }
            envelope = CommandEnvelope(messageID: id, command: try CommandWire.command(type: delivery.type, body: delivery.body))
        } catch {
            span.setStatus(SpanStatus(code: .error, message: "undecodable"))
            logger.error("dead-lettering a command that cannot be decoded", metadata: ["reason": "\(error)"])
            settle(delivery, reply: nil, requeue: false)
            return
        }
        var metadata: Logger.Metadata = ["command": "\(envelope.command.name)", "message_id": "\(envelope.messageID)"]
        if let deadline = delivery.deadlineMilliseconds, !delivery.redelivered,
           Date().epochMilliseconds > deadline
        {
            // Its caller has been told 503 already: applying it now would surprise them. (A
            // redelivery is applied anyway: an earlier delivery may have applied it, and the
            // store's record of that decides.)
            span.setStatus(SpanStatus(code: .error, message: "past its deadline"))
            logger.warning("dead-lettering a command whose caller stopped waiting", metadata: metadata)
            settle(delivery, reply: nil, requeue: false)
            return
        }
        if delivery.deliveryCount > 0 { metadata["delivery"] = "\(delivery.deliveryCount + 1)" }
        do {
            let reply = try await CommandContext.$messageID.withValue(envelope.messageID) {
                try await handler.handle(envelope)
            }
            logger.debug("applied a command", metadata: metadata)
            beforeAcknowledging?(envelope)
            settle(delivery, reply: CommandWire.body(of: reply), requeue: nil)
        } catch {
            let backend = (error as? BackendUnavailable)?.backend ?? "worker"
            metadata["error"] = "\(error)"
            span.recordError(error)
            span.setStatus(SpanStatus(code: .error))
            if delivery.replyTo == nil, error is BackendUnavailable {
                // A posted command (`CommandBus.post`): its caller was told it was accepted and
                // waits for nothing, so it goes back to the queue after a pause (2, 4, 8, 16 s:
                // an outage of half a minute loses nothing), until the broker's delivery limit
                // dead-letters it.
                let pause = Duration.seconds(min(16, 2 << min(delivery.deliveryCount, 3)))
                metadata["retry_in"] = "\(pause)"
                logger.warning("a posted command failed; returning it to the queue", metadata: metadata)
                try? await Task.sleep(for: pause)
                settle(delivery, reply: nil, requeue: true)
                return
            }
            // The caller learns at once; the command goes to the dead-letter queue, not back
            // to the queue, so that it cannot take effect after its caller was told 503.
            logger.warning("a command failed; replying 503 and dead-lettering it", metadata: metadata)
            settle(delivery, reply: CommandWire.unavailableBody(backend: backend), requeue: false)
        }
    }

    /// An untrusted property, fit for a log line: at most 64 characters, printable ASCII only.
    static func loggable(_ value: String?) -> String {
        guard let value else { return "(none)" }
        return String(value.prefix(64).map { $0.isASCII && ($0.isLetter || $0.isNumber || "-_.:".contains($0)) ? $0 : "?" })
    }

    /// Replies (when there is a reply to send and somewhere to send it), then acknowledges,
    /// or with `requeue` set returns (true) or dead-letters (false) the message. On a newer
    /// connection than the delivery's, nothing is done: the broker redelivers it.
    private func settle(_ delivery: Delivery, reply: Data?, requeue: Bool?) {
        connection.enqueue(
            BrokerConnection.Job(
                run: { session throws(BrokerError) in
                    if let reply, let replyTo = delivery.replyTo {
                        try session.publish(
                            exchange: "", routingKey: replyTo, body: reply,
                            properties: MessageProperties(correlationID: delivery.correlationID ?? delivery.messageID, persistent: false)
                        )
                    }
                    if let requeue {
                        try session.nack(delivery.tag, requeue: requeue)
                    } else {
                        try session.ack(delivery.tag)
                    }
                },
                fail: {}
            ),
            onGeneration: delivery.generation
        )
    }

    private struct Consumer: BrokerClient {
        let worker: AMQPCommandWorker

        func setUp(_ session: BrokerSession) throws(BrokerError) -> [String] {
            try declareCommandQueues(session)
            try session.prefetch(worker.prefetch)
            return [try session.consume(AMQPTopology.commandQueue, noAck: false)]
        }

        func receive(_ delivery: Delivery) {
            Task { await worker.process(delivery) }
        }
    }
}
