@testable import DemoServer
import Foundation
import IdentityPorts
import Logging
import ServiceLifecycle
import IdentityTestSupport
import Testing

/// `DemoServer worker --heartbeat FILE`: the file the worker's container health check reads.
@Suite("Worker heartbeat")
struct WorkerHeartbeatTests {
    struct Backend: HealthCheck {
        let backendName = "rabbitmq"
        let answers: Bool
        func checkHealth() async throws {
            if !answers { throw Down() }
        }
    }
    struct Down: Error {}

    static func temporaryPath() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("heartbeat-\(UUID().uuidString)").path
    }

    @Test("while every backend answers the file is written and the check passes")
    func writtenWhileHealthy() async throws {
        let path = Self.temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(WorkerHeartbeat.check(path: path) == "no heartbeat at \(path)")
        #expect(await WorkerHeartbeat(path: path, checks: [Backend(answers: true)], logger: Logger(label: "test")).beat() == nil)
        #expect(WorkerHeartbeat.check(path: path) == nil)
    }

    @Test("a backend that does not answer removes the file, so the check fails")
    func removedWhileABackendIsDown() async throws {
        let path = Self.temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: path) }
        await WorkerHeartbeat(path: path, checks: [Backend(answers: true)], logger: Logger(label: "test")).beat()
        let failing = await WorkerHeartbeat(path: path, checks: [Backend(answers: true), Backend(answers: false)], logger: Logger(label: "test")).beat()
        #expect(failing == "rabbitmq")
        #expect(!FileManager.default.fileExists(atPath: path))
        #expect(WorkerHeartbeat.check(path: path) != nil)
    }

    @Test("a file older than three intervals fails the check (a worker that hangs)")
    func staleFileFails() async throws {
        let path = Self.temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: path) }
        await WorkerHeartbeat(path: path, checks: [], logger: Logger(label: "test")).beat()
        #expect(WorkerHeartbeat.check(path: path, now: Date().addingTimeInterval(14)) == nil)
        let problem = WorkerHeartbeat.check(path: path, now: Date().addingTimeInterval(16))
        #expect(problem?.hasSuffix("s old (limit 15 s)") == true, "\(problem ?? "passed")")
    }

    @Test("the service beats until the graceful shutdown, then removes the file")
    func serviceBeatsUntilShutdown() async throws {
        let path = Self.temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let heartbeat = WorkerHeartbeat(path: path, checks: [Backend(answers: true)], interval: .milliseconds(20), logger: Logger(label: "test"))
        let group = Startup.serviceGroup([heartbeat], logger: Logger(label: "test"))
        let running = Task { try await group.run() }
        // A full run starts dozens of servers beside this test: give the first beat time.
        #expect(await eventually(within: 60) { WorkerHeartbeat.check(path: path) == nil }, "the file appears")
        await group.triggerGracefulShutdown()
        try await running.value
        #expect(!FileManager.default.fileExists(atPath: path), "and goes with the worker")
    }
}
