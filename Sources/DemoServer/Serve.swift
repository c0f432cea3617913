import ArgumentParser
import Foundation
import IdentityComposition
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
        let tracing = Startup.tracing(settings, role: "serve", logger: logger)
        let metrics = ServerMetrics()
        let wiring = try await Startup.wiring(settings, logger: logger, metrics: metrics, role: .serve(worker: !noWorker))
        var app = Application(
            router: IdentityHTTP.makeRouter(
                service: wiring.service, readiness: wiring.readiness, trustedProxies: settings.trustedProxies,
                metrics: metrics.http, publicBaseURL: settings.publicBaseURL, tracing: !tracing.isEmpty
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
            try await Startup.serviceGroup(tracing + [app], logger: logger).run()
        }
        logger.notice("identity stopped")
    }
}
