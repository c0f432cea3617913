import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import IdentityTestSupport
import Synchronization
import Testing

/// Contract §9 (sessions and refresh tokens) through real `DemoServer` processes, observed from
/// the outside: HTTP, and psql where a store is PostgreSQL.
@Suite("DemoServer sessions end to end")
struct SessionEndToEndTests {
    static let password = "correct horse battery"
    static let newPassword = "a brand new passphrase"

    /// How the demo server is deployed.
    enum Mode: String, CaseIterable, Sendable, CustomTestStringConvertible {
        case memory, sqlite, postgres, distributed
        var testDescription: String { rawValue }

        var isEnabled: Bool {
            switch self {
            case .memory, .sqlite: true
            case .postgres: PrivatePostgres.isAvailable
            case .distributed: TestRabbitMQ.isAvailable
            }
        }
    }

    /// The processes of one deployment: `a` and `b` are the base URLs of two HTTP nodes (one
    /// node serves both in the embedded and single-node modes).
    final class Deployment: Sendable {
        let a: String
        let b: String
        let postgres: PrivatePostgres?
        private let processes: [ServerProcess]

        init(a: String, b: String, postgres: PrivatePostgres?, processes: [ServerProcess]) {
            self.a = a
            self.b = b
            self.postgres = postgres
            self.processes = processes
        }

        var nodes: [String] { a == b ? [a] : [a, b] }

        /// What every process of the deployment logged.
        var log: String { processes.map(\.log).joined(separator: "\n") }

        func stop() {
            for process in processes { process.stop() }
            postgres?.destroy()
        }

        /// Starts `mode` with `extra` variables over the end-to-end environment.
        /// With a broker, on the virtual host `virtualHost` (one per suite: suites run side by side).
        static func start(_ mode: Mode, extra: [String: String] = [:], virtualHost: String = "identity-e2e-sessions") async throws -> Deployment {
            let environment = EndToEndTests.environment.merging(extra) { $1 }
            switch mode {
            case .memory:
                let server = try ServerProcess(environment: environment)
                let base = try await base(server, expecting: "store=in-memory")
                return Deployment(a: base, b: base, postgres: nil, processes: [server])
            case .sqlite:
                var environment = environment
                environment["IDENTITY_SQLITE_PATH"] = nil
                let server = try ServerProcess(environment: environment)
                let base = try await base(server, expecting: "store=sqlite(identity.sqlite)")
                return Deployment(a: base, b: base, postgres: nil, processes: [server])
            case .postgres:
                let postgres = try await PrivatePostgres()
                do {
                    let env = try await SessionEndToEndTests.migratedEnvironment(postgres).merging(extra) { $1 }
                    let (server, base) = try await FaultEndToEndTests().node(env)
                    return Deployment(a: base, b: base, postgres: postgres, processes: [server])
                } catch {
                    postgres.destroy()
                    throw error
                }
            case .distributed:
                let postgres = try await PrivatePostgres()
                do {
                    let broker = try await TestRabbitMQ.virtualHost(virtualHost)
                    let env = try await migrated(postgres, broker, extra)
                    let nodes = try await DistributedTests().cluster(env)
                    return Deployment(a: nodes.baseA, b: nodes.baseB, postgres: postgres, processes: [nodes.a, nodes.b, nodes.worker])
                } catch {
                    postgres.destroy()
                    throw error
                }
            }
        }

        private static func base(_ server: ServerProcess, expecting summary: String) async throws -> String {
            do {
                let port = try #require(await server.port(), "the server starts: \(server.log)")
                #expect(server.log.contains(summary), "\(server.log)")
                return "http://127.0.0.1:\(port)"
            } catch {
                server.stop()
                throw error
            }
        }
    }

    /// The demo server's environment on `postgres`, migrated; `POSTGRES_TIMEOUT_SECONDS` as given.
    static func migratedEnvironment(_ postgres: PrivatePostgres, port: Int? = nil, timeout: String = "30") async throws -> [String: String] {
        var env = EndToEndTests.environment.merging(postgres.environment) { $1 }
        env["POSTGRES_TIMEOUT_SECONDS"] = timeout
        let migration = try await runDemoServer(["migrate", "up"], environment: env)
        try #require(migration.status == 0, "migrate up: \(migration.output)")
        if let port { env["POSTGRES_PORT"] = "\(port)" }
        return env
    }

    // MARK: - every mode

