public import IdentityPorts
public import IdentityDomain
public import PostgresNIO
public import Foundation
import Logging

/// Failed-login counts in PostgreSQL, shared by every instance (contract §3).
///
/// An attempt is decided and counted in one transaction that first takes transaction-level
/// advisory locks on its keys, so concurrent attempts for one email or address, on any
/// instance, are counted one after the other and none slips past the limit.
public struct PostgresLoginThrottle: LoginThrottle {
    private let session: PostgresSession
    private let limits: LoginThrottleLimits

    /// Creates the throttle on `client` with `limits`.
    public init(client: PostgresClient, limits: LoginThrottleLimits = LoginThrottleLimits(),
                timeout: Duration = .seconds(5), logger: Logger = Logger(label: "identity.postgres")) {
        self.session = PostgresSession(client: client, timeout: timeout, logger: logger)
        self.limits = limits
    }

    public func beginAttempt(email: Email, client address: String?, now: Date) async throws -> ThrottleDecision {
        let limits = limits
        let keys = [("email:" + email.value, limits.maxFailuresPerEmail)]
            + (address.map { [("client:" + $0, limits.maxFailuresPerClient)] } ?? [])
        return try await session.run { client, logger in
            try await client.withTransaction(logger: logger) { connection in
                // Sorted, so that two attempts locking the same two keys cannot deadlock.
                for (key, _) in keys.sorted(by: { $0.0 < $1.0 }) {
                    try await connection.query("SELECT pg_advisory_xact_lock(hashtextextended(\(key), 0))", logger: logger)
                }
                let since = now.addingTimeInterval(-limits.window)
                var retryAfter: TimeInterval = 0
                for (key, limit) in keys {
                    let rows = try await connection.query(
                        "SELECT failed_at FROM identity_login_failures WHERE key = \(key) AND failed_at > \(since) ORDER BY failed_at",
                        logger: logger
                    )
                    var failures: [Date] = []
                    for try await failedAt in rows.decode(Date.self) { failures.append(failedAt) }
                    retryAfter = max(retryAfter, limits.retryAfter(failures: failures, limit: limit, now: now))
                }
                if retryAfter > 0 { return ThrottleDecision.throttled(retryAfterSeconds: Int(retryAfter.rounded(.up))) }
                for (key, limit) in keys {
                    try await connection.query(
                        "INSERT INTO identity_login_failures (key, failed_at) VALUES (\(key), \(now))", logger: logger
                    )
                    // Keep only what the limit can ever need.
                    try await connection.query(
                        """
                        DELETE FROM identity_login_failures WHERE key = \(key) AND (failed_at <= \(since) OR ctid NOT IN (
                            SELECT ctid FROM identity_login_failures WHERE key = \(key) ORDER BY failed_at DESC LIMIT \(limit)))
                        """,
                        logger: logger
                    )
                }
                return ThrottleDecision.allowed
            }
        }
    }

    public func recordSuccess(email: Email, client address: String?) async throws {
        try await session.run { client, logger in
            try await client.withTransaction(logger: logger) { connection in
                try await connection.query("DELETE FROM identity_login_failures WHERE key = \("email:" + email.value)", logger: logger)
                if let address {
                    let key = "client:" + address
                    try await connection.query(
                        """
                        DELETE FROM identity_login_failures WHERE ctid IN (
                            SELECT ctid FROM identity_login_failures WHERE key = \(key) ORDER BY failed_at DESC LIMIT 1)
                        """,
                        logger: logger
                    )
                }
            }
        }
    }

    /// Deletes failures that left the window; returns how many.
    @discardableResult
    public func purgeExpired(now: Date) async throws -> Int {
        let since = now.addingTimeInterval(-limits.window)
        return try await session.run { client, logger in
            let rows = try await client.query(
                "WITH gone AS (DELETE FROM identity_login_failures WHERE failed_at <= \(since) RETURNING 1) SELECT count(*) FROM gone",
                logger: logger
            )
            for try await count in rows.decode(Int64.self) { return Int(count) }
            return 0
        }
    }
}
