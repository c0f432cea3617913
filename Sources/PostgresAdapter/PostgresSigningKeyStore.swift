public import IdentityPorts
public import PostgresNIO
import IdentityAdapterSupport
import IdentityDomain
import Foundation
import Logging

/// Signing key pairs in PostgreSQL (migration 0007), shared by every instance:
/// `identity_signing_keys` and the one-row revision counter `identity_signing_key_revision`.
///
/// A commit is one transaction that first moves the revision on with
/// `UPDATE … SET revision = revision + 1 WHERE revision = <expected>`, then applies every
/// change. Of two instances committing on one revision, the second's `UPDATE` waits for the
/// first's row lock, held until the first transaction ends and by nothing else, then finds
/// the revision moved and updates no row: it answers false and changes nothing. A change
/// that does not fit throws `SigningKeyConflict` and rolls the whole commit back, revision
/// included. The key set and its revision are read in one statement, one snapshot.
/// Instants are stored as whole milliseconds, rounded down.
public struct PostgresSigningKeyStore: SigningKeyStore, PostgresSourcedStore {
    private let session: PostgresSession

    /// Creates the store on `source`; an operation not done within `timeout` fails with
    /// `BackendUnavailable`.
    public init(source: PostgresConnectionSource, timeout: Duration = .seconds(5), logger: Logger = Logger(label: "identity.postgres")) {
        self.session = PostgresSession(source: source, timeout: timeout, logger: logger)
    }

    public func keySet() async throws -> SigningKeySet {
        try await session.run { connection, logger in
            // One row per key, or one row of NULLs besides the revision when there is none.
            let rows = try await connection.query(
                """
                SELECT r.revision, \(unescaped: Self.columns("k")) FROM identity_signing_key_revision r
                LEFT JOIN identity_signing_keys k ON true
                ORDER BY k.created_at, k.kid COLLATE "C"
                """,
                logger: logger
            )
            var revision: Int64?
            var keys: [SigningKeyRecord] = []
            for try await (read, kid, algorithm, publicKey, sealed, state, created, activates, retired, publishedUntil)
                in rows.decode((Int64, String?, String?, Data?, Data?, String?, Date?, Date?, Date?, Date?).self)
            {
                revision = read
                guard let kid else { continue }
                guard let algorithm, let publicKey, let sealed, let state, let created, let activates else {
                    throw UnreadableSigningKey(kid: kid, reason: "a required column is NULL")
                }
                keys.append(SigningKeyRecord(
                    kid: kid, algorithm: algorithm, publicKey: publicKey, sealedPrivateKey: sealed,
                    state: try SigningKeyState(stored: state, kid: kid), createdAt: created.roundedToMilliseconds,
                    activatesAt: activates.roundedToMilliseconds, retiredAt: retired?.roundedToMilliseconds,
                    publishedUntil: publishedUntil?.roundedToMilliseconds
                ))
            }
            guard let revision else { throw PostgresStoreError(sqlState: nil) }
            return SigningKeySet(revision: revision, keys: keys)
        }
    }

    public func commit(_ changes: [SigningKeyChange], expectedRevision: Int64) async throws -> Bool {
        try await session.run { connection, logger in
            try await connection.withTransaction(logger: logger) { connection in
                let moved = try await connection.query(
                    """
                    UPDATE identity_signing_key_revision SET revision = revision + 1 WHERE revision = \(expectedRevision)
                    RETURNING revision
                    """,
                    logger: logger
                )
                guard try await Self.count(moved) == 1 else { return false }
                for change in changes {
                    try await Self.apply(change, on: connection, logger: logger)
                }
                return true
            }
        }
    }

    /// Applies one change in the caller's transaction; throws `SigningKeyConflict` when it
    /// touches no row (a duplicate insert, an update or delete of a missing key).
    private static func apply(_ change: SigningKeyChange, on connection: PostgresConnection, logger: Logger) async throws {
        let touched: PostgresRowSequence
        let kid: String
        switch change {
        case .insert(let key):
            kid = key.kid
            touched = try await connection.query(
                """
                INSERT INTO identity_signing_keys (\(unescaped: columns(nil)))
                VALUES (\(key.kid), \(key.algorithm), \(key.publicKey), \(key.sealedPrivateKey), \(key.state.rawValue),
                    \(instant: key.createdAt), \(instant: key.activatesAt), \(instant: key.retiredAt), \(instant: key.publishedUntil))
                ON CONFLICT (kid) DO NOTHING RETURNING 1
                """,
                logger: logger
            )
        case .update(let key):
            kid = key.kid
            touched = try await connection.query(
                """
                UPDATE identity_signing_keys SET algorithm = \(key.algorithm), public_key = \(key.publicKey),
                    sealed_private_key = \(key.sealedPrivateKey), state = \(key.state.rawValue),
                    created_at = \(instant: key.createdAt), activates_at = \(instant: key.activatesAt), retired_at = \(instant: key.retiredAt),
                    published_until = \(instant: key.publishedUntil)
                WHERE kid = \(key.kid) RETURNING 1
                """,
                logger: logger
            )
        case .delete(let deleted):
            kid = deleted
            touched = try await connection.query("DELETE FROM identity_signing_keys WHERE kid = \(deleted) RETURNING 1", logger: logger)
        }
        guard try await count(touched) == 1 else { throw SigningKeyConflict(kid: kid) }
    }

    private static func columns(_ table: String?) -> String {
        let prefix = table.map { $0 + "." } ?? ""
        return ["kid", "algorithm", "public_key", "sealed_private_key", "state", "created_at", "activates_at", "retired_at",
                "published_until"].map { prefix + $0 }.joined(separator: ", ")
    }

    private static func count(_ rows: PostgresRowSequence) async throws -> Int {
        var count = 0
        for try await _ in rows { count += 1 }
        return count
    }
}

extension PostgresQuery.StringInterpolation {
    /// `date` rounded down to the millisecond, as an exact `timestamptz` (NULL for nil): bound
    /// as whole epoch milliseconds and converted by the server. postgres-nio writes a `Date` as
    /// microseconds cut from a `Double`, which is often one microsecond short of the millisecond.
    mutating func appendInterpolation(instant date: Date?) {
        appendLiteral("(timestamptz 'epoch' + ")
        appendInterpolation(date.map { $0.truncatedToMilliseconds.epochMilliseconds })
        appendLiteral("::bigint * interval '1 millisecond')")
    }
}
