import Foundation
import IdentityTestSupport
import IdentityAdapterSupport
import IdentityDomain
import IdentityPorts
@testable import PostgresAdapter
import PostgresNIO
import Testing

@Suite("Migrations", .enabled(if: TestDatabase.isConfigured, TestDatabase.skipReason))
struct MigrationTests {
    func tables(_ client: PostgresClient) async throws -> Set<String> {
        let rows = try await client.query("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        var names = Set<String>()
        for try await name in rows.decode(String.self) { names.insert(name) }
        return names
    }

    static let schema: Set<String> = [
        "identity_users", "identity_outbox", "identity_revoked_tokens", "identity_account_cutoffs", "identity_processed_messages",
        "identity_login_failures", "identity_revocation_sequence", "identity_sessions", "identity_session_digests",
        "identity_signing_keys", "identity_signing_key_revision", "identity_account_tokens", "identity_mail_outbox",
    ]

    static let mailTables: Set<String> = ["identity_account_tokens", "identity_mail_outbox"]

    @Test("0011: a session's end is still checked (by a trigger, then by the CHECKs again after down); digests keyed by session and generation")
    func sessionRotationWritesUpDown() async throws {
        try await TestDatabase.with { client, _ in
            let migrator = try PostgresMigrator(client: client)
            _ = try await migrator.up()
            let store = PostgresSessionStore(client: client)
            let opened = Session.open(id: SessionID(UUID()), userID: UserID(UUID()), refreshDigest: .random(), accountVersion: 1, at: Date())
            try await store.open(opened)
            func primaryKey() async throws -> String {
                let rows = try await client.query(
                    "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'identity_session_digests_pkey'"
                )
                for try await definition in rows.decode(String.self) { return definition }
                return ""
            }
            func refusesBadEnds() async throws {
                for (what, set) in [("an end without a reason", "ended_at = now()"), ("a reason without an end", "end_reason = 'logout'"),
                                    ("a reason outside the contract's", "ended_at = now(), end_reason = 'bored'")] {
                    await #expect(throws: PSQLError.self, "\(what) is refused") {
                        try await client.query(PostgresQuery(unsafeSQL: "UPDATE identity_sessions SET \(set) WHERE id = '\(opened.id)'"))
                    }
                }
                try await client.query("UPDATE identity_sessions SET ended_at = now(), end_reason = 'logout' WHERE id = \(opened.id.uuid)")
                try await client.query("UPDATE identity_sessions SET ended_at = NULL, end_reason = NULL WHERE id = \(opened.id.uuid)")
            }
            #expect(try await primaryKey() == "PRIMARY KEY (session_id, generation)")
            try await refusesBadEnds()
            #expect(try await migrator.down(1).map(\.name) == ["session_rotation_writes"])
            #expect(try await primaryKey() == "PRIMARY KEY (digest)")
            try await refusesBadEnds()
            #expect(try await store.session(id: opened.id) == opened, "the session is kept")
            #expect(try await migrator.up().map(\.name) == ["session_rotation_writes"])
            #expect(try await primaryKey() == "PRIMARY KEY (session_id, generation)")
            #expect(try await store.session(id: opened.id) == opened)
        }
    }

    @Test("0010 drops the digests' foreign key and a purge deletes a session's digests itself; down brings the key back, dropping orphans first")
    func sessionDigestsUnboundUpDown() async throws {
        try await TestDatabase.with { client, _ in
            let migrator = try PostgresMigrator(client: client)
            _ = try await migrator.up()
            func foreignKeys() async throws -> Int64 {
                let rows = try await client.query(
                    "SELECT count(*) FROM pg_constraint WHERE conname = 'identity_session_digests_session_id_fkey'"
                )
                for try await count in rows.decode(Int64.self) { return count }
                return -1
            }
            func digests() async throws -> Int64 {
                for try await count in try await client.query("SELECT count(*) FROM identity_session_digests").decode(Int64.self) { return count }
                return -1
            }
            #expect(try await foreignKeys() == 0)
            let store = PostgresSessionStore(client: client, configuration: SessionConfiguration(idleLifetime: 60, absoluteLifetime: 120))
            let now = Date(timeIntervalSince1970: 1_790_000_000)
            try await store.open(Session.open(id: SessionID(UUID()), userID: UserID(UUID()), refreshDigest: .random(), accountVersion: 1, at: now))
            #expect(try await digests() == 1)
            #expect(try await store.purgeExpired(now: now.addingTimeInterval(61)) == 1)
            #expect(try await digests() == 0, "the purge took the session's digests with it")
            try await client.query(
                "INSERT INTO identity_session_digests (digest, session_id, generation) VALUES (\(Data(repeating: 7, count: 32)), \(UUID()), 0)"
            )
            #expect(try await migrator.down(2).map(\.name) == ["session_rotation_writes", "session_digests_unbound"])
            let (keysBack, orphansLeft) = (try await foreignKeys(), try await digests())
            #expect(keysBack == 1 && orphansLeft == 0, "the key is back; an orphan digest went first")
            #expect(try await migrator.up().map(\.name) == ["session_digests_unbound", "session_rotation_writes"])
            #expect(try await foreignKeys() == 0)
        }
    }

