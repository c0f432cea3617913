import CryptoAdapter
import Foundation
import Logging
import IdentityComposition
import IdentityPorts
import PostgresAdapter
import ServiceLifecycle
import UnixSignals

/// What every command does first: read the configuration (or exit with one line) and set up logging.
enum Startup {
    static func configuration() -> ServerConfiguration {
        do {
            return try ServerConfiguration(from: ConfigurationValues.load())
        } catch let error as ConfigurationError {
            exitWithConfigurationError(error)
        } catch {
            exitWithConfigurationError(ConfigurationError("\(error)"))
        }
    }

    /// The stack the configuration chooses, or one line and exit 78 when it cannot be built as
    /// configured (69 when its store cannot be opened).
    static func wiring(
        _ settings: ServerConfiguration, logger: Logger, metrics: ServerMetrics? = nil, role: Wiring.Role = .serve(worker: true)
    ) async throws -> IdentityStack {
        do {
            return try await Wiring.stack(settings: settings, logger: logger, metrics: metrics, role: role)
        } catch let error as ConfigurationError {
            exitWithConfigurationError(error)
        } catch let error as IdentityCompositionError {
            exitWithConfigurationError(ConfigurationError(error.description))
        } catch {
            exitCannotStart("\(error)")
        }
    }

    /// Runs the process's services; a schema that is not current or a database that does not
    /// answer at start-up ends the process with one line and exit 69.
    static func exitingOnStartupFailure(_ settings: ServerConfiguration, _ run: () async throws -> Void) async throws {
        do {
            try await run()
        } catch let error as SchemaOutOfDate {
            exitCannotStart(error.description)
        } catch let error as MigrationError {
            exitCannotStart(error.description)
        } catch let error as BackendUnavailable {
            exitCannotStart("\(error) (\(settings.postgres?.summary ?? "no address"))")
        } catch let error as SigningKeyError {
            exitWithSigningKeyError(error)
        }
    }

    /// A stored signing key that does not open: the wrong `JWT_KEY_ENCRYPTION_KEY` (a
    /// configuration error, 78), or keys that cannot sign (69).
    static func exitWithSigningKeyError(_ error: SigningKeyError) -> Never {
        if error.isConfigurationError { exitWithConfigurationError(ConfigurationError(error.description)) }
        exitCannotStart(error.description)
    }

    /// The process's services, stopped gracefully by SIGTERM or SIGINT. A stop always ends:
    /// whatever has not finished after `gracefulShutdownLimit` is cancelled, and what ignores
    /// its cancellation for `cancellationLimit` more ends the process with a crash report.
    static func serviceGroup(
        _ services: [any Service], logger: Logger, gracefulShutdownLimit: Duration = gracefulShutdownLimit,
        cancellationLimit: Duration = cancellationLimit
    ) -> ServiceGroup {
        var configuration = ServiceGroupConfiguration(
            services: services.map { .init(service: $0) }, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger
        )
        configuration.maximumGracefulShutdownDuration = gracefulShutdownLimit
        configuration.maximumCancellationDuration = cancellationLimit
        return ServiceGroup(configuration: configuration)
    }

    static let gracefulShutdownLimit: Duration = .seconds(30)
    static let cancellationLimit: Duration = .seconds(10)

    /// Bootstraps logging: `LOG_LEVEL`, `LOG_FORMAT`, and with tracing on the current span's
    /// `trace_id` and `span_id` in every line's metadata.
    static func logger(_ settings: ServerConfiguration) -> Logger {
        let level = settings.logLevel
        let format = settings.logFormat
        let provider = settings.traceExport == nil ? nil : TraceExport.metadataProvider
        LoggingSystem.bootstrap({ label, provider in
            switch format {
            case .text:
                return TextLogHandler(label: label, level: level, metadataProvider: provider)
            case .json:
                return JSONLogHandler(label: label, level: level, metadataProvider: provider)
            }
        }, metadataProvider: provider)
        return Logger(label: "identity")
    }

    /// With an OTLP endpoint configured, bootstraps the tracer and returns the exporting
    /// service, to run first (so it stops last and flushes); with none, nothing: tracing off.
    static func tracing(_ settings: ServerConfiguration, role: String, logger: Logger) -> [any Service] {
        guard let export = settings.traceExport else { return [] }
        guard !TraceExport.isDisabled(by: ProcessInfo.processInfo.environment) else {
            logger.notice("tracing disabled by OTEL_SDK_DISABLED or OTEL_TRACES_EXPORTER")
            return []
        }
        do {
            let service = try export.bootstrap(role: role)
            logger.notice("tracing: exporting spans over OTLP/HTTP", metadata: ["endpoint": "\(export.url)"])
            return [service]
        } catch {
            exitWithConfigurationError(ConfigurationError("OTEL_*: \(error)"))
        }
    }
}

/// Prints one line to standard error and exits with EX_CONFIG (78).
func exitWithConfigurationError(_ error: ConfigurationError) -> Never {
    FileHandle.standardError.write(Data("invalid configuration: \(error.description)\n".utf8))
    exit(78)
}

/// Prints one line to standard error and exits with EX_UNAVAILABLE (69): a backend that is
/// down, or a database that is not ready for this build.
func exitCannotStart(_ reason: String) -> Never {
    FileHandle.standardError.write(Data("cannot start: \(reason)\n".utf8))
    exit(69)
}
