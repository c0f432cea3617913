public import IdentityPorts
import IdentityAdapterSupport
import IdentityDomain
import Foundation
import SQLiteNIO

/// Signing key pairs in SQLite (migration 0005): `identity_signing_keys` and the one-row
/// revision counter `identity_signing_key_revision`.
///
/// A commit is one `BEGIN IMMEDIATE` transaction on the database's one connection: it moves
/// the revision on with `UPDATE … SET revision = revision + 1 WHERE revision = <expected>`
/// (no row: another commit came first, nothing changes), then applies every change; a change
/// that does not fit throws `SigningKeyConflict` and rolls the whole commit back, revision
/// included. The key set and its revision are read in one statement. Instants are stored as
/// whole epoch milliseconds, rounded down.
public struct SQLiteSigningKeyStore: SigningKeyStore {
    private let database: IdentitySQLiteDatabase

    /// Creates the store on `database`.
    public init(database: IdentitySQLiteDatabase) {
        self.database = database
    }

    public func keySet() async throws -> SigningKeySet {
        try await database.exclusive { connection in
            // One statement, so the keys are those of the revision read with them: one row
            // per key, or one row of NULLs besides the revision when there is none.
            let rows = try await connection.query(
                """
                SELECT r.revision, \(Self.columns("k")) FROM identity_signing_key_revision r
                LEFT JOIN identity_signing_keys k ON 1 = 1
                ORDER BY k.created_ms, k.kid
                """
            )
            guard let revision = rows.first?.column("revision")?.integer else {
                throw SQLiteStoreError(description: "the signing key revision row is missing")
            }
            let keys = try rows.filter { $0.column("kid")?.string != nil }.map(Self.record(from:))
            return SigningKeySet(revision: Int64(revision), keys: keys)
        }
    }

    public func commit(_ changes: [SigningKeyChange], expectedRevision: Int64) async throws -> Bool {
        try await database.transaction { connection in
            let moved = try await connection.query(
                "UPDATE identity_signing_key_revision SET revision = revision + 1 WHERE revision = ? RETURNING revision",
                [.integer(Int(expectedRevision))]
            )
            guard !moved.isEmpty else { return false }
            for change in changes {
                try await Self.apply(change, on: connection)
            }
            return true
        }
    }

    /// Applies one change in the caller's transaction; throws `SigningKeyConflict` when it
    /// touches no row (a duplicate insert, an update or delete of a missing key).
    private static func apply(_ change: SigningKeyChange, on connection: SQLiteConnection) async throws {
        let touched: [SQLiteRow]
        let kid: String
        switch change {
        case .insert(let record):
            kid = record.kid
            touched = try await connection.query(
                """
                INSERT INTO identity_signing_keys (\(columns(nil))) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (kid) DO NOTHING RETURNING 1
                """,
                binds(of: record)
            )
        case .update(let record):
            kid = record.kid
            touched = try await connection.query(
                """
                UPDATE identity_signing_keys SET algorithm = ?, public_key = ?, sealed_private_key = ?, state = ?, created_ms = ?,
                    activates_ms = ?, retired_ms = ?, published_until_ms = ?
                WHERE kid = ? RETURNING 1
                """,
                Array(binds(of: record).dropFirst()) + [.text(record.kid)]
            )
        case .delete(let deleted):
            kid = deleted
            touched = try await connection.query("DELETE FROM identity_signing_keys WHERE kid = ? RETURNING 1", [.text(deleted)])
        }
        guard !touched.isEmpty else { throw SigningKeyConflict(kid: kid) }
    }

    // MARK: rows

    private static func columns(_ table: String?) -> String {
        let prefix = table.map { $0 + "." } ?? ""
        return ["kid", "algorithm", "public_key", "sealed_private_key", "state", "created_ms", "activates_ms", "retired_ms",
                "published_until_ms"].map { prefix + $0 }.joined(separator: ", ")
    }

    /// The values of `record`, in the order of `columns`.
    private static func binds(of record: SigningKeyRecord) -> [SQLiteData] {
        func instant(_ value: Date?) -> SQLiteData { value?.truncatedToMilliseconds.sqliteMilliseconds ?? .null }
        return [.text(record.kid), .text(record.algorithm), record.publicKey.sqliteData ?? .null,
                record.sealedPrivateKey.sqliteData ?? .null, .text(record.state.rawValue), instant(record.createdAt),
                instant(record.activatesAt), instant(record.retiredAt), instant(record.publishedUntil)]
    }

    private static func record(from row: SQLiteRow) throws -> SigningKeyRecord {
        let kid = row.column("kid")?.string ?? "?"
        func bytes(_ column: String) throws -> Data {
            guard let value = row.column(column).flatMap(Data.init(sqliteData:)) else {
                throw UnreadableSigningKey(kid: kid, reason: "\(column) is not a blob")
            }
            return value
        }
        func instant(_ column: String) throws -> Date? {
            guard let value = row.column(column), !value.isNull else { return nil }
            guard case .integer(let milliseconds) = value else {
                throw UnreadableSigningKey(kid: kid, reason: "\(column) is not whole milliseconds")
            }
            return Date(sqliteMilliseconds: milliseconds)
        }
        func required(_ column: String) throws -> Date {
            guard let value = try instant(column) else { throw UnreadableSigningKey(kid: kid, reason: "\(column) is missing") }
            return value
        }
        guard let algorithm = row.column("algorithm")?.string, let state = row.column("state")?.string else {
            throw UnreadableSigningKey(kid: kid, reason: "its algorithm or state is missing")
        }
        return SigningKeyRecord(
            kid: kid, algorithm: algorithm, publicKey: try bytes("public_key"), sealedPrivateKey: try bytes("sealed_private_key"),
            state: try SigningKeyState(stored: state, kid: kid), createdAt: try required("created_ms"),
            activatesAt: try required("activates_ms"), retiredAt: try instant("retired_ms"), publishedUntil: try instant("published_until_ms")
        )
    }
}
