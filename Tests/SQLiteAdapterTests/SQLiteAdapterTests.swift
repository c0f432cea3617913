import Foundation
import IdentityApplication
import IdentityConformance
import IdentityDomain
import IdentityPorts
import IdentityTestSupport
@testable import SQLiteAdapter
import SQLiteNIO
import Testing

@Suite("SQLite stores")
struct SQLiteAdapterTests {
    /// A fresh database file in a temporary directory.
    static func freshPath() -> String {
        NSTemporaryDirectory() + "identity-sqlite-\(UUID().uuidString).sqlite"
    }

    @Test("SQLiteUserStore passes the UserRepository and EventOutbox suite")
    func userStore() async throws {
        try await UserRepositoryConformance {
            let store = SQLiteUserStore(database: try await IdentitySQLiteDatabase.open(path: ":memory:"))
            return (store, store)
        }.run()
    }

    @Test("SQLiteUserStore writes a change's revocations in its transaction: both commit or neither (a trigger fails the second write)")
    func changeRevocations() async throws {
        @Sendable func stores(failing: Bool) async throws -> (users: any UserRepository, revocations: any RevocationStore) {
            let database = try await IdentitySQLiteDatabase.open(path: ":memory:")
            if failing {
                _ = try await database.exclusive { connection in
                    try await connection.query(
                        """
                        CREATE TRIGGER identity_test_fail BEFORE INSERT ON identity_account_cutoffs
                        BEGIN SELECT RAISE(ABORT, 'injected failure of a revocation write'); END
                        """
                    )
                }
            }
            return (SQLiteUserStore(database: database), SQLiteRevocationStore(database: database))
        }
        try await ChangeRevocationConformance(
            makeStores: { try await stores(failing: false) }, makeStoresFailingRevocations: { try await stores(failing: true) }
        ).run()
    }

    @Test("SQLiteRevocationStore passes the RevocationStore suite")
    func revocationStore() async throws {
        try await RevocationStoreConformance {
            SQLiteRevocationStore(database: try await IdentitySQLiteDatabase.open(path: ":memory:"))
        }.run()
    }

    @Test("SQLiteLoginThrottle passes the LoginThrottle suite")
    func loginThrottle() async throws {
        try await LoginThrottleConformance { limits in
            SQLiteLoginThrottle(database: try await IdentitySQLiteDatabase.open(path: ":memory:"), limits: limits)
        }.run()
    }

    @Test("SQLiteSessionStore passes the SessionStore suite")
    func sessionStore() async throws {
        try await SessionStoreConformance { configuration in
            let database = try await IdentitySQLiteDatabase.open(path: ":memory:")
            return (SQLiteSessionStore(database: database, configuration: configuration), SQLiteUserStore(database: database))
        }.run()
    }

    @Test("SQLiteSessionStore writes its events in the change's transaction: with the outbox refusing writes (a trigger), no session opens or ends")
    func sessionEventsCommitWithTheirChange() async throws {
        let database = try await IdentitySQLiteDatabase.open(path: ":memory:")
        try await SessionEventsCommitWithTheirChange(
            store: SQLiteSessionStore(database: database), outbox: SQLiteUserStore(database: database)
        ) { refuse in
            _ = try await database.exclusive { connection in
                try await connection.query(refuse
                    ? "CREATE TRIGGER identity_test_fail BEFORE INSERT ON identity_outbox BEGIN SELECT RAISE(ABORT, 'injected outbox failure'); END"
                    : "DROP TRIGGER identity_test_fail")
            }
        }.run()
    }

