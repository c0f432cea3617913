import ArgumentParser
import Foundation
import HTTPAdapter
import Hummingbird
import IdentityPorts
import Logging
import PostgresAdapter
import ServiceLifecycle
import UnixSignals

/// `DemoServer serve`: the HTTP API on the adapters the configuration chooses.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Serve the HTTP API (the default command).")

    func run() async throws {
        let settings = Startup.settings()
        let logger = Startup.logger(settings)
        let wiring: Wiring
        do {
            wiring = try await Wiring(settings: settings, logger: logger)
        } catch let error as ConfigurationError {
            exitWithConfigurationError(error)
        }
        var app = Application(
            router: IdentityHTTP.makeRouter(service: wiring.service, readiness: wiring.readiness),
            configuration: .init(address: .hostname(settings.host, port: settings.port), serverName: nil),
            services: wiring.services,
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? settings.port
                logger.notice("identity serving on http://\(settings.host):\(port) [\(wiring.summary)]")
            },
            logger: logger
        )
        app.beforeServerStarts {
            try await wiring.prepare()
        }
        do {
            try await app.runService(gracefulShutdownSignals: [.sigterm, .sigint])
        } catch let error as SchemaOutOfDate {
            exitCannotStart(error.description)
        } catch let error as MigrationError {
            exitCannotStart(error.description)
        } catch let error as BackendUnavailable {
            exitCannotStart("\(error) (\(settings.postgres?.summary ?? "no address"))")
        }
        logger.notice("identity stopped")
    }
}

/// Deletes expired revocation entries now and then (the in-memory store also purges itself).
struct RevocationPurge: Service {
    let store: any RevocationStore
    let clock: any IdentityClock
    let interval: Duration
    let logger: Logger

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do {
                    try await Task.sleep(for: interval)
                    let purged = try await store.purgeExpired(now: clock.now())
                    if purged > 0 { logger.debug("purged expired revocation entries", metadata: ["count": "\(purged)"]) }
                } catch is CancellationError {
                    return
                } catch {
                    logger.warning("revocation purge failed; will retry", metadata: ["error": "\(error)"])
                }
            }
        }
    }
}
