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
