import ArgumentParser
import CryptoAdapter
import Foundation
import HTTPAdapter
import Hummingbird
import IdentityApplication
import IdentityPorts
import InMemoryAdapter
import Logging
import UnixSignals

/// `DemoServer serve`: the HTTP API on the embedded adapters.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Serve the HTTP API (the default command).")

    func run() async throws {
        let settings: Settings
        do {
            settings = try Settings(from: ConfigurationSource.load())
        } catch let error as ConfigurationError {
            exitWithConfigurationError(error)
        }
        let level = settings.logLevel
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "identity")
        let wiring: Wiring
        do {
            wiring = try await Wiring(settings: settings, logger: logger)
        } catch let error as ConfigurationError {
            exitWithConfigurationError(error)
        }
        let app = Application(
            router: IdentityHTTP.makeRouter(service: wiring.service, readiness: wiring.readiness),
            configuration: .init(address: .hostname(settings.host, port: settings.port), serverName: nil),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? settings.port
                logger.notice("identity serving on http://\(settings.host):\(port) [\(wiring.summary)]")
            },
            logger: logger
        )
        try await app.runService(gracefulShutdownSignals: [.sigterm, .sigint])
        logger.notice("identity stopped")
    }
}

/// The adapters chosen by the settings, wired into the service.
struct Wiring {
    let service: IdentityService
    let readiness: [any HealthCheck]
    let summary: String

    init(settings: Settings, logger: Logger) async throws {
        if settings.postgresHost != nil {
            throw ConfigurationError("POSTGRES_HOST is set, but this build has no PostgreSQL adapter yet; unset it for the in-memory store")
        }
        if settings.rabbitmqHost != nil {
            throw ConfigurationError("RABBITMQ_HOST is set, but this build has no RabbitMQ adapter yet; unset it for the in-process bus")
        }
        let secret: String
        if let configured = settings.jwtSecret {
            secret = configured
        } else {
            secret = TokenConfiguration.randomSecret()
            logger.warning("JWT_SECRET is unset: using a random secret, so tokens will not survive a restart")
        }
        let lifetime = TimeInterval(settings.jwtExpireMinutes * 60)
        let tokenConfiguration: TokenConfiguration
        let argon2: Argon2Parameters
        do {
            tokenConfiguration = try TokenConfiguration(
                secret: secret, algorithm: JWTAlgorithmName(rawValue: settings.jwtAlgorithm) ?? .hs256,
                issuer: settings.jwtIssuer, audience: settings.jwtAudience, lifetime: lifetime
            )
            argon2 = try Argon2Parameters(
                memoryKiB: settings.argon2MemoryKiB, iterations: settings.argon2Iterations, parallelism: settings.argon2Parallelism
            )
        } catch let error as TokenConfigurationError {
            throw ConfigurationError("JWT_SECRET: \(error)")
        } catch {
            throw ConfigurationError("ARGON2_*: \(error)")
        }
        let clock = SystemClock()
        let store = InMemoryUserStore()
        let revocations = InMemoryRevocationStore(clock: clock)
        let throttle = InMemoryLoginThrottle(limits: LoginThrottleLimits(
            maxFailuresPerEmail: settings.loginMaxFailures, maxFailuresPerClient: settings.loginMaxFailuresPerClient,
            window: TimeInterval(settings.loginFailureWindowSeconds)
        ))
        let policy = IdentityPolicy(tokenLifetime: lifetime)
        let handler = IdentityCommandHandler(users: store, outbox: store, revocations: revocations, clock: clock, policy: policy)
        let service = IdentityService(IdentityDependencies(
            users: store, outbox: store, revocations: revocations, hasher: Argon2idHasher(parameters: argon2),
            tokens: await JWTTokenService(configuration: tokenConfiguration), throttle: throttle,
            bus: InProcessCommandBus(handler: handler), clock: clock
        ))
        try await service.warmUp()
        self.service = service
        self.readiness = []
        self.summary = "store=in-memory bus=in-process hasher=argon2id(\(argon2)) tokens=\(settings.jwtAlgorithm)"
    }
}
