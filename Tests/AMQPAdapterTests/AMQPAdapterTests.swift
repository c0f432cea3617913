@testable import AMQPAdapter
import Foundation
import IdentityApplication
import IdentityConformance
import IdentityDomain
import IdentityPorts
import InMemoryAdapter
import IdentityTestSupport
import Synchronization
import Testing
import IdentityAdapterSupport

@Suite("AMQP adapter on a real RabbitMQ", .enabled(if: TestBroker.isAvailable, TestBroker.skipReason))
struct AMQPAdapterTests {
    /// A started broker link on `settings`; stopped by the caller.
    func broker(_ settings: AMQPConfiguration) -> AMQPBroker {
        AMQPBroker(configuration: settings, logger: TestBroker.logger)
    }

    @Test("AMQPCommandBus with a worker passes the CommandBus suite")
    func commandBusConformance() async throws {
        let settings = try await TestBroker.settings(virtualHost: "identity-bus-conformance")
        let link = broker(settings)
        defer { link.stop() }
        try await CommandBusConformance { handler in
            let bus = link.commandBus(local: handler, keys: try TestBroker.keys())
            _ = link.worker(handler: handler, keys: try TestBroker.keys())
            link.start()
            #expect(await eventually { link.isConnected })
            return bus
        }.run()
    }

