import Foundation
import IdentityAdapterSupport
import IdentityConformance
import IdentityDomain
import IdentityPorts
import IdentityTestSupport
import Logging
import PostgresAdapter
import PostgresNIO
import Synchronization
import Testing

/// A value tasks share (a `Mutex` cannot be captured by an escaping closure).
final class Shared<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<T: Sendable>(_ body: (inout Value) -> T) -> T { mutex.withLock { body(&$0) } }
}

/// Runs `body` with a running pool of `size` connections to `database` on `host:port`.
func withPool<T: Sendable>(
    host: String = TestDatabase.host, port: Int = TestDatabase.port, database: String, size: Int,
    _ body: (PostgresConnectionPool) async throws -> T
) async throws -> T {
    let configuration = PostgresConnection.Configuration(
        host: host, port: port, username: TestDatabase.user, password: TestDatabase.environment["IDENTITY_TEST_POSTGRES_PASSWORD"],
        database: database, tls: .disable
    )
    let pool = PostgresConnectionPool(configuration: configuration, size: size, summary: "\(host):\(port)/\(database)",
                                      logger: Logger(label: "identity.test.pool"))
    return try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await pool.run() }
        do {
            let result = try await body(pool)
            group.cancelAll()
            return result
        } catch {
            group.cancelAll()
            throw error
        }
    }
}

@Suite("PostgreSQL stores on our own connection pool", .enabled(if: TestDatabase.isConfigured, TestDatabase.skipReason))
struct PostgresPoolStoreTests {
    /// A migrated database (emptied by `reset` on `client`) and a pool of 4 on it.
    static func withMigratedPool<T: Sendable>(_ body: (PostgresClient, PostgresConnectionPool) async throws -> T) async throws -> T {
        try await TestDatabase.with { client, name in
            try await withPool(database: name, size: 4) { pool in
                try await PostgresMigrator(pool: pool).up()
                return try await body(client, pool)
            }
        }
    }

    @Test("PostgresUserStore on the pool passes the UserRepository and EventOutbox suite")
    func userStore() async throws {
        try await Self.withMigratedPool { client, pool in
            try await UserRepositoryConformance {
                try await PostgresStoreTests.reset(client)
                let store = PostgresUserStore(pool: pool)
                return (store, store)
            }.run()
        }
    }

