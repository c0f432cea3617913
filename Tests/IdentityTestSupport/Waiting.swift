import Foundation
import Synchronization

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

private let spawnLock = Mutex(())

/// Runs `body`, which creates a pipe and starts a child process with it, while no other test
/// does the same.
///
/// The tests run side by side in one process, and a pipe's descriptors are inherited by any
/// child that another thread starts before the parent closes its copy of the write end. A
/// long-lived child (a demo server, a database) holding another test's output pipe keeps that
/// pipe from ever reaching its end, and that test waits for an end of output that never comes.
/// Foundation's `Process.run` closes the parent's write end before it returns, so inside
/// `body` the window is closed.
public func spawning<T>(_ body: () throws -> T) rethrows -> T {
    try spawnLock.withLock { _ in try body() }
}