    @Test("the connection negotiates heartbeats and publisher confirms (the broker says so)")
    func connectionProperties() async throws {
        let settings = try await TestBroker.settings(virtualHost: "identity-heartbeat")
        let link = broker(settings)
        defer { link.stop() }
        _ = link.eventPublisher()
        link.start()
        #expect(await eventually { link.isConnected })
        let node = TestBroker.environment["IDENTITY_TEST_RABBITMQ_NODE"] ?? ""
        // The listings cover every virtual host (other tests' connections too): keep ours.
        // rabbitmqctl can time out on a loaded machine: ask again until the deadline.
        func ours(_ listing: String) -> [String] {
            listing.split(separator: "\n").compactMap { line in
                let fields = line.split(separator: "\t").map(String.init)
                return fields.first == settings.virtualHost ? fields.last : nil
            }
        }
        var heartbeat: [String] = [], confirm: [String] = []
        #expect(try await eventually(within: 60) {
            heartbeat = ours(try await TestBroker.output(node, "list_connections", "vhost", "timeout"))
            return heartbeat == ["5"]
        }, "the heartbeat interval asked for, got \(heartbeat)")
        #expect(try await eventually(within: 60) {
            confirm = ours(try await TestBroker.output(node, "list_channels", "vhost", "confirm"))
            return confirm == ["true"]
        }, "confirm mode, got \(confirm)")
    }

    @Test("with the broker unreachable, commands fail at once and a logout still works")
    func brokerUnreachable() async throws {
        // Port 1 (tcpmux): nothing listens there, so the connection is refused at once.
        let closed = AMQPConfiguration(host: "127.0.0.1", port: 1, connectTimeout: .seconds(1))
        let link = broker(closed)
        defer { link.stop() }
        let bus = link.commandBus(local: RefusingHandler(), keys: try TestBroker.keys())
        link.start()
        let started = ContinuousClock.now
        await #expect(throws: BackendUnavailable(backend: "rabbitmq")) {
            _ = try await bus.dispatch(CommandEnvelope(messageID: "m", command: .deleteAccount(DeleteAccount(userID: UserID(UUID())))))
        }
        #expect(ContinuousClock.now - started < .seconds(5), "no wait for a reply that cannot come")
        await #expect(throws: BackendUnavailable(backend: "rabbitmq"), "a post is refused too, never taken for accepted") {
            try await bus.post(CommandEnvelope(messageID: "p", command: .deleteAccount(DeleteAccount(userID: UserID(UUID())))))
        }
        let user = UserID(UUID())
        let logout = CommandEnvelope(messageID: "l", command: .revokeToken(RevokeToken(userID: user, jti: "k", expiresAt: Date())))
        #expect(try await bus.dispatch(logout) == .done, "a logout does not need the broker")
    }

    @Test("a command that keeps failing is dead-lettered on its fifth delivery")
    func deliveryLimit() async throws {
        let settings = try await TestBroker.settings(virtualHost: "identity-delivery-limit")
        let link = broker(settings)
        defer { link.stop() }
        _ = link.commandBus(local: RefusingHandler(), keys: try TestBroker.keys())  // declares the queues
        link.start()
        #expect(await eventually { link.isConnected })
        try await link.connection.publish(
            exchange: "", routingKey: AMQPTopology.commandQueue, body: Data("{}".utf8),
            properties: MessageProperties(messageID: "poison", type: "DeleteAccount")
        )
        let consumer = broker(settings)
        defer { consumer.stop() }
        let nacker = Nacker(connection: consumer.connection)
        consumer.connection.add(nacker)
        consumer.start()
        #expect(try await eventually {
            guard nacker.deliveries.count >= 5 else { return false }
            return try await deadLetters(link).count == 1
        })
        #expect(nacker.deliveries == [0, 1, 2, 3, 4], "delivered five times, counted by the broker")
    }

    @Test("an undecodable command goes to the dead-letter queue at once, and the worker carries on")
    func undecodableCommand() async throws {
        let settings = try await TestBroker.settings(virtualHost: "identity-poison")
        let link = broker(settings)
        defer { link.stop() }
        let store = InMemoryUserStore()
        let handler = IdentityCommandHandler(
            users: store, outbox: store, revocations: store.revocations, tokens: try await TestIdentity.makeTokens()
        )
        let bus = link.commandBus(local: handler, keys: try TestBroker.keys())
        _ = link.worker(handler: handler, keys: try TestBroker.keys())
        link.start()
        #expect(await eventually { link.isConnected })
        // Signed, so that it is the decoding that refuses them.
        let keys = try TestBroker.keys()
        for (type, body) in [("DeleteAccount", "not json"), ("DropTables", "{}"), ("RegisterUser", #"{"email":1}"#)] {
            try await link.connection.publish(
                exchange: "", routingKey: AMQPTopology.commandQueue, body: Data(body.utf8),
                properties: keys.sign(MessageProperties(messageID: "poison-\(type)", type: type), body: Data(body.utf8))
            )
        }
        let email = try Email("after.poison@example.com")
        let reply = try await bus.dispatch(CommandEnvelope(messageID: "good", command: .registerUser(
            RegisterUser(email: email, name: try DisplayName("After"), passwordHash: "$argon2id$stub"))))
        guard case .user(let record) = reply else { Issue.record("expected the account, got \(reply)"); return }
        #expect(record.email == email.value)
        #expect(try await eventually { try await deadLetters(link).count == 3 })
    }

    @Test("a worker whose database is down replies 503 at once and dead-letters the command")
    func workerBackendDown() async throws {
        let settings = try await TestBroker.settings(virtualHost: "identity-worker-down")
        let link = broker(settings)
        defer { link.stop() }
        let bus = link.commandBus(local: RefusingHandler(), keys: try TestBroker.keys())
        _ = link.worker(handler: UnavailableHandler(), keys: try TestBroker.keys())
        link.start()
        #expect(await eventually { link.isConnected })
        // The worker's reply names PostgreSQL: a timeout would name RabbitMQ (no timed assertion needed).
        await #expect(throws: BackendUnavailable(backend: "postgres")) {
            _ = try await bus.dispatch(CommandEnvelope(messageID: "m", command: .deleteAccount(DeleteAccount(userID: UserID(UUID())))))
        }
        #expect(try await eventually { try await deadLetters(link).count == 1 })
    }

    @Test("with no worker, a command times out with BackendUnavailable and expires from the queue")
    func noWorker() async throws {
        // Long enough that a loaded machine publishes the command before its caller gives up
        // (a command never published has nothing to expire, and this test would see no dead
        // letter): a full run starts dozens of servers beside it, and 1 s was not always enough.
        let settings = try await TestBroker.settings(virtualHost: "identity-no-worker", commandTimeout: .seconds(5))
        let link = broker(settings)
        defer { link.stop() }
        let bus = link.commandBus(local: RefusingHandler(), keys: try TestBroker.keys())
        link.start()
        #expect(await eventually { link.isConnected })
        await #expect(throws: BackendUnavailable(backend: "rabbitmq")) {
            _ = try await bus.dispatch(CommandEnvelope(messageID: "late", command: .deleteAccount(DeleteAccount(userID: UserID(UUID())))))
        }
        #expect(try await eventually { try await deadLetters(link).count == 1 }, "its caller gave up, so no worker may apply it later")
    }

    @Test("a posted command is confirmed with no worker up, waits without a deadline past the command timeout, and is applied once when a worker comes")
    func postedCommandWaits() async throws {
        let settings = try await TestBroker.settings(virtualHost: "identity-posted", commandTimeout: .seconds(5))
        let link = broker(settings)
        defer { link.stop() }
        let bus = link.commandBus(local: RefusingHandler(), keys: try TestBroker.keys())
        link.start()
        #expect(await eventually { link.isConnected })
        try await bus.post(CommandEnvelope(messageID: "posted", command: .deleteAccount(DeleteAccount(userID: UserID(UUID())))))
        // A command dispatched after it gives up after the command timeout: by then the posted
        // one has waited longer than that.
        await #expect(throws: BackendUnavailable(backend: "rabbitmq")) {
            _ = try await bus.dispatch(CommandEnvelope(messageID: "dispatched", command: .deleteAccount(DeleteAccount(userID: UserID(UUID())))))
        }

        let handler = CountingHandler()
        let workers = broker(settings)
        defer { workers.stop() }
        _ = workers.worker(handler: handler, keys: try TestBroker.keys())
        workers.start()
        #expect(await eventually { handler.count == 1 }, "the posted command is applied once a worker is up")
        #expect(try await eventually { try await deadLetters(link).count == 1 }, "the late dispatched one is dead-lettered, not applied")
        #expect(handler.count == 1)
    }

    @Test("a posted command whose database is down goes back to the queue after a pause, not to the dead letters, and is applied once it is up")
    func postedCommandRetried() async throws {
        let settings = try await TestBroker.settings(virtualHost: "identity-posted-retry")
        let link = broker(settings)
        defer { link.stop() }
        let handler = FailingFirstHandler(failures: 2)
        let bus = link.commandBus(local: RefusingHandler(), keys: try TestBroker.keys())
        _ = link.worker(handler: handler, keys: try TestBroker.keys())
        link.start()
        #expect(await eventually { link.isConnected })
        try await bus.post(CommandEnvelope(messageID: "posted", command: .deleteAccount(DeleteAccount(userID: UserID(UUID())))))
        #expect(await eventually(within: 30) { handler.applied == 1 }, "applied on its third delivery (after 2 s and 4 s)")
        #expect(handler.attempts == 3)
        #expect(try await deadLetters(link).isEmpty)
    }

    @Test("a command whose caller stopped waiting is dead-lettered, not applied")
    func lateCommand() async throws {
        let settings = try await TestBroker.settings(virtualHost: "identity-late")
        let link = broker(settings)
        defer { link.stop() }
        let handler = CountingHandler()
        _ = link.worker(handler: handler, keys: try TestBroker.keys())
        link.start()
        #expect(await eventually { link.isConnected })
        let past = Int64(Date().timeIntervalSince1970 * 1000) - 1000
        // Signed, so that it is the deadline that refuses it.
        let body = Data(#"{"userID":"6a2f41a0-0000-4000-8000-000000000000"}"#.utf8)
        try await link.connection.publish(
            exchange: "", routingKey: AMQPTopology.commandQueue, body: body,
            properties: try TestBroker.keys().sign(MessageProperties(messageID: "late", type: "DeleteAccount", deadlineMilliseconds: past), body: body)
        )
        #expect(try await eventually { try await deadLetters(link).count == 1 })
        #expect(handler.count == 0, "the handler never saw it")
    }

    @Test("events reach identity.events in order, as EventCodec documents, routed by type")
    func events() async throws {
        let settings = try await TestBroker.settings(virtualHost: "identity-events")
        let link = broker(settings)
        defer { link.stop() }
        let publisher = link.eventPublisher()
        link.start()
        #expect(await eventually { link.isConnected })
        let queue = try await link.connection.perform { session throws(BrokerError) in
            let queue = try session.declareQueue(nil)
            try session.bind(queue: queue, exchange: AMQPTopology.eventExchange, routingKey: "user.*")
            return queue
        }
        let user = UserID(UUID())
        let events = [
            IdentityEvent(eventID: UUID(), occurredAt: Date(timeIntervalSince1970: 1_790_000_000.5), payload: .userRegistered(
                userID: user, email: try Email("e@example.com"), name: try DisplayName("E"))),
            IdentityEvent(eventID: UUID(), occurredAt: Date(), payload: .tokenRevoked(userID: user, jti: "j", expiresAt: Date())),
            IdentityEvent(eventID: UUID(), occurredAt: Date(), payload: .userUpdated(userID: user, changed: [.name])),
            IdentityEvent(eventID: UUID(), occurredAt: Date(), payload: .userDeleted(userID: user)),
        ]
        try await publisher.publish(events)
        var received: [(body: Data, type: String?)] = []
        #expect(try await eventually {
            if let message = try await link.connection.perform({ session throws(BrokerError) in try session.get(queue) }) {
                received.append(message)
            }
            return received.count == 3
        })
        #expect(received.map(\.type) == ["user.registered", "user.updated", "user.deleted"], "user.* binds three of the four")
        #expect(received.map(\.body) == [events[0], events[2], events[3]].map(EventCodec.document(of:)))
    }

    func deadLetters(_ link: AMQPBroker) async throws -> [Data] {
        var bodies: [Data] = []
        while let message = try await link.connection.perform({ session throws(BrokerError) in
            try session.get(AMQPTopology.deadLetterQueue)
        }) {
            bodies.append(message.body)
        }
        // Put them back so that a later poll counts them again.
        for body in bodies {
            try await link.connection.publish(
                exchange: "", routingKey: AMQPTopology.deadLetterQueue, body: body, properties: MessageProperties()
            )
        }
        return bodies
    }
}

