import Foundation
import IdentityTestSupport
import Synchronization
import Testing

/// Runs `DemoServer` with `arguments` to completion; returns its exit status and output.
func runDemoServer(_ arguments: [String], environment: [String: String]) async throws -> (status: Int32, output: String) {
    let server = try ServerProcess(environment: environment, arguments: arguments)
    defer { server.stop() }
    _ = await server.waitForExit()
    server.process.waitUntilExit()
    return (server.process.terminationStatus, server.log)
}

@Suite("DemoServer on PostgreSQL", .serialized, .enabled(if: PrivatePostgres.isAvailable, PrivatePostgres.skipReason))
struct PostgresEndToEndTests {
    func environment(_ postgres: PrivatePostgres) -> [String: String] {
        EndToEndTests.environment.merging(postgres.environment) { $1 }
    }

    @Test("serve refuses an out-of-date schema; migrate up (twice at once) fixes it; status says so")
    func migrateThenServe() async throws {
        let postgres = try await PrivatePostgres()
        defer { postgres.destroy() }
        let env = environment(postgres)

        let refused = try await runDemoServer(["serve"], environment: env)
        #expect(refused.status == 69)
        #expect(refused.output.contains("cannot start: the database schema is out of date (11 pending migrations): run `DemoServer migrate up`"))

        async let first = Task { try await runDemoServer(["migrate", "up"], environment: env) }.value
        async let second = Task { try await runDemoServer(["migrate", "up"], environment: env) }.value
        let (a, b) = try await (first, second)
        #expect(a.status == 0 && b.status == 0, "two migrate up at once both succeed: \(a.output) \(b.output)")
        #expect([a.output, b.output].filter { $0.contains("applied 1 initial") }.count == 1, "and apply each migration once")
        #expect([a.output, b.output].filter { $0.contains("applied 2 login_throttle") }.count == 1)
        #expect([a.output, b.output].filter { $0.contains("applied 3 revocation_notify") }.count == 1)
        #expect([a.output, b.output].filter { $0.contains("applied 4 ordered_revocations") }.count == 1)
        #expect([a.output, b.output].filter { $0.contains("applied 5 login_attempts") }.count == 1)
        #expect([a.output, b.output].filter { $0.contains("applied 6 sessions") }.count == 1)
        #expect([a.output, b.output].filter { $0.contains("applied 7 signing_keys") }.count == 1)
        #expect([a.output, b.output].filter { $0.contains("applied 8 session_digests") }.count == 1)
        #expect([a.output, b.output].filter { $0.contains("applied 9 mail") }.count == 1)
        #expect([a.output, b.output].filter { $0.contains("applied 10 session_digests_unbound") }.count == 1)
        #expect([a.output, b.output].filter { $0.contains("applied 11 session_rotation_writes") }.count == 1)

        let status = try await runDemoServer(["migrate", "status"], environment: env)
        #expect(status.status == 0 && status.output.contains("applied  1 initial") && status.output.contains("schema is up to date"))

        let down = try await runDemoServer(["migrate", "down", "1"], environment: env)
        #expect(down.status == 0 && down.output.contains("undid 11 session_rotation_writes"))
        #expect(try await runDemoServer(["migrate", "down", "0"], environment: env).status != 0, "N must be 1 or more")
        #expect(try await runDemoServer(["migrate", "up"], environment: env).status == 0)
    }

    @Test("a restart of the demo server loses nothing, and the old token still works")
    func restartKeepsData() async throws {
        let postgres = try await PrivatePostgres()
        defer { postgres.destroy() }
        let env = environment(postgres)
        #expect(try await runDemoServer(["migrate", "up"], environment: env).status == 0)

        var server = try ServerProcess(environment: env)
        var port = try #require(await server.port(), "\(server.log)")
        #expect(server.log.contains("store=postgres(127.0.0.1:\(postgres.port)/identity)"))
        // 20 concurrent registrations of one email (in varying case): exactly one 201.
        let base = "http://127.0.0.1:\(port)"
        let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
            for index in 0..<20 {
                group.addTask {
                    let email = index % 2 == 0 ? "ada@example.com" : "ADA@Example.com"
                    return try await call("POST", "\(base)/users", json: #"{"email":"\#(email)","password":"correct horse battery","name":"Ada"}"#).status
                }
            }
            return try await group.reduce(into: [Int]()) { $0.append($1) }
        }
        #expect(statuses.filter { $0 == 201 }.count == 1, "\(statuses)")
        #expect(statuses.filter { $0 == 409 }.count == 19, "\(statuses)")
        let login = try await call("POST", "http://127.0.0.1:\(port)/auth/login", json: #"{"email":"ada@example.com","password":"correct horse battery"}"#)
        let token = try #require(login.json["access_token"] as? String)
        let logoutToken = try #require(try await call("POST", "http://127.0.0.1:\(port)/auth/login",
            json: #"{"email":"ada@example.com","password":"correct horse battery"}"#).json["access_token"] as? String)
        #expect(try await call("POST", "http://127.0.0.1:\(port)/auth/logout", token: logoutToken).status == 204)
        server.stop()

        server = try ServerProcess(environment: env)
        defer { server.stop() }
        port = try #require(await server.port(), "\(server.log)")
        let me = try await call("GET", "http://127.0.0.1:\(port)/users/me", token: token)
        #expect(me.status == 200, "the account and the signing key survive the restart")
        #expect(me.json["email"] as? String == "ada@example.com")
        #expect(try await call("GET", "http://127.0.0.1:\(port)/users/me", token: logoutToken).status == 401,
                "a logout survives the restart too")
    }

