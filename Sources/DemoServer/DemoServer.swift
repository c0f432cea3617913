import ArgumentParser
import Foundation

/// The demo server: the users and auth contexts wired to the adapters chosen by configuration.
@main
struct DemoServer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "DemoServer",
        abstract: "The Identity demo server.",
        discussion: ConfigurationVariable.helpText,
        subcommands: [Serve.self, Worker.self, Migrate.self, ImportUsers.self, Keys.self, ShowConfiguration.self],
        defaultSubcommand: Serve.self
    )
}

/// `DemoServer config`: the effective configuration, secrets redacted; a bad value exits 78
/// with the same line as `serve`.
struct ShowConfiguration: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config",
        abstract: "Print the effective configuration, one NAME=value a line with where it came from; secrets redacted."
    )

    func run() {
        print(Startup.configuration().description)
    }
}
