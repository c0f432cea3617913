public import CryptoAdapter
import Dispatch
import IdentityDomain
public import NIOPosix

/// A hasher whose one thread can be held, to fill its queue deterministically: `jam()` puts a
/// job that blocks until `release()` on the pool, so every hash or verification submitted
/// after it waits, and `waitingJobs` says how many do. Call `release()` and `shutdown()`
/// before the test ends.
public final class HashingJam: Sendable {
    /// The password `fill` verifies: hash it to make the filled verifications succeed.
    public static let password = "a long enough password"
    /// The pool of one thread the hasher runs on.
    public let pool: NIOThreadPool
    /// A hasher with cheap parameters on `pool`, refusing more than `queueLimit` waiting jobs.
    public let hasher: Argon2idHasher
    private let gate = DispatchSemaphore(value: 0)
    private let started = DispatchSemaphore(value: 0)

    /// Runs `body` with a new jam, then releases it and stops its pool, whatever `body` did.
    public static func with(queueLimit: Int, _ body: (HashingJam) async throws -> Void) async throws {
        let jam = try HashingJam(queueLimit: queueLimit)
        do {
            try await body(jam)
        } catch {
            jam.release()
            try? await jam.shutdown()
            throw error
        }
        jam.release()
        try await jam.shutdown()
    }

    /// Starts the pool; the hasher allows `queueLimit` waiting jobs.
    public init(queueLimit: Int) throws {
        pool = NIOThreadPool(numberOfThreads: 1)
        pool.start()
        hasher = Argon2idHasher(parameters: try Argon2Configuration(memoryKiB: 64, iterations: 1), pool: pool, queueLimit: queueLimit)
    }

    /// Occupies the pool's thread until `release()`; returns once the blocking job runs.
    public func jam() async throws {
        let (gate, started) = (gate, started)
        pool.submit { _ in
            started.signal()
            gate.wait()
        }
        try await onOwnThread { started.wait() }
    }

    /// Starts `count` verifications that wait behind the jam, and returns once all of them are
    /// counted as waiting (polled, within a generous deadline). The tasks finish after `release()`.
    public func fill(_ count: Int, against hash: String) async throws -> [Task<Bool, any Error>] {
        let hasher = self.hasher
        let before = hasher.waitingJobs
        let tasks = (0..<count).map { _ in
            Task { try await hasher.verify(try Password(Self.password), against: hash) }
        }
        guard await eventually({ hasher.waitingJobs == before + count }) else {
            throw JamError(description: "\(count) verifications did not all wait (waiting: \(hasher.waitingJobs))")
        }
        return tasks
    }

    /// Runs `call`, which should be answered without waiting for the held thread. Should it join
    /// the queue instead (a broken limit), the jam is released so that it ends, and `JamError`
    /// is thrown: the test fails instead of hanging. Whatever `call` returns or throws is passed on.
    public func refusedAtOnce<T: Sendable>(_ call: @escaping @Sendable () async throws -> T) async throws -> T {
        let hasher = self.hasher
        let before = hasher.waitingJobs
        let attempt = Task { try await call() }
        let watcher = Task { [self] in
            while !Task.isCancelled {
                if hasher.waitingJobs > before {
                    release()
                    return true
                }
                try? await Task.sleep(for: .milliseconds(5))
            }
            return false
        }
        let result = await attempt.result
        watcher.cancel()
        if await watcher.value { throw JamError(description: "the call waited for a hashing thread instead of being refused") }
        return try result.get()
    }

    /// How many calls of `hasher` wait for the thread now.
    public var waitingJobs: Int { hasher.waitingJobs }

    /// Lets the blocking job end, so the pool runs what waits (idempotent for one jam).
    public func release() {
        gate.signal()
    }

    /// Stops the pool after the work queued on it.
    public func shutdown() async throws {
        try await pool.shutdownGracefully()
    }
}

/// Why a `HashingJam` could not be set up.
public struct JamError: Error, CustomStringConvertible {
    /// What went wrong.
    public let description: String
}
