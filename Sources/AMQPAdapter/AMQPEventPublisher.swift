public import IdentityPorts
public import IdentityDomain
import Foundation
import IdentityAdapterSupport

/// Publishes events to the durable topic exchange `identity.events` (contract §6): routing key
/// and `type` the event type, `message_id` the event id, persistent, body the event document
/// of `EventCodec`. Returns once the broker has confirmed every one.
public final class AMQPEventPublisher: EventPublisher, Sendable {
    private let connection: BrokerConnection

    init(connection: BrokerConnection) {
        self.connection = connection
        connection.add(Declarer())
    }

    public func publish(_ events: [IdentityEvent]) async throws {
        let messages = events.map { event in
            OutgoingMessage(
                exchange: AMQPTopology.eventExchange, routingKey: event.type, body: EventCodec.document(of: event),
                properties: MessageProperties(messageID: event.eventID.uuidString.lowercased(), type: event.type)
            )
        }
        try await connection.publish(messages)
    }

    private struct Declarer: BrokerClient {
        func setUp(_ session: BrokerSession) throws(BrokerError) -> [String] {
            try session.declareExchange(AMQPTopology.eventExchange, type: "topic")
            return []
        }
    }
}
