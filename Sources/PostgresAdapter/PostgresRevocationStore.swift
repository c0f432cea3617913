public import IdentityPorts
public import IdentityDomain
public import PostgresNIO
public import Foundation
import Logging
public import IdentityAdapterSupport

/// Revoked tokens and per-account cut-offs in PostgreSQL, shared by every instance.
///
/// A revocation is durable when `revoke` returns. Every revocation written gets its place in
/// one gap-free order (`seq`, migration 0004) and is announced with it on the channel
/// `identity_revocations`; `changes(after:)` reads what came after a place, and
/// `announceHeartbeat()` tells every listener the newest place. `purgeExpired(now:)` deletes
/// what has expired.
public struct PostgresRevocationStore: RevocationSnapshotting, PostgresSourcedStore {
    private let session: PostgresSession

    /// Creates the store on `source`; an operation not done within `timeout` fails with
    /// `BackendUnavailable`.
    public init(source: PostgresConnectionSource, timeout: Duration = .seconds(5), logger: Logger = Logger(label: "identity.postgres")) {
        self.session = PostgresSession(source: source, timeout: timeout, logger: logger)
    }

    public func revoke(jti: String, userID: UserID, until: Date) async throws {
        try await write([.token(jti: jti, userID: userID, until: until)])
    }

    public func revokeAll(userID: UserID, belowVersion: Int64, until: Date) async throws {
        try await write([.account(userID: userID, belowVersion: belowVersion, until: until)])
    }

    private func write(_ revocations: [Revocation]) async throws {
        try await session.run { connection, logger in
            try await connection.withTransaction(logger: logger) { connection in
                try await Self.write(revocations, on: connection, logger: logger)
            }
        }
    }

    /// Writes `revocations` on `connection`, in the caller's transaction. Entries only add up:
    /// the later expiry and the higher version win.
    static func write(_ revocations: [Revocation], on connection: PostgresConnection, logger: Logger) async throws {
        for revocation in revocations {
            switch revocation {
            case .token(let jti, let userID, let until):
                try await connection.query(
                    """
                    INSERT INTO identity_revoked_tokens (jti, user_id, expires_at) VALUES (\(jti), \(userID.uuid), \(until))
                    ON CONFLICT (jti) DO UPDATE SET expires_at = GREATEST(identity_revoked_tokens.expires_at, EXCLUDED.expires_at)
                    """,
                    logger: logger
                )
            case .account(let userID, let version, let until):
                try await connection.query(
                    """
                    INSERT INTO identity_account_cutoffs (user_id, below_version, expires_at)
                    VALUES (\(userID.uuid), \(version), \(until))
                    ON CONFLICT (user_id) DO UPDATE SET
                        below_version = GREATEST(identity_account_cutoffs.below_version, EXCLUDED.below_version),
                        expires_at = GREATEST(identity_account_cutoffs.expires_at, EXCLUDED.expires_at)
                    """,
                    logger: logger
                )
            }
        }
    }

    public func isRevoked(jti: String, userID: UserID, accountVersion: Int64) async throws -> Bool {
        try await session.run { connection, logger in
            let rows = try await connection.query(
                """
                SELECT EXISTS (SELECT 1 FROM identity_revoked_tokens WHERE jti = \(jti))
                    OR EXISTS (SELECT 1 FROM identity_account_cutoffs
                               WHERE user_id = \(userID.uuid) AND below_version > \(accountVersion))
                """,
                logger: logger
            )
            for try await revoked in rows.decode(Bool.self) { return revoked }
            return false
        }
    }

    @discardableResult
    public func purgeExpired(now: Date) async throws -> Int {
        try await session.run { connection, logger in
            let rows = try await connection.query(
                """
                WITH tokens AS (DELETE FROM identity_revoked_tokens WHERE expires_at < \(now) RETURNING 1),
                     cutoffs AS (DELETE FROM identity_account_cutoffs WHERE expires_at < \(now) RETURNING 1)
                SELECT (SELECT count(*) FROM tokens) + (SELECT count(*) FROM cutoffs)
                """,
                logger: logger
            )
            for try await count in rows.decode(Int64.self) { return Int(count) }
            return 0
        }
    }

    /// The revocations written after place `sequence` that have not been purged, and the newest
    /// place, read in one statement (one snapshot): after merging them a listener has every
    /// revocation up to `last`.
    public func changes(after sequence: Int64) async throws -> (last: Int64, messages: [RevocationMessage]) {
        try await session.run { connection, logger in
            let rows = try await connection.query(
                """
                SELECT last, NULL::text FROM identity_revocation_sequence
                UNION ALL
                SELECT NULL, identity_revocation_message(seq, jti, user_id, NULL, expires_at)
                FROM identity_revoked_tokens WHERE seq > \(sequence)
                UNION ALL
                SELECT NULL, identity_revocation_message(seq, NULL, user_id, below_version, expires_at)
                FROM identity_account_cutoffs WHERE seq > \(sequence)
                """,
                logger: logger
            )
            var last: Int64 = 0
            var messages: [RevocationMessage] = []
            let decoder = JSONDecoder()
            for try await (newest, document) in rows.decode((Int64?, String?).self) {
                if let newest { last = newest }
                if let document { messages.append(try decoder.decode(RevocationMessage.self, from: Data(document.utf8))) }
            }
            return (last, messages)
        }
    }

    /// Announces the newest place on `identity_revocations` (`{"last": …}`), through the pool:
    /// a listener that hears no heartbeat knows its own connection has stopped delivering.
    public func announceHeartbeat() async throws {
        try await session.run { connection, logger in
            try await connection.query(
                """
                SELECT pg_notify('identity_revocations', json_build_object('last', last)::text)
                FROM identity_revocation_sequence
                """,
                logger: logger
            )
        }
    }
}

extension PostgresRevocationStore {
    public func snapshot(now: Date) async throws -> RevocationSnapshot {
        try await session.run { connection, logger in
            var snapshot = RevocationSnapshot()
            let tokens = try await connection.query(
                "SELECT jti, user_id, expires_at FROM identity_revoked_tokens WHERE expires_at >= \(now)", logger: logger
            )
            for try await (jti, userID, expiresAt) in tokens.decode((String, UUID, Date).self) {
                snapshot.tokens.append(.init(jti: jti, userID: UserID(userID), expiresAt: expiresAt.roundedToMilliseconds))
            }
            let cutoffs = try await connection.query(
                "SELECT user_id, below_version, expires_at FROM identity_account_cutoffs WHERE expires_at >= \(now)", logger: logger
            )
            for try await (userID, version, until) in cutoffs.decode((UUID, Int64, Date).self) {
                snapshot.cutoffs.append(.init(userID: UserID(userID), belowVersion: version, until: until.roundedToMilliseconds))
            }
            return snapshot
        }
    }
}

/// Readiness: PostgreSQL answers a trivial query.
public struct PostgresHealthCheck: HealthCheck {
    private let source: PostgresConnectionSource
    public let backendName = "postgres"

    /// Creates the check on `client`.
    public init(client: PostgresClient) {
        self.source = .client(client)
    }

    /// Creates the check on `pool`.
    public init(pool: PostgresConnectionPool) {
        self.source = .pool(pool)
    }

    /// Checks the database behind `source`.
    public init(source: PostgresConnectionSource) {
        self.source = source
    }

    public func checkHealth() async throws {
        let source = source
        try await PostgresErrors.run(timeout: .seconds(2)) {
            try await source.withConnection { connection in
                _ = try await connection.query("SELECT 1", logger: Logger(label: "identity.postgres.health"))
            }
        }
    }
}
