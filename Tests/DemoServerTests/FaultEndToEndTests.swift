import Foundation
import IdentityTestSupport
import Testing

/// Faults of the database and of the clock, through real `DemoServer serve` processes on a
/// private PostgreSQL, observed from the outside (HTTP, psql).
@Suite("DemoServer faults on PostgreSQL", .serialized, .enabled(if: PrivatePostgres.isAvailable, PrivatePostgres.skipReason))
struct FaultEndToEndTests {
    static let password = "correct horse battery"
    static let newPassword = "a brand new passphrase"

    /// The environment of a node on `postgres`, migrated.
    func migrated(_ postgres: PrivatePostgres) async throws -> [String: String] {
        let env = EndToEndTests.environment.merging(postgres.environment) { $1 }
        let migrate = try await runDemoServer(["migrate", "up"], environment: env)
        #expect(migrate.status == 0, "\(migrate.output)")
        return env
    }

    /// Starts `serve` and returns it with its base URL once its revocation cache has caught up.
    func node(_ env: [String: String]) async throws -> (ServerProcess, String) {
        let node = try ServerProcess(environment: env)
        let port = try #require(await node.port(), "the node starts: \(node.log)")
        #expect(await node.waitFor { node.log.contains("revocation cache caught up") }, "the node follows the revocations: \(node.log)")
        return (node, "http://127.0.0.1:\(port)")
    }

    /// Runs `statements` with psql on the private server's `identity` database.
    func sql(_ postgres: PrivatePostgres, _ statements: String) async throws {
        let bin = try #require(PrivatePostgres.binDirectory)
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("identity-sql-\(UUID()).sql")
        try statements.write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        let status = try await runShell(
            "'\(bin)/psql' -q -X -v ON_ERROR_STOP=1 -h 127.0.0.1 -p \(postgres.port) -U postgres -d identity -f '\(file.path)' >/dev/null 2>&1"
        )
        #expect(status == 0, "psql ran \(statements)")
    }