    @Test("a prepared refresh statement PostgreSQL refuses (a column it returns changed type) closes its connection: that call fails, the next works on a new one")
    func refusedPreparedStatementClosesItsConnection() async throws {
        try await TestDatabase.with { client, name in
            try await withPool(database: name, size: 1) { pool in
                try await PostgresMigrator(pool: pool).up()
                let store = PostgresSessionStore(pool: pool)
                let unknown = SessionID(UUID())
                #expect(try await store.sessionAndAccount(id: unknown) == nil, "prepared on the pool's one connection")
                try await client.query("ALTER TABLE identity_sessions ALTER COLUMN user_agent TYPE varchar(512)")
                await #expect(throws: PostgresStoreError.self, "PostgreSQL refuses the plan prepared before") {
                    try await store.sessionAndAccount(id: unknown)
                }
                #expect(try await store.sessionAndAccount(id: unknown) == nil, "prepared again on a new connection")
                #expect(try await store.sessionAndAccount(id: unknown) == nil)
            }
        }
    }

    @Test("PostgresRevocationStore on the pool passes the RevocationStore suite")
    func revocationStore() async throws {
        try await Self.withMigratedPool { client, pool in
            try await RevocationStoreConformance {
                try await PostgresStoreTests.reset(client)
                return PostgresRevocationStore(pool: pool)
            }.run()
        }
    }

    @Test("PostgresLoginThrottle on the pool passes the LoginThrottle suite")
    func throttle() async throws {
        try await Self.withMigratedPool { client, pool in
            try await LoginThrottleConformance { limits in
                try await PostgresStoreTests.reset(client)
                return PostgresLoginThrottle(pool: pool, limits: limits)
            }.run()
        }
    }

    @Test("PostgresSessionStore on the pool passes the SessionStore suite")
    func sessionStore() async throws {
        try await Self.withMigratedPool { client, pool in
            try await SessionStoreConformance { configuration in
                try await PostgresStoreTests.reset(client)
                return (PostgresSessionStore(pool: pool, configuration: configuration), PostgresUserStore(pool: pool))
            }.run()
        }
    }

    @Test("PostgresSessionStore's purge trims a session's kept digests to the configured number; a rotation alone does not")
    func purgeTrimsKeptDigests() async throws {
        try await TestDatabase.with { client, _ in
            try await PostgresMigrator(client: client).up()
            let store = PostgresSessionStore(client: client, configuration: SessionConfiguration(replacedDigestsKept: 3))
            let now = Date()
            var session = Session.open(id: SessionID(UUID()), userID: UserID(UUID()), refreshDigest: .random(), accountVersion: 1, at: now)
            try await PostgresUserStore(client: client).registerAccount(session.userID, at: now)
            try await store.open(session)
            for step in 1...6 {
                let outcome = try await store.rotate(
                    session: session.id, presented: session.refreshDigest, replacement: .random(), graceBlob: Data([1]), accountVersion: 1,
                    now: now.addingTimeInterval(Double(step))
                )
                guard case .rotated(let rotated) = outcome else { Issue.record("rotation \(step): \(outcome)"); return }
                session = rotated
            }
            func kept() async throws -> [Int64] {
                let rows = try await client.query(
                    "SELECT generation FROM identity_session_digests WHERE session_id = \(session.id.uuid) ORDER BY generation"
                )
                var generations: [Int64] = []
                for try await generation in rows.decode(Int64.self) { generations.append(generation) }
                return generations
            }
            #expect(try await kept() == [0, 1, 2, 3, 4, 5, 6], "every digest issued, until a purge")
            #expect(try await store.purgeExpired(now: now.addingTimeInterval(7)) == 0, "no session lapsed")
            #expect(try await kept() == [3, 4, 5, 6], "the current digest and the newest three replaced ones")
        }
    }

    @Test("two instances (two pools) rotating one refresh digest 20 times at once: exactly one rotation, 19 graces with its blob, 30 rounds")
    func rotationRaceAcrossInstances() async throws {
        try await TestDatabase.with { client, name in
            try await PostgresMigrator(client: client).up()
            try await withPool(database: name, size: 4) { first in
                try await withPool(database: name, size: 4) { second in
                    // 20 rotations queue on 8 connections: a loaded machine may take longer than the 5 s default.
                    let instances = [PostgresSessionStore(pool: first, timeout: .seconds(60)),
                                     PostgresSessionStore(pool: second, timeout: .seconds(60))]
                    for _ in 0..<30 {
                        let opened = Session.open(id: SessionID(UUID()), userID: UserID(UUID()), refreshDigest: .random(), accountVersion: 1, at: Date())
                        try await PostgresUserStore(pool: first).registerAccount(opened.userID, at: opened.createdAt)
                        try await instances[0].open(opened)
                        let now = Date()
                        let outcomes = try await withThrowingTaskGroup(of: (RotationOutcome, Data).self) { group in
                            for index in 0..<20 {
                                group.addTask {
                                    let blob = Data(RefreshDigest.random().bytes)
                                    let outcome = try await instances[index % 2].rotate(
                                        session: opened.id, presented: opened.refreshDigest, replacement: .random(), graceBlob: blob,
                                        accountVersion: 1, now: now
                                    )
                                    return (outcome, blob)
                                }
                            }
                            return try await group.reduce(into: [(RotationOutcome, Data)]()) { $0.append($1) }
                        }
                        let rotations = outcomes.compactMap { outcome, blob -> (Session, Data)? in
                            if case .rotated(let session) = outcome { (session, blob) } else { nil }
                        }
                        guard rotations.count == 1, let winner = rotations.first else {
                            Issue.record("exactly one rotation, got \(rotations.count)")
                            return
                        }
                        let (rotated, blob) = winner
                        #expect(outcomes.filter { $0.0 == .grace(rotated, blob: blob) }.count == 19,
                                "every other refresh gets the winner's pair, on either instance")
                        #expect(try await instances[1].session(id: opened.id) == rotated)
                        let history = try await client.query(
                            "SELECT count(*) FROM identity_session_digests WHERE session_id = \(opened.id.uuid)"
                        )
                        for try await count in history.decode(Int64.self) { #expect(count == 2, "two digests issued: the first and the winner's") }
                    }
                }
            }
        }
    }

    @Test("the migrator and readiness work on the pool")
    func migratorAndHealth() async throws {
        try await Self.withMigratedPool { _, pool in
            #expect(try await PostgresMigrator(pool: pool).status().isCurrent)
            try await PostgresHealthCheck(pool: pool).checkHealth()
        }
    }
}

@Suite("Our own PostgreSQL connection pool", .enabled(if: TestDatabase.isConfigured, TestDatabase.skipReason))
struct PostgresConnectionPoolTests {
    static let logger = Logger(label: "identity.test.pool")

    /// The server process behind `connection`.
    static func backend(_ connection: PostgresConnection) async throws -> Int32 {
        let rows = try await connection.query("SELECT pg_backend_pid()", logger: logger)
        for try await pid in rows.decode(Int32.self) { return pid }
        throw PrivatePostgresError(description: "no backend pid")
    }

    @Test("a cancelled waiter leaves the queue at once with CancellationError; the connection goes to the next caller")
    func cancelledWaiter() async throws {
        try await withPool(database: TestDatabase.adminDatabase, size: 1) { pool in
            let (release, releaser) = AsyncStream.makeStream(of: Void.self)
            let holding = Shared(false)
            let holder = Task {
                try await pool.withConnection { _ in
                    holding.withLock { $0 = true }
                    for await _ in release {}
                }
            }
            #expect(await eventually { holding.withLock { $0 } })
            let waiter = Task { try await pool.withConnection { connection in try await Self.backend(connection) } }
            #expect(await eventually { pool.waiting == 1 })
            waiter.cancel()
            await #expect(throws: CancellationError.self) { try await waiter.value }
            #expect(pool.waiting == 0, "the cancelled waiter is gone while the connection is still held")
            releaser.finish()
            try await holder.value
            _ = try await pool.withConnection { connection in try await Self.backend(connection) }
            #expect(pool.waiting == 0)
        }
    }

