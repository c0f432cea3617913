import ArgumentParser
import Foundation
import IdentityPorts
import Logging
import PostgresAdapter
import ServiceLifecycle
import UnixSignals

/// `DemoServer worker`: applies commands from the broker and relays the outbox; no HTTP.
struct Worker: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Consume commands from RabbitMQ (needs RABBITMQ_HOST and POSTGRES_HOST)."
    )

    func run() async throws {
        let settings = Startup.settings()
        let logger = Startup.logger(settings)
        let wiring = try await Startup.wiring(settings, logger: logger, role: .worker)
        let group = ServiceGroup(
            configuration: .init(
                services: wiring.services.map { .init(service: $0) },
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        do {
            // The services (the database pool above all) must run for the schema check to answer.
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask { try await group.run() }
                try await wiring.prepare()
                logger.notice("identity worker running [\(wiring.summary)]")
                try await tasks.next()
            }
        } catch let error as SchemaOutOfDate {
            exitCannotStart(error.description)
        } catch let error as MigrationError {
            exitCannotStart(error.description)
        } catch let error as BackendUnavailable {
            exitCannotStart("\(error) (\(settings.postgres?.summary ?? "no address"))")
        }
        logger.notice("identity worker stopped")
    }
}
