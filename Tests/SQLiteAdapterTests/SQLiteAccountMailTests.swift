import Foundation
import IdentityConformance
import IdentityDomain
import IdentityPorts
@testable import SQLiteAdapter
import SQLiteNIO
import Testing

@Suite("SQLite account tokens and mail")
struct SQLiteAccountMailTests {
    @Test("SQLiteUserStore passes the AccountMail suite (account tokens, the mail outbox, AccountWrites)")
    func accountMail() async throws {
        try await AccountMailConformance {
            let store = SQLiteUserStore(database: try await IdentitySQLiteDatabase.open(path: ":memory:"))
            return (store, store, store)
        }.run()
    }

    @Test("10 concurrent reset requests for one address with a limit of 3 write exactly 3 mails and 3 tokens")
    func limitUnderConcurrency() async throws {
        let store = SQLiteUserStore(database: try await IdentitySQLiteDatabase.open(path: ":memory:"))
        let user = User.register(id: UserID(UUID()), email: try Email("race@example.com"), name: try DisplayName("Race"),
                                 passwordHash: "$argon2id$x", at: Date(timeIntervalSince1970: 1_790_000_000))
        try await store.insert(user, events: [])
        let written = try await withThrowingTaskGroup(of: Bool.self) { group in
            for _ in 0..<10 {
                group.addTask { try await store.record(Self.resetRequest(for: user), for: user.id, events: [], limit: Self.limit(for: user)) }
            }
            return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(written == 3, "exactly the limit is written")
        #expect(try await store.mailStatus().pending == 3, "and exactly 3 mails")
        let tokens = try await store.database.exclusive { try await $0.query("SELECT count(*) AS n FROM identity_account_tokens") }
        #expect(tokens.first?.column("n")?.integer == 3, "and 3 tokens")
    }

    static func resetRequest(for user: User) -> AccountWrites {
        let now = Date(timeIntervalSince1970: 1_790_000_100)
        let token = AccountToken(digest: Data((0..<32).map { _ in UInt8.random(in: 0...255) }), purpose: .passwordReset, userID: user.id,
                                 email: user.email, createdAt: now, expiresAt: now.addingTimeInterval(1_800))
        let mail = OutgoingMail(id: UUID(), kind: .passwordReset, userID: user.id, recipient: user.email, recipientName: user.name,
                                sealedToken: "sealed", createdAt: now)
        return AccountWrites(issue: [token], mail: [mail])
    }

    static func limit(for user: User) -> MailLimit {
        MailLimit(kind: .passwordReset, recipient: user.email, max: 3, since: Date(timeIntervalSince1970: 1_790_000_000))
    }

    @Test("0006 (mail): an account made before it reads unverified; it goes down (tables and column gone) and up again")
    func mailMigration() async throws {
        let path = NSTemporaryDirectory() + "identity-sqlite-\(UUID().uuidString).sqlite"
        defer { try? FileManager.default.removeItem(atPath: path) }
        @Sendable func tables(_ database: IdentitySQLiteDatabase) async throws -> Set<String> {
            let rows = try await database.exclusive { try await $0.query("SELECT name FROM sqlite_master WHERE type = 'table'") }
            return Set(rows.compactMap { $0.column("name")?.string })
        }
        let mailTables: Set<String> = ["identity_account_tokens", "identity_mail_outbox"]
        let first = try await IdentitySQLiteDatabase.open(path: path)
        #expect(try await tables(first).isSuperset(of: mailTables))
        let newest = try IdentitySQLiteDatabase.shippedMigrations().map(\.version).max() ?? 0
        #expect(try await first.revert(toVersion: 5) == Array((6...newest).reversed()), "0006 has a down")
        #expect(try await tables(first).isDisjoint(with: mailTables), "its tables are gone")
        let id = UserID(UUID())
        // An account as a build before 0006 writes it: no email_verified column.
        _ = try await first.exclusive { connection in
            try await connection.query(
                """
                INSERT INTO identity_users (id, email, name, password_hash, created_ms, updated_ms, version)
                VALUES (?, 'old@example.com', 'Old', '$argon2id$x', 1790000000000, 1790000000000, 1)
                """,
                [.text(id.description)]
            )
        }
        try await first.close()

        let second = try await IdentitySQLiteDatabase.open(path: path)
        #expect(try await tables(second).isSuperset(of: mailTables), "opening the file applies 0006 again")
        let store = SQLiteUserStore(database: second)
        let old = try #require(try await store.user(id: id))
        #expect(old.emailVerified == false, "an account from before the migration reads unverified")
        #expect(try await store.user(email: try Email("old@example.com")) == old)
        var verified = old
        _ = verified.verifyEmail(at: Date(timeIntervalSince1970: 1_790_000_001))
        try await store.update(verified, expectedVersion: old.version, events: [])
        #expect(try await store.user(id: id)?.emailVerified == true, "and can be verified")
        try await second.close()
    }
}
