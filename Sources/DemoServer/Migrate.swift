import ArgumentParser
import Foundation
import IdentityComposition
import Logging
import PostgresAdapter
import PostgresNIO

/// `DemoServer migrate up | down N | status`: the PostgreSQL schema.
struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Apply, undo or list the PostgreSQL schema migrations (needs POSTGRES_HOST).",
        subcommands: [Up.self, Down.self, Status.self]
    )

    struct Up: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Apply every pending migration.")
        func run() async throws {
            try await Migrate.withMigrator { migrator in
                let applied = try await migrator.up()
                print(applied.isEmpty ? "schema is up to date" : applied.map { "applied \(Migrate.label($0))" }.joined(separator: "\n"))
            }
        }
    }

    struct Down: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Undo the last N applied migrations.")
        @Argument(help: "How many migrations to undo (1 or more).") var count: Int

        func validate() throws {
            guard count >= 1 else { throw ValidationError("N must be 1 or more") }
        }

        func run() async throws {
            try await Migrate.withMigrator { migrator in
                let undone = try await migrator.down(count)
                print(undone.isEmpty ? "nothing to undo" : undone.map { "undid \(Migrate.label($0))" }.joined(separator: "\n"))
            }
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List applied and pending migrations.")
        func run() async throws {
            try await Migrate.withMigrator { migrator in
                let status = try await migrator.status()
                for record in status.applied { print("applied  \(record.version) \(record.name)") }
                for migration in status.pending { print("pending  \(label(migration))") }
                print(status.isCurrent ? "schema is up to date" : "\(status.pending.count) pending: run `DemoServer migrate up`")
            }
        }
    }

    static func label(_ migration: Migration) -> String { "\(migration.version) \(migration.name)" }

    /// Runs `body` with a migrator on a running client; any failure is one line and exit 1.
    static func withMigrator(_ body: @Sendable (PostgresMigrator) async throws -> Void) async throws {
        let settings = Startup.configuration()
        let logger = Startup.logger(settings)
        guard let postgres = settings.postgres else {
            exitWithConfigurationError(ConfigurationError("POSTGRES_HOST must be set to migrate"))
        }
        let client = postgres.makeClient(logger: logger)
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { await client.run() }
                defer { group.cancelAll() }
                let migrator = try PostgresMigrator(client: client, logger: logger)
                // Reach the server first, within the deadline; the work itself may take longer.
                _ = try await PostgresMigrator.withDeadline(IdentityStores.startupDeadline) { try await migrator.status() }
                try await body(migrator)
            }
        } catch {
            FileHandle.standardError.write(Data("migrate failed: \(error) (\(postgres.summary))\n".utf8))
            throw ExitCode(1)
        }
    }
}
