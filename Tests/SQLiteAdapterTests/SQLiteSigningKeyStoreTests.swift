import Foundation
import IdentityAdapterSupport
import IdentityConformance
import IdentityDomain
import IdentityPorts
@testable import SQLiteAdapter
import SQLiteNIO
import Testing

@Suite("SQLite signing keys")
struct SQLiteSigningKeyStoreTests {
    static func key(_ kid: String, state: SigningKeyState = .active, at created: Date = Date(timeIntervalSince1970: 1_790_000_000)) -> SigningKeyRecord {
        SigningKeyRecord(
            kid: kid, algorithm: "ES256", publicKey: Data(repeating: 7, count: 64), sealedPrivateKey: Data([1, 2, 3]), state: state,
            createdAt: created, activatesAt: created.addingTimeInterval(600)
        )
    }

    static func tables(_ database: IdentitySQLiteDatabase) async throws -> Set<String> {
        let rows = try await database.exclusive { try await $0.query("SELECT name FROM sqlite_master WHERE type = 'table'") }
        return Set(rows.compactMap { $0.column("name")?.string })
    }

    @Test("SQLiteSigningKeyStore passes the SigningKeyStore suite")
    func conformance() async throws {
        try await SigningKeyStoreConformance {
            SQLiteSigningKeyStore(database: try await IdentitySQLiteDatabase.open(path: ":memory:"))
        }.run()
    }

    @Test("the table refuses a state that is none of the four; a row that has one anyway is refused on reading with a clear error")
    func unknownState() async throws {
        let database = try await IdentitySQLiteDatabase.open(path: ":memory:")
        let store = SQLiteSigningKeyStore(database: database)
        #expect(try await store.commit([.insert(Self.key("fine"))], expectedRevision: 0))
        let insert = """
            INSERT INTO identity_signing_keys (kid, algorithm, public_key, sealed_private_key, state, created_ms, activates_ms)
            VALUES ('odd', 'ES256', X'00', X'', 'compromised', 1790000000000, 1790000600000)
            """
        await #expect(throws: SQLiteError.self, "the CHECK on state") {
            _ = try await database.exclusive { try await $0.query(insert) }
        }
        _ = try await database.exclusive { connection in
            _ = try await connection.query("PRAGMA ignore_check_constraints = ON")
            return try await connection.query(insert)
        }
        await #expect {
            _ = try await store.keySet()
        } throws: { error in
            (error as? UnreadableSigningKey)?.kid == "odd"
                && "\(error)" == "stored signing key odd cannot be read: its state 'compromised' is none of next, active, retired, gone"
        }
    }

    @Test("0005 (signing keys) goes down and up again: its tables go, earlier ones stay, a reopen applies it again, empty")
    func migrationDownAndUp() async throws {
        let path = SQLiteAdapterTests.freshPath()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let keyTables: Set<String> = ["identity_signing_keys", "identity_signing_key_revision"]
        let first = try await IdentitySQLiteDatabase.open(path: path)
        #expect(try await Self.tables(first).isSuperset(of: keyTables))
        #expect(try await SQLiteSigningKeyStore(database: first).commit([.insert(Self.key("k"))], expectedRevision: 0))
        let newest = try IdentitySQLiteDatabase.shippedMigrations().map(\.version).max() ?? 0
        #expect(try await first.revert(toVersion: 4) == Array((5...newest).reversed()), "0005 and the ones after it, newest first")
        #expect(try await Self.tables(first).isDisjoint(with: keyTables), "the signing key tables are gone")
        #expect(try await Self.tables(first).isSuperset(of: ["identity_users", "identity_account_cutoffs", "identity_login_failures",
                                                            "identity_sessions", "identity_session_digests"]),
                "the tables of 0001-0004 stay")
        let versions = try await first.exclusive { try await $0.query("SELECT version FROM identity_schema_migrations ORDER BY version") }
        #expect(versions.compactMap { $0.column("version")?.integer } == [1, 2, 3, 4], "its record is gone")
        await #expect(throws: SQLiteError.self, "the store fails on what was undone") {
            _ = try await SQLiteSigningKeyStore(database: first).keySet()
        }
        try await first.close()

        let second = try await IdentitySQLiteDatabase.open(path: path)
        #expect(try await Self.tables(second).isSuperset(of: keyTables), "opening the file applies 0005 again")
        let store = SQLiteSigningKeyStore(database: second)
        #expect(try await store.keySet() == SigningKeySet(revision: 0, keys: []), "empty, the revision counter back at 0")
        #expect(try await store.commit([.insert(Self.key("k"))], expectedRevision: 0), "and usable")
        try await second.close()
    }
}