    func login(_ base: String, _ email: String, _ password: String = Self.password) async throws -> HTTPReply {
        try await call("POST", "\(base)/auth/login", json: #"{"email":"\#(email)","password":"\#(password)"}"#)
    }

    func token(_ base: String, _ email: String, _ password: String = Self.password) async throws -> String {
        let reply = try await login(base, email, password)
        return try #require(reply.json["access_token"] as? String, "login on \(base): \(reply.status)")
    }

    func changePassword(_ base: String, token: String) async throws -> HTTPReply {
        try await call("PUT", "\(base)/users/me", json: #"{"password":"\#(Self.newPassword)","current_password":"\#(Self.password)"}"#, token: token)
    }

    /// A claim of a compact JWT's payload, as a number.
    func claim(_ name: String, of token: String) throws -> Int {
        var part = String(try #require(token.split(separator: ".").dropFirst().first))
            .replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while part.count % 4 != 0 { part += "=" }
        let payload = try #require(Data(base64Encoded: part))
        let object = try #require(try JSONSerialization.jsonObject(with: payload) as? [String: Any])
        return try #require((object[name] as? NSNumber)?.intValue, "\(name) in \(object)")
    }

    @Test("a password change whose cut-off cannot be written commits nothing: the old password, and the old token, still work; then it goes through")
    func failingCutoffWrite() async throws {
        let postgres = try await PrivatePostgres()
        defer { postgres.destroy() }
        let env = try await migrated(postgres)
        let (server, base) = try await node(env)
        defer { server.stop() }
        #expect(try await call("POST", "\(base)/users", json: #"{"email":"ada@example.com","password":"\#(Self.password)","name":"Ada"}"#).status == 201)
        let original = try await token(base, "ada@example.com")

        try await sql(postgres, """
            CREATE FUNCTION identity_test_fail() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'injected failure of a cut-off write'; END $$;
            CREATE TRIGGER identity_test_fail BEFORE INSERT OR UPDATE ON identity_account_cutoffs
                FOR EACH ROW EXECUTE FUNCTION identity_test_fail();
            """)
        let refused = try await changePassword(base, token: original)
        #expect(!(200..<300).contains(refused.status), "the change is not reported done: \(refused.status) \(refused.json)")
        #expect(try await login(base, "ada@example.com").status == 200, "the old password still logs in")
        #expect(try await login(base, "ada@example.com", Self.newPassword).status == 401, "the new one does not")
        #expect(try await call("GET", "\(base)/users/me", token: original).status == 200, "the old token still works")

        try await sql(postgres, "DROP TRIGGER identity_test_fail ON identity_account_cutoffs; DROP FUNCTION identity_test_fail();")
        let changed = try await changePassword(base, token: original)
        #expect(changed.status == 200, "\(changed.status) \(changed.json)")
        #expect(try await call("GET", "\(base)/users/me", token: original).status == 401, "the old token is revoked with the change")
        #expect(try await login(base, "ada@example.com").status == 401, "the old password no longer logs in")
        let fresh = try await token(base, "ada@example.com", Self.newPassword)
        #expect(try await call("GET", "\(base)/users/me", token: fresh).status == 200, "a token from the new password works")
    }

    /// libfaketime (Debian's `faketime` package), if installed. The test preloads it itself
    /// (`LD_PRELOAD`, `FAKETIME`), as the `faketime` program does, so that the demo server is
    /// the test's own child: `faketime` runs the program as a child of its own and does not
    /// pass SIGTERM on, so stopping it would wait forever.
    static var libfaketime: String? {
        let directories = ((try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib")) ?? []).map { "/usr/lib/\($0)/faketime" }
        return (directories + ["/usr/lib/faketime", "/usr/local/lib/faketime"])
            .map { "\($0)/libfaketime.so.1" }
            .first { FileManager.default.fileExists(atPath: $0) }
    }

    @Test("a node whose clock runs 4 s ahead: its token from before a password change made on another node is refused on both, one issued right after works on both",
          .enabled(if: Self.libfaketime != nil, "libfaketime is not installed (Debian package faketime)"))
    func shiftedClock() async throws {
        let postgres = try await PrivatePostgres()
        defer { postgres.destroy() }
        let env = try await migrated(postgres)
        let (a, baseA) = try await node(env)
        defer { a.stop() }
        let shifted = env.merging(["LD_PRELOAD": try #require(Self.libfaketime), "FAKETIME": "+4s"]) { $1 }
        let (b, baseB) = try await node(shifted)
        defer { b.stop() }
        #expect(try await call("POST", "\(baseA)/users", json: #"{"email":"ada@example.com","password":"\#(Self.password)","name":"Ada"}"#).status == 201)

        // The shift is real: B, asked after A, issues a token 4 s later (integer seconds).
        let tokenA = try await token(baseA, "ada@example.com")
        let tokenB = try await token(baseB, "ada@example.com")
        let (issuedA, issuedB) = (try claim("iat", of: tokenA), try claim("iat", of: tokenB))
        #expect(issuedB >= issuedA + 4, "B's clock runs at least 4 s ahead of A's (iat \(issuedB) against \(issuedA))")
        #expect(try await call("GET", "\(baseA)/users/me", token: tokenB).status == 200, "A accepts B's token: its iat is in the future, within the leeway")

        // B's token is from before the change by the account's version, though its iat may be
        // later than the change by A's clock.
        #expect(try await changePassword(baseA, token: tokenA).status == 200)
        let after = try await token(baseB, "ada@example.com", Self.newPassword)
        #expect(try await call("GET", "\(baseA)/users/me", token: tokenB).status == 401, "A refuses B's token from before the change")
        #expect(await eventually { (try? await call("GET", "\(baseB)/users/me", token: tokenB))?.status == 401 },
                "and so does B")
        #expect(try await call("GET", "\(baseA)/users/me", token: tokenA).status == 401)
        #expect(try await call("GET", "\(baseB)/users/me", token: after).status == 200, "B's token from right after the change works on B")
        #expect(try await call("GET", "\(baseA)/users/me", token: after).status == 200, "and on A")
    }
}
