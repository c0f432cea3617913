@testable import DemoServer
import Logging
import ServiceLifecycle
import Synchronization
import Testing

/// A stop always ends the process's services, even one stuck in its start-up.
@Suite("Shutdown")
struct ShutdownTests {
    final class Flag: Sendable {
        let value = Mutex(false)
    }

    @Test("a service that ignores the graceful shutdown is cancelled once the limit has passed")
    func stuckServiceIsCancelled() async throws {
        let flag = Flag()
        let group = Startup.serviceGroup(
            [StuckService(flag: flag)], logger: Logger(label: "shutdown-test"), gracefulShutdownLimit: .milliseconds(100),
            cancellationLimit: .seconds(60)
        )
        let running = Task { try await group.run() }
        await group.triggerGracefulShutdown()
        _ = await running.result  // returns: the stuck service was cancelled, not waited for
        #expect(flag.value.withLock { $0 }, "the stuck service saw its cancellation")
    }

    /// Ignores the graceful shutdown (as a server stuck before it starts serving does) and
    /// ends only when cancelled.
    struct StuckService: Service {
        let flag: Flag
        func run() async throws {
            do {
                try await Task.sleep(for: .seconds(3600))
            } catch {
                flag.value.withLock { $0 = true }
                throw error
            }
        }
    }
}
