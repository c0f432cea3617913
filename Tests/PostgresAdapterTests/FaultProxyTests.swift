import IdentityTestSupport
import Logging
import PostgresNIO
import Synchronization
import Testing

/// The test support's `FaultProxy` itself, with PostgreSQL on the far side and one connection of
/// PostgresNIO's (no pool) on the near side.
@Suite("Fault proxy", .enabled(if: TestDatabase.isConfigured, TestDatabase.skipReason))
struct FaultProxyTests {
    static let logger = Logger(label: "identity.test.fault-proxy")

    static func withProxy(_ body: (FaultProxy) async throws -> Void) async throws {
        let proxy = try await FaultProxy.start(forwardingTo: TestDatabase.host, port: TestDatabase.port)
        do {
            try await body(proxy)
            await proxy.stop()
        } catch {
            await proxy.stop()
            throw error
        }
    }

    static func connect(through proxy: FaultProxy) async throws -> PostgresConnection {
        let configuration = PostgresConnection.Configuration(
            host: "127.0.0.1", port: proxy.port, username: TestDatabase.user,
            password: TestDatabase.environment["IDENTITY_TEST_POSTGRES_PASSWORD"], database: TestDatabase.adminDatabase, tls: .disable
        )
        return try await PostgresConnection.connect(configuration: configuration, id: 1, logger: logger)
    }

    static func one(_ connection: PostgresConnection, _ value: Int) async throws -> Int {
        for try await result in try await connection.query("SELECT \(value)::int8", logger: logger).decode(Int.self) {
            return result
        }
        throw CancellationError()
    }

    @Test("bytes flow both ways through one connection to the target per connection")
    func forwards() async throws {
        try await Self.withProxy { proxy in
            let connection = try await Self.connect(through: proxy)
            #expect(try await Self.one(connection, 42) == 42)
            #expect(try await proxy.liveConnections() == 1)
            try await connection.close()
            #expect(await eventually { (try? await proxy.liveConnections()) == 0 }, "a close goes through and ends the link")
        }
    }

    @Test("cut closes every live connection and every new one until restored")
    func cut() async throws {
        try await Self.withProxy { proxy in
            let connection = try await Self.connect(through: proxy)
            #expect(try await Self.one(connection, 1) == 1)
            try await proxy.cut()
            #expect(await eventually { connection.isClosed }, "the client sees its connection closed")
            await #expect(throws: (any Error).self, "a new connection is closed while cut") {
                try await Self.connect(through: proxy)
            }
            try await proxy.restore()
            let again = try await Self.connect(through: proxy)
            #expect(try await Self.one(again, 2) == 2)
            try await again.close()
        }
    }

    @Test("pause holds the bytes (nothing closes) and resume lets them flow, in order")
    func pause() async throws {
        try await Self.withProxy { proxy in
            let connection = try await Self.connect(through: proxy)
            try await proxy.pause()
            let answered = Mutex(false)
            let query = Task {
                let value = try await Self.one(connection, 7)
                answered.withLock { $0 = true }
                return value
            }
            #expect(await eventually { (try? await proxy.heldBytes()) ?? 0 > 0 }, "the query's bytes are held at the proxy")
            #expect(!answered.withLock { $0 }, "so no answer can have come")
            #expect(!connection.isClosed)
            try await proxy.resume()
            #expect(try await query.value == 7, "after resume the query reaches the server and its answer comes back")
            #expect(try await proxy.heldBytes() == 0)
            #expect(try await Self.one(connection, 8) == 8)
            try await proxy.pause()
            try await connection.close()
            #expect(await eventually { (try? await proxy.heldCloses()) == 1 }, "a close while paused is held too")
            #expect(try await proxy.liveConnections() == 1, "so the server's side stays open")
            try await proxy.resume()
            #expect(await eventually { (try? await proxy.liveConnections()) == 0 }, "and closes on resume")
        }
    }
}
