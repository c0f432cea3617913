import ArgumentParser
import Foundation

/// The demo server: the users and auth contexts wired to the adapters chosen by configuration.
@main
struct DemoServer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "DemoServer",
        abstract: "The Identity demo server.",
        subcommands: [Serve.self],
        defaultSubcommand: Serve.self
    )
}

/// Prints one line to standard error and exits with EX_CONFIG (78).
func exitWithConfigurationError(_ error: ConfigurationError) -> Never {
    FileHandle.standardError.write(Data("invalid configuration: \(error.description)\n".utf8))
    exit(78)
}