    @Test("§9 on every deployment: login, rotation, grace, reuse, bad tokens, concurrent refreshes, listing, ending one, others, all, logout, password change",
          arguments: Mode.allCases.filter(\.isEnabled))
    func contract(_ mode: Mode) async throws {
        let deployment = try await Deployment.start(mode)
        defer { deployment.stop() }
        let client = SessionClient(deployment: deployment)
        let (a, b) = (deployment.a, deployment.b)
        for email in ["ada@example.com", "bob@example.com"] {
            let registered = try await call("POST", "\(a)/users", json: #"{"email":"\#(email)","password":"\#(Self.password)","name":"A"}"#)
            #expect(registered.status == 201, "register \(email) (\(mode)): \(registered.json)")
        }

        // A login opens a session: an access token with `sid`, a 96-character URL-safe refresh token.
        let first = try await client.login(a, userAgent: "first-device")
        #expect(first.refresh.count == 96 && first.refresh.allSatisfy { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" },
                "an opaque URL-safe refresh token: \(first.refresh)")
        let sid = try #require(try claim("sid", of: first.access), "the access token names its session")
        #expect(try await call("GET", "\(b)/users/me", token: first.access).status == 200)

        // Refresh on B what A issued (JSON), then on A (the OAuth2 form): each rotates.
        let r1 = try await client.refresh(b, first.refresh).pair()
        #expect(r1.refresh != first.refresh && r1.access != first.access, "a new pair")
        #expect(try claim("sid", of: r1.access) == sid, "of the same session")
        #expect(try await call("GET", "\(a)/users/me", token: r1.access).status == 200)
        let r2 = try await client.refresh(a, r1.refresh, form: true).pair()
        #expect(r2.refresh != r1.refresh)

        // The token just replaced, within 10 s, gets the very same pair, on either node.
        for node in deployment.nodes {
            let again = try await client.refresh(node, r1.refresh).pair()
            #expect(again == r2, "the grace rule hands out the current pair again, unchanged (\(node))")
        }

        // Bad refresh tokens: one 401 problem+json for all, nothing changed.
        var current = try await badTokens(client, deployment, current: r2.refresh, sid: sid)

        // Simultaneous refreshes of one token, split over both nodes: one rotation, one pair.
        let before = try await generation(deployment, sid)
        let rounds = 5
        for _ in 0..<rounds {
            let token = current.refresh
            let pairs = try await withThrowingTaskGroup(of: Pair.self) { group in
                for index in 0..<4 {
                    group.addTask { try await client.refresh(index % 2 == 0 ? a : b, token).pair() }
                }
                return try await group.reduce(into: [Pair]()) { $0.append($1) }
            }
            #expect(Set(pairs).count == 1, "four simultaneous refreshes of one token give one pair: \(pairs.map(\.refresh))")
            current = try #require(pairs.first)
        }
        if let before {
            #expect(try await generation(deployment, sid) == before + rounds, "exactly one rotation per round")
        }
        let previous = current
        current = try await client.refresh(a, current.refresh).pair()

        // A replay of an older token (not the one just replaced) ends the session as a reuse:
        // its refresh and access tokens are refused on every node, and nothing brings it back.
        let reuse = try await client.refresh(b, r2.refresh)
        try reuse.expectProblem("urn:identity:problem:refresh-token-reused")
        try await client.refusedEverywhere(current.access, ended: b)
        for token in [current.refresh, previous.refresh, r2.refresh, r1.refresh, first.refresh] {
            for node in deployment.nodes {
                let replay = try await client.refresh(node, token)
                #expect(replay.status == 401, "an ended session never comes back (\(node)): \(replay.status)")
            }
        }
        try await expectEndReasons(deployment, ["reuse": 1])

        // GET /sessions: the open sessions, newest first, the current one marked.
        let phone = try await client.login(a, userAgent: "phone")
        let laptop = try await client.login(b, userAgent: "laptop")
        let desk = try await client.login(a, userAgent: "desk")
        let listed = try await client.sessions(b, desk.access)
        #expect(listed.map(\.userAgent) == ["desk", "laptop", "phone"], "newest first; the ended session is not listed: \(listed)")
        #expect(listed.map(\.current) == [true, false, false])
        #expect(listed.map(\.id) == [try claim("sid", of: desk.access), try claim("sid", of: laptop.access), try claim("sid", of: phone.access)])

        // DELETE /sessions/{id}: another account's, unknown and malformed ids are 404.
        let bob = try await client.login(b, email: "bob@example.com", userAgent: "bob")
        let bobSession = try #require(try claim("sid", of: bob.access))
        for id in [bobSession, UUID().uuidString, "not-a-uuid", "%00", "%C3%A9", String(repeating: "a", count: 2_000)] {
            let reply = try await call("DELETE", "\(a)/sessions/\(id)", token: desk.access)
            #expect(reply.status == 404 && reply.headers["content-type"] == "application/problem+json", "DELETE /sessions/\(id.prefix(40)): \(reply.status)")
        }
        #expect(try await client.sessions(b, bob.access).count == 2, "Bob's two sessions are untouched")
        // Ending one (on A) refuses its access token on B within a second, and its refresh token.
        let deleted = try await call("DELETE", "\(a)/sessions/\(try #require(listed.last?.id))", token: desk.access)
        #expect(deleted.status == 204)
        try await client.refusedEverywhere(phone.access, ended: a)
        #expect(try await client.refresh(b, phone.refresh).status == 401)
        #expect(try await call("DELETE", "\(a)/sessions/\(try #require(listed.last?.id))", token: desk.access).status == 404, "ended: gone")

        // scope=others keeps the caller's; scope=all ends it too.
        #expect(try await call("DELETE", "\(b)/sessions?scope=others", token: desk.access).status == 204)
        try await client.refusedEverywhere(laptop.access, ended: b)
        #expect(try await client.refresh(a, laptop.refresh).status == 401)
        #expect(try await client.sessions(a, desk.access).map(\.userAgent) == ["desk"])
        let deskNext = try await client.refresh(a, desk.refresh).pair()
        let tablet = try await client.login(b, userAgent: "tablet")
        #expect(try await call("DELETE", "\(a)/sessions?scope=all", token: deskNext.access).status == 204)
        for ended in [deskNext, tablet] {
            try await client.refusedEverywhere(ended.access, ended: a)
            #expect(try await client.refresh(b, ended.refresh).status == 401)
        }

        // Logged in on A, refreshed on B, logged out on A: B refuses the access token within a
        // second, and the refresh tokens are refused.
        let session = try await client.login(a, userAgent: "logout")
        let rotated = try await client.refresh(b, session.refresh).pair()
        #expect(try await call("POST", "\(a)/auth/logout", token: rotated.access).status == 204)
        try await client.refusedEverywhere(rotated.access, ended: a)
        #expect(try await client.refresh(b, rotated.refresh).status == 401)
        #expect(try await client.refresh(b, session.refresh).status == 401, "the replaced token neither")

        // A password change ends every session of the account; Bob's stays.
        let one = try await client.login(a, userAgent: "one")
        let two = try await client.login(b, userAgent: "two")
        let changed = try await call("PUT", "\(b)/users/me",
                                     json: #"{"password":"\#(Self.newPassword)","current_password":"\#(Self.password)"}"#, token: one.access)
        #expect(changed.status == 200, "\(changed.json)")
        for ended in [one, two] {
            try await client.refusedEverywhere(ended.access, ended: b)
            #expect(try await client.refresh(a, ended.refresh).status == 401)
        }
        let fresh = try await client.login(a, password: Self.newPassword, userAgent: "fresh")
        let freshNext = try await client.refresh(b, fresh.refresh).pair()
        #expect(try await call("GET", "\(a)/users/me", token: freshNext.access).status == 200)
        #expect(try await client.sessions(a, freshNext.access).map(\.userAgent) == ["fresh"])
        #expect(try await client.refresh(a, bob.refresh).status == 200, "another account's session is untouched")

        try await expectEndReasons(deployment, ["reuse": 1, "revoked": 4, "logout": 1, "password_change": 2])
    }

    /// Garbage, empty, over-long, wrongly encoded, forged and another account's refresh tokens
    /// (Ada's current one is `current`, of session `sid`): each is 401 problem+json with one
    /// body for all, and changes nothing: both sessions stay open and refresh with their real
    /// tokens afterwards. Returns Ada's pair from that refresh.
    func badTokens(_ client: SessionClient, _ deployment: Deployment, current: String, sid: String) async throws -> Pair {
        let bob = try await client.login(deployment.b, email: "bob@example.com", userAgent: "bob")
        // A token is 72 bytes in one base64url string: the first 48 characters spell the session,
        // the account and half the version, the rest the other half and the secret.
        let (adaNamed, adaSecret) = (current.prefix(48), current.dropFirst(48))
        let (bobNamed, bobSecret) = (bob.refresh.prefix(48), bob.refresh.dropFirst(48))
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        func flippingLowBit(_ character: Character) -> Character {
            alphabet[(alphabet.firstIndex(of: character) ?? 0) ^ 1]
        }
        let standardBase64 = current.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        let tokens: [(String, String)] = [
            ("empty", ""), ("garbage", "garbage"), ("over-long", String(repeating: "A", count: 10_000)),
            ("one character more", current + "A"), ("one character less", String(current.dropLast())),
            ("padded", current + "="), ("with a space", current + " "), ("upper-cased", current.uppercased()),
            ("standard base64", standardBase64 == current ? "+" + current.dropFirst() : standardBase64),
            ("non-ASCII", "é" + current.dropFirst()),
            ("the last character changed", String(current.dropLast()) + String(flippingLowBit(current.last ?? "A"))),
            ("another session id", String(flippingLowBit(current.first ?? "A")) + current.dropFirst()),
            ("another version", String(current.prefix(52)) + String(flippingLowBit(current.dropFirst(52).first ?? "A")) + current.dropFirst(53)),
            ("the session of an earlier-format token", String(adaNamed.prefix(22)) + String(repeating: "Q", count: 43)),
            ("an access token", bob.access), ("Bob's session and account, Ada's secret", String(bobNamed + adaSecret)),
            ("Ada's session and account, Bob's secret", String(adaNamed + bobSecret)),
            ("Ada's session and account, a secret of our own", String(adaNamed) + String(repeating: "Q", count: 48)),
        ]
        var details: Set<String> = []
        for (what, token) in tokens {
            // As JSON on every node, and as the OAuth2 form on B.
            for (node, form) in deployment.nodes.map({ ($0, false) }) + [(deployment.b, true)] {
                let reply = try await client.refresh(node, token, form: form)
                try reply.expectProblem("urn:identity:problem:unauthorized", "\(what)\(form ? " (form)" : "")")
                details.insert("\(reply.json["title"] ?? "") \(reply.json["detail"] ?? "")")
            }
        }
        #expect(details.count == 1, "one answer for every bad token: \(details)")
        // What the framing refuses before any field is read (contract §1: NUL, a lone
        // surrogate, invalid UTF-8) is 400 whatever the field, and changes nothing either.
        let tail = Data(current.dropFirst().utf8)
        let framing: [(String, Data, String)] = [
            ("a NUL", Data(#"{"refresh_token":"\u0000"#.utf8) + tail + Data(#""}"#.utf8), "application/json"),
            ("a lone surrogate", Data(#"{"refresh_token":"\ud800"#.utf8) + tail + Data(#""}"#.utf8), "application/json"),
            ("invalid UTF-8", Data(#"{"refresh_token":""#.utf8) + Data([0xC3, 0x28]) + tail + Data(#""}"#.utf8), "application/json"),
            ("a NUL in the form", Data("grant_type=refresh_token&refresh_token=%00".utf8) + tail, "application/x-www-form-urlencoded"),
        ]
        for (what, body, type) in framing {
            let reply = try await client.send("POST", "\(deployment.a)/auth/refresh", body: body, contentType: type)
            #expect([400, 422].contains(reply.status) && reply.headers["content-type"] == "application/problem+json",
                    "\(what): \(reply.status) \(reply.json)")
        }
        // Nothing changed: no session ended, and both refresh with their real tokens.
        try await expectEndReasons(deployment, [:])
        let next = try await client.refresh(deployment.a, current).pair()
        #expect(try await client.sessions(deployment.a, next.access).contains { $0.id == sid && $0.current }, "Ada's session is intact")
        let bobNext = try await client.refresh(deployment.a, bob.refresh).pair()
        #expect(try await client.sessions(deployment.b, bobNext.access).count == 1, "Bob's session is intact")
        return next
    }

    /// The session's generation (rotations so far) on PostgreSQL; nil elsewhere.
    func generation(_ deployment: Deployment, _ sid: String) async throws -> Int? {
        guard let postgres = deployment.postgres else { return nil }
        return Int(try await psql(postgres, "SELECT generation FROM identity_sessions WHERE id = '\(sid)'"))
    }

    /// On PostgreSQL: how many sessions ended for each reason is exactly `expected`.
    func expectEndReasons(_ deployment: Deployment, _ expected: [String: Int], sourceLocation: SourceLocation = #_sourceLocation) async throws {
        guard let postgres = deployment.postgres else { return }
        let rows = try await psql(postgres, "SELECT string_agg(end_reason || '=' || n, ',' ORDER BY end_reason) FROM "
            + "(SELECT end_reason, count(*) AS n FROM identity_sessions WHERE end_reason IS NOT NULL GROUP BY end_reason) r")
        let found = Dictionary(uniqueKeysWithValues: rows.split(separator: ",").compactMap { pair -> (String, Int)? in
            let parts = pair.split(separator: "=")
            guard parts.count == 2, let count = Int(parts[1]) else { return nil }
            return (String(parts[0]), count)
        })
        #expect(found == expected, "sessions ended by reason", sourceLocation: sourceLocation)
    }
}

// MARK: - faults

extension SessionEndToEndTests {
    @Test("PostgreSQL's link cut or paused around refreshes, a rotation committed after its deadline: 503s (never 500), nothing ended, the client's latest token refreshes after; a reuse whose revocation fails is made good by the next attempt",
          .enabled(if: PrivatePostgres.isAvailable, PrivatePostgres.skipReason))
    func databaseLinkFaults() async throws {
        let postgres = try await PrivatePostgres()
        defer { postgres.destroy() }
        let proxy = try await FaultProxy.start(forwardingTo: "127.0.0.1", port: postgres.port)
        do { try await databaseLinkFaults(postgres, proxy) } catch { await proxy.stop(); throw error }
        await proxy.stop()
    }

    func databaseLinkFaults(_ postgres: PrivatePostgres, _ proxy: FaultProxy) async throws {
        let env = try await Self.migratedEnvironment(postgres, port: proxy.port, timeout: "1")
        let (server, base) = try await FaultEndToEndTests().node(env)
        defer { server.stop() }
        let client = SessionClient(node: base, postgres: postgres)
        #expect(try await call("POST", "\(base)/users", json: #"{"email":"ada@example.com","password":"\#(Self.password)","name":"Ada"}"#).status == 201)
        var latest = try await client.login(base, userAgent: "faulty")
        latest = try await client.refresh(base, latest.refresh).pair()

        let sid = try #require(try claim("sid", of: latest.access))
        let faults = FaultEndToEndTests()
        for fault in ["cut between refreshes", "paused with a refresh in flight", "cut with a refresh in flight", "a rotation slower than the deadline"] {
            let before = try await psql(postgres, "SELECT generation FROM identity_sessions WHERE id = '\(sid)'")
            // The client keeps the last pair it received; every refresh meanwhile fails alike.
            var statuses: [Int] = []
            switch fault {
            case "cut between refreshes":
                try await proxy.cut()
                for _ in 0..<2 { statuses.append(try await client.refresh(base, latest.refresh).status) }
                try await proxy.restore()
            case "paused with a refresh in flight", "cut with a refresh in flight":
                try await proxy.pause()
                let token = latest.refresh
                let held = Task { try await client.refresh(base, token).status }
                #expect(try await eventually { try await proxy.heldBytes(from: .client) > 0 }, "the refresh's query is held at the proxy")
                if fault.hasPrefix("cut") { try await proxy.cut() }
                statuses.append(try await held.value)
                statuses.append(try await client.refresh(base, latest.refresh).status)
                if fault.hasPrefix("cut") { try await proxy.restore() }
                try await proxy.resume()
            default:
                // PostgreSQL commits the rotation after the demo server gave up on it: the
                // client never received the pair its token was replaced with.
                try await faults.sql(postgres, """
                    CREATE FUNCTION identity_test_slow() RETURNS trigger LANGUAGE plpgsql AS $$
                    BEGIN PERFORM pg_sleep(2); RETURN NEW; END $$;
                    CREATE TRIGGER identity_test_slow BEFORE UPDATE ON identity_sessions
                        FOR EACH ROW EXECUTE FUNCTION identity_test_slow();
                    """)
                statuses.append(try await client.refresh(base, latest.refresh).status)
                try await faults.sql(postgres, "DROP TRIGGER identity_test_slow ON identity_sessions; DROP FUNCTION identity_test_slow();")
                // Dropping the trigger waits for the slow statement, which commits: one rotation
                // the client never saw, so the retry below goes through the grace rule.
                #expect(try await psql(postgres, "SELECT generation FROM identity_sessions WHERE id = '\(sid)'") == Int(before).map { "\($0 + 1)" },
                        "the rotation committed after the 503")
            }
            #expect(statuses.allSatisfy { $0 == 503 }, "\(fault): refreshes are 503 meanwhile: \(statuses)")
            // A rotation that committed after its 503 (held, slow) left the client's token the
            // one just replaced: within 10 s the grace rule hands it the pair it missed.
            var recovered: Pair?
            let back = try await eventually(within: 8) {
                let reply = try await client.refresh(base, latest.refresh)
                #expect([200, 503].contains(reply.status), "\(fault): only 200 or 503 while recovering: \(reply.status) \(reply.json)")
                if reply.status == 200 { recovered = try reply.pair() }
                return reply.status == 200
            }
            #expect(back, "\(fault): the client's latest token refreshes once the link is back: \(server.log.suffix(2000))")
            latest = try #require(recovered)
            let after = try await psql(postgres, "SELECT generation FROM identity_sessions WHERE id = '\(sid)'")
            #expect(Int(after) == Int(before).map { $0 + 1 }, "\(fault): one rotation in all, whichever request made it (\(before) → \(after))")
            latest = try await client.refresh(base, latest.refresh).pair()
            #expect(try await call("GET", "\(base)/users/me", token: latest.access).status == 200)
            try await expectEndReasons(client.deployment, [:])
        }
        #expect(try await psql(postgres, "SELECT count(*) FROM identity_sessions WHERE ended_at IS NULL") == "1", "the session is open")
        try await expectEndReasons(client.deployment, [:])

        // A reuse whose revocation cannot be written (a trigger refuses it): not 2xx, and
        // nothing of it commits (the end, its event and its revocation are one step); once the
        // revocation can be written, the replay ends the session and its access tokens are
        // refused at once.
        let older = latest.refresh
        latest = try await client.refresh(base, older).pair()
        latest = try await client.refresh(base, latest.refresh).pair()
        try await faults.sql(postgres, """
            CREATE FUNCTION identity_test_fail() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'injected failure of a revocation write'; END $$;
            CREATE TRIGGER identity_test_fail BEFORE INSERT OR UPDATE ON identity_revoked_tokens
                FOR EACH ROW EXECUTE FUNCTION identity_test_fail();
            """)
        // (An error the database raises is a 500, as anywhere else: it is not an outage.)
        let replay = try await client.refresh(base, older)
        #expect(!(200..<300).contains(replay.status), "a reuse that cannot revoke: \(replay.status) \(replay.json)")
        try await expectEndReasons(client.deployment, [:])
        #expect(try await call("GET", "\(base)/users/me", token: latest.access).status == 200, "nothing of the failed reuse committed")
        try await faults.sql(postgres, "DROP TRIGGER identity_test_fail ON identity_revoked_tokens; DROP FUNCTION identity_test_fail();")
        try (try await client.refresh(base, older)).expectProblem("urn:identity:problem:refresh-token-reused")
        try await expectEndReasons(client.deployment, ["reuse": 1])
        #expect(try await call("GET", "\(base)/users/me", token: latest.access).status == 401,
                "ended and revoked in one step: the session's access tokens are refused at once")
        #expect(try await client.refresh(base, latest.refresh).status == 401)
        #expect(!server.log.contains("Fatal error"))
    }

    @Test("DemoServer killed (SIGKILL) amid streams of refreshes, a rotation of each in flight: on a fresh instance each client's last token refreshes through the grace, none ended as a reuse; a real replay still is one",
          .enabled(if: PrivatePostgres.isAvailable, PrivatePostgres.skipReason))
    func killedMidStream() async throws {
        let postgres = try await PrivatePostgres()
        defer { postgres.destroy() }
        var env = try await Self.migratedEnvironment(postgres)
        env["POSTGRES_POOL_SIZE"] = "8"
        let faults = FaultEndToEndTests()
        let (first, base) = try await faults.node(env)
        defer { first.stop() }
        let deployment = Deployment(a: base, b: base, postgres: postgres, processes: [])
        let client = SessionClient(deployment: deployment)
        #expect(try await call("POST", "\(base)/users", json: #"{"email":"ada@example.com","password":"\#(Self.password)","name":"Ada"}"#).status == 201)
        let chains = try await (0..<4).asyncMap { index in Chain(try await client.login(base, userAgent: "stream \(index)")) }
        func generations() async throws -> [Int] {
            try await chains.asyncMap { chain in
                let sid = try #require(try claim("sid", of: chain.first.access))
                return try #require(Int(try await psql(postgres, "SELECT generation FROM identity_sessions WHERE id = '\(sid)'")))
            }
        }
        let opened = try await generations()

        // Four clients refresh one after another, each on its own session, until the kill.
        let streams = Task {
            await withTaskGroup(of: Void.self) { group in
                for chain in chains {
                    group.addTask {
                        while true {
                            guard let reply = try? await client.refresh(base, chain.latest.refresh), reply.status == 200,
                                  let pair = try? reply.pair() else { return }
                            chain.received(pair)
                        }
                    }
                }
            }
        }
        #expect(await eventually(within: 30) { chains.allSatisfy { $0.count >= 5 } }, "every stream refreshes")
        // The instance the clients turn to after the kill, started now (it has seen none of
        // their refreshes): their retries then reach it at once, well inside the 10 s grace of
        // the rotations that commit after the kill, however slowly a loaded machine starts a process.
        let (second, again) = try await FaultEndToEndTests().node(env)
        defer { second.stop() }
        // From now on each rotation takes 2 s in PostgreSQL: the kill finds one in flight per
        // stream, which PostgreSQL commits after the process is gone, unseen by its client.
        try await faults.sql(postgres, """
            CREATE FUNCTION identity_test_slow() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN PERFORM pg_sleep(2); RETURN NEW; END $$;
            CREATE TRIGGER identity_test_slow BEFORE UPDATE ON identity_sessions FOR EACH ROW EXECUTE FUNCTION identity_test_slow();
            """)
        #expect(try await eventually(within: 10) {
            try await psql(postgres, "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'") == "4"
        }, "a rotation of each stream is in flight")
        #expect(kill(first.process.processIdentifier, SIGKILL) == 0)
        await streams.value
        #expect(await first.waitForExit(seconds: 10))
        try await faults.sql(postgres, "DROP TRIGGER identity_test_slow ON identity_sessions; DROP FUNCTION identity_test_slow();")
        let committed = try await generations()
        for (index, chain) in chains.enumerated() {
            #expect(committed[index] == opened[index] + chain.count, "stream \(index): one rotation more than its client saw")
        }

        for chain in chains {
            let reply = try await client.refresh(again, chain.latest.refresh)
            #expect(reply.status == 200, "the last token the client received refreshes, through the grace: \(reply.status) \(reply.json)")
            if reply.status == 200 { chain.received(try reply.pair()) }
        }
        try await expectEndReasons(deployment, [:])
        #expect(try await psql(postgres, "SELECT count(*) FROM identity_sessions WHERE ended_at IS NULL") == "4")

        // The check can fail: a real replay after the restart is a reuse.
        let replayed = try await client.refresh(again, try #require(chains.first?.older))
        try replayed.expectProblem("urn:identity:problem:refresh-token-reused")
        try await expectEndReasons(deployment, ["reuse": 1])
        for chain in chains.dropFirst() {
            #expect(try await client.refresh(again, chain.latest.refresh).status == 200)
        }
    }

    @Test("distributed: RabbitMQ's link cut from both HTTP nodes: refresh, grace, listing and ending sessions still work across nodes (they never travel on the bus); a password change is 503 until the link is back",
          .enabled(if: TestRabbitMQ.isAvailable, TestRabbitMQ.skipReason))
    func brokerOutage() async throws {
        let postgres = try await PrivatePostgres()
        defer { postgres.destroy() }
        let broker = try await TestRabbitMQ.virtualHost("identity-e2e-sessions-broker")
        let proxy = try await FaultProxy.start(forwardingTo: broker["RABBITMQ_HOST"] ?? "127.0.0.1", port: Int(broker["RABBITMQ_PORT"] ?? "") ?? 5672)
        do { try await brokerOutage(postgres, broker, proxy) } catch { await proxy.stop(); throw error }
        await proxy.stop()
    }

    func brokerOutage(_ postgres: PrivatePostgres, _ broker: [String: String], _ proxy: FaultProxy) async throws {
        let env = try await migrated(postgres, broker, ["COMMAND_TIMEOUT_SECONDS": "3"])
        var proxied = env
        proxied["RABBITMQ_PORT"] = "\(proxy.port)"
        let distributed = DistributedTests()
        let worker = try await distributed.worker(env)
        defer { worker.stop() }
        let (a, baseA) = try await distributed.httpNode(proxied)
        defer { a.stop() }
        let (b, baseB) = try await distributed.httpNode(proxied)
        defer { b.stop() }
        let deployment = Deployment(a: baseA, b: baseB, postgres: postgres, processes: [])
        let client = SessionClient(deployment: deployment)
        #expect(try await call("POST", "\(baseA)/users", json: #"{"email":"ada@example.com","password":"\#(Self.password)","name":"Ada"}"#).status == 201)
        let kept = try await client.login(baseA, userAgent: "kept")

        try await proxy.cut()
        #expect(await a.waitFor { a.log.contains("rabbitmq connection lost") }, "A notices: \(a.log.suffix(500))")
        #expect(await b.waitFor { b.log.contains("rabbitmq connection lost") }, "B notices: \(b.log.suffix(500))")
        let during = try await client.login(baseB, userAgent: "during")
        var latest = try await client.refresh(baseA, kept.refresh).pair()
        #expect(try await client.refresh(baseB, kept.refresh).pair() == latest, "the grace across nodes")
        latest = try await client.refresh(baseB, latest.refresh).pair()
        #expect(try await client.sessions(baseA, latest.access).map(\.userAgent) == ["during", "kept"])
        #expect(try await call("DELETE", "\(baseA)/sessions/\(try #require(try claim("sid", of: during.access)))", token: latest.access).status == 204)
        try await client.refusedEverywhere(during.access, ended: baseA)
        #expect(try await client.refresh(baseB, during.refresh).status == 401)
        let change = try await call("PUT", "\(baseA)/users/me",
                                    json: #"{"password":"\#(Self.newPassword)","current_password":"\#(Self.password)"}"#, token: latest.access)
        #expect(change.status == 503, "a password change is a command: it needs the broker")
        let reset = try await call("POST", "\(baseB)/auth/password-reset", json: #"{"email":"ada@example.com"}"#)
        #expect(reset.status == 503, "a reset request the broker cannot take is 503, never a 202 for nothing: \(reset.status)")
        latest = try await client.refresh(baseA, latest.refresh).pair()

        try await proxy.restore()
        #expect(try await eventually(within: 30) {
            try await call("PUT", "\(baseA)/users/me", json: #"{"name":"Back"}"#, token: latest.access).status == 200
        }, "commands flow again once the link is back")
        #expect(try await call("POST", "\(baseB)/auth/password-reset", json: #"{"email":"ada@example.com"}"#).status == 202)
        #expect(try await call("PUT", "\(baseB)/users/me",
                               json: #"{"password":"\#(Self.newPassword)","current_password":"\#(Self.password)"}"#, token: latest.access).status == 200)
        try await client.refusedEverywhere(latest.access, ended: baseB)
        #expect(try await client.refresh(baseA, latest.refresh).status == 401, "the change ended the session")
        #expect(try await eventually(within: 30) { try await psql(postgres, "SELECT count(*) FROM identity_outbox") == "0" },
                "the session events of the outage are published once the link is back")
        try await expectEndReasons(deployment, ["revoked": 1, "password_change": 1])
    }
}

// MARK: - the client

/// An access token and a refresh token, as a login or a refresh gives them.
struct Pair: Hashable, Sendable {
    let access: String
    let refresh: String
}

/// One session's chain of pairs as a client received them.
final class Chain: Sendable {
    private let pairs: Mutex<[Pair]>
    init(_ first: Pair) { pairs = Mutex([first]) }
    func received(_ pair: Pair) { pairs.withLock { $0.append(pair) } }
    var latest: Pair { pairs.withLock { $0[$0.count - 1] } }
    var first: Pair { pairs.withLock { $0[0] } }
    var count: Int { pairs.withLock { $0.count } }
    /// A refresh token older than the one before the latest (a replay that is never within the grace).
    var older: String? { pairs.withLock { $0.count >= 3 ? $0[$0.count - 3].refresh : nil } }
}

struct SessionReply {
    let status: Int
    let headers: [String: String]
    let json: [String: Any]

    func pair(sourceLocation: SourceLocation = #_sourceLocation) throws -> Pair {
        try #require(status == 200, "a refresh or login answers 200: \(status) \(json)", sourceLocation: sourceLocation)
        return Pair(access: try #require(json["access_token"] as? String), refresh: try #require(json["refresh_token"] as? String))
    }

    func expectProblem(_ type: String, _ what: String = "", sourceLocation: SourceLocation = #_sourceLocation) throws {
        #expect(status == 401, "\(what): 401, not \(status) \(json)", sourceLocation: sourceLocation)
        #expect(headers["content-type"] == "application/problem+json", "\(what): problem+json", sourceLocation: sourceLocation)
        #expect(json["type"] as? String == type, "\(what): \(json)", sourceLocation: sourceLocation)
    }
}

struct SessionClient: Sendable {
    let deployment: SessionEndToEndTests.Deployment

    init(deployment: SessionEndToEndTests.Deployment) {
        self.deployment = deployment
    }

    /// A client of the one node at `base` (it plays both A and B), on `postgres` if any.
    init(node base: String, postgres: PrivatePostgres?) {
        self.init(deployment: SessionEndToEndTests.Deployment(a: base, b: base, postgres: postgres, processes: []))
    }

    struct Listed: CustomStringConvertible {
        let id: String
        let userAgent: String?
        let current: Bool
        var description: String { "\(userAgent ?? "-")\(current ? "*" : "")" }
    }

    func send(_ method: String, _ url: String, body: Data? = nil, contentType: String? = nil, token: String? = nil,
              userAgent: String? = nil) async throws -> SessionReply {
        var request = URLRequest(url: try #require(URL(string: url)), timeoutInterval: 30)
        request.httpMethod = method
        request.httpBody = body
        if let contentType { request.setValue(contentType, forHTTPHeaderField: "Content-Type") }
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        if let userAgent { request.setValue(userAgent, forHTTPHeaderField: "User-Agent") }
        let (data, response) = try await URLSession.shared.data(for: request)
        let http = try #require(response as? HTTPURLResponse)
        var headers: [String: String] = [:]
        for (key, value) in http.allHeaderFields { headers["\(key)".lowercased()] = "\(value)" }
        let object = data.isEmpty ? [:] : ((try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:])
        return SessionReply(status: http.statusCode, headers: headers, json: object)
    }

    func login(_ base: String, email: String = "ada@example.com", password: String = SessionEndToEndTests.password,
               userAgent: String) async throws -> Pair {
        let body = try JSONSerialization.data(withJSONObject: ["email": email, "password": password])
        return try await send("POST", "\(base)/auth/login", body: body, contentType: "application/json", userAgent: userAgent).pair()
    }

    /// `POST /auth/refresh` with `token`, as JSON or as the OAuth2 form.
    func refresh(_ base: String, _ token: String, form: Bool = false) async throws -> SessionReply {
        if form {
            var allowed = CharacterSet.alphanumerics
            allowed.insert(charactersIn: "-_.~")
            let encoded = token.addingPercentEncoding(withAllowedCharacters: allowed) ?? token
            return try await send("POST", "\(base)/auth/refresh", body: Data("grant_type=refresh_token&refresh_token=\(encoded)".utf8),
                                  contentType: "application/x-www-form-urlencoded")
        }
        let body = try JSONSerialization.data(withJSONObject: ["refresh_token": token])
        return try await send("POST", "\(base)/auth/refresh", body: body, contentType: "application/json")
    }

    func sessions(_ base: String, _ access: String) async throws -> [Listed] {
        let reply = try await send("GET", "\(base)/sessions", token: access)
        try #require(reply.status == 200, "GET /sessions: \(reply.status) \(reply.json)")
        let sessions = try #require(reply.json["sessions"] as? [[String: Any]])
        return try sessions.map { session in
            #expect(Set(session.keys) == ["id", "created_at", "last_used_at", "user_agent", "ip", "current"])
            return Listed(id: try #require(session["id"] as? String), userAgent: session["user_agent"] as? String,
                          current: try #require(session["current"] as? Bool))
        }
    }

    /// `access` is refused at once by `ended` (the node that ended its session) and within a
    /// second by every other node.
    func refusedEverywhere(_ access: String, ended: String, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        #expect(try await call("GET", "\(ended)/users/me", token: access).status == 401, "refused where it ended", sourceLocation: sourceLocation)
        for node in deployment.nodes where node != ended {
            let refused = try await eventually(within: 1) { try await call("GET", "\(node)/users/me", token: access).status == 401 }
            #expect(refused, "refused by \(node) within a second", sourceLocation: sourceLocation)
        }
    }
}

/// A string claim of a compact JWT's payload.
func claim(_ name: String, of token: String) throws -> String? {
    var part = String(try #require(token.split(separator: ".").dropFirst().first))
        .replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
    while part.count % 4 != 0 { part += "=" }
    let payload = try #require(Data(base64Encoded: part))
    return try #require(try JSONSerialization.jsonObject(with: payload) as? [String: Any])[name] as? String
}

extension Sequence where Element: Sendable {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var results: [T] = []
        for element in self { results.append(try await transform(element)) }
        return results
    }
}
