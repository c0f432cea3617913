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
