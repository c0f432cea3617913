public import IdentityPorts
import IdentityDomain
import Foundation
import Synchronization
import Testing

/// The behaviour every `CommandBus` must show: each command reaches the write side once, and
/// the caller gets that command's reply; a posted command reaches it once too.
///
/// ```swift
/// @Test func conforms() async throws {
///     try await CommandBusConformance { handler in MyBus(handler: handler) }.run()
/// }
/// ```
/// `makeBus` must return a bus delivering to the given handler (for a broker, with a worker
/// consuming into it).
public struct CommandBusConformance: Sendable {
    /// Makes a bus whose commands are handled by `handler`.
    public typealias Factory = @Sendable (_ handler: any CommandHandler) async throws -> any CommandBus
    private let makeBus: Factory

    /// Creates the suite.
    public init(makeBus: @escaping Factory) {
        self.makeBus = makeBus
    }

    /// Runs every check.
    public func run() async throws {
        let recorder = RecordingHandler()
        let bus = try await makeBus(recorder)
        let user = UserID(UUID())
        let envelope = CommandEnvelope(
            messageID: "m-1", command: .revokeToken(RevokeToken(userID: user, jti: "j", expiresAt: Fixture.epoch))
        )
        #expect(try await bus.dispatch(envelope) == .done, "the handler's reply comes back")
        #expect(recorder.received == [envelope], "the handler receives the envelope unchanged")

        let replies = try await withThrowingTaskGroup(of: (Int, CommandReply).self) { group in
            for index in 0..<20 {
                group.addTask {
                    let command = CommandEnvelope(messageID: "c-\(index)", command: .deleteAccount(DeleteAccount(userID: user)))
                    return (index, try await bus.dispatch(command))
                }
            }
            var replies: [Int: CommandReply] = [:]
            for try await (index, reply) in group { replies[index] = reply }
            return replies
        }
        #expect(replies.count == 20, "concurrent commands all get a reply")
        #expect(replies.allSatisfy { $0.value == .rejected(.userNotFound) }, "each caller gets its own command's reply")
        #expect(recorder.received.count == 21, "each command is handled exactly once")

        let rejected = CommandEnvelope(messageID: "m-2", command: .updateProfile(
            UpdateProfile(userID: user, name: nil, email: nil, passwordHash: nil, expectedVersion: nil)))
        #expect(try await bus.dispatch(rejected) == .rejected(.userNotFound), "a rejection is a reply, not an error")

        let posted = CommandEnvelope(messageID: "p-1", command: .deleteAccount(DeleteAccount(userID: user)))
        try await bus.post(posted)
        let deadline = ContinuousClock.now + .seconds(20)
        while !recorder.received.contains(posted), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        #expect(recorder.received.filter { $0 == posted }.count == 1, "a posted command reaches the write side once")
    }
}

/// Replies `.done` to logouts and "no such user" to everything else, recording what it saw.
final class RecordingHandler: CommandHandler {
    private let log = Mutex<[CommandEnvelope]>([])

    var received: [CommandEnvelope] { log.withLock { $0 } }

    func handle(_ envelope: CommandEnvelope) async throws -> CommandReply {
        log.withLock { $0.append(envelope) }
        if case .revokeToken = envelope.command { return .done }
        return .rejected(.userNotFound)
    }
}