final class Links: Sendable {
    private let links = Mutex<[AMQPBroker]>([])
    func add(_ link: AMQPBroker) { links.withLock { $0.append(link) } }
    func stopAll() { for link in links.withLock({ $0 }) { link.stop() } }
}

/// Consumes the command queue and returns every delivery to it, recording its delivery count.
final class Nacker: BrokerClient {
    let connection: BrokerConnection
    private let counts = Mutex<[Int]>([])
    var deliveries: [Int] { counts.withLock { $0 } }

    init(connection: BrokerConnection) {
        self.connection = connection
    }

    func setUp(_ session: BrokerSession) throws(BrokerError) -> [String] {
        [try session.consume(AMQPTopology.commandQueue, noAck: false)]
    }

    func receive(_ delivery: Delivery) {
        counts.withLock { $0.append(delivery.deliveryCount) }
        connection.enqueue(.init(run: { session throws(BrokerError) in try session.nack(delivery.tag, requeue: true) }, fail: {}))
    }
}

/// Counts what it is asked to apply.
final class CountingHandler: CommandHandler {
    private let handled = Mutex(0)
    var count: Int { handled.withLock { $0 } }

    func handle(_ envelope: CommandEnvelope) async throws -> CommandReply {
        handled.withLock { $0 += 1 }
        return .done
    }
}

/// Logs out (`.done`); finds no account for anything else.
struct RefusingHandler: CommandHandler {
    func handle(_ envelope: CommandEnvelope) async throws -> CommandReply {
        if case .revokeToken = envelope.command { return .done }
        return .rejected(.userNotFound)
    }
}

struct UnavailableHandler: CommandHandler {
    func handle(_ envelope: CommandEnvelope) async throws -> CommandReply { throw BackendUnavailable(backend: "postgres") }
}

/// Throws `BackendUnavailable` (a database down) for its first `failures` commands, then applies.
final class FailingFirstHandler: CommandHandler {
    private let counts = Mutex((attempts: 0, applied: 0))
    private let failures: Int

    init(failures: Int) { self.failures = failures }

    var attempts: Int { counts.withLock { $0.attempts } }
    var applied: Int { counts.withLock { $0.applied } }

    func handle(_ envelope: CommandEnvelope) async throws -> CommandReply {
        try counts.withLock { counts in
            counts.attempts += 1
            if counts.attempts <= failures { throw BackendUnavailable(backend: "postgres") }
            counts.applied += 1
        }
        return .done
    }
}
