import Foundation
import IdentityPorts
import IdentityTestSupport
import PostgresAdapter
import Synchronization
import Testing

/// `PostgresMigrator.withDeadline` (and every store operation, which runs under the same
/// deadline) answers at the deadline, whatever the body does with its cancellation.
@Suite("Deadlines")
struct DeadlineTests {
    /// A gate the test opens: until then, whoever waits on it waits, cancelled or not.
    final class Gate: Sendable {
        private let waiters = Mutex<(open: Bool, continuations: [CheckedContinuation<Void, Never>])>((false, []))
        func wait() async {
            await withCheckedContinuation { continuation in
                let resumeNow = waiters.withLock { state -> Bool in
                    if state.open { return true }
                    state.continuations.append(continuation)
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        }
        func open() {
            for continuation in waiters.withLock({ state in defer { state = (true, []) }; return state.continuations }) {
                continuation.resume()
            }
        }
    }

    @Test("a body that ignores its cancellation does not hold the caller past the deadline")
    func ignoresCancellation() async throws {
        let gate = Gate()
        // Bounds the test if the deadline is not kept: the body then finishes, and the
        // expectation below fails instead of the run hanging.
        let fallback = Task {
            try await Task.sleep(for: .seconds(30))
            gate.open()
        }
        defer { fallback.cancel() }
        let finished = Mutex(false)
        await #expect(throws: BackendUnavailable(backend: "postgres")) {
            try await PostgresMigrator.withDeadline(.milliseconds(50)) {
                await gate.wait()  // not cancellable, like a lease that never comes
                finished.withLock { $0 = true }
            }
        }
        #expect(!finished.withLock { $0 }, "the caller was answered while the body still waited")
        gate.open()
    }

    @Test("a body that ends in time gives its value or its error")
    func inTime() async throws {
        #expect(try await PostgresMigrator.withDeadline(.seconds(60)) { 42 } == 42)
        struct Refused: Error, Equatable {}
        await #expect(throws: Refused()) {
            try await PostgresMigrator.withDeadline(.seconds(60)) { throw Refused() }
        }
    }

    @Test("a cancelled caller is answered with CancellationError, and the body is cancelled")
    func callerCancelled() async throws {
        let gate = Gate()
        let bodyCancelled = Mutex(false)
        let caller = Task {
            try await PostgresMigrator.withDeadline(.seconds(60)) {
                await withTaskCancellationHandler { await gate.wait() } onCancel: { bodyCancelled.withLock { $0 = true } }
            }
        }
        caller.cancel()
        await #expect(throws: CancellationError.self) { try await caller.value }
        #expect(await eventually { bodyCancelled.withLock { $0 } })
        gate.open()
    }
}
