import AMQPAdapter
import CryptoAdapter
import Foundation
import IdentityApplication
import IdentityComposition
import IdentityDomain
import IdentityPorts
import IdentityTestSupport
import InMemoryAdapter
import PostgresAdapter
import PostgresNIO
import ServiceLifecycle
import Synchronization
import Testing

@Suite("IdentityStack: one composition per store")
struct IdentityStackTests {
    static let configuration = IdentityConfiguration(
        tokens: try! TokenConfiguration(secret: TestIdentity.secret), argon2: try! Argon2Configuration(memoryKiB: 64, iterations: 1)
    )
    static let migrating = {
        var configuration = Self.configuration
        configuration.schema = .migrate
        return configuration
    }()
    static let keys = try! CommandSigningKeys([Data(String(repeating: "command-signing-key-", count: 2).utf8)])
    static let broker = AMQPConfiguration(host: "127.0.0.1", port: 1)

    /// Stores in memory whose outbox trimming is recorded, shared (as a database is) or not.
    final class Trims: Sendable {
        let kept = Mutex<[Int]>([])
        func append(_ value: Int) { kept.withLock { $0.append(value) } }
        var values: [Int] { kept.withLock { $0 } }
    }

    static func recordingStores(shared: Bool) -> (IdentityStores, Trims) {
        let trims = Trims()
        let store = InMemoryUserStore()
        let stores = IdentityStores(
            users: store, outbox: store, revocations: store.revocations, throttle: InMemoryLoginThrottle(), sessions: InMemorySessionStore(outbox: store),
            trimOutbox: { kept in trims.append(kept); return 0 }, isShared: shared
        )
        return (stores, trims)
    }

    static func purge(_ stack: IdentityStack) async throws {
        let purge = try #require(stack.services.compactMap { $0 as? ExpiryPurge }.first, "an ExpiryPurge among the services")
        await purge.purgeOnce()
    }

    @Test("in process, nothing relays events, so the purge keeps the newest 10,000; over a broker they are relayed, not trimmed")
    func relayOrTrim() async throws {
        let (local, localTrims) = Self.recordingStores(shared: true)
        let inProcess = try await IdentityStack.make(store: .custom(local), configuration: Self.configuration)
        try await Self.purge(inProcess)
        #expect(localTrims.values == [10_000])
        #expect(!inProcess.services.contains { $0 is OutboxRelayService })
        #expect(inProcess.summary.contains("bus=in-process"))

        let (shared, sharedTrims) = Self.recordingStores(shared: true)
        let distributed = try await IdentityStack.make(
            store: .custom(shared), transport: .amqp(Self.broker, signingKeys: Self.keys), configuration: Self.configuration
        )
        #expect(distributed.services.contains { $0 is OutboxRelayService })
        #expect(distributed.services.contains { $0 is AMQPBroker })
        #expect(distributed.readiness.map(\.backendName) == ["rabbitmq"])
        #expect(!distributed.services.contains { $0 is ExpiryPurge }, "nothing else to purge in these stores")
        #expect(sharedTrims.values.isEmpty)
        #expect(distributed.summary.contains("worker=on") && distributed.summary.contains("signing-key=\(Self.keys.keyIDs[0])"))
        #expect(!distributed.summary.contains("command-signing-key"), "key ids, never keys")
    }

