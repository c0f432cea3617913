import Foundation
import IdentityPorts
import IdentityTestSupport
import Synchronization
import Testing
@testable import IdentityAdapterSupport

/// `Deadline.run` (every PostgreSQL operation, readiness checks, AMQP commands) answers at the
/// deadline, whatever the body does with its cancellation.
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
        await #expect(throws: BackendUnavailable(backend: "slow")) {
            try await Deadline.run(.milliseconds(50), timeoutError: { BackendUnavailable(backend: "slow") }) {
                await gate.wait()  // not cancellable, like a lease that never comes
                finished.withLock { $0 = true }
            }
        }
        #expect(!finished.withLock { $0 }, "the caller was answered while the body still waited")
        gate.open()
    }

    @Test("a body that ends in time gives its value or its error")
    func inTime() async throws {
        #expect(try await Deadline.run(.seconds(60), timeoutError: { BackendUnavailable(backend: "slow") }) { 42 } == 42)
        struct Refused: Error, Equatable {}
        await #expect(throws: Refused()) {
            try await Deadline.run(.seconds(60), timeoutError: { BackendUnavailable(backend: "slow") }) { throw Refused() }
        }
    }

    @Test("a cancelled caller is answered with CancellationError, and the body is cancelled")
    func callerCancelled() async throws {
        let gate = Gate()
        let bodyCancelled = Mutex(false)
        let caller = Task {
            try await Deadline.run(.seconds(60), timeoutError: { BackendUnavailable(backend: "slow") }) {
                await withTaskCancellationHandler { await gate.wait() } onCancel: { bodyCancelled.withLock { $0 = true } }
            }
        }
        caller.cancel()
        await #expect(throws: CancellationError.self) { try await caller.value }
        #expect(await eventually { bodyCancelled.withLock { $0 } })
        gate.open()
    }

    @Test("operations that end in time leave no timer to fire: none of them times out later")
    func timersAreCancelled() async throws {
        // Each operation records whether its timer fired; an operation that was answered with
        // its value must never see that happen (one answered by its timer, on a loaded
        // machine, is not what this looks at).
        let fired = Mutex(Set<Int>())
        var answered = Set<Int>()
        for operation in 0..<1_000 {
            let value = try? await Deadline.run(.milliseconds(20), timeoutError: {
                fired.withLock { _ = $0.insert(operation) }
                return BackendUnavailable(backend: "slow")
            }) { operation }
            if value == operation { answered.insert(operation) }
        }
        #expect(!answered.isEmpty)
        // Past every deadline: a timer that was not cancelled would have fired by now.
        try await Task.sleep(for: .milliseconds(200))
        #expect(fired.withLock { $0 }.isDisjoint(with: answered))
    }

    @Test("the one timer runs only while a deadline is pending: removed entries never fire, a due one fires once, then it stops")
    func sharedTimerStops() async throws {
        // A timer of its own: the shared one also times whatever else this process runs.
        let timers = DeadlineTimers()
        let fired = Mutex(0)
        let entries = (0..<200).map { _ in timers.add(at: .now + .seconds(60)) { fired.withLock { $0 += 1 } } }
        #expect(timers.status.pending == 200 && timers.status.running)
        for entry in entries { timers.remove(entry) }
        #expect(await eventually { timers.status.pending == 0 && !timers.status.running }, "no entry left, and no task ticking")
        _ = timers.add(at: .now) { fired.withLock { $0 += 1 } }
        #expect(await eventually { fired.withLock { $0 } == 1 }, "a due entry fires, once; none of the removed ones does")
        #expect(await eventually { !timers.status.running }, "and it stops again")
        #expect(fired.withLock { $0 } == 1)
    }

    @Test("a timer fires once: a body that ends after its deadline changes nothing")
    func lateBody() async throws {
        let gate = Gate()
        let finished = Mutex(false)
        let caller = Task {
            try await Deadline.run(.milliseconds(20), timeoutError: { BackendUnavailable(backend: "slow") }) {
                await gate.wait()
                finished.withLock { $0 = true }
                return 1
            }
        }
        await #expect(throws: BackendUnavailable(backend: "slow")) { try await caller.value }
        gate.open()
        #expect(await eventually { finished.withLock { $0 } }, "the late body runs to its end")
        await #expect(throws: BackendUnavailable(backend: "slow"), "and the caller's answer stays the timeout, given once") {
            try await caller.value
        }
    }
}
