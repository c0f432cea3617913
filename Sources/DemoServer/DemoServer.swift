import ArgumentParser
import Foundation

/// The demo server: the users and auth contexts wired to the adapters chosen by configuration.
@main
struct DemoServer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "DemoServer",
        abstract: "The Identity demo server.",
        subcommands: [Serve.self, Worker.self, Migrate.self, ImportUsers.self],
        defaultSubcommand: Serve.self
    )
}

