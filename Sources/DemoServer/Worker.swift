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

    func run() async throws {
        let settings = Startup.configuration()
        let logger = Startup.logger(settings)
        let tracing = Startup.tracing(settings, role: "worker", logger: logger)
        let wiring = try await Startup.wiring(settings, logger: logger, role: .worker)
        // The check runs as the last service, once the database pool (started before it) runs.
        let check = StartupCheck {
            try await wiring.prepare()
            logger.notice("identity worker running [\(wiring.summary)]")
        }
        let group = Startup.serviceGroup(tracing + wiring.services + [check], logger: logger)
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
