import Foundation
import IdentityConformance
import IdentityAdapterSupport
import IdentityDomain
import IdentityPorts
import IdentityTestSupport
@testable import PostgresAdapter
import PostgresNIO
import Synchronization
import Testing

@Suite("PostgreSQL revocation cache", .enabled(if: TestDatabase.isConfigured, TestDatabase.skipReason))
struct PostgresRevocationCacheTests {
    static func settings(database: String) -> PostgresConfiguration {
        PostgresConfiguration(
            host: TestDatabase.host, port: TestDatabase.port, username: TestDatabase.user,
            password: TestDatabase.environment["IDENTITY_TEST_POSTGRES_PASSWORD"], database: database, tls: .disable
        )
    }

    /// Caches started for one test, each listening until the test ends.
    final class Caches: Sendable {
        private let running = Mutex<[Task<Void, Never>]>([])
        let client: PostgresClient
        let database: String

        init(client: PostgresClient, database: String) {
            self.client = client
            self.database = database
        }

        /// A new cache over the database, listening and synchronised; its listening connection
        /// goes to `port` (a `FaultProxy`'s) when one is given, straight to the server otherwise.
        /// Tests that check an answer came from memory pass a long `silenceLimit`: on a loaded
        /// machine a late heartbeat would otherwise send the cache to the database for a while.
        func start(listeningThrough port: Int? = nil, silenceLimit: Duration = .seconds(1)) async throws -> PostgresRevocationCache {
            var listening = settings(database: database)
            if let port { (listening.host, listening.port) = ("127.0.0.1", port) }
            let cache = PostgresRevocationCache(
                base: PostgresRevocationStore(client: client), listeningWith: listening, silenceLimit: silenceLimit
            )
            running.withLock { $0.append(Task { await cache.listen() }) }
            #expect(await eventually { cache.isSynchronised }, "the cache synchronises")
            return cache
        }

        func stopAll() async {
            let tasks = running.withLock { $0 }
            for task in tasks { task.cancel() }
            for task in tasks { await task.value }
        }
    }

    /// A silence limit no loaded test machine reaches: the cache leaves memory only for a lost
    /// connection or a gap, which is what the memory-answer tests are about.
    static let patient = Duration.seconds(60)

    static func with(_ body: (Caches) async throws -> Void) async throws {
        try await PostgresStoreTests.withMigrated { client in
            let database = try await currentDatabase(client)
            let caches = Caches(client: client, database: database)
            do {
                try await body(caches)
                await caches.stopAll()
            } catch {
                await caches.stopAll()
                throw error
            }
        }
    }

    static func currentDatabase(_ client: PostgresClient) async throws -> String {
        for try await name in try await client.query("SELECT current_database()").decode(String.self) { return name }
        throw CancellationError()
    }

    /// What the listening backend last ran (its LISTEN); nothing else in these tests runs it.
    static let listenerActivity = "query ILIKE 'LISTEN%'"

    /// The backends listening on the revocation channel (there is one per running cache).
    static func listeners(_ client: PostgresClient) async throws -> [Int32] {
        let rows = try await client.query(
            """
            SELECT pid FROM pg_stat_activity
            WHERE datname = current_database() AND pid <> pg_backend_pid() AND \(unescaped: listenerActivity)
            """
        )
        var pids: [Int32] = []
        for try await pid in rows.decode(Int32.self) { pids.append(pid) }
        return pids
    }

    /// Cuts the listening backends off; returns how many there were.
    static func terminateListeners(_ client: PostgresClient) async throws -> Int {
        let pids = try await listeners(client)
        for pid in pids { try await client.query("SELECT pg_terminate_backend(\(pid))") }
        return pids.count
    }

    @Test("PostgresRevocationCache passes the RevocationStore suite")
    func conformance() async throws {
        try await Self.with { caches in
            try await RevocationStoreConformance {
                try await PostgresStoreTests.reset(caches.client)
                return try await caches.start()
            }.run()
        }
    }

    @Test("another instance's revocations reach the cache through the database's announcements, and are answered from memory")
    func announcements() async throws {
        try await Self.with { caches in
            let cache = try await caches.start(silenceLimit: Self.patient)
            let other = PostgresRevocationStore(client: caches.client)  // another instance, writing to the same database
            let user = UserID(UUID())
            let now = Date()
            let before = cache.lastSequence
            try await other.revoke(jti: "elsewhere", userID: user, until: now.addingTimeInterval(600))
            try await other.revokeAll(userID: user, belowVersion: 4, until: now.addingTimeInterval(600))
            #expect(await eventually { cache.count == 2 }, "both announcements arrive")
            #expect(cache.lastSequence == before + 2, "numbered one after the other, no gap")
            // Gone from the tables, still revoked: the answers come from memory, not from a query.
            try await caches.client.query("DELETE FROM identity_revoked_tokens")
            try await caches.client.query("DELETE FROM identity_account_cutoffs")
            #expect(try await cache.isRevoked(jti: "elsewhere", userID: user, accountVersion: 4))
            #expect(try await cache.isRevoked(jti: "any", userID: user, accountVersion: 3), "the cut-off too")
            #expect(try await !cache.isRevoked(jti: "any", userID: user, accountVersion: 4))
        }
    }

