@testable import AMQPAdapter
import Foundation
import IdentityDomain
import IdentityPorts
import InMemoryAdapter
import IdentityTestSupport
import Synchronization
import Testing

/// The RabbitMQ permissions of Docs/messaging.md ("Who may do what on the broker"), verbatim.
enum DocumentedPermissions {
    static let identity = (
        configure: #"^(identity\.commands|identity\.commands\.dlq|identity\.events|amq\.gen-.*)$"#,
        write: #"^(amq\.default|identity\.events|amq\.gen-.*)$"#,
        read: #"^(identity\.commands|amq\.gen-.*)$"#
    )
    static let declaredConsumer = (configure: "^$", write: "^$", read: #"^billing\.identity-events$"#)
    static let selfDeclaringConsumer = (
        configure: #"^billing\.identity-events$"#, write: #"^billing\.identity-events$"#,
        read: #"^(billing\.identity-events|identity\.events)$"#
    )
}

extension AMQPAdapterTests {
    @Test("under the documented permissions an HTTP node and a worker work, and an event consumer reads its queue but can neither send nor read a command")
    func documentedPermissions() async throws {
        let admin = try await TestBroker.settings(virtualHost: "identity-permissions")
        let keys = try TestBroker.keys()
        let identity = try await TestBroker.user("identity-perm-identity", in: admin, DocumentedPermissions.identity)
        let billing = try await TestBroker.user("identity-perm-billing", in: admin, DocumentedPermissions.declaredConsumer)

        // The operator declares billing's queue and binds it to identity.events.
        let operatorLink = broker(admin)
        defer { operatorLink.stop() }
        _ = operatorLink.eventPublisher()
        operatorLink.start()
        #expect(await eventually { operatorLink.isConnected })
        try await operatorLink.connection.perform { session throws(BrokerError) in
            try session.declareQueue("billing.identity-events")
            try session.bind(queue: "billing.identity-events", exchange: AMQPTopology.eventExchange, routingKey: "#")
        }

        // An HTTP node (`--no-worker`) and a worker, as Wiring makes them; a refused declaration
        // would fail their set-up, and they would never count as connected.
        let (http, worker) = (broker(identity), broker(identity))
        defer { http.stop(); worker.stop() }
        let handler = RecordingHandler(RefusingHandler())
        let bus = http.commandBus(local: handler, keys: keys)
        let events = http.eventPublisher()
        _ = worker.commandBus(local: handler, keys: keys)
        _ = worker.worker(handler: handler, keys: keys)
        _ = worker.eventPublisher()
        http.start()
        worker.start()
        #expect(await eventually { http.isConnected && worker.isConnected })
        let reply = try await bus.dispatch(CommandEnvelope(messageID: "permitted", command: .deleteAccount(DeleteAccount(userID: UserID(UUID())))))
        #expect(reply == .rejected(.userNotFound) && handler.messageIDs == ["permitted"], "a command to the worker and its reply back")
        let user = UserID(UUID())
        try await events.publish([IdentityEvent(eventID: UUID(), occurredAt: Date(), payload: .userDeleted(userID: user))])

        // The consumer reads the event from its queue…
        let consumer = broker(billing)
        defer { consumer.stop() }
        let reader = QueueReader(queue: "billing.identity-events")
        consumer.connection.add(reader)
        consumer.start()
        #expect(await eventually { reader.types == ["user.deleted"] }, "the consumer gets the event")
        // …but cannot send a command, even a correctly signed one (the broker closes its channel)…
        let body = CommandWire.body(of: .deleteAccount(DeleteAccount(userID: user)))
        await #expect(throws: BackendUnavailable(backend: "rabbitmq")) {
            try await consumer.connection.publish(
                exchange: "", routingKey: AMQPTopology.commandQueue, body: body,
                properties: keys.sign(MessageProperties(messageID: "from-billing", type: "DeleteAccount"), body: body)
            )
        }
        // …nor publish an event, nor take a command off the queue.
        for exchange in [AMQPTopology.eventExchange] {
            #expect(await eventually { consumer.isConnected })
            await #expect(throws: BackendUnavailable(backend: "rabbitmq"), "\(exchange)") {
                try await consumer.connection.publish(exchange: exchange, routingKey: "user.deleted", body: Data("{}".utf8), properties: MessageProperties())
            }
        }
        #expect(await eventually { consumer.isConnected })
        await #expect(throws: BackendUnavailable(backend: "rabbitmq")) {
            _ = try await consumer.connection.perform { session throws(BrokerError) in try session.get(AMQPTopology.commandQueue) }
        }
        #expect(handler.messageIDs == ["permitted"], "the worker saw nothing from the consumer")
    }

    @Test("under the documented permissions a consumer that declares its own queue binds it to identity.events and reads from it")
    func selfDeclaringConsumer() async throws {
        let admin = try await TestBroker.settings(virtualHost: "identity-permissions-self")
        let identity = try await TestBroker.user("identity-perm-identity-2", in: admin, DocumentedPermissions.identity)
        let billing = try await TestBroker.user("identity-perm-billing-2", in: admin, DocumentedPermissions.selfDeclaringConsumer)
        let relay = broker(identity)
        defer { relay.stop() }
        let events = relay.eventPublisher()
        relay.start()
        #expect(await eventually { relay.isConnected })

        let consumer = broker(billing)
        defer { consumer.stop() }
        let reader = QueueReader(queue: "billing.identity-events", declaresAndBinds: true)
        consumer.connection.add(reader)
        consumer.start()
        #expect(await eventually { consumer.isConnected }, "it may declare and bind its queue")
        try await events.publish([IdentityEvent(eventID: UUID(), occurredAt: Date(), payload: .userDeleted(userID: UserID(UUID())))])
        #expect(await eventually { reader.types == ["user.deleted"] })
        await #expect(throws: BackendUnavailable(backend: "rabbitmq"), "still no command") {
            try await consumer.connection.publish(
                exchange: "", routingKey: AMQPTopology.commandQueue, body: Data("{}".utf8), properties: MessageProperties()
            )
        }
    }
}

