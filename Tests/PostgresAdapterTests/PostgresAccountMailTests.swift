import Foundation
import IdentityConformance
import IdentityDomain
import IdentityPorts
import IdentityTestSupport
import PostgresAdapter
import PostgresNIO
import Testing

@Suite("PostgreSQL account tokens and mail", .enabled(if: TestDatabase.isConfigured, TestDatabase.skipReason))
struct PostgresAccountMailTests {
    @Test("PostgresUserStore passes the AccountMail suite (account tokens, the mail outbox, AccountWrites)")
    func accountMail() async throws {
        try await PostgresStoreTests.withMigrated { client in
            try await AccountMailConformance {
                try await PostgresStoreTests.reset(client)
                let store = PostgresUserStore(client: client)
                return (store, store, store)
            }.run()
        }
    }

    static let start = Date(timeIntervalSince1970: 1_790_000_000)

    static func account(_ local: String) throws -> User {
        User.register(id: UserID(UUID()), email: try Email("\(local)@example.com"), name: try DisplayName("Race"),
                      passwordHash: "$argon2id$x", at: start)
    }

    static func resetRequest(for user: User) -> AccountWrites {
        let now = start.addingTimeInterval(100)
        let token = AccountToken(digest: Data((0..<32).map { _ in UInt8.random(in: 0...255) }), purpose: .passwordReset, userID: user.id,
                                 email: user.email, createdAt: now, expiresAt: now.addingTimeInterval(1_800))
        let mail = OutgoingMail(id: UUID(), kind: .passwordReset, userID: user.id, recipient: user.email, recipientName: user.name,
                                sealedToken: "sealed", createdAt: now)
        return AccountWrites(invalidate: [.passwordReset], issue: [token], mail: [mail])
    }

    @Test("10 concurrent reset requests for one address from two instances, limit 3: exactly 3 are written (the advisory lock decides)")
    func limitUnderConcurrency() async throws {
        try await TestDatabase.with { client, name in
            try await PostgresMigrator(client: client).up()
            try await TestDatabase.withClient(database: name) { other in
                // Requests queue on one lock: a loaded machine may take longer than the 5 s default.
                let stores = [PostgresUserStore(client: client, timeout: .seconds(60)), PostgresUserStore(client: other, timeout: .seconds(60))]
                let user = try Self.account("race")
                let bystander = try Self.account("other")
                try await stores[0].insert(user, events: [])
                try await stores[0].insert(bystander, events: [])
                let limit = MailLimit(kind: .passwordReset, recipient: user.email, max: 3, since: Self.start)
                let written = try await withThrowingTaskGroup(of: Bool.self) { group in
                    for index in 0..<10 {
                        group.addTask {
                            try await stores[index % 2].record(Self.resetRequest(for: user), for: user.id, events: [], limit: limit)
                        }
                    }
                    group.addTask {
                        // Another address is not held up by the race, nor counted in it.
                        try await stores[1].record(Self.resetRequest(for: bystander), for: bystander.id, events: [],
                                                   limit: MailLimit(kind: .passwordReset, recipient: bystander.email, max: 3, since: Self.start))
                        return false
                    }
                    return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
                }
                #expect(written == 3, "exactly the limit is written")
                let rows = try await client.query(
                    "SELECT count(*) FROM identity_mail_outbox WHERE recipient = \(user.email.value)"
                )
                for try await count in rows.decode(Int64.self) { #expect(count == 3, "3 mails") }
                #expect(try await stores[0].mailStatus().pending == 4, "with the bystander's")
            }
        }
    }

    @Test("two instances, 8 claimers each, claim 50 mails at once: each mail exactly once (FOR UPDATE SKIP LOCKED and the lease)")
    func claimsAcrossInstances() async throws {
        try await TestDatabase.with { client, name in
            try await PostgresMigrator(client: client).up()
            try await TestDatabase.withClient(database: name) { other in
                let stores = [PostgresUserStore(client: client, timeout: .seconds(60)), PostgresUserStore(client: other, timeout: .seconds(60))]
                let user = try Self.account("many")
                let mails = (0..<50).map {
                    OutgoingMail(id: UUID(), kind: .emailVerification, userID: user.id, recipient: user.email, recipientName: user.name,
                                 sealedToken: "sealed", createdAt: Self.start.addingTimeInterval(Double($0) / 1000))
                }
                try await stores[0].insert(user, events: [], writes: AccountWrites(mail: mails))
                let now = Self.start.addingTimeInterval(60)
                let claimed = try await withThrowingTaskGroup(of: [UUID].self) { group in
                    for index in 0..<16 {
                        group.addTask {
                            var mine: [UUID] = []
                            while true {
                                let jobs = try await stores[index % 2].claimDueMail(limit: 2, now: now, lease: 600)
                                if jobs.isEmpty { return mine }
                                mine += jobs.map(\.mail.id)
                            }
                        }
                    }
                    return try await group.reduce(into: [UUID]()) { $0 += $1 }
                }
                #expect(claimed.count == 50 && Set(claimed) == Set(mails.map(\.id)), "every mail once, none twice")
                #expect(try await stores[1].claimDueMail(limit: 100, now: now.addingTimeInterval(600), lease: 600).count == 50,
                        "all of them again once the lease has ended")
            }
        }
    }
}
