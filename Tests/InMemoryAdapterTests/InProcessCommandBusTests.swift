import Foundation
import IdentityDomain
import IdentityPorts
import InMemoryAdapter
import Synchronization
import Testing

/// `InProcessCommandBus.post`: a posted command outlives a store that is away for a while.
@Suite("In-process command bus: posted commands")
struct InProcessCommandBusTests {
    /// Fails the first `failures` attempts with `error`, then replies `.done`; counts attempts.
    final class FlakyHandler: CommandHandler {
        private let attempts = Mutex(0)
        private let failures: Int
        private let error: any Error & Sendable

        init(failures: Int, error: any Error & Sendable) {
            self.failures = failures
            self.error = error
        }

        var count: Int { attempts.withLock { $0 } }

        func handle(_ envelope: CommandEnvelope) async throws -> CommandReply {
            let attempt = attempts.withLock { count in
                count += 1
                return count
            }
            if attempt <= failures { throw error }
            return .done
        }
    }

    struct NotABackend: Error {}

    let envelope = CommandEnvelope(messageID: "p-1", command: .deleteAccount(DeleteAccount(userID: UserID(UUID()))))
    let pauses: [Duration] = [.milliseconds(1), .milliseconds(2), .milliseconds(4), .milliseconds(8)]

    /// Posts with `handler` and waits (polling, at most 20 s) until `reports` failures were
    /// reported, then returns them.
    func post(to handler: FlakyHandler, reports expected: Int) async throws -> [PostedCommandFailure] {
        let reports = Mutex<[PostedCommandFailure]>([])
        let bus = InProcessCommandBus(handler: handler, retryPauses: pauses) { failure in reports.withLock { $0.append(failure) } }
        try await bus.post(envelope)
        let deadline = ContinuousClock.now + .seconds(20)
        while reports.withLock({ $0.count }) < expected, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
        return reports.withLock { $0 }
    }

    @Test("a store unavailable twice: the command is tried again after each pause and applied on the third attempt")
    func retriedUntilApplied() async throws {
        let handler = FlakyHandler(failures: 2, error: BackendUnavailable(backend: "postgres"))
        let reports = try await post(to: handler, reports: 2)
        let deadline = ContinuousClock.now + .seconds(20)
        while handler.count < 3, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
        #expect(handler.count == 3, "applied on the third attempt")
        #expect(reports.map(\.retryIn) == [pauses[0], pauses[1]], "each failure reported with its pause")
        #expect(reports.allSatisfy { $0.command == "DeleteAccount" })
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
        #expect(handler.count == 1, "tried once")
    }
}