    @Test("0009 (mail): an account made before it reads unverified; it goes down (tables and column gone) and up again, empty")
    func mailUpDown() async throws {
        try await TestDatabase.with { client, _ in
            let migrator = try PostgresMigrator(client: client)
            let mail = try #require(migrator.migrations.first { $0.name == "mail" })
            _ = try await migrator.up()
            let store = PostgresUserStore(client: client)
            let owner = UserID(UUID())
            let token = AccountToken(digest: Data(repeating: 7, count: 32), purpose: .passwordReset, userID: owner,
                                     email: try Email("owner@example.com"), createdAt: Date(), expiresAt: Date().addingTimeInterval(600))
            try await store.record(AccountWrites(issue: [token]), for: owner, events: [], limit: nil)
            let newer = migrator.migrations.filter { $0.version > mail.version }.count
            #expect(try await migrator.down(newer + 1).map(\.version).last == mail.version)
            #expect(try await tables(client).isDisjoint(with: Self.mailTables), "the mail tables are gone")
            #expect(try await tables(client).isSuperset(of: Self.schema.subtracting(Self.mailTables)), "the others stay")
            let columns = try await client.query(
                "SELECT count(*) FROM information_schema.columns WHERE table_name = 'identity_users' AND column_name = 'email_verified'"
            )
            for try await count in columns.decode(Int64.self) { #expect(count == 0, "and so is email_verified") }
            // An account as a build before 0009 writes it.
            let id = UUID()
            try await client.query(
                """
                INSERT INTO identity_users (id, email, name, password_hash, created_at, updated_at, version)
                VALUES (\(id), 'old@example.com', 'Old', '$argon2id$x', now(), now(), 1)
                """
            )
            #expect(try await migrator.up().map(\.version).first == mail.version)
            let old = try #require(try await store.user(id: UserID(id)))
            #expect(old.emailVerified == false, "an account from before the migration reads unverified")
            #expect(try await store.accountToken(digest: token.digest) == nil, "the tokens came back empty")
            #expect(try await store.mailStatus() == MailOutboxStatus(pending: 0, failed: 0, oldestPendingAt: nil), "and the outbox")
            var verified = old
            _ = verified.verifyEmail(at: Date())
            try await store.update(verified, expectedVersion: old.version, events: [])
            #expect(try await store.user(email: old.email)?.emailVerified == true, "and it can be verified")
        }
    }

    @Test("the shipped migrations are numbered, named, and each has its down")
    func shipped() throws {
        let migrations = try PostgresMigrator.shipped()
        // Numbered 1, 2, … without gaps or repeats.
        #expect(migrations.map(\.version) == Array(1...migrations.count))
        #expect(migrations.allSatisfy { !$0.name.isEmpty && !$0.down.isEmpty && $0.checksum.count == 64 })
    }

    @Test("up, down, up: status follows, tables come and go, and a fresh schema is not current")
    func upDownUp() async throws {
        try await TestDatabase.with { client, _ in
            let migrator = try PostgresMigrator(client: client)
            let fresh = try await migrator.status()
            #expect(fresh.applied.isEmpty && fresh.pending.count == migrator.migrations.count)
            await #expect(throws: SchemaOutOfDate(pending: migrator.migrations.count)) { try await migrator.ensureCurrent() }

            #expect(try await migrator.up().count == migrator.migrations.count)
            try await migrator.ensureCurrent()
            #expect(try await tables(client).isSuperset(of: Self.schema))
            #expect(try await migrator.up().isEmpty, "a second up has nothing to do")

            let versions = migrator.migrations.map(\.version)
            #expect(try await migrator.down(1).map(\.version) == [versions.last], "down 1 undoes the newest")
            #expect(try await migrator.status().pending.count == 1)
            let all = migrator.migrations.count
            #expect(try await migrator.down(all + 5).map(\.version) == Array(versions.dropLast().reversed()), "down N stops at the oldest")
            #expect(try await tables(client).isDisjoint(with: Self.schema))
            #expect(try await migrator.status().pending.count == all)

            #expect(try await migrator.up().count == all)
            #expect(try await tables(client).isSuperset(of: Self.schema))
            #expect(try await migrator.down(0).isEmpty)
        }
    }

    @Test("0004 turns time cut-offs into version cut-offs and numbers the revocations already there, so a cache reads them")
    func orderedRevocationsUpgrade() async throws {
        try await TestDatabase.with { client, _ in
            let migrator = try PostgresMigrator(client: client)
            _ = try await migrator.up()
            _ = try await migrator.down(migrator.migrations.count - 3)  // the schema of 0003: cut-offs by time, no numbers
            let (ada, gone) = (UUID(), UUID())
            try await client.query(
                """
                INSERT INTO identity_users (id, email, name, password_hash, created_at, updated_at, version)
                VALUES (\(ada), 'ada@example.com', 'Ada', '$argon2id$x', now(), now(), 3)
                """
            )
            try await client.query(
                "INSERT INTO identity_token_cutoffs (user_id, cutoff_ms, expires_at) VALUES (\(ada), 1, now() + interval '1 hour'), (\(gone), 1, now() + interval '1 hour')"
            )
            try await client.query("INSERT INTO identity_revoked_tokens (jti, user_id, expires_at) VALUES ('old', \(ada), now() + interval '1 hour')")
            #expect(try await migrator.up().map(\.version).first == 4)
            let store = PostgresRevocationStore(client: client)
            #expect(try await store.isRevoked(jti: "any", userID: UserID(ada), accountVersion: 2), "the account's older tokens stay revoked")
            #expect(try await store.isRevoked(jti: "any", userID: UserID(ada), accountVersion: 0), "tokens without a version too")
            #expect(try await !store.isRevoked(jti: "any", userID: UserID(ada), accountVersion: 3), "a token of its current version works")
            #expect(try await store.isRevoked(jti: "any", userID: UserID(gone), accountVersion: 1_000_000), "a deleted account's, all")
            let (last, messages) = try await store.changes(after: 0)
            #expect(last == 3 && Set(messages.compactMap(\.sequence)) == [1, 2, 3], "every row already there is numbered: a cache reads it")
        }
    }

    @Test("0006 (sessions) goes down and up: its tables and their indexes come and go, the tables before it stay")
    func sessionsUpDown() async throws {
        try await TestDatabase.with { client, _ in
            let migrator = try PostgresMigrator(client: client)
            let sessions = try #require(migrator.migrations.first { $0.name == "sessions" })
            let sessionTables: Set<String> = ["identity_sessions", "identity_session_digests"]
            _ = try await migrator.up()
            let store = PostgresSessionStore(client: client)
            let opened = Session.open(id: SessionID(UUID()), userID: UserID(UUID()), refreshDigest: .random(), accountVersion: 1, at: Date())
            try await store.open(opened)
            let newer = migrator.migrations.filter { $0.version > sessions.version }.count
            #expect(try await migrator.down(newer + 1).map(\.version).last == sessions.version)
            #expect(try await tables(client).isDisjoint(with: sessionTables), "the session tables are gone")
            // 0007's and 0009's, undone with it.
            let later = Set(["identity_signing_keys", "identity_signing_key_revision"]).union(Self.mailTables)
            #expect(try await tables(client).isSuperset(of: Self.schema.subtracting(sessionTables).subtracting(later)), "the earlier ones stay")
            let indexes = try await client.query("SELECT count(*) FROM pg_indexes WHERE indexname LIKE 'identity_session%'")
            for try await count in indexes.decode(Int64.self) { #expect(count == 0, "and so are their indexes") }
            #expect(try await migrator.up().map(\.version).first == sessions.version)
            #expect(try await tables(client).isSuperset(of: sessionTables))
            #expect(try await store.session(id: opened.id) == nil, "empty again")
            try await store.open(opened)
            #expect(try await store.session(id: opened.id) == opened, "and usable")
        }
    }

    @Test("0007 (signing keys) goes down and up: its tables come and go, the tables before it stay, and it comes back empty")
    func signingKeysUpDown() async throws {
        try await TestDatabase.with { client, _ in
            let migrator = try PostgresMigrator(client: client)
            let signingKeys = try #require(migrator.migrations.first { $0.name == "signing_keys" })
            let keyTables: Set<String> = ["identity_signing_keys", "identity_signing_key_revision"]
            _ = try await migrator.up()
            let store = PostgresSigningKeyStore(client: client)
            let key = SigningKeyRecord(
                kid: "k", algorithm: "EdDSA", publicKey: Data(repeating: 1, count: 32), sealedPrivateKey: Data([9]), state: .active,
                createdAt: Date(timeIntervalSince1970: 1_790_000_000), activatesAt: Date(timeIntervalSince1970: 1_790_000_000)
            )
            #expect(try await store.commit([.insert(key)], expectedRevision: 0))
            let newer = migrator.migrations.filter { $0.version > signingKeys.version }.count
            #expect(try await migrator.down(newer + 1).map(\.version).last == signingKeys.version)
            #expect(try await tables(client).isDisjoint(with: keyTables), "the signing key tables are gone")
            #expect(try await tables(client).isSuperset(of: Self.schema.subtracting(keyTables).subtracting(Self.mailTables)),
                    "the others stay (0009's go with it)")
            await #expect(throws: PostgresStoreError.self, "the store fails on what was undone") { _ = try await store.keySet() }
            #expect(try await migrator.up().map(\.version).first == signingKeys.version)
            #expect(try await tables(client).isSuperset(of: keyTables))
            #expect(try await store.keySet() == SigningKeySet(revision: 0, keys: []), "empty again, the revision back at 0")
            #expect(try await store.commit([.insert(key)], expectedRevision: 0))
            #expect(try await store.keySet().keys == [key], "and usable")
        }
    }

    @Test("an applied migration whose SQL changed is detected by its checksum")
    func tamper() async throws {
        try await TestDatabase.with { client, _ in
            try await PostgresMigrator(client: client).up()
            try await client.query("UPDATE identity_schema_migrations SET checksum = 'forged' WHERE version = 1")
            let migrator = try PostgresMigrator(client: client)
            await #expect(throws: MigrationError.self) { try await migrator.status() }
            await #expect(throws: MigrationError.self) { try await migrator.up() }
            await #expect(throws: MigrationError.self) { try await migrator.ensureCurrent() }
        }
    }

    @Test("two migrators at once apply each migration once (advisory lock)")
    func concurrent() async throws {
        try await TestDatabase.with { client, database in
            try await TestDatabase.withClient(database: database) { second in
                let first = try PostgresMigrator(client: client)
                let other = try PostgresMigrator(client: second)
                async let a = first.up()
                async let b = other.up()
                let applied = try await a.count + b.count
                #expect(applied == first.migrations.count, "between them, each migration is applied exactly once")
                let rows = try await client.query("SELECT count(*) FROM identity_schema_migrations")
                for try await count in rows.decode(Int64.self) { #expect(Int(count) == first.migrations.count) }
            }
        }
    }

    @Test("statements are split at semicolons outside quotes and comments")
    func splitting() {
        let sql = """
            -- a comment; with a semicolon
            CREATE TABLE a (x text DEFAULT 'a;b'); -- trailing; comment
            INSERT INTO a VALUES ('it''s');

            """
        #expect(Migration.statements(sql) == ["CREATE TABLE a (x text DEFAULT 'a;b')", "INSERT INTO a VALUES ('it''s')"])
    }

    @Test("a dollar-quoted body is one statement, whatever semicolons it holds")
    func dollarQuoting() {
        let sql = """
            CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN PERFORM 1; RETURN NULL; END
            $$;
            CREATE FUNCTION g() RETURNS text LANGUAGE sql AS $body$ SELECT 'a;$$;b' $body$;
            SELECT '$$;' AS x;
            """
        #expect(Migration.statements(sql) == [
            "CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $$\nBEGIN PERFORM 1; RETURN NULL; END\n$$",
            "CREATE FUNCTION g() RETURNS text LANGUAGE sql AS $body$ SELECT 'a;$$;b' $body$",
            "SELECT '$$;' AS x",
        ])
        #expect(Migration.statements("SELECT 1 AS $1x; SELECT 2") == ["SELECT 1 AS $1x", "SELECT 2"], "$1 is a parameter, not a tag")
    }
}
