public import IdentityPorts
public import IdentityDomain
public import PostgresNIO
public import Foundation
import Logging

/// Revoked tokens and per-user cut-offs in PostgreSQL, shared by every instance.
///
/// A revocation is durable when `revoke` returns. Cut-offs are compared in whole epoch
/// milliseconds, the precision of token `iat`s. `purgeExpired(now:)` deletes what has expired.
public struct PostgresRevocationStore: RevocationSnapshotting {
    private let session: PostgresSession

    /// Creates the store on `client`; an operation not done within `timeout` fails with
    /// `BackendUnavailable`.
    public init(client: PostgresClient, timeout: Duration = .seconds(5), logger: Logger = Logger(label: "identity.postgres")) {
        self.session = PostgresSession(client: client, timeout: timeout, logger: logger)
    }

    public func revoke(jti: String, userID: UserID, expiresAt: Date) async throws {
        try await session.run { client, logger in
            try await client.query(
                """
                INSERT INTO identity_revoked_tokens (jti, user_id, expires_at) VALUES (\(jti), \(userID.uuid), \(expiresAt))
                ON CONFLICT (jti) DO UPDATE SET expires_at = GREATEST(identity_revoked_tokens.expires_at, EXCLUDED.expires_at)
                """,
                logger: logger
            )
        }
    }

    public func revokeAll(userID: UserID, issuedBefore cutoff: Date, until: Date) async throws {
        try await session.run { client, logger in
            try await client.query(
                """
                INSERT INTO identity_token_cutoffs (user_id, cutoff_ms, expires_at)
                VALUES (\(userID.uuid), \(cutoff.epochMilliseconds), \(until))
                ON CONFLICT (user_id) DO UPDATE SET
                    cutoff_ms = GREATEST(identity_token_cutoffs.cutoff_ms, EXCLUDED.cutoff_ms),
                    expires_at = GREATEST(identity_token_cutoffs.expires_at, EXCLUDED.expires_at)
                """,
                logger: logger
            )
        }
    }

    public func isRevoked(jti: String, userID: UserID, issuedAt: Date) async throws -> Bool {
        try await session.run { client, logger in
            let rows = try await client.query(
                """
                SELECT EXISTS (SELECT 1 FROM identity_revoked_tokens WHERE jti = \(jti))
                    OR EXISTS (SELECT 1 FROM identity_token_cutoffs
                               WHERE user_id = \(userID.uuid) AND cutoff_ms >= \(issuedAt.epochMilliseconds))
                """,
                logger: logger
            )
            for try await revoked in rows.decode(Bool.self) { return revoked }
            return false
        }
    }

    @discardableResult
    public func purgeExpired(now: Date) async throws -> Int {
        try await session.run { client, logger in
            let rows = try await client.query(
                """
                WITH tokens AS (DELETE FROM identity_revoked_tokens WHERE expires_at < \(now) RETURNING 1),
                     cutoffs AS (DELETE FROM identity_token_cutoffs WHERE expires_at < \(now) RETURNING 1)
                SELECT (SELECT count(*) FROM tokens) + (SELECT count(*) FROM cutoffs)
                """,
                logger: logger
            )
            for try await count in rows.decode(Int64.self) { return Int(count) }
            return 0
        }
    }
}

extension PostgresRevocationStore {
    public func snapshot(now: Date) async throws -> RevocationSnapshot {
        try await session.run { client, logger in
            var snapshot = RevocationSnapshot()
            let tokens = try await client.query(
                "SELECT jti, user_id, expires_at FROM identity_revoked_tokens WHERE expires_at >= \(now)", logger: logger
            )
            for try await (jti, userID, expiresAt) in tokens.decode((String, UUID, Date).self) {
                snapshot.tokens.append(.init(jti: jti, userID: UserID(userID), expiresAt: expiresAt.roundedToMilliseconds))
            }
            let cutoffs = try await client.query(
                "SELECT user_id, cutoff_ms, expires_at FROM identity_token_cutoffs WHERE expires_at >= \(now)", logger: logger
            )
            for try await (userID, cutoff, until) in cutoffs.decode((UUID, Int64, Date).self) {
                snapshot.cutoffs.append(.init(
                    userID: UserID(userID), issuedBefore: Date(timeIntervalSince1970: Double(cutoff) / 1000),
                    until: until.roundedToMilliseconds
                ))
            }
            return snapshot
        }
    }
}

/// Readiness: PostgreSQL answers a trivial query.
public struct PostgresHealthCheck: HealthCheck {
    private let client: PostgresClient
    public let backendName = "postgres"

    /// Creates the check on `client`.
    public init(client: PostgresClient) {
        self.client = client
    }

    public func checkHealth() async throws {
        try await PostgresErrors.run(timeout: .seconds(2)) { try await client.query("SELECT 1") }
    }
}