    @Test("a caller's own error keeps the connection; a connection that failed during use is closed and its slot reconnects")
    func failedConnectionIsReplaced() async throws {
        struct Refused: Error {}
        try await withPool(database: TestDatabase.adminDatabase, size: 1) { pool in
            let first = try await pool.withConnection { connection in try await Self.backend(connection) }
            await #expect(throws: Refused.self) {
                try await pool.withConnection { connection in
                    _ = try await Self.backend(connection)
                    throw Refused()
                }
            }
            #expect(try await pool.withConnection { connection in try await Self.backend(connection) } == first)
            await #expect(throws: (any Error).self) {
                try await pool.withConnection { connection in
                    let rows = try await connection.query("SELECT pg_terminate_backend(pg_backend_pid())", logger: Self.logger)
                    for try await _ in rows {}
                }
            }
            #expect(await eventually {
                let pid = try? await Deadline.run(.seconds(2), timeoutError: { CancellationError() }) {
                    try await pool.withConnection { connection in try await Self.backend(connection) }
                }
                return pid != nil && pid != first
            })
            #expect(pool.openConnections == 1)
        }
    }

    @Test(
        "the pool survives its server restarting under 32 concurrent callers: calls fail during the outage, then all succeed on 4 connections",
        .enabled(if: PrivatePostgres.isAvailable, PrivatePostgres.skipReason)
    )
    func survivesRestart() async throws {
        let server = try await PrivatePostgres()
        defer { server.destroy() }
        let size = 4
        try await withPool(host: "127.0.0.1", port: server.port, database: "identity", size: size) { pool in
            /// 32 queries at once, each bounded as the stores bound theirs; how many succeeded.
            @Sendable func round() async -> Int {
                await withTaskGroup(of: Bool.self) { group in
                    for _ in 0..<32 {
                        group.addTask {
                            let answer = try? await Deadline.run(.seconds(2), timeoutError: { PrivatePostgresError(description: "timeout") }) {
                                try await pool.withConnection { connection in
                                    let rows = try await connection.query("SELECT 1", logger: Self.logger)
                                    for try await one in rows.decode(Int.self) { return one }
                                    return 0
                                }
                            }
                            return answer == 1
                        }
                    }
                    return await group.reduce(0) { $0 + ($1 ? 1 : 0) }
                }
            }
            #expect(await eventually(within: 30) { await round() == 32 }, "the pool serves 32 concurrent callers")
            #expect(await eventually { pool.openConnections == size })

            // Load that goes on through the outage.
            let tally = Shared((succeeded: 0, failed: 0, refusedAtOnce: 0))
            let (done, finish) = AsyncStream.makeStream(of: Void.self)
            let load = Task {
                await withTaskGroup(of: Void.self) { group in
                    group.addTask { for await _ in done {} }
                    for _ in 0..<32 {
                        group.addTask {
                            while !Task.isCancelled {
                                do {
                                    try await Deadline.run(.seconds(2), timeoutError: { PrivatePostgresError(description: "timeout") }) {
                                        try await pool.withConnection { connection in
                                            _ = try await connection.query("SELECT 1", logger: Self.logger)
                                        }
                                    }
                                    tally.withLock { $0.succeeded += 1 }
                                } catch is PostgresPoolUnavailable {
                                    tally.withLock { $0.failed += 1; $0.refusedAtOnce += 1 }
                                    // Paces the load (a refusal is immediate), not a synchronisation.
                                    try? await Task.sleep(for: .milliseconds(5))
                                } catch {
                                    tally.withLock { $0.failed += 1 }
                                    try? await Task.sleep(for: .milliseconds(5))
                                }
                            }
                        }
                    }
                    await group.next()
                    group.cancelAll()
                }
            }
            #expect(await eventually { tally.withLock { $0.succeeded } > 100 })
            try await server.stop()
            // Calls fail, with an error, for a while (about 2 s here): the process is still here to count them.
            #expect(await eventually(within: 60) { tally.withLock { $0.refusedAtOnce } > 10_000 }, "\(tally.withLock { $0 })")
            let failedBeforeRestart = tally.withLock { $0.failed }
            try await server.start()
            let succeededAfterRestart = tally.withLock { $0.succeeded }
            #expect(await eventually(within: 30) { tally.withLock { $0.succeeded } > succeededAfterRestart + 1_000 })
            finish.finish()
            await load.value
            #expect(failedBeforeRestart > 0)

            #expect(await eventually(within: 30) { await round() == 32 }, "all 32 concurrent callers succeed again")
            #expect(await eventually(within: 30) { pool.openConnections == size }, "\(pool.openConnections) connections")
            #expect(pool.waiting == 0)
        }
    }
}
