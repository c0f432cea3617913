import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import IdentityTestSupport
import Testing

/// The `kid` and `alg` of a token's header.
func tokenHeader(_ token: String) throws -> [String: Any] {
    let part = try #require(token.split(separator: ".").first)
    var base64 = part.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
    while base64.count % 4 != 0 { base64 += "=" }
    let data = try #require(Data(base64Encoded: base64))
    return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
}

/// `token` with its header's `kid` replaced (the signature then no longer matters: the key is unknown).
func withKid(_ kid: String, _ token: String) throws -> String {
    var header = try tokenHeader(token)
    header["kid"] = kid
    let json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
    let parts = token.split(separator: ".")
    return TokenForger.base64URL(String(decoding: json, as: UTF8.self)) + "." + parts[1] + "." + parts[2]
}

/// Registers and logs in `email` on `base`; the account's id and its access token.
func registerAndLogin(_ base: String, email: String = "ada@example.com") async throws -> (id: String, token: String) {
    let registered = try await call("POST", "\(base)/users", json: #"{"email":"\#(email)","password":"correct horse battery","name":"Ada"}"#)
    let id = try #require(registered.json["id"] as? String, "\(registered.status)")
    let login = try await call("POST", "\(base)/auth/login", json: #"{"email":"\#(email)","password":"correct horse battery"}"#)
    return (id, try #require(login.json["access_token"] as? String, "\(login.status)"))
}

/// The kids `GET /.well-known/jwks.json` lists on `base`.
func publishedKids(_ base: String) async throws -> [String] {
    let reply = try await call("GET", "\(base)/.well-known/jwks.json")
    #expect(reply.status == 200 && reply.headers["cache-control"] == "public, max-age=300")
    return (reply.json["keys"] as? [[String: Any]] ?? []).compactMap { $0["kid"] as? String }
}

/// Checks contract §10 on a server signing with `algorithm`: the token's header names a
/// published key, the token verifies, an HS256 token and a token naming an unknown kid do not.
func checkKeyPairSigning(_ base: String, algorithm: String, email: String = "ada@example.com") async throws -> String {
    let (id, token) = try await registerAndLogin(base, email: email)
    let header = try tokenHeader(token)
    #expect(header["alg"] as? String == algorithm)
    let kid = try #require(header["kid"] as? String, "every token's header has a kid")
    #expect(try await publishedKids(base).contains(kid), "the key set lists it")
    #expect(try await call("GET", "\(base)/users/me", token: token).status == 200, "the token verifies")
    let hmac = try await TokenForger.sign(.valid(sub: id, now: Date()), key: String(repeating: "s", count: 32))
    #expect(try await call("GET", "\(base)/users/me", token: hmac).status == 401, "an HS256 token is refused when \(algorithm) is configured")
    #expect(try await call("GET", "\(base)/users/me", token: try withKid("no-such-key", token)).status == 401, "an unknown kid is refused")
    return kid
}

@Suite("DemoServer with ES256 and EdDSA (contract §10)", .serialized)
struct KeyPairEndToEndTests {
    static func environment(_ algorithm: String) -> [String: String] {
        EndToEndTests.environment.merging(["JWT_ALGORITHM": algorithm, "JWT_SECRET": ""]) { $1 }
    }

    @Test("in memory: a random key-encryption key, the first start makes a key; tokens name it, the key set and discovery publish it", arguments: [
        "ES256", "EdDSA",
    ])
    func inMemory(algorithm: String) async throws {
        var environment = Self.environment(algorithm)
        environment["PUBLIC_BASE_URL"] = "https://id.example.com/"
        let server = try ServerProcess(environment: environment)
        defer { server.stop() }
        let base = "http://127.0.0.1:\(try #require(await server.port(), "\(server.log)"))"
        #expect(server.log.contains("tokens=\(algorithm)(rotation=30d)"), "\(server.log)")
        #expect(!server.log.contains("JWT_SECRET is unset"), "no secret is used, so none is missing")
        _ = try await checkKeyPairSigning(base, algorithm: algorithm)
        let discovery = try await call("GET", "\(base)/.well-known/openid-configuration")
        #expect(discovery.json["jwks_uri"] as? String == "https://id.example.com/.well-known/jwks.json")
        #expect(discovery.json["token_endpoint"] as? String == "https://id.example.com/auth/login")
        #expect(discovery.json["id_token_signing_alg_values_supported"] as? [String] == [algorithm])
    }

    static let pyjwtPython = ProcessInfo.processInfo.environment["IDENTITY_TEST_PYJWT_PYTHON"]

    /// What a standard JWT middleware does: discovery, then the JWKS it names (PyJWT's
    /// `PyJWKClient`), then the token checked against the discovered issuer.
    static let discoveryScript = #"""
        import json, sys, urllib.request, jwt
        base, token, algorithm, subject = sys.argv[1:5]
        discovery = json.load(urllib.request.urlopen(base + "/.well-known/openid-configuration"))
        assert algorithm in discovery["id_token_signing_alg_values_supported"], discovery
        key = jwt.PyJWKClient(discovery["jwks_uri"]).get_signing_key_from_jwt(token).key
        claims = jwt.decode(token, key, algorithms=[algorithm], audience="identity", issuer=discovery["issuer"],
                            options={"require": ["exp", "iat", "sub", "jti", "iss", "aud"]})
        assert claims["sub"] == subject, claims
        try:
            jwt.decode(token, key, algorithms=[algorithm], audience="identity", issuer="elsewhere")
            sys.exit("a token verified for another issuer")
        except jwt.InvalidIssuerError:
            pass
        """#

    @Test("PyJWT verifies a token of the running server through its discovery document and JWKS (no shared secret)",
          .enabled(if: pyjwtPython.map { FileManager.default.isExecutableFile(atPath: $0) } ?? false,
                   "IDENTITY_TEST_PYJWT_PYTHON (a Python with PyJWT and cryptography) is unset: run scripts/test"),
          arguments: ["ES256", "EdDSA"])
    func pyjwtThroughDiscovery(algorithm: String) async throws {
        let python = try #require(Self.pyjwtPython)
        let server = try ServerProcess(environment: Self.environment(algorithm))
        defer { server.stop() }
        let base = "http://127.0.0.1:\(try #require(await server.port(), "\(server.log)"))"
        let (id, token) = try await registerAndLogin(base)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("pyjwt-discovery-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let script = directory.appendingPathComponent("verify.py"), output = directory.appendingPathComponent("output")
        try Data(Self.discoveryScript.utf8).write(to: script)
        let status = try await runShell("'\(python)' '\(script.path)' '\(base)' '\(token)' \(algorithm) \(id) > '\(output.path)' 2>&1")
        #expect(status == 0, "PyJWT: \((try? String(contentsOf: output, encoding: .utf8)) ?? "")")
    }

    @Test("ES256 on SQLite without JWT_KEY_ENCRYPTION_KEY, or with a short one: one line, exit 78, the key never echoed", arguments: [
        nil, "short-key-encryption-key",
    ])
    func keyEncryptionKeyRequired(key: String?) async throws {
        var environment = Self.environment("ES256")
        environment["IDENTITY_SQLITE_PATH"] = "identity.sqlite"
        environment["JWT_KEY_ENCRYPTION_KEY"] = key
        let (status, output) = try await runDemoServer(["serve"], environment: environment)
        #expect(status == 78)
        let lines = output.split(separator: "\n")
        #expect(lines.count == 1 && lines.first?.hasPrefix("invalid configuration: JWT_KEY_ENCRYPTION_KEY") == true, "\(output)")
        if let key { #expect(!output.contains(key)) }
    }

    @Test("keys commands with HS256, or with keys in memory, stop with one line, exit 78", arguments: [
        (["JWT_ALGORITHM": "HS256"], "invalid configuration: JWT_ALGORITHM=HS256 signs with JWT_SECRET"),
        (["JWT_ALGORITHM": "ES256", "JWT_SECRET": ""], "invalid configuration: keys needs a durable store"),
    ])
    func keysNeedKeyPairs(variables: [String: String], expected: String) async throws {
        for command in [["keys", "rotate"], ["keys", "list"]] {
            let (status, output) = try await runDemoServer(command, environment: EndToEndTests.environment.merging(variables) { $1 })
            #expect(status == 78)
            #expect(output.hasPrefix(expected) && output.split(separator: "\n").count == 1, "\(output)")
        }
    }
}

@Suite("DemoServer keys on a durable store (contract §10)", .serialized)
struct KeyCommandsEndToEndTests {
    static let kek = "end-to-end-key-encryption-key-0123456789"

    /// The rows of `keys list` under its header, as columns.
    static func rows(_ output: String) -> [[String]] {
        let lines = output.split(separator: "\n").map(String.init)
        guard let header = lines.firstIndex(where: { $0.hasPrefix("KID") }) else { return [] }
        return lines[(header + 1)...].map { $0.split(separator: " ", omittingEmptySubsequences: true).map(String.init) }
    }

    @Test("SQLite: keys list shows the first key, keys rotate adds one published 600 s ahead, a server publishes both; a wrong key-encryption key stops everything with one line and writes nothing")
    func sqlite() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("identity-keys-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("identity.sqlite").path
        let env = KeyPairEndToEndTests.environment("ES256").merging(["IDENTITY_SQLITE_PATH": path, "JWT_KEY_ENCRYPTION_KEY": Self.kek]) { $1 }

        let first = try await runDemoServer(["keys", "list"], environment: env)
        #expect(first.status == 0, "\(first.output)")
        #expect(first.output.contains("KID") && first.output.contains("PUBLISHED-UNTIL"), "\(first.output)")
        let initial = Self.rows(first.output)
        #expect(initial.count == 1 && initial.first?[1] == "ES256" && initial.first?[2] == "active", "the first start made a key: \(first.output)")

        let rotated = try await runDemoServer(["keys", "rotate"], environment: env)
        #expect(rotated.status == 0, "\(rotated.output)")
        #expect(rotated.output.contains("created ") && rotated.output.contains("published now, signs from"), "\(rotated.output)")
        let listed = try await runDemoServer(["keys", "list"], environment: env)
        let rows = Self.rows(listed.output)
        #expect(rows.map { $0[2] } == ["active", "next"], "\(listed.output)")
        if rows.count == 2 {
            let formatter = ISO8601DateFormatter()
            let created = try #require(formatter.date(from: rows[1][3]))
            let activates = try #require(formatter.date(from: rows[1][4]))
            #expect(activates.timeIntervalSince(created) >= 600, "published at least 600 s before it signs")
            #expect(rows[0][5] == "-" && rows[0][6] == "-", "the active key is not retired yet")
        }
        let again = try await runDemoServer(["keys", "rotate"], environment: env)
        #expect(again.status == 0 && again.output.contains("no key made"), "one key waits at a time: \(again.output)")

        let server = try ServerProcess(environment: env)
        let base = "http://127.0.0.1:\(try #require(await server.port(), "\(server.log)"))"
        let kid = try await checkKeyPairSigning(base, algorithm: "ES256")
        #expect(kid == initial.first?[0], "the active key signs during the new one's lead")
        #expect(try await publishedKids(base) == rows.map { $0[0] }, "both published")
        server.stop()

        var wrong = env
        wrong["JWT_KEY_ENCRYPTION_KEY"] = "another-key-encryption-key-0123456789"
        for command in [["serve"], ["keys", "rotate"], ["keys", "list"]] {
            let (status, output) = try await runDemoServer(command, environment: wrong)
            #expect(status == 78, "\(command): \(output)")
            let lines = output.split(separator: "\n").filter { !$0.contains(" notice ") && !$0.contains(" info ") }
            #expect(lines.count == 1 && lines.first?.hasPrefix("invalid configuration: the stored signing key") == true, "\(command): \(output)")
            #expect(!output.contains("another-key-encryption-key"))
        }
        #expect(Self.rows(try await runDemoServer(["keys", "list"], environment: env).output).count == 2, "nothing was written")
    }
}

@Suite("DemoServer with key pairs on PostgreSQL (contract §10)", .serialized, .enabled(if: PrivatePostgres.isAvailable, PrivatePostgres.skipReason))
struct KeyPairPostgresEndToEndTests {
    @Test("two EdDSA servers on one PostgreSQL: one key for both; keys rotate while they run, and both publish the new key without a restart")
    func twoServers() async throws {
        let postgres = try await PrivatePostgres()
        defer { postgres.destroy() }
        let env = KeyPairEndToEndTests.environment("EdDSA").merging(postgres.environment) { $1 }
            .merging(["JWT_KEY_ENCRYPTION_KEY": KeyCommandsEndToEndTests.kek, "JWT_KEY_CHECK_SECONDS": "1"]) { $1 }
        #expect(try await runDemoServer(["migrate", "up"], environment: env).status == 0)
        let a = try ServerProcess(environment: env)
        defer { a.stop() }
        let baseA = "http://127.0.0.1:\(try #require(await a.port(), "\(a.log)"))"
        let b = try ServerProcess(environment: env)
        defer { b.stop() }
        let baseB = "http://127.0.0.1:\(try #require(await b.port(), "\(b.log)"))"
        let kid = try await checkKeyPairSigning(baseA, algorithm: "EdDSA")
        #expect(try await publishedKids(baseB) == [kid], "the second start found the first's key")
        let token = try await registerAndLogin(baseB, email: "bob@example.com").token
        #expect(try tokenHeader(token)["kid"] as? String == kid)
        #expect(try await call("GET", "\(baseA)/users/me", token: token).status == 200, "B's token on A")

        let rotated = try await runDemoServer(["keys", "rotate"], environment: env)
        #expect(rotated.status == 0, "\(rotated.output)")
        let kids = KeyCommandsEndToEndTests.rows(try await runDemoServer(["keys", "list"], environment: env).output).map { $0[0] }
        #expect(kids.count == 2 && kids.first == kid, "\(kids)")
        // Each server re-reads the keys every JWT_KEY_CHECK_SECONDS (its background round).
        for base in [baseA, baseB] {
            #expect(await eventually(within: 30) { (try? await publishedKids(base)) == kids }, "\(base) publishes the new key without a restart")
        }
        #expect(try await call("GET", "\(baseB)/users/me", token: token).status == 200, "tokens signed before the rotation still verify")
    }
}