    @Test("a cache started late loads what was revoked before it; its own writes and committed changes count at once")
    func catchUpAndOwnWrites() async throws {
        try await Self.with { caches in
            let user = UserID(UUID())
            let now = Date()
            try await PostgresRevocationStore(client: caches.client).revoke(jti: "before", userID: user, until: now.addingTimeInterval(600))
            let cache = try await caches.start()
            #expect(cache.count == 1)
            #expect(try await cache.isRevoked(jti: "before", userID: user, accountVersion: 1))
            try await cache.revoke(jti: "mine", userID: user, until: now.addingTimeInterval(600))
            #expect(try await cache.isRevoked(jti: "mine", userID: user, accountVersion: 1), "no wait for the announcement")
            let other = UserID(UUID())
            await cache.committed([.account(userID: other, belowVersion: 3, until: now.addingTimeInterval(600))])
            #expect(try await cache.isRevoked(jti: "old", userID: other, accountVersion: 2),
                    "a change committed elsewhere (its reply said so) is honoured before its announcement")
        }
    }

    @Test("a lost listening connection: answers come from the database, then the cache catches up with what it missed")
    func reconnects() async throws {
        try await Self.with { caches in
            let cache = try await caches.start(silenceLimit: Self.patient)
            let user = UserID(UUID())
            let now = Date()
            #expect(try await Self.terminateListeners(caches.client) == 1)
            #expect(await eventually { !cache.isSynchronised }, "the cache notices")
            try await PostgresRevocationStore(client: caches.client).revoke(jti: "missed", userID: user, until: now.addingTimeInterval(600))
            // From the database while the cache is not synchronised; from the announcement or the
            // catch-up once it is again (it may have reconnected before this write, and then the
            // announcement takes its usual moment).
            let refused = await eventually { (try? await cache.isRevoked(jti: "missed", userID: user, accountVersion: 1)) == true }
            #expect(refused, "meanwhile, or from the catch-up")
            #expect(await eventually { cache.isSynchronised && cache.count == 1 }, "it reconnects and reads what it missed")
            try await caches.client.query("DELETE FROM identity_revoked_tokens")
            #expect(try await cache.isRevoked(jti: "missed", userID: user, accountVersion: 1), "from memory again")
        }
    }

    @Test("a revocation whose announcement is lost is found by the next heartbeat and caught up within a second")
    func lostAnnouncement() async throws {
        try await Self.with { caches in
            let cache = try await caches.start(silenceLimit: Self.patient)
            let user = UserID(UUID())
            let before = cache.lastSequence
            // Written and numbered, but never announced: a dropped message. (Nothing else writes
            // to this test's database meanwhile.)
            try await caches.client.query("ALTER TABLE identity_revoked_tokens DISABLE TRIGGER identity_revoked_tokens_notify")
            try await caches.client.query(
                "INSERT INTO identity_revoked_tokens (jti, user_id, expires_at) VALUES ('dropped', \(user.uuid), now() + interval '10 minutes')"
            )
            try await caches.client.query("ALTER TABLE identity_revoked_tokens ENABLE TRIGGER identity_revoked_tokens_notify")
            #expect(await eventually { cache.lastSequence == before + 1 && cache.isSynchronised && cache.count == 1 },
                    "a heartbeat names a place the cache has not reached: it catches up (at \(cache.lastSequence) of \(before + 1), \(cache.count) held)")
            try await caches.client.query("DELETE FROM identity_revoked_tokens")
            #expect(try await cache.isRevoked(jti: "dropped", userID: user, accountVersion: 1), "and answers it from memory")
        }
    }

    @Test("a message numbered past the next one is a gap: the cache asks the database until it has caught up")
    func gapInTheNumbers() async throws {
        try await Self.with { caches in
            let cache = try await caches.start()
            let user = UserID(UUID())
            let ahead = cache.lastSequence + 5
            let message = #"{"seq":\#(ahead),"jti":"ahead","user_id":"\#(user)","expires_at_ms":\#(Date().addingTimeInterval(600).epochMilliseconds)}"#
            #expect(cache.receive(message) == .gap, "four numbers are missing before it")
            #expect(!cache.isSynchronised, "so answers come from the database")
            #expect(try await !cache.isRevoked(jti: "ahead", userID: user, accountVersion: 1), "which has no such revocation")
            try await PostgresRevocationStore(client: caches.client).revoke(jti: "real", userID: user, until: Date().addingTimeInterval(600))
            #expect(await eventually { cache.isSynchronised }, "it catches up and answers from memory again")
        }
    }

    @Test("an announcement that does not decode is skipped; later ones still apply")
    func badAnnouncement() async throws {
        try await Self.with { caches in
            let cache = try await caches.start()
            let user = UserID(UUID())
            for payload in ["not json", #"{"jti":"x","user_id":"not-a-uuid","expires_at_ms":1}"#, #"{"user_id":"\#(user)"}"#] {
                try await caches.client.query("SELECT pg_notify('identity_revocations', \(payload))")
            }
            try await PostgresRevocationStore(client: caches.client).revoke(jti: "after", userID: user, until: Date().addingTimeInterval(600))
            #expect(await eventually { cache.count == 1 }, "only the good one is held")
            #expect(cache.isSynchronised)
        }
    }

    @Test("a listening connection that silently stops delivering: answers come from the database within a second, then it is replaced")
    func silentConnection() async throws {
        try await Self.with { caches in
            let cache = try await caches.start()
            // Stop the listener's backend (SIGSTOP): the socket stays open, nothing is delivered.
            let pids = try await Self.listeners(caches.client)
            #expect(pids.count == 1)
            let pid = try #require(pids.first)
            kill(pid, SIGSTOP)
            defer { kill(pid, SIGCONT) }
            #expect(await eventually { !cache.isSynchronised }, "no heartbeat arrives: the cache asks the database")
            let user = UserID(UUID())
            try await PostgresRevocationStore(client: caches.client).revoke(jti: "meanwhile", userID: user, until: Date().addingTimeInterval(600))
            #expect(try await cache.isRevoked(jti: "meanwhile", userID: user, accountVersion: 1), "and so honours what it cannot hear")
            kill(pid, SIGCONT)
            #expect(await eventually { cache.isSynchronised }, "and then listens again")
        }
    }
}