    @Test("SQLiteSessionStore ends a reused session and writes its revocation in one transaction: with the revocation refused (a trigger), the session stays open; then both are made")
    func reuseRevocationCommitsWithTheEnd() async throws {
        let database = try await IdentitySQLiteDatabase.open(path: ":memory:")
        let store = SQLiteSessionStore(database: database)
        let revocations = SQLiteRevocationStore(database: database)
        let now = Date(timeIntervalSince1970: 1_790_000_000.123)
        let digests: [RefreshDigest] = [.random(), .random(), .random()]
        let session = Session.open(id: SessionID(UUID()), userID: UserID(UUID()), refreshDigest: digests[0], accountVersion: 1, at: now)
        try await SQLiteUserStore(database: database).registerAccount(session.userID, at: now)
        try await store.open(session)
        for step in 0..<2 {
            let outcome = try await store.rotate(
                session: session.id, presented: digests[step], replacement: digests[step + 1], graceBlob: Data([1]), accountVersion: 1,
                now: now.addingTimeInterval(Double(step + 1))
            )
            guard case .rotated = outcome else { Issue.record("rotation \(step + 1) rotates: \(outcome)"); return }
        }
        let later = now.addingTimeInterval(60), until = later.addingTimeInterval(3600)
        func replay() async throws -> RotationOutcome {
            try await store.rotate(
                session: session.id, presented: digests[0], replacement: .random(), graceBlob: Data([2]), accountVersion: 1,
                revokingUntil: until, now: later
            )
        }
        let key = Revocation.sessionKey(session.id)
        _ = try await database.exclusive { connection in
            try await connection.query(
                "CREATE TRIGGER identity_test_fail BEFORE INSERT ON identity_revoked_tokens BEGIN SELECT RAISE(ABORT, 'injected revocation failure'); END"
            )
        }
        await #expect(throws: (any Error).self, "a reuse whose revocation cannot be written fails") { _ = try await replay() }
        #expect(try await store.session(id: session.id)?.endReason == nil, "and the session is not ended")
        #expect(try await !revocations.isRevoked(jti: key, userID: session.userID, accountVersion: 1))
        _ = try await database.exclusive { try await $0.query("DROP TRIGGER identity_test_fail") }
        guard case .reused(let ended) = try await replay() else { Issue.record("the replay is a reuse once it can be written"); return }
        #expect(ended.endReason == .reuse)
        #expect(try await revocations.isRevoked(jti: key, userID: session.userID, accountVersion: 1), "ended and revoked together")
    }

