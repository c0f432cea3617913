public import PostgresNIO
import Foundation
import Crypto
import IdentityPorts
import Logging

/// One versioned migration, shipped as `Migrations/NNNN_name.up.sql` and `.down.sql`.
public struct Migration: Sendable, Equatable {
    /// Version number, from the file name.
    public let version: Int
    /// Name, from the file name.
    public let name: String
    /// SQL applying it.
    public let up: String
    /// SQL undoing it.
    public let down: String

    /// Splits SQL into statements at `;` outside quotes, dollar-quoted bodies (`$$ … $$`,
    /// `$tag$ … $tag$`) and `--` comments. postgres-nio speaks only the extended protocol,
    /// one statement per query.
    static func statements(_ sql: String) -> [String] {
        let characters = Array(sql)
        var statements: [String] = []
        var current = ""
        var index = 0
        while index < characters.count {
            let character = characters[index]
            if character == "-", index + 1 < characters.count, characters[index + 1] == "-" {
                // A comment runs to the end of its line; the line break stays.
                while index < characters.count, characters[index] != "\n" { index += 1 }
                continue
            }
            if character == ";" {
                statements.append(current)
                current = ""
                index += 1
                continue
            }
            if character == "'" {
                // A quoted string ends at the next quote; `''` inside is two strings back to back.
                let end = characters[(index + 1)...].firstIndex(of: "'") ?? characters.count - 1
                current.append(contentsOf: characters[index...end])
                index = end + 1
                continue
            }
            if character == "$", let tag = dollarTag(characters, at: index) {
                // A dollar-quoted body ends at the same tag.
                var end = index + tag.count
                while end < characters.count, !characters[end...].starts(with: tag) { end += 1 }
                end = min(end + tag.count, characters.count)
                current.append(contentsOf: characters[index..<end])
                index = end
                continue
            }
            current.append(character)
            index += 1
        }
        statements.append(current)
        return statements.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }.filter { !$0.isEmpty }
    }

    /// The dollar-quote tag (`$$` or `$name$`) that starts at `index`, if one does.
    private static func dollarTag(_ characters: [Character], at index: Int) -> [Character]? {
        var end = index + 1
        while end < characters.count, characters[end] == "_" || characters[end].isLetter || (end > index + 1 && characters[end].isNumber) {
            end += 1
        }
        guard end < characters.count, characters[end] == "$" else { return nil }
        return Array(characters[index...end])
    }

    /// SHA-256 of the up SQL, hex: recorded when applied, compared ever after.
    public var checksum: String {
        SHA256.hash(data: Data(up.utf8)).map { String(format: "%02x", $0) }.joined()
    }
}

/// A migration as recorded in the schema table.
public struct AppliedMigration: Sendable, Equatable {
    /// Version number.
    public let version: Int
    /// Name when applied.
    public let name: String
    /// Checksum when applied.
    public let checksum: String
}

/// What `migrate status` reports.
public struct MigrationStatus: Sendable, Equatable {
    /// Recorded in the schema table, oldest first.
    public let applied: [AppliedMigration]
    /// Shipped but not applied, oldest first.
    public let pending: [Migration]

    /// Whether the schema is the one this build expects.
    public var isCurrent: Bool { pending.isEmpty }
}

/// Why migrating stopped. The description is one line, safe to print.
public struct MigrationError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What is wrong.
    public let description: String

    /// An applied migration's SQL differs from what this build ships.
    static func tampered(_ version: Int, _ name: String) -> MigrationError {
        MigrationError(description: "migration \(version) (\(name)) changed after it was applied: its checksum differs")
    }
}

/// The database schema is older than this build: `serve` refuses to run on it.
public struct SchemaOutOfDate: Error, Sendable, Equatable, CustomStringConvertible {
    /// How many migrations are pending.
    public let pending: Int
    public var description: String {
        "the database schema is out of date (\(pending) pending migration\(pending == 1 ? "" : "s")): run `DemoServer migrate up`"
    }
}

/// Applies, undoes and reports versioned SQL migrations, under a PostgreSQL advisory lock so
/// that two migrators at once are safe: the second waits, then finds nothing to do.
public struct PostgresMigrator: Sendable {
    private let source: PostgresConnectionSource
    private let logger: Logger
    /// The migrations this build ships, oldest first.
    public let migrations: [Migration]

    /// The advisory lock key (arbitrary, fixed: "IDNT").
    static let lockKey: Int64 = 0x4944_4E54

    /// Creates a migrator with the shipped migrations (or `migrations`, for tests).
    public init(client: PostgresClient, migrations: [Migration]? = nil, logger: Logger = Logger(label: "identity.migrate")) throws {
        try self.init(source: .client(client), migrations: migrations, logger: logger)
    }

    /// Creates a migrator on `pool` with the shipped migrations (or `migrations`, for tests).
    public init(pool: PostgresConnectionPool, migrations: [Migration]? = nil, logger: Logger = Logger(label: "identity.migrate")) throws {
        try self.init(source: .pool(pool), migrations: migrations, logger: logger)
    }

    /// A migrator on `source`, with the shipped migrations unless `migrations` are given.
    public init(source: PostgresConnectionSource, migrations: [Migration]? = nil, logger: Logger = Logger(label: "identity.migrate")) throws {
        self.source = source
        self.logger = logger
        self.migrations = try migrations ?? Self.shipped()
    }

