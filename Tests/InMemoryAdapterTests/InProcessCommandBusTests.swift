import Foundation
import IdentityDomain
import IdentityPorts
import IdentityTestSupport
import InMemoryAdapter
import Synchronization
import Testing

/// `InProcessCommandBus.post`: a posted command outlives a store that is away for a while.
@Suite("In-process command bus: posted commands")
struct InProcessCommandBusTests {
    /// Fails the first `failures` attempts with `error`, then replies `.done`; counts attempts.
    final class FlakyHandler: CommandHandler {
        private let attempts = Mutex<[String?]>([])
        private let failures: Int
        private let error: any Error & Sendable
        private let released = Mutex(true)
        private let finished = Mutex(0)

        init(failures: Int, error: any Error & Sendable, held: Bool = false) {
            self.failures = failures
            self.error = error
            released.withLock { $0 = !held }
        }

        /// How many attempts began.
        var count: Int { attempts.withLock { $0.count } }
        /// The `CommandContext.messageID` each attempt ran with.
        var messageIDs: [String?] { attempts.withLock { $0 } }
        /// How many attempts finished.
        var finishedCount: Int { finished.withLock { $0 } }
        /// Lets held attempts finish.
        func release() { released.withLock { $0 = true } }

        func handle(_ envelope: CommandEnvelope) async throws -> CommandReply {
            let attempt = attempts.withLock { seen in
                seen.append(CommandContext.messageID)
                return seen.count
            }
            while !released.withLock({ $0 }) { try await Task.sleep(for: .milliseconds(1)) }
            finished.withLock { $0 += 1 }
            if attempt <= failures { throw error }
            return .done
        }
    }

    struct NotABackend: Error {}

    let envelope = CommandEnvelope(messageID: "p-1", command: .deleteAccount(DeleteAccount(userID: UserID(UUID()))))
    let pauses: [Duration] = [.milliseconds(1), .milliseconds(2), .milliseconds(4), .milliseconds(8)]

    /// Posts with `handler` and waits (`eventually`, at most 20 s) until `reports` failures
    /// were reported, then returns them.
    func post(to handler: FlakyHandler, reports expected: Int) async throws -> [PostedCommandFailure] {
        let reports = Mutex<[PostedCommandFailure]>([])
        let bus = InProcessCommandBus(handler: handler, retryPauses: pauses) { failure in reports.withLock { $0.append(failure) } }
        try await bus.post(envelope)
        _ = await eventually { reports.withLock { $0.count } >= expected }
        return reports.withLock { $0 }
    }

    @Test("a store unavailable twice: the command is tried again after each pause and applied on the third attempt")
    func retriedUntilApplied() async throws {
        let handler = FlakyHandler(failures: 2, error: BackendUnavailable(backend: "postgres"))
        let reports = try await post(to: handler, reports: 2)
        _ = await eventually { handler.count >= 3 }
        #expect(handler.count == 3, "applied on the third attempt")
        #expect(reports.map(\.retryIn) == [pauses[0], pauses[1]], "each failure reported with its pause")
        #expect(reports.allSatisfy { $0.command == "DeleteAccount" })
        #expect(handler.messageIDs == ["p-1", "p-1", "p-1"], "every attempt runs under the envelope's message id, so a store applies it once")
    }

    @Test("post returns before the command is applied: its caller learns nothing from the write side's timing")
    func postReturnsAtOnce() async throws {
        let handler = FlakyHandler(failures: 0, error: NotABackend(), held: true)
        let bus = InProcessCommandBus(handler: handler, retryPauses: pauses)
        let returned = Mutex(false)
        let posting = Task { [envelope] in
            try await bus.post(envelope)
            returned.withLock { $0 = true }
        }
        _ = await eventually { returned.withLock { $0 } }
        #expect(returned.withLock { $0 }, "post returned while the command is still held")
        #expect(handler.finishedCount == 0, "and nothing was applied yet")
        handler.release()
        try await posting.value
        _ = await eventually { handler.finishedCount >= 1 }
        #expect(handler.finishedCount == 1, "applied once released")
    }

    @Test("a store that stays away: tried once more after each pause, then given up and reported lost")
    func givenUpAfterThePauses() async throws {
        let handler = FlakyHandler(failures: .max, error: BackendUnavailable(backend: "postgres"))
        let reports = try await post(to: handler, reports: pauses.count + 1)
        #expect(handler.count == pauses.count + 1)
        #expect(reports.map(\.retryIn) == pauses.map { Optional($0) } + [nil], "the last report says given up")
        #expect(reports.last.map { "\($0)" }?.contains("given up") == true)
    }

    @Test("a failure other than an unavailable store is not retried: reported as given up at once")
    func otherFailuresNotRetried() async throws {
        let handler = FlakyHandler(failures: .max, error: NotABackend())
        let reports = try await post(to: handler, reports: 1)
        #expect(reports.count == 1 && reports.first?.retryIn == nil)
        // A retry would come within the first pause; wait ten times all the pauses together.
        try await Task.sleep(for: pauses.reduce(.zero, +) * 10)
        #expect(handler.count == 1, "tried once")
    }
}
