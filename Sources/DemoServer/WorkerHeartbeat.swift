import Foundation
import IdentityPorts
import Logging
import ServiceLifecycle

/// The worker's liveness for a container health check, without an HTTP port: while the
/// worker's backends answer (the readiness checks `/health/ready` asks on a node), it rewrites
/// a file every `interval`; `DemoServer worker --heartbeat FILE --check` passes while that file
/// is fresh. A worker whose database or broker has gone, or that hangs, stops refreshing it.
struct WorkerHeartbeat: Service {
    let path: String
    let checks: [any HealthCheck]
    var interval: Duration = Self.interval
    let logger: Logger

    /// How often the file is rewritten; `check` allows three intervals.
    static let interval: Duration = .seconds(5)

    func run() async throws {
        // The graceful shutdown cancels the loop (its sleep throws CancellationError): that is
        // this service's normal end, not a failure of the worker.
        do {
            try await beatUntilShutdown()
        } catch is CancellationError {}
        try? FileManager.default.removeItem(atPath: path)
    }

    private func beatUntilShutdown() async throws {
        try await cancelWhenGracefulShutdown {
            // Only changes are logged, and not the backends still connecting at start-up.
            var wasHealthy = false
            var failed = false
            while !Task.isCancelled {
                let failing = await beat()
                if let failing, wasHealthy {
                    logger.warning("worker heartbeat withheld: \(failing) does not answer")
                    failed = true
                } else if failing == nil, failed {
                    logger.notice("worker heartbeat resumed")
                    failed = false
                }
                wasHealthy = failing == nil
                try await Task.sleep(for: interval)
            }
        }
    }

    /// Writes the file when every check passes and returns nil; otherwise removes it and
    /// returns the name of the first backend that does not answer.
    @discardableResult
    func beat() async -> String? {
        for check in checks {
            do {
                try await check.checkHealth()
            } catch {
                try? FileManager.default.removeItem(atPath: path)
                return check.backendName
            }
        }
        do {
            try Data("\(Int(Date().timeIntervalSince1970))\n".utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            logger.warning("worker heartbeat: cannot write \(path): \(error)")
        }
        return nil
    }

    /// Whether the file at `path` was written less than `maximumAge` ago; otherwise why not.
    static func check(path: String, maximumAge: Duration = interval * 3, now: Date = Date()) -> String? {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path),
            let written = attributes[.modificationDate] as? Date
        else { return "no heartbeat at \(path)" }
        let age = now.timeIntervalSince(written)
        let limit = Double(maximumAge.components.seconds)
        return age < limit ? nil : "heartbeat \(Int(age)) s old (limit \(Int(limit)) s)"
    }
}