    /// The migrations in the package's `Migrations` resource folder.
    public static func shipped() throws -> [Migration] {
        guard let folder = Bundle.module.url(forResource: "Migrations", withExtension: nil) else {
            throw MigrationError(description: "the Migrations resource folder is missing")
        }
        let files = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".up.sql") }
        return try files.map { file in
            let stem = String(file.dropLast(".up.sql".count))
            let parts = stem.split(separator: "_", maxSplits: 1)
            guard parts.count == 2, let version = Int(parts[0]) else {
                throw MigrationError(description: "migration file \(file) is not named NNNN_name.up.sql")
            }
            let up = try String(contentsOf: folder.appendingPathComponent(file), encoding: .utf8)
            let down = try String(contentsOf: folder.appendingPathComponent(stem + ".down.sql"), encoding: .utf8)
            return Migration(version: version, name: String(parts[1]), up: up, down: down)
        }.sorted { $0.version < $1.version }
    }

    /// Applied and pending migrations; throws `MigrationError` when an applied one was changed.
    public func status() async throws -> MigrationStatus {
        do {
            return try await source.withConnection { connection in try await status(on: connection) }
        } catch {
            throw PostgresErrors.translate(error)
        }
    }

    /// Throws `SchemaOutOfDate` unless every shipped migration is applied (and unchanged).
    public func ensureCurrent() async throws {
        let status = try await status()
        if !status.isCurrent { throw SchemaOutOfDate(pending: status.pending.count) }
    }

    /// Runs `body`, giving up with `BackendUnavailable` after `timeout`: the pool retries an
    /// absent server with backoff for a minute or more, which start-up must not wait out.
    public static func withDeadline<T: Sendable>(
        _ timeout: Duration, _ body: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        try await PostgresErrors.withDeadline(timeout, body)
    }

    /// Applies every pending migration, each in its own transaction; returns those applied.
    @discardableResult
    public func up() async throws -> [Migration] {
        try await locked { connection in
            let pending = try await status(on: connection).pending
            for migration in pending {
                try await connection.withTransaction(logger: logger) { transaction in
                    for statement in Migration.statements(migration.up) {
                        try await transaction.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                    }
                    try await transaction.query(
                        """
                        INSERT INTO identity_schema_migrations (version, name, checksum, applied_at)
                        VALUES (\(migration.version), \(migration.name), \(migration.checksum), now())
                        """,
                        logger: logger
                    )
                }
                logger.notice("applied migration \(migration.version) (\(migration.name))")
            }
            return pending
        }
    }

    /// Undoes the last `count` applied migrations, newest first; returns those undone.
    @discardableResult
    public func down(_ count: Int) async throws -> [Migration] {
        try await locked { connection in
            let applied = try await status(on: connection).applied
            let undo = applied.suffix(max(0, count)).reversed().compactMap { record in
                migrations.first { $0.version == record.version }
            }
            for migration in undo {
                try await connection.withTransaction(logger: logger) { transaction in
                    for statement in Migration.statements(migration.down) {
                        try await transaction.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                    }
                    try await transaction.query(
                        "DELETE FROM identity_schema_migrations WHERE version = \(migration.version)", logger: logger
                    )
                }
                logger.notice("undid migration \(migration.version) (\(migration.name))")
            }
            return undo
        }
    }

    private func locked<T: Sendable>(_ body: (PostgresConnection) async throws -> T) async throws -> T {
        do {
            return try await source.withConnection { connection in
                try await connection.query("SELECT pg_advisory_lock(\(Self.lockKey))", logger: logger)
                do {
                    try await connection.query(
                        """
                        CREATE TABLE IF NOT EXISTS identity_schema_migrations (
                            version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,
                            applied_at timestamptz NOT NULL
                        )
                        """,
                        logger: logger
                    )
                    let result = try await body(connection)
                    try await connection.query("SELECT pg_advisory_unlock(\(Self.lockKey))", logger: logger)
                    return result
                } catch {
                    _ = try? await connection.query("SELECT pg_advisory_unlock(\(Self.lockKey))", logger: logger)
                    throw error
                }
            }
        } catch {
            throw PostgresErrors.translate(error)
        }
    }

    private func status(on connection: PostgresConnection) async throws -> MigrationStatus {
        // Read-only: the schema table exists once a migrator has taken the lock.
        let exists = try await connection.query("SELECT to_regclass('identity_schema_migrations') IS NOT NULL", logger: logger)
        var hasTable = false
        for try await value in exists.decode(Bool.self) { hasTable = value }
        guard hasTable else { return MigrationStatus(applied: [], pending: migrations) }
        let rows = try await connection.query(
            "SELECT version, name, checksum FROM identity_schema_migrations ORDER BY version", logger: logger
        )
        var applied: [AppliedMigration] = []
        for try await (version, name, checksum) in rows.decode((Int, String, String).self) {
            applied.append(AppliedMigration(version: version, name: name, checksum: checksum))
        }
        for record in applied {
            if let shipped = migrations.first(where: { $0.version == record.version }), shipped.checksum != record.checksum {
                throw MigrationError.tampered(record.version, record.name)
            }
        }
        let done = Set(applied.map(\.version))
        return MigrationStatus(applied: applied, pending: migrations.filter { !done.contains($0.version) })
    }
}
