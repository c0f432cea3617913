import Foundation
import Synchronization

/// Runs an operation with a promise to its caller: an answer within a deadline.
///
/// Adapters use it where a backend may stall (a database that is away, a broker that does not
/// reply): the caller is answered at the deadline even if the operation does not notice its
/// cancellation at once (a task group would wait for it). The deadline is a promise to the
/// caller, not a request to the operation, which is cancelled and may finish in the background.
///
/// The deadlines of all operations share one timer (`DeadlineTimers`): a task that runs only
/// while some operation is pending, wakes every 10 ms, and answers those whose deadline has
/// passed. A deadline is kept to within about 10 ms. Each operation only adds and removes an
/// entry under a lock; a dispatch timer source per operation (the previous way) cost about
/// 10 µs of a refresh's CPU, most of it in the kernel. It is not a sleeping task per
/// operation either: a cancelled `Task.sleep` leaves its wake-up task allocated (seen with
/// Swift 6.3 on Linux), so a sleep per operation grew the demo server's memory with every
/// request; the shared task's sleeps are never cancelled.
public enum Deadline {
    /// Runs `body`; if it has not finished after `timeout`, throws `timeoutError()`. A cancelled
    /// caller gets `CancellationError` at once.
    public static func run<T: Sendable>(
        _ timeout: Duration, timeoutError: @escaping @Sendable () -> any Error,
        _ body: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        let race = DeadlineRace<T>()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                // The error is made only if the timer wins: a timer that loses never runs it.
                let timer = DeadlineTimers.shared.add(at: .now + timeout) { race.finish { .failure(timeoutError()) } }
                race.start(continuation, timer: timer, work: Task {
                    do {
                        let value = try await body()
                        race.finish { .success(value) }
                    } catch {
                        race.finish { .failure(error) }
                    }
                })
            }
        } onCancel: {
            race.finish { .failure(CancellationError()) }
        }
    }
}

/// The one timer of every `Deadline.run`: pending deadlines, and the task that answers them.
final class DeadlineTimers: Sendable {
    static let shared = DeadlineTimers()
    /// How often the task looks while deadlines are pending.
    static let tick = Duration.milliseconds(10)

    private struct State {
        var pending: [UInt64: (at: ContinuousClock.Instant, fire: @Sendable () -> Void)] = [:]
        var next: UInt64 = 0
        var running = false
    }
    private let state = Mutex(State())

    /// Schedules `fire` at `at`; returns the entry's number for `remove`.
    func add(at: ContinuousClock.Instant, fire: @escaping @Sendable () -> Void) -> UInt64 {
        let (id, start) = state.withLock { state -> (UInt64, Bool) in
            state.next += 1
            state.pending[state.next] = (at, fire)
            defer { state.running = true }
            return (state.next, !state.running)
        }
        if start { Task.detached { await self.run() } }
        return id
    }

    /// How many deadlines are pending, and whether the task runs (for tests).
    var status: (pending: Int, running: Bool) { state.withLock { ($0.pending.count, $0.running) } }

    /// Removes entry `id` (its operation finished): it never fires.
    func remove(_ id: UInt64) {
        _ = state.withLock { $0.pending.removeValue(forKey: id) }
    }

    /// Fires what is due every tick, until nothing is pending.
    private func run() async {
        while true {
            try? await Task.sleep(for: Self.tick)
            let now = ContinuousClock.now
            let due = state.withLock { state -> [@Sendable () -> Void]? in
                if state.pending.isEmpty {
                    state.running = false
                    return nil
                }
                let due = state.pending.filter { $0.value.at <= now }
                for id in due.keys { state.pending[id] = nil }
                return due.values.map(\.fire)
            }
            guard let due else { return }
            for fire in due { fire() }
        }
    }
}

/// The body and the timer of `Deadline.run`: the first to finish answers; then the body is
/// cancelled and the timer's entry removed from `DeadlineTimers`. A cancellation that comes
/// before the start answers at the start.
private final class DeadlineRace<T: Sendable>: @unchecked Sendable {
    // Guarded by `lock`.
    private var continuation: CheckedContinuation<T, any Error>?
    private var timer: UInt64?
    private var work: Task<Void, Never>?
    private var early: Result<T, any Error>?
    private let lock = NSLock()

    func start(_ continuation: CheckedContinuation<T, any Error>, timer: UInt64, work: Task<Void, Never>) {
        lock.lock()
        let early = early
        if early == nil {
            self.continuation = continuation
            self.timer = timer
            self.work = work
        }
        lock.unlock()
        if let early {
            work.cancel()
            DeadlineTimers.shared.remove(timer)
            continuation.resume(with: early)
        }
    }

    /// Answers with `result()` if nothing has answered yet; a later finisher's result is
    /// never made.
    func finish(_ result: () -> Result<T, any Error>) {
        lock.lock()
        let (continuation, timer, work) = (continuation, timer, work)
        (self.continuation, self.timer, self.work) = (nil, nil, nil)
        var answer: Result<T, any Error>?
        if continuation != nil {
            answer = result()
        } else if early == nil {
            // Before the start: the start answers with it.
            early = result()
        }
        lock.unlock()
        if let timer { DeadlineTimers.shared.remove(timer) }
        work?.cancel()
        if let continuation, let answer { continuation.resume(with: answer) }
    }
}