    /// Migrates, starts `serve` on `env`, registers Ada and logs her in.
    func servingAda(_ env: [String: String]) async throws -> (server: ServerProcess, base: String, token: String) {
        #expect(try await runDemoServer(["migrate", "up"], environment: env).status == 0)
        let server = try ServerProcess(environment: env)
        do {
            let base = "http://127.0.0.1:\(try #require(await server.port(), "\(server.log)"))"
            #expect(try await call("POST", "\(base)/users", json: #"{"email":"ada@example.com","password":"correct horse battery","name":"Ada"}"#).status == 201)
            let token = try #require(try await call("POST", "\(base)/auth/login",
                json: #"{"email":"ada@example.com","password":"correct horse battery"}"#).json["access_token"] as? String)
            return (server, base, token)
        } catch {
            server.stop()
            throw error
        }
    }

    @Test("PostgreSQL restarted while serving: 503 problem+json (never 500, never SQL) during the outage, then work again")
    func databaseRestart() async throws {
        let postgres = try await PrivatePostgres()
        defer { postgres.destroy() }
        let env = environment(postgres)
        let (server, base, token) = try await servingAda(env)
        defer { server.stop() }

        try await postgres.stop()
        let during = try await call("GET", "\(base)/users/me", token: token)
        #expect(during.status == 503)
        #expect(during.headers["content-type"] == "application/problem+json")
        #expect((during.json["detail"] as? String) == "postgres is unavailable")
        let ready = try await call("GET", "\(base)/health/ready")
        #expect(ready.status == 503 && (ready.json["detail"] as? String)?.contains("postgres") == true)
        let register = try await call("POST", "\(base)/users", json: #"{"email":"bob@example.com","password":"correct horse battery","name":"Bob"}"#)
        #expect(register.status == 503)

        try await postgres.start()
        var recovered = false
        let deadline = Date().addingTimeInterval(90)
        while Date() < deadline, !recovered {
            recovered = (try? await call("GET", "\(base)/users/me", token: token))?.status == 200
            if !recovered { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(recovered, "requests work again once PostgreSQL is back; the server's log:\n\(server.log.suffix(3000))")
        #expect(try await call("GET", "\(base)/health/ready").status == 200)
        #expect(!server.log.contains("SELECT") && !server.log.contains("INSERT"), "no SQL in the log")
    }

    @Test("PostgreSQL restarted under 32 concurrent requests: 503s during the outage (never 500), the process stays up, then all 200 again")
    func databaseRestartUnderLoad() async throws {
        let postgres = try await PrivatePostgres()
        defer { postgres.destroy() }
        var env = environment(postgres)
        env["POSTGRES_POOL_SIZE"] = "4"
        let (server, base, token) = try await servingAda(env)
        defer { server.stop() }

        // Each worker ends after its current request once told to stop: a request cancelled in
        // flight can leave URLSession (FoundationNetworking) waiting forever.
        let tally = StatusTally()
        let load = Task {
            await withTaskGroup(of: Void.self) { group in
                for _ in 0..<32 {
                    group.addTask {
                        while !tally.stopped {
                            let status = (try? await call("GET", "\(base)/users/me", token: token))?.status ?? 0
                            tally.record(status)
                            // Paces the load, not a synchronisation.
                            if status != 200 { try? await Task.sleep(for: .milliseconds(5)) }
                        }
                    }
                }
            }
        }
        #expect(await eventually { tally.count(200) > 100 })
        try await postgres.stop()
        #expect(await eventually(within: 60) { tally.count(503) > 1_000 }, "\(tally.counts)")
        try await postgres.start()
        let before = tally.count(200)
        #expect(await eventually(within: 60) { tally.count(200) > before + 500 }, "\(tally.counts)\n\(server.log.suffix(3000))")
        tally.stop()
        await load.value

        #expect(server.process.isRunning, "the server is still alive: \(server.log.suffix(3000))")
        #expect(Set(tally.counts.keys).isSubset(of: [200, 503]), "only 200 and 503, no 500 and no dropped connection: \(tally.counts)")
        #expect(try await call("GET", "\(base)/health/ready").status == 200)
        #expect(!server.log.contains("Fatal error") && !server.log.contains("Precondition failed"))
    }
}

/// Responses counted by status (0: no response).
private final class StatusTally: Sendable {
    private let state = Mutex<[Int: Int]>([:])
    private let stopping = Mutex(false)
    func record(_ status: Int) { state.withLock { $0[status, default: 0] += 1 } }
    func count(_ status: Int) -> Int { state.withLock { $0[status] ?? 0 } }
    var counts: [Int: Int] { state.withLock { $0 } }
    var stopped: Bool { stopping.withLock { $0 } }
    func stop() { stopping.withLock { $0 = true } }
}
