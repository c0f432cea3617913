import Foundation

/// Runs an operation with a promise to its caller: an answer within a deadline.
///
/// Adapters use it where a backend may stall (a database that is away, a broker that does not
/// reply): the caller is answered at the deadline even if the operation does not notice its
/// cancellation at once (a task group would wait for it). The deadline is a promise to the
/// caller, not a request to the operation, which is cancelled and may finish in the background.
///
/// The timer is a dispatch timer source, cancelled and freed as soon as the operation
/// finishes. It is not a sleeping task: a cancelled `Task.sleep` leaves its wake-up task
/// allocated (seen with Swift 6.3 on Linux), so a sleep per operation grew the demo server's
/// memory with every request.
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
                let timer = DispatchSource.makeTimerSource(queue: .global())
                // The error is made only if the timer wins: a timer that loses never runs it.
                timer.setEventHandler { race.finish { .failure(timeoutError()) } }
                timer.schedule(deadline: .now() + timeout.seconds)
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

extension Duration {
    /// This duration in seconds, as dispatch takes it.
    var seconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}

/// The body and the timer of `Deadline.run`: the first to finish answers; then the body is
/// cancelled and the timer cancelled (which frees it). A cancellation that comes before the
/// start answers at the start.
private final class DeadlineRace<T: Sendable>: @unchecked Sendable {
    // Guarded by `lock`.
    private var continuation: CheckedContinuation<T, any Error>?
    private var timer: (any DispatchSourceTimer)?
    private var work: Task<Void, Never>?
    private var early: Result<T, any Error>?
    private let lock = NSLock()

    func start(_ continuation: CheckedContinuation<T, any Error>, timer: any DispatchSourceTimer, work: Task<Void, Never>) {
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
            timer.cancel()
            timer.activate()  // a source must be activated once before it is released
            continuation.resume(with: early)
        } else {
            timer.activate()
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
        timer?.cancel()
        work?.cancel()
        if let continuation, let answer { continuation.resume(with: answer) }
    }
}
