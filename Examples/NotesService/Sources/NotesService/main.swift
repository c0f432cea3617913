import Foundation
import Logging
import NotesServiceKit
import ServiceLifecycle
import UnixSignals

// Configured by the environment (see `NotesSettings`); stops gracefully on SIGTERM or SIGINT.
var logger = Logger(label: "notes")
logger.logLevel = .info
do {
    let settings = try NotesSettings(environment: ProcessInfo.processInfo.environment)
    let group = ServiceGroup(
        services: try NotesService.services(settings: settings, logger: logger), gracefulShutdownSignals: [.sigterm, .sigint], logger: logger
    )
    try await group.run()
} catch {
    logger.critical("notes service stopped: \(error)")
    exit(1)
}