extension TestBroker {
    /// Settings for user `name` (created afresh, password "pw") with `permissions` on `settings`' virtual host.
    static func user(
        _ name: String, in settings: AMQPConfiguration, _ permissions: (configure: String, write: String, read: String)
    ) async throws -> AMQPConfiguration {
        let node = environment["IDENTITY_TEST_RABBITMQ_NODE"] ?? ""
        _ = try await rabbitmqctl(node, "delete_user", name)
        guard try await rabbitmqctl(node, "add_user", name, "pw") == 0,
              try await rabbitmqctl(
                  node, "set_permissions", "-p", settings.virtualHost, name, permissions.configure, permissions.write, permissions.read
              ) == 0
        else { throw SetUpFailed(description: "cannot create user \(name)") }
        var user = settings
        user.username = name
        user.password = "pw"
        return user
    }
}

/// Consumes one queue (declaring it and binding it to `identity.events` first, if asked),
/// recording each message's type.
final class QueueReader: BrokerClient {
    let queue: String
    let declaresAndBinds: Bool
    private let received = Mutex<[String]>([])
    var types: [String] { received.withLock { $0 } }

    init(queue: String, declaresAndBinds: Bool = false) {
        self.queue = queue
        self.declaresAndBinds = declaresAndBinds
    }

    func setUp(_ session: BrokerSession) throws(BrokerError) -> [String] {
        if declaresAndBinds {
            try session.declareQueue(queue)
            try session.bind(queue: queue, exchange: AMQPTopology.eventExchange, routingKey: "#")
        }
        return [try session.consume(queue, noAck: true)]
    }

    func receive(_ delivery: Delivery) {
        received.withLock { $0.append(delivery.type ?? "(none)") }
    }
}
