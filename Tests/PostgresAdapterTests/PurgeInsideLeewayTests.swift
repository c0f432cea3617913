import IdentityTestSupport
import PostgresAdapter
import Testing

@Suite("PostgreSQL purge inside the leeway", .enabled(if: TestDatabase.isConfigured, TestDatabase.skipReason))
struct PostgresPurgeInsideLeewayTests {
    @Test("a purge at exp + 3 s (inside the leeway) keeps a logout and a password change's cut-off: both tokens stay refused")
    func purgeInsideLeeway() async throws {
        try await PostgresStoreTests.withMigrated { client in
            try await PurgeInsideLeeway { clock in
                let store = PostgresUserStore(client: client)
                let revocations = PostgresRevocationStore(client: client)
                return (try await TestIdentity.service(users: store, outbox: store, revocations: revocations, clock: clock), revocations)
            }.run()
        }
    }
}
