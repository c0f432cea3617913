import SQLiteNIO
public import Logging
import Foundation
import IdentityPorts
import IdentityDomain
import Crypto
import Tracing

/// One SQLite database file (or `:memory:`) behind one connection, shared by the SQLite
/// stores. Work runs one unit at a time, in order (SQLite has one writer anyway), on
/// sqlite-nio's thread pool: never on an event loop.
///
/// Opening applies the versioned migrations it ships (`Migrations/NNNN_name.sql`) that the file
/// does not have yet, each in a transaction, and refuses a file whose applied migrations
/// differ from ours (checksum) or that is newer than this build.
public actor IdentitySQLiteDatabase {
    let connection: SQLiteConnection
    private var busy = false
    private var waiting: [CheckedContinuation<Void, Never>] = []

    /// Opens (creating if need be) the database at `path`, or an in-memory one for `:memory:`,
    /// and brings its schema up to date.
    public static func open(path: String, logger: Logger = Logger(label: "identity.sqlite")) async throws -> IdentitySQLiteDatabase {
        let storage: SQLiteConnection.Storage = path == ":memory:" ? .memory : .file(path: path)
        let connection: SQLiteConnection
        do {
            connection = try await SQLiteConnection.open(storage: storage, logger: logger)
        } catch {
            throw SQLiteStoreError(description: "cannot open the SQLite database at \(path): \(error)")
        }
        let database = IdentitySQLiteDatabase(connection: connection)
        try await database.migrate()
        return database
    }

    private init(connection: SQLiteConnection) {
        self.connection = connection
    }

    deinit {
        // sqlite-nio insists on an explicit close; the future keeps the connection until it is done.
        if !connection.isClosed { _ = connection.close() }
    }

    /// Closes the connection; the stores fail afterwards.
    public func close() async throws {
        try await connection.close()
    }

    /// Runs `body` alone on the connection, in a span named after the calling store operation
    /// (`SQLite.insert`; the wait for the connection included). No SQL or value is recorded.
    func exclusive<T: Sendable>(
        function: String = #function, _ body: @Sendable (SQLiteConnection) async throws -> T
    ) async throws -> T {
        let operation = String(function.prefix { $0 != "(" })
        // Only within a trace (a request's, a command's): background loops would otherwise start
        // a root trace at every poll.
        guard ServiceContext.current != nil else {
            await acquire()
            defer { release() }
            return try await body(connection)
        }
        return try await withSpan("SQLite.\(operation)", ofKind: .client) { span in
            span.attributes["db.system.name"] = "sqlite"
            span.attributes["db.operation.name"] = operation
            await acquire()
            defer { release() }
            return try await body(connection)
        }
    }

    /// Runs `body` alone, inside a transaction that commits when it returns and rolls back when it throws.
    func transaction<T: Sendable>(
        function: String = #function, _ body: @Sendable (SQLiteConnection) async throws -> T
    ) async throws -> T {
        try await exclusive(function: function) { connection in
            _ = try await connection.query("BEGIN IMMEDIATE")
            do {
                let result = try await body(connection)
                _ = try await connection.query("COMMIT")
                return result
            } catch {
                _ = try? await connection.query("ROLLBACK")
                throw error
            }
        }
    }

    private func acquire() async {
        if !busy {
            busy = true
            return
        }
        await withCheckedContinuation { waiting.append($0) }
    }

    private func release() {
        if waiting.isEmpty {
            busy = false
        } else {
            waiting.removeFirst().resume()
        }
    }

    // MARK: migrations

    struct Migration {
        let version: Int
        let name: String
        let sql: String
        /// What undoes it (`NNNN_name.down.sql`), for the migrations that ship one.
        var down: String?
        var checksum: String { SHA256.hash(data: Data(sql.utf8)).map { String(format: "%02x", $0) }.joined() }
    }

    static func shippedMigrations() throws -> [Migration] {
        guard let directory = Bundle.module.url(forResource: "Migrations", withExtension: nil) else {
            throw SQLiteStoreError(description: "the SQLite migrations are missing from the bundle")
        }
        let all = try FileManager.default.contentsOfDirectory(atPath: directory.path)
        let files = all.filter { $0.hasSuffix(".sql") && !$0.hasSuffix(".down.sql") }.sorted()
        return try files.map { file in
            let stem = file.dropLast(4)
            guard let underscore = stem.firstIndex(of: "_"), let version = Int(stem[..<underscore]) else {
                throw SQLiteStoreError(description: "migration file \(file) is not named NNNN_name.sql")
            }
            let sql = try String(contentsOf: directory.appendingPathComponent(file), encoding: .utf8)
            let downFile = stem + ".down.sql"
            let down = all.contains(String(downFile))
                ? try String(contentsOf: directory.appendingPathComponent(String(downFile)), encoding: .utf8) : nil
            return Migration(version: version, name: String(stem[stem.index(after: underscore)...]), sql: sql, down: down)
        }
    }

    /// Undoes the applied migrations newer than `version`, newest first, each in a transaction
    /// with its record, so that an older build can open the file; returns the versions undone.
    /// Refuses (undoing nothing) when one of them ships no down migration (`NNNN_name.down.sql`):
    /// the first three do not. The stores fail on what was undone until the file is opened
    /// again, which applies it again.
    public func revert(toVersion version: Int) async throws -> [Int] {
        let migrations = try Self.shippedMigrations()
        return try await exclusive { connection in
            var applied: [Int] = []
            for row in try await connection.query("SELECT version FROM identity_schema_migrations WHERE version > ? ORDER BY version DESC",
                                                  [.integer(version)]) {
                if let number = row.column("version")?.integer { applied.append(Int(number)) }
            }
            let undoing = try applied.map { number in
                guard let down = migrations.first(where: { $0.version == number })?.down else {
                    throw SQLiteStoreError(description: "migration \(number) cannot be undone: it ships no down migration")
                }
                return (number, down)
            }
            for (number, down) in undoing {
                _ = try await connection.query("BEGIN IMMEDIATE")
                do {
                    for statement in Self.statements(down) { _ = try await connection.query(statement) }
                    _ = try await connection.query("DELETE FROM identity_schema_migrations WHERE version = ?", [.integer(number)])
                    _ = try await connection.query("COMMIT")
                } catch {
                    _ = try? await connection.query("ROLLBACK")
                    throw error
                }
            }
            return undoing.map(\.0)
        }
    }

    private func migrate() async throws {
        let migrations = try Self.shippedMigrations()
        try await transaction { connection in
            _ = try await connection.query("""
                CREATE TABLE IF NOT EXISTS identity_schema_migrations (
                    version INTEGER PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL, applied_ms INTEGER NOT NULL)
                """)
            var applied: [Int: String] = [:]
            for row in try await connection.query("SELECT version, checksum FROM identity_schema_migrations") {
                if let version = row.column("version")?.integer, let checksum = row.column("checksum")?.string {
                    applied[Int(version)] = checksum
                }
            }
            if let newest = applied.keys.max(), newest > (migrations.last?.version ?? 0) {
                throw SQLiteStoreError(description: "the SQLite database has migration \(newest), newer than this build knows")
            }
            for migration in migrations {
                if let checksum = applied[migration.version] {
                    guard checksum == migration.checksum else {
                        throw SQLiteStoreError(
                            description: "applied migration \(migration.version) \(migration.name) differs from this build's (checksum)")
                    }
                    continue
                }
                for statement in Self.statements(migration.sql) {
                    _ = try await connection.query(statement)
                }
                _ = try await connection.query(
                    "INSERT INTO identity_schema_migrations (version, name, checksum, applied_ms) VALUES (?, ?, ?, ?)",
                    [.integer(migration.version), .text(migration.name), .text(migration.checksum),
                     Date().sqliteMilliseconds]
                )
            }
        }
    }

    /// The statements of a migration: split at semicolons that end a line, comments dropped.
    static func statements(_ sql: String) -> [String] {
        let lines = sql.split(separator: "\n", omittingEmptySubsequences: false)
            .filter { !$0.trimmingCharacters(in: .whitespaces).hasPrefix("--") }
        return lines.joined(separator: "\n").components(separatedBy: ";\n")
            .map { $0.trimmingCharacters(in: .whitespacesAndNewlines).trimmingCharacters(in: CharacterSet(charactersIn: ";")) }
            .filter { !$0.isEmpty }
    }
}

/// An SQLite failure that is not a business rule: the file cannot be opened, its schema is
/// not this build's, or a statement failed. Its description carries no data.
public struct SQLiteStoreError: Error, Sendable, CustomStringConvertible {
    public let description: String
}

extension Date {
    var sqliteMilliseconds: SQLiteData { .integer(Int(epochMilliseconds)) }
    init(sqliteMilliseconds value: Int) { self.init(timeIntervalSince1970: Double(value) / 1000) }
}
