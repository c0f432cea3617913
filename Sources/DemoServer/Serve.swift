import ArgumentParser
import Foundation
import HTTPAdapter
import IdentityApplication
import Hummingbird
import IdentityPorts
import Logging
import PostgresAdapter
import ServiceLifecycle
import Synchronization
import UnixSignals

/// `DemoServer serve`: the HTTP API on the adapters the configuration chooses.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Serve the HTTP API (the default command).")

    @Flag(name: .customLong("no-worker"), help: "With RABBITMQ_HOST: do not consume commands here (run `DemoServer worker` for that).")
    var noWorker = false

    func run() async throws {
        let settings = Startup.configuration()
        let logger = Startup.logger(settings)
        let metrics = ServerMetrics()
        let wiring = try await Startup.wiring(settings, logger: logger, metrics: metrics, role: .serve(worker: !noWorker))
        var app = Application(
            router: IdentityHTTP.makeRouter(
                service: wiring.service, readiness: wiring.readiness, trustedProxies: settings.trustedProxies,
                metrics: metrics.http
            ),
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
        try await Startup.exitingOnStartupFailure(settings) {
            try await Startup.serviceGroup([app], logger: logger).run()
        }
        logger.notice("identity stopped")
    }
}

/// Deletes expired rows now and then: revocation entries and login failures past their
/// window (the in-memory stores purge themselves).
struct ExpiryPurge: Service {
    typealias Task = @Sendable (Date) async throws -> Int
    let tasks: [(name: String, purge: Task)]
    let clock: any IdentityClock
    let interval: Duration
    let logger: Logger

    func run() async throws {
        await repeatUntilShutdown(every: interval, startingNow: false) {
            for task in tasks {
                do {
                    let purged = try await task.purge(clock.now())
                    if purged > 0 { logger.debug("purged expired rows", metadata: ["what": "\(task.name)", "count": "\(purged)"]) }
                } catch {
                    logger.warning("purge failed; will retry", metadata: ["what": "\(task.name)", "error": "\(error)"])
                }
            }
        }
    }
}

/// Publishes the outbox to the broker: every 100 ms, until the outbox is empty.
/// Runs the PostgreSQL revocation cache's listener until shutdown.
struct RevocationCacheService: Service {
    let cache: PostgresRevocationCache

    func run() async throws {
        await cancelWhenGracefulShutdown { await cache.run() }
    }
}

struct OutboxRelayService: Service {
    let relay: OutboxRelay
    let logger: Logger

    func run() async throws {
        let failing = Mutex(false)
        await repeatUntilShutdown(every: .milliseconds(100), startingNow: true) {
            do {
                try await relay.drain()
                if failing.withLock({ $0 }) { logger.notice("outbox relay publishing again") }
                failing.withLock { $0 = false }
            } catch {
                let first = failing.withLock { failing in
                    defer { failing = true }
                    return !failing
                }
                if first { logger.warning("outbox relay cannot publish; will retry", metadata: ["error": "\(error)"]) }
            }
        }
    }
}

/// Runs `work` every `interval` until the task is cancelled or a graceful shutdown begins; the
/// first run comes at once when `startingNow`, else after one interval.
func repeatUntilShutdown(every interval: Duration, startingNow: Bool, _ work: @escaping @Sendable () async -> Void) async {
    await cancelWhenGracefulShutdown {
        var waitFirst = !startingNow
        while !Task.isCancelled {
            if waitFirst {
                do {
                    try await Task.sleep(for: interval)
                } catch {
                    return
                }
            }
            waitFirst = true
            await work()
        }
    }
}