    @Test("a broker on stores other instances cannot share is refused with one line, whatever the store")
    func brokerNeedsSharedStores() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("stack-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let unshared: [IdentityStore] = [.inMemory, .sqlite(path: directory.appendingPathComponent("a.sqlite").path),
                                         .custom(Self.recordingStores(shared: false).0)]
        for store in unshared {
            await #expect(throws: IdentityCompositionError.self) {
                _ = try await IdentityStack.make(store: store, transport: .amqp(Self.broker, signingKeys: Self.keys), configuration: Self.configuration)
            }
        }
        do {
            _ = try await IdentityStack.make(store: .inMemory, transport: .amqp(Self.broker, signingKeys: Self.keys), configuration: Self.configuration)
        } catch let error as IdentityCompositionError {
            #expect(error.description.contains("PostgreSQL") && !error.description.contains("\n"))
        }
    }

    @Test("in memory: the use cases work, and the only background work is the outbox-lag sampler")
    func inMemory() async throws {
        let stack = try await IdentityStack.make(store: .inMemory, configuration: Self.configuration)
        #expect(stack.services.count == 1 && stack.services.first is OutboxLagSampler)
        #expect(stack.readiness.isEmpty)
        try await stack.prepare()
        try await Self.story(stack.service)
        #expect(stack.summary.hasPrefix("store=in-memory bus=in-process hasher=argon2id(") && stack.summary.hasSuffix("tokens=HS256"))
    }

    @Test("SQLite: the file is migrated when opened, purged now and then, and keeps accounts across stacks")
    func sqlite() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("stack-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("identity.sqlite").path
        let first = try await IdentityStack.make(store: .sqlite(path: path), configuration: Self.configuration)
        #expect(first.services.contains { $0 is ExpiryPurge })
        try await first.prepare()
        let token = try await Self.story(first.service)
        try await Self.purge(first)
        let second = try await IdentityStack.make(store: .sqlite(path: path), configuration: Self.configuration)
        await #expect(throws: TokenRejected.self, "the logout survives in the file") {
            _ = try await second.service.authenticator.authenticate(bearer: token)
        }
        _ = try await second.service.login(email: "ada@example.com", password: "correct horse battery", client: nil)
    }

    @Test(
        "PostgreSQL on the host's client: a schema behind the build is refused unless migrating; the feed and purge run as services",
        .enabled(if: TestDatabase.isConfigured, TestDatabase.skipReason)
    )
    func postgresClient() async throws {
        try await TestDatabase.with { client, name in
            let postgres = Self.postgres(name)
            let strict = try await IdentityStack.make(store: .postgresClient(client, configuration: postgres), configuration: Self.configuration)
            await #expect(throws: SchemaOutOfDate.self, "an empty database is behind this build") { try await strict.prepare() }

            let stack = try await IdentityStack.make(store: .postgresClient(client, configuration: postgres), configuration: Self.migrating)
            #expect(stack.services.contains { $0 is PostgresRevocationCache })
            #expect(stack.services.contains { $0 is ExpiryPurge })
            #expect(!stack.services.contains { $0 is PostgresConnectionPool }, "the host runs its own client")
            #expect(stack.readiness.map(\.backendName) == ["postgres"])
            try await Self.running(stack.services) {
                try await stack.prepare()
                try await strict.prepare()  // now current
                try await Self.story(stack.service)
                try await Self.purge(stack)
            }
        }
    }

    @Test(
        "PostgreSQL through a pool of the stack's own, which runs among its services",
        .enabled(if: TestDatabase.isConfigured, TestDatabase.skipReason)
    )
    func postgresPool() async throws {
        try await TestDatabase.with { _, name in
            let postgres = Self.postgres(name)
            let stack = try await IdentityStack.make(store: .postgres(postgres), configuration: Self.migrating)
            #expect(stack.services.first is PostgresConnectionPool)
            #expect(stack.summary.hasPrefix("store=postgres(\(postgres.summary))"))
            try await Self.running(stack.services) {
                try await stack.prepare()
                try await Self.story(stack.service)
            }
        }
    }

    @Test(
        "two instances on one PostgreSQL: twenty simultaneous refreshes with one token, spread over both, rotate once and agree",
        .enabled(if: TestDatabase.isConfigured, TestDatabase.skipReason)
    )
    func refreshAcrossInstances() async throws {
        try await TestDatabase.with { _, name in
            let a = try await IdentityStack.make(store: .postgres(Self.postgres(name)), configuration: Self.migrating)
            let b = try await IdentityStack.make(store: .postgres(Self.postgres(name)), configuration: Self.migrating)
            try await Self.running(a.services + b.services) {
                try await a.prepare()
                try await b.prepare()
                _ = try await a.service.register(email: "ada@example.com", password: "correct horse battery", name: "Ada")
                let first = try await a.service.login(email: "ada@example.com", password: "correct horse battery", client: nil)
                let pairs = try await withThrowingTaskGroup(of: SignIn.self) { group in
                    for index in 0..<20 {
                        let service = index.isMultiple(of: 2) ? a.service : b.service
                        group.addTask { try await service.refresh(first.refreshToken, client: nil) }
                    }
                    return try await group.reduce(into: [SignIn]()) { $0.append($1) }
                }
                #expect(Set(pairs.map(\.refreshToken)).count == 1, "one rotation, one pair for all twenty")
                // Ended on B: refused on A too, through the revocation feed.
                let principal = try await b.service.authenticator.authenticate(bearer: pairs[0].token)
                try await b.service.endSessions(principal, scope: .all)
                #expect(await Self.refused(pairs[0].token, by: a.service), "a session ended on one instance is refused on the other")
                await #expect(throws: IdentityError.refreshTokenRefused) { try await a.service.refresh(pairs[0].refreshToken, client: nil) }
            }
        }
    }

    /// The test server's database `name`, as a host would describe it.
    static func postgres(_ name: String, poolSize: Int = 20) -> PostgresConfiguration {
        PostgresConfiguration(
            host: TestDatabase.host, port: TestDatabase.port, username: TestDatabase.user,
            password: TestDatabase.environment["IDENTITY_TEST_POSTGRES_PASSWORD"], database: name, poolSize: poolSize, tls: .disable
        )
    }

    /// Runs `services` in a group for the duration of `body`, then shuts them down gracefully.
    static func running(_ services: [any Service], _ body: () async throws -> Void) async throws {
        let group = ServiceGroup(configuration: .init(services: services.map { .init(service: $0) }, logger: .init(label: "test")))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            do {
                try await body()
            } catch {
                await group.triggerGracefulShutdown()
                throw error
            }
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
    }

    /// Register, log in, refresh (the replaced token's grace, then a reuse ending the session),
    /// log in again, check the token, log out: the token is refused after. Returns it.
    @discardableResult
    static func story(_ service: IdentityService) async throws -> String {
        _ = try await service.register(email: "ada@example.com", password: "correct horse battery", name: "Ada")
        let first = try await service.login(email: "ada@example.com", password: "correct horse battery", client: nil)
        let second = try await service.refresh(first.refreshToken, client: nil)
        #expect(try await service.refresh(first.refreshToken, client: nil) == second, "the grace: the same pair again")
        _ = try await service.refresh(second.refreshToken, client: nil)
        await #expect(throws: IdentityError.refreshTokenReused) { try await service.refresh(first.refreshToken, client: nil) }
        #expect(await refused(first.token, by: service), "the reused session's tokens are refused")

        let token = try await service.login(email: "ada@example.com", password: "correct horse battery", client: nil).token
        let principal = try await service.authenticator.authenticate(bearer: token)
        #expect(try await service.me(principal).email == "ada@example.com")
        #expect(try await service.sessions(principal).map(\.isCurrent) == [true], "the reused session is no longer listed")
        try await service.logout(principal)
        #expect(await refused(token, by: service), "a logged-out token is refused")
        return token
    }

    static func refused(_ token: String, by service: IdentityService) async -> Bool {
        await eventually(within: 5) {
            do {
                _ = try await service.authenticator.authenticate(bearer: token)
                return false
            } catch {
                return true
            }
        }
    }
}