    @Test("0004 (sessions) goes down and up again: its tables go, the record goes, a reopen applies it again; 0003 has no down")
    func sessionsMigrationDownAndUp() async throws {
        let path = Self.freshPath()
        defer { try? FileManager.default.removeItem(atPath: path) }
        @Sendable func tables(_ database: IdentitySQLiteDatabase) async throws -> Set<String> {
            let rows = try await database.exclusive { try await $0.query("SELECT name FROM sqlite_master WHERE type = 'table'") }
            return Set(rows.compactMap { $0.column("name")?.string })
        }
        let sessionTables: Set<String> = ["identity_sessions", "identity_session_digests"]
        let first = try await IdentitySQLiteDatabase.open(path: path)
        #expect(try await tables(first).isSuperset(of: sessionTables))
        let user = UserID(UUID())
        try await SQLiteSessionStore(database: first).open(Session.open(id: SessionID(UUID()), userID: user, refreshDigest: .random(), accountVersion: 1, at: Date()))
        let newest = try IdentitySQLiteDatabase.shippedMigrations().map(\.version).max() ?? 0
        #expect(try await first.revert(toVersion: newest).isEmpty, "nothing newer than the newest to undo")
        #expect(try await first.revert(toVersion: 3) == Array((4...newest).reversed()), "0004 and the ones after it, newest first")
        #expect(try await tables(first).isDisjoint(with: sessionTables), "the session tables are gone")
        #expect(try await tables(first).isSuperset(of: ["identity_users", "identity_account_cutoffs", "identity_login_failures"]),
                "the tables of 0001-0003 stay")
        let versions = try await first.exclusive { try await $0.query("SELECT version FROM identity_schema_migrations ORDER BY version") }
        #expect(versions.compactMap { $0.column("version")?.integer } == [1, 2, 3], "its record is gone")
        await #expect {
            _ = try await first.revert(toVersion: 2)
        } throws: { "\($0)".contains("migration 3 cannot be undone") }
        try await first.close()

        let second = try await IdentitySQLiteDatabase.open(path: path)
        #expect(try await tables(second).isSuperset(of: sessionTables), "opening the file applies 0004 again")
        #expect(try await SQLiteSessionStore(database: second).sessions(of: user, now: Date()).isEmpty, "empty: the sessions went with it")
        try await second.close()
    }

    @Test("a file keeps accounts, revocations and events across a reopen, and is not migrated twice")
    func reopen() async throws {
        let path = Self.freshPath()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let first = try await IdentitySQLiteDatabase.open(path: path)
        let service = try await TestIdentity.service(
            users: SQLiteUserStore(database: first), outbox: SQLiteUserStore(database: first),
            revocations: SQLiteRevocationStore(database: first)
        )
        let record = try await service.register(email: "kept@example.com", password: "correct horse battery", name: "Kept")
        try await first.close()

        let second = try await IdentitySQLiteDatabase.open(path: path)
        let users = SQLiteUserStore(database: second)
        #expect(try await users.user(id: record.id).map(UserRecord.init) == record, "the account, to the millisecond")
        #expect(try await users.pending(limit: 10).map(\.event.type) == ["user.registered"])
        let migrations = try await second.exclusive { try await $0.query("SELECT count(*) AS n FROM identity_schema_migrations") }
        #expect(migrations.first?.column("n")?.integer == Int(try IdentitySQLiteDatabase.shippedMigrations().count),
                "each shipped migration applied once")
    }

    @Test("an outbox that nothing relays is trimmed to its newest events")
    func trimOutbox() async throws {
        let store = SQLiteUserStore(database: try await IdentitySQLiteDatabase.open(path: ":memory:"))
        let user = UserID(UUID())
        let events = (0..<5).map {
            IdentityEvent(eventID: UUID(), occurredAt: Date(), payload: .tokenRevoked(userID: user, jti: "\($0)", expiresAt: Date()))
        }
        try await store.append(events)
        #expect(try await store.trimOutbox(keeping: 2) == 3)
        #expect(try await store.pending(limit: 10).map(\.event.eventID) == events.suffix(2).map(\.eventID), "the newest two stay")
        #expect(try await store.trimOutbox(keeping: 2) == 0)
    }

    @Test("a file whose applied migration differs from this build's is refused with a clear error")
    func checksumMismatch() async throws {
        let path = Self.freshPath()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let database = try await IdentitySQLiteDatabase.open(path: path)
        _ = try await database.exclusive { try await $0.query("UPDATE identity_schema_migrations SET checksum = 'tampered'") }
        try await database.close()
        await #expect {
            _ = try await IdentitySQLiteDatabase.open(path: path)
        } throws: { "\($0)".contains("differs from this build's") }
    }

    @Test("a path that cannot be opened is refused with a clear error")
    func unopenable() async throws {
        await #expect {
            _ = try await IdentitySQLiteDatabase.open(path: "/nonexistent-directory/identity.sqlite")
        } throws: { "\($0)".hasPrefix("cannot open the SQLite database at /nonexistent-directory/identity.sqlite") }
    }

    @Test("a purge at exp + 3 s (inside the leeway) keeps a logout and a password change's cut-off: both tokens stay refused")
    func purgeInsideLeeway() async throws {
        try await PurgeInsideLeeway { clock in
            let database = try await IdentitySQLiteDatabase.open(path: ":memory:")
            let store = SQLiteUserStore(database: database)
            let revocations = SQLiteRevocationStore(database: database)
            return (try await TestIdentity.service(users: store, outbox: store, revocations: revocations, clock: clock), revocations)
        }.run()
    }

    @Test("concurrent registrations of one email on one file give exactly one account")
    func registrationRace() async throws {
        let database = try await IdentitySQLiteDatabase.open(path: ":memory:")
        let store = SQLiteUserStore(database: database)
        let service = try await TestIdentity.service(users: store, outbox: store, revocations: SQLiteRevocationStore(database: database))
        let created = await withTaskGroup(of: Bool.self) { group in
            for index in 0..<10 {
                group.addTask {
                    (try? await service.register(email: "race@example.com", password: "correct horse battery", name: "R\(index)")) != nil
                }
            }
            return await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(created == 1)
    }
}
