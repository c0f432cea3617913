@testable import AMQPAdapter
import Foundation
import IdentityApplication
import IdentityDomain
import IdentityPorts
import InMemoryAdapter
import IdentityTestSupport
import Logging
import Synchronization
import Testing

extension AMQPAdapterTests {
    @Test("only signed commands are applied: unsigned, foreign-key, altered-body and altered-deadline ones are dead-lettered unapplied with one warning each, and the worker carries on")
    func onlySignedCommandsApply() async throws {
        let settings = try await TestBroker.settings(virtualHost: "identity-signed")
        let log = CapturedLog()
        let link = AMQPBroker(configuration: settings, logger: log.logger)
        defer { link.stop() }
        let store = InMemoryUserStore()
        let handler = RecordingHandler(IdentityCommandHandler(
            users: store, outbox: store, revocations: store.revocations, tokens: try await TestIdentity.makeTokens()
        ))
        let keys = try TestBroker.keys()
        let bus = link.commandBus(local: handler, keys: keys)
        _ = link.worker(handler: handler, keys: keys)
        link.start()
        #expect(await eventually { link.isConnected })

        let registered = try await bus.dispatch(CommandEnvelope(messageID: "register", command: .registerUser(
            RegisterUser(email: try Email("signed@example.com"), name: try DisplayName("Signed"), passwordHash: "$argon2id$stub"))))
        guard case .user(let account) = registered else { Issue.record("a signed command is applied, got \(registered)"); return }

        // Each tries to delete the account that exists; applied, any of them would.
        let body = CommandWire.body(of: .deleteAccount(DeleteAccount(userID: account.id)))
        let innocent = CommandWire.body(of: .deleteAccount(DeleteAccount(userID: UserID(UUID()))))
        let deadline = Date().epochMilliseconds + 60_000
        func properties(_ id: String) -> MessageProperties {
            MessageProperties(messageID: id, correlationID: id, type: "DeleteAccount", deadlineMilliseconds: deadline)
        }
        let otherKeys = try CommandSigningKeys([Data("another-identity-cluster-command-key-0123".utf8)])
        var later = keys.sign(properties("deadline-altered"), body: body)
        later.deadlineMilliseconds = deadline + 60_000
        let forgeries: [(reason: String, properties: MessageProperties)] = [
            ("no x-identity-mac header", properties("unsigned")),
            ("signed with key \(otherKeys.keyIDs[0]), which is not configured here", otherKeys.sign(properties("other-key"), body: body)),
            ("the MAC (key \(keys.keyIDs[0])) does not match the message", keys.sign(properties("body-altered"), body: innocent)),
            ("the MAC (key \(keys.keyIDs[0])) does not match the message", later),
        ]
        for forgery in forgeries {
            try await link.connection.publish(
                exchange: "", routingKey: AMQPTopology.commandQueue, body: body, properties: forgery.properties
            )
        }
        #expect(try await eventually { try await deadLetters(link).count == 4 }, "all four dead-lettered")

        let renamed = try await bus.dispatch(CommandEnvelope(messageID: "rename", command: .updateProfile(
            UpdateProfile(userID: account.id, name: try DisplayName("Still here"), email: nil, passwordHash: nil, expectedVersion: nil))))
        guard case .user(let after) = renamed else { Issue.record("the worker carries on, got \(renamed)"); return }
        #expect(after.name == "Still here")
        #expect(handler.messageIDs == ["register", "rename"], "the handler never saw a forgery")
        #expect(await store.user(id: account.id) != nil, "the account is still there")

        let warnings = log.lines.filter { $0.contains("dead-lettering a command without a valid MAC") }
        #expect(warnings.count == 4, "one line per forgery: \(warnings)")
        for (forgery, id) in zip(forgeries, ["unsigned", "other-key", "body-altered", "deadline-altered"]) {
            #expect(warnings.contains { $0.contains("reason=\(forgery.reason)") && $0.contains("message_id=\(id)") }, "\(id): \(warnings)")
        }
        #expect(warnings.allSatisfy { $0.hasPrefix("warning ") })
        let text = log.lines.joined(separator: "\n")
        #expect(!text.contains(String(decoding: body, as: UTF8.self)) && !text.contains(account.id.description), "no body")
        #expect(!text.contains("amqp-adapter-tests-command-key") && !text.contains("another-identity-cluster"), "no key")
    }

    @Test("rotation: a worker that accepts the old and the new key applies commands from nodes signing with either")
    func rotatedKeys() async throws {
        let settings = try await TestBroker.settings(virtualHost: "identity-rotation")
        let old = Data("amqp-adapter-tests-command-key-0123456789".utf8)
        let new = Data("amqp-adapter-tests-rotated-key-9876543210".utf8)
        let (notYet, rotated) = (broker(settings), broker(settings))
        defer { notYet.stop(); rotated.stop() }
        let handler = RecordingHandler(RefusingHandler())
        let oldBus = notYet.commandBus(local: handler, keys: try CommandSigningKeys([old]))
        let newBus = rotated.commandBus(local: handler, keys: try CommandSigningKeys([new, old]))
        _ = rotated.worker(handler: handler, keys: try CommandSigningKeys([new, old]))
        notYet.start()
        rotated.start()
        #expect(await eventually { notYet.isConnected && rotated.isConnected })
        for (id, bus) in [("from-old", oldBus), ("from-new", newBus)] {
            let reply = try await bus.dispatch(CommandEnvelope(messageID: id, command: .deleteAccount(DeleteAccount(userID: UserID(UUID())))))
            #expect(reply == .rejected(.userNotFound), "\(id) reached the handler")
        }
        #expect(Set(handler.messageIDs) == ["from-old", "from-new"])
        #expect(try await deadLetters(rotated).isEmpty)
    }
}

/// Passes commands to `inner`, recording their message ids.
final class RecordingHandler: CommandHandler {
    private let inner: any CommandHandler
    private let seen = Mutex<[String]>([])
    var messageIDs: [String] { seen.withLock { $0 } }

    init(_ inner: any CommandHandler) {
        self.inner = inner
    }

    func handle(_ envelope: CommandEnvelope) async throws -> CommandReply {
        seen.withLock { $0.append(envelope.messageID) }
        return try await inner.handle(envelope)
    }
}

/// A logger that keeps its lines (`level message key=value …`) for a test to read.
final class CapturedLog: Sendable {
    private let stored = Mutex<[String]>([])
    var lines: [String] { stored.withLock { $0 } }

    var logger: Logger {
        Logger(label: "captured") { _ in Handler(log: self) }
    }

    private struct Handler: LogHandler {
        let log: CapturedLog
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .info

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            let fields = metadata.merging(event.metadata ?? [:]) { $1 }.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
            let line = (["\(event.level)", "\(event.message)"] + fields).joined(separator: " ")
            log.stored.withLock { $0.append(line) }
        }
    }
}
