import Foundation
import IdentityAdapterSupport
import IdentityConformance
import IdentityDomain
import IdentityPorts
import IdentityTestSupport
@testable import PostgresAdapter
import PostgresNIO
import Testing

@Suite("PostgreSQL signing keys", .enabled(if: TestDatabase.isConfigured, TestDatabase.skipReason))
struct PostgresSigningKeyStoreTests {
    static func key(_ kid: String, state: SigningKeyState = .active, at created: Date = Date(timeIntervalSince1970: 1_790_000_000)) -> SigningKeyRecord {
        SigningKeyRecord(
            kid: kid, algorithm: "ES256", publicKey: Data(repeating: 7, count: 64), sealedPrivateKey: Data([1, 2, 3]), state: state,
            createdAt: created, activatesAt: created.addingTimeInterval(600)
        )
    }

    @Test("PostgresSigningKeyStore passes the SigningKeyStore suite")
    func conformance() async throws {
        try await PostgresStoreTests.withMigrated { client in
            try await SigningKeyStoreConformance {
                try await client.query("TRUNCATE identity_signing_keys")
                return PostgresSigningKeyStore(client: client)
            }.run()
        }
    }

    @Test("two instances (two clients) committing on one revision, 20 rounds: exactly one applies each round, one key each")
    func twoInstancesRace() async throws {
        try await TestDatabase.with { client, database in
            try await PostgresMigrator(client: client).up()
            try await TestDatabase.withClient(database: database) { other in
                let (a, b) = (PostgresSigningKeyStore(client: client), PostgresSigningKeyStore(client: other))
                for round in 0..<20 {
                    let seen = try await a.keySet()
                    #expect(try await b.keySet() == seen, "both instances read the same set")
                    async let first = a.commit([.insert(Self.key("a-\(round)"))], expectedRevision: seen.revision)
                    async let second = b.commit([.insert(Self.key("b-\(round)"))], expectedRevision: seen.revision)
                    let outcomes = try await [first, second]
                    #expect(outcomes.filter { $0 }.count == 1, "round \(round): \(outcomes)")
                    let keys = try await b.keySet().keys
                    #expect(keys.count == round + 1, "round \(round): one new key")
                    #expect(keys.contains { $0.kid == (outcomes[0] ? "a-\(round)" : "b-\(round)") }, "the winner's")
                }
                #expect(try await a.keySet().revision == 20, "one revision per round")
            }
        }
    }

    @Test("the columns hold whole milliseconds, no microseconds (the suite checks what reads back)")
    func subMillisecondInstants() async throws {
        try await PostgresStoreTests.withMigrated { client in
            let store = PostgresSigningKeyStore(client: client)
            let key = Self.key("k", state: .active, at: Date(timeIntervalSince1970: 1_790_000_000.1239))
            #expect(try await store.commit([.insert(key)], expectedRevision: 0))
            let rows = try await client.query("SELECT count(*) FROM identity_signing_keys WHERE created_at = '2026-09-21 14:13:20.123+00'")
            for try await count in rows.decode(Int64.self) { #expect(count == 1, "the column holds the millisecond, no microseconds") }
        }
    }

    @Test("the table refuses a state that is none of the four; a row that has one anyway is refused on reading with a clear error")
    func unknownState() async throws {
        try await PostgresStoreTests.withMigrated { client in
            let store = PostgresSigningKeyStore(client: client)
            #expect(try await store.commit([.insert(Self.key("fine"))], expectedRevision: 0))
            let insert: PostgresQuery = """
                INSERT INTO identity_signing_keys (kid, algorithm, public_key, sealed_private_key, state, created_at, activates_at)
                VALUES ('odd', 'ES256', '\\x00', '', 'compromised', now(), now())
                """
            await #expect {
                try await client.query(insert)
            } throws: { ($0 as? PSQLError)?.serverInfo?[.sqlState] == "23514" }
            try await client.query("ALTER TABLE identity_signing_keys DROP CONSTRAINT identity_signing_keys_state_check")
            try await client.query(insert)
            await #expect {
                _ = try await store.keySet()
            } throws: { error in
                (error as? UnreadableSigningKey)?.kid == "odd"
                    && "\(error)" == "stored signing key odd cannot be read: its state 'compromised' is none of next, active, retired, gone"
            }
        }
    }
}
