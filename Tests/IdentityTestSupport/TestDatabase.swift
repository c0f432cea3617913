import Foundation
import Logging
public import PostgresNIO
public import Testing

/// The PostgreSQL that `scripts/test` starts, from `IDENTITY_TEST_POSTGRES_*`.
public enum TestDatabase {
    public static let environment = ProcessInfo.processInfo.environment

    /// Whether a server was given; tests are skipped (saying why) without one.
    public static var isConfigured: Bool { environment["IDENTITY_TEST_POSTGRES_HOST"] != nil }
    public static let skipReason: Comment = "IDENTITY_TEST_POSTGRES_HOST is unset: run scripts/test, which starts PostgreSQL"

    public static var host: String { environment["IDENTITY_TEST_POSTGRES_HOST"] ?? "127.0.0.1" }
    public static var port: Int { Int(environment["IDENTITY_TEST_POSTGRES_PORT"] ?? "") ?? 5432 }
    public static var user: String { environment["IDENTITY_TEST_POSTGRES_USER"] ?? "postgres" }
    public static var adminDatabase: String { environment["IDENTITY_TEST_POSTGRES_DB"] ?? "postgres" }

    public static func configuration(database: String) -> PostgresClient.Configuration {
        var configuration = PostgresClient.Configuration(
            host: host, port: port, username: user, password: environment["IDENTITY_TEST_POSTGRES_PASSWORD"],
            database: database, tls: .disable
        )
        configuration.options.connectTimeout = .seconds(5)
        return configuration
    }

    /// Runs `body` with a running client on a brand-new database, dropped afterwards.
    public static func with<T: Sendable>(_ body: (PostgresClient, String) async throws -> T) async throws -> T {
        let name = "identity_t_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(16)
        try await withClient(database: adminDatabase) { admin in
            try await admin.query("CREATE DATABASE \(unescaped: String(name))")
        }
        do {
            let result = try await withClient(database: String(name)) { try await body($0, String(name)) }
            try await drop(String(name))
            return result
        } catch {
            try? await drop(String(name))
            throw error
        }
    }

    private static func drop(_ name: String) async throws {
        try await withClient(database: adminDatabase) { admin in
            try await admin.query("DROP DATABASE IF EXISTS \(unescaped: name) WITH (FORCE)")
        }
    }

    /// Runs `body` with a client on `database` that runs for the body's duration.
    @discardableResult
    public static func withClient<T: Sendable>(database: String, _ body: (PostgresClient) async throws -> T) async throws -> T {
        let client = PostgresClient(configuration: configuration(database: database))
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await client.run() }
            do {
                let result = try await body(client)
                group.cancelAll()
                return result
            } catch {
                group.cancelAll()
                throw error
            }
        }
    }
}
