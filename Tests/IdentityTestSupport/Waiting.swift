import Foundation

/// Polls `condition` every 10 ms until it holds or `seconds` pass; returns whether it held.
/// The wait is a `Task.sleep`, so polling never holds one of Swift concurrency's threads.
public func eventually(within seconds: Double = 20, _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + .seconds(seconds)
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return try await condition()
}

/// Runs `body` on a thread of its own and returns its result.
///
/// For what blocks: waiting for a child process, a server start-up loop. Swift concurrency has
/// as many threads as cores (two here); a test that blocks one of them slows every test of the
/// run, and one that blocks both stalls it. Tests run side by side in one process, so blocking
/// waits go through here.
public func onOwnThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try body() }) }.start()
    }
}

