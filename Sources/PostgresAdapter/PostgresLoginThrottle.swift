public import IdentityPorts
public import IdentityDomain
public import PostgresNIO
public import Foundation
import Logging
import IdentityAdapterSupport

/// Failed-login counts in PostgreSQL, shared by every instance (contract §3).
///
/// An attempt is decided and recorded in one transaction that first takes transaction-level
/// advisory locks on its keys, so concurrent attempts for one email or address, on any
/// instance, are decided one after the other: one goes ahead, the others are told `.busy` and
/// wait for it, and none slips past the limit. An attempt in flight is a row with its id.
public struct PostgresLoginThrottle: LoginThrottle {
    private let session: PostgresSession
    private let limits: LoginThrottleConfiguration

    /// Creates the throttle on `client` with `limits`.
    public init(client: PostgresClient, limits: LoginThrottleConfiguration = LoginThrottleConfiguration(),
                timeout: Duration = .seconds(5), logger: Logger = Logger(label: "identity.postgres")) {
        self.init(source: .client(client), limits: limits, timeout: timeout, logger: logger)
    }

    /// Creates the throttle on `pool` (which the host runs) with `limits`.
    public init(pool: PostgresConnectionPool, limits: LoginThrottleConfiguration = LoginThrottleConfiguration(),
                timeout: Duration = .seconds(5), logger: Logger = Logger(label: "identity.postgres")) {
        self.init(source: .pool(pool), limits: limits, timeout: timeout, logger: logger)
    }

    /// Creates the throttle on `source` with `limits`; an operation not done within `timeout`
    /// fails with `BackendUnavailable`.
    public init(source: PostgresConnectionSource, limits: LoginThrottleConfiguration = LoginThrottleConfiguration(),
                timeout: Duration = .seconds(5), logger: Logger = Logger(label: "identity.postgres")) {
        self.session = PostgresSession(source: source, timeout: timeout, logger: logger)
        self.limits = limits
    }

    public func beginAttempt(_ attempt: UUID, email: Email, client address: String?, now: Date) async throws -> ThrottleDecision {
        let limits = limits
        let keys = Self.keys(email: email, client: address)
        return try await session.run { connection, logger in
            try await connection.withTransaction(logger: logger) { connection in
                // Sorted, so that two attempts locking the same two keys cannot deadlock.
                for key in keys.sorted() {
                    try await connection.query("SELECT pg_advisory_xact_lock(hashtextextended(\(key), 0))", logger: logger)
                }
                let since = now.addingTimeInterval(-limits.window)
                var recorded: [[ThrottleEntry]] = []
                for key in keys { recorded.append(try await Self.entries(of: key, since: since, on: connection, logger: logger)) }
                let decision = limits.decide(attempt: attempt, email: recorded[0], client: address == nil ? nil : recorded[1], now: now)
                guard decision == .allowed else { return decision }
                for (key, limit) in zip(keys, [limits.maxFailuresPerEmail, limits.maxFailuresPerClient]) {
                    try await connection.query(
                        "INSERT INTO identity_login_failures (key, failed_at, attempt) VALUES (\(key), \(now), \(attempt))", logger: logger
                    )
                    // Keep only the failures the limit can ever need (attempts in flight stay).
                    try await connection.query(
                        """
                        DELETE FROM identity_login_failures WHERE key = \(key) AND (failed_at <= \(since) OR (attempt IS NULL AND ctid NOT IN (
                            SELECT ctid FROM identity_login_failures WHERE key = \(key) AND attempt IS NULL ORDER BY failed_at DESC LIMIT \(limit))))
                        """,
                        logger: logger
                    )
                }
                return decision
            }
        }
    }

    public func finishAttempt(_ attempt: UUID, email: Email, client address: String?, outcome: AttemptOutcome, now: Date) async throws {
        try await session.run { connection, logger in
            switch outcome {
            case .failure:
                try await connection.query(
                    "UPDATE identity_login_failures SET attempt = NULL, failed_at = \(now) WHERE attempt = \(attempt)", logger: logger
                )
            case .success:
                // Two index lookups (the email's rows, the attempt's rows), not a scan for the OR.
                try await connection.query(
                    """
                    DELETE FROM identity_login_failures WHERE ctid IN (
                        SELECT ctid FROM identity_login_failures WHERE key = \("email:" + email.value)
                        UNION ALL SELECT ctid FROM identity_login_failures WHERE attempt = \(attempt))
                    """,
                    logger: logger
                )
            case .abandoned:
                try await connection.query("DELETE FROM identity_login_failures WHERE attempt = \(attempt)", logger: logger)
            }
        }
    }

    public func clearFailures(email: Email, now: Date) async throws {
        try await session.run { connection, logger in
            try await connection.query(
                "DELETE FROM identity_login_failures WHERE key = \("email:" + email.value) AND attempt IS NULL", logger: logger
            )
        }
    }

    public func countMailRequest(client address: String, now: Date) async throws -> ThrottleDecision {
        let limits = limits
        let key = "client:" + address
        return try await session.run { connection, logger in
            try await connection.withTransaction(logger: logger) { connection in
                try await connection.query("SELECT pg_advisory_xact_lock(hashtextextended(\(key), 0))", logger: logger)
                let entries = try await Self.entries(of: key, since: now.addingTimeInterval(-limits.window), on: connection, logger: logger)
                let decision = limits.decideMailRequest(client: entries, now: now)
                guard decision == .allowed else { return decision }
                try await connection.query(
                    "INSERT INTO identity_login_failures (key, failed_at, attempt) VALUES (\(key), \(now), NULL)", logger: logger
                )
                return decision
            }
        }
    }

    /// The failures and attempts in flight of `key` since `since`.
    private static func entries(of key: String, since: Date, on connection: PostgresConnection, logger: Logger) async throws -> [ThrottleEntry] {
        let rows = try await connection.query(
            "SELECT failed_at, attempt FROM identity_login_failures WHERE key = \(key) AND failed_at > \(since)", logger: logger
        )
        var entries: [ThrottleEntry] = []
        for try await (at, id) in rows.decode((Date, UUID?).self) { entries.append(ThrottleEntry(at: at, attempt: id)) }
        return entries
    }

    private static func keys(email: Email, client: String?) -> [String] {
        ["email:" + email.value] + (client.map { ["client:" + $0] } ?? [])
    }

    /// Deletes failures that left the window; returns how many.
    @discardableResult
    public func purgeExpired(now: Date) async throws -> Int {
        let since = now.addingTimeInterval(-limits.window)
        return try await session.run { connection, logger in
            let rows = try await connection.query(
                "WITH gone AS (DELETE FROM identity_login_failures WHERE failed_at <= \(since) RETURNING 1) SELECT count(*) FROM gone",
                logger: logger
            )
            for try await count in rows.decode(Int64.self) { return Int(count) }
            return 0
        }
    }
}
