import ArgumentParser
import Foundation
import IdentityComposition
import IdentityPorts
import Logging
import PostgresAdapter
import ServiceLifecycle
import UnixSignals

/// `DemoServer worker`: applies commands from the broker and relays the outbox; no HTTP.
struct Worker: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Consume commands from RabbitMQ (needs RABBITMQ_HOST, POSTGRES_HOST and COMMAND_SIGNING_KEY)."
    )

    @Option(help: ArgumentHelp(
        "Rewrite this file every 5 s while the database and the broker answer (for a container health check).", valueName: "file"
    ))
    var heartbeat: String?

    @Flag(help: "With --heartbeat: exit 0 if the file is fresh (under 15 s old), 1 otherwise; start no worker.")
    var check = false

    func validate() throws {
        if check, heartbeat == nil { throw ValidationError("--check needs --heartbeat FILE") }
    }

    func run() async throws {
        if check, let heartbeat {
            if let problem = WorkerHeartbeat.check(path: heartbeat) {
                FileHandle.standardError.write(Data("unhealthy: \(problem)\n".utf8))
                throw ExitCode(1)
            }
            return
        }
        let settings = Startup.configuration()
        let logger = Startup.logger(settings)
        let tracing = Startup.tracing(settings, role: "worker", logger: logger)
        let wiring = try await Startup.wiring(settings, logger: logger, role: .worker)
        // The check runs as the last service, once the database pool (started before it) runs.
        let startup = StartupCheck {
            try await wiring.prepare()
            logger.notice("identity worker running [\(wiring.summary)]")
        }
        var services = tracing + wiring.services + [startup]
        if let heartbeat { services.append(WorkerHeartbeat(path: heartbeat, checks: wiring.readiness, logger: logger)) }
        let group = Startup.serviceGroup(services, logger: logger)
        try await Startup.exitingOnStartupFailure(settings) { try await group.run() }
        logger.notice("identity worker stopped")
    }
}

/// Runs `work` once the services before it have started, then waits for shutdown; an error
/// from `work` stops the group with it.
struct StartupCheck: Service {
    let work: @Sendable () async throws -> Void

    func run() async throws {
        try await work()
        try await gracefulShutdown()
    }
}
