import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
@testable import HTTPAdapter
import IdentityApplication
import IdentityTestSupport
import Testing

@Suite("GET /.well-known/jwks.json and /.well-known/openid-configuration (contract §10)")
struct DiscoveryRoutesTests {
    /// The `kid` of a token's header.
    static func kid(of token: String) throws -> String? {
        let part = try #require(token.split(separator: ".").first)
        var base64 = part.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        let data = try #require(Data(base64Encoded: base64))
        let header = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        return header["kid"] as? String
    }

    static func withApp(
        _ service: IdentityService, publicBaseURL: URL? = nil, mode: TestingSetup = .router,
        _ body: @escaping @Sendable (any TestClientProtocol) async throws -> Void
    ) async throws {
        let app = Application(router: IdentityHTTP.makeRouter(service: service, publicBaseURL: publicBaseURL))
        try await app.test(mode) { client in try await body(client) }
    }

    @Test("with HS256 the key set is empty, public and cacheable for 300 s; no token needed")
    func emptyWithHMAC() async throws {
        try await withIdentityApp { client, _ in
            let response = try await client.get("/.well-known/jwks.json")
            #expect(response.status == .ok)
            #expect(response.text == #"{"keys":[]}"#)
            #expect(response.headers[.cacheControl] == "public, max-age=300")
            #expect(response.headers[.contentType] == "application/json")
        }
    }

    @Test("with ES256 and EdDSA the key set lists the key that signed the login's token, as an RFC 7517 JWK", arguments: ["ES256", "EdDSA"])
    func keySet(algorithm: String) async throws {
        let service = try await TestIdentity.keyPairService(algorithm: algorithm)
        try await Self.withApp(service, mode: .live) { client in
            let (_, token) = try await client.registerAndLogin()
            let response = try await client.get("/.well-known/jwks.json")
            #expect(response.status == .ok)
            #expect(response.headers[.cacheControl] == "public, max-age=300")
            let keys = try #require(try response.json()["keys"] as? [[String: Any]])
            #expect(keys.count == 1)
            let key = try #require(keys.first)
            #expect(key["kid"] as? String == (try Self.kid(of: token)) && key["kid"] != nil)
            #expect(key["alg"] as? String == algorithm && key["use"] as? String == "sig")
            if algorithm == "ES256" {
                #expect(key["kty"] as? String == "EC" && key["crv"] as? String == "P-256" && key["y"] is String)
            } else {
                #expect(key["kty"] as? String == "OKP" && key["crv"] as? String == "Ed25519" && key["y"] == nil)
            }
            #expect(Set(key.keys) == (algorithm == "ES256" ? ["kty", "crv", "x", "y", "kid", "alg", "use"] : ["kty", "crv", "x", "kid", "alg", "use"]))
            #expect(try await client.get("/users/me", token: token).status == .ok, "the token verifies")
        }
    }

    @Test("discovery names absolute URLs from the request's Host, the tokens' issuer and algorithm")
    func discoveryFromHost() async throws {
        let service = try await TestIdentity.keyPairService()
        try await Self.withApp(service) { client in
            let response = try await client.get("/.well-known/openid-configuration")
            #expect(response.status == .ok)
            let document = try response.json()
            #expect(document["issuer"] as? String == "identity", "the iss every token carries")
            #expect(document["jwks_uri"] as? String == "http://localhost/.well-known/jwks.json")
            #expect(document["token_endpoint"] as? String == "http://localhost/auth/login")
            #expect(document["id_token_signing_alg_values_supported"] as? [String] == ["ES256"])
            #expect(document["grant_types_supported"] as? [String] == ["password", "refresh_token"])
            #expect(document["token_endpoint_auth_methods_supported"] as? [String] == ["none"])
        }
    }

    @Test("PUBLIC_BASE_URL wins over the Host, a trailing slash dropped, a path kept")
    func discoveryFromBaseURL() async throws {
        try await withIdentityApp { _, identity in
            try await Self.withApp(identity.service, publicBaseURL: URL(string: "https://id.example.com/base/")) { client in
                let document = try await client.get("/.well-known/openid-configuration").json()
                #expect(document["jwks_uri"] as? String == "https://id.example.com/base/.well-known/jwks.json")
                #expect(document["token_endpoint"] as? String == "https://id.example.com/base/auth/login")
                #expect(document["id_token_signing_alg_values_supported"] as? [String] == ["HS256"])
            }
        }
    }

    @Test("a host mounting the identity routes under a prefix gets the discovery routes at its root, naming the prefixed token endpoint")
    func embedded() async throws {
        try await withIdentityApp { _, identity in
            let router = Router()
            IdentityHTTP.addDiscoveryRoutes(to: router, service: identity.service, publicBaseURL: URL(string: "https://app.example.com"),
                                            identityPrefix: "/identity")
            try await Application(router: router).test(.router) { client in
                let document = try await client.execute(uri: "/.well-known/openid-configuration", method: .get).json()
                #expect(document["token_endpoint"] as? String == "https://app.example.com/identity/auth/login")
                let keys = try await client.execute(uri: "/.well-known/jwks.json", method: .get)
                #expect(keys.text == #"{"keys":[]}"#)
            }
        }
    }

    @Test("only a plain host name or address with an optional port is taken from Host", arguments: [
        ("example.com", true), ("example.com:8080", true), ("127.0.0.1:1", true), ("[::1]:8080", true), ("[::1]", true),
        ("", false), ("example.com:", false), ("evil.com/path", false), ("a@b.com", false), ("exa mple.com", false),
        ("example.com:80a", false), ("[::1", false), ("\"quoted\"", false), ("example.com:123456", false),
    ])
    func hostRule(authority: String, accepted: Bool) {
        #expect(DiscoveryRoutes<IdentityRequestContext>.isPlainAuthority(authority) == accepted)
    }

    @Test("wrong method on a discovery route: 405 with Allow")
    func methods() async throws {
        try await withIdentityApp { client, _ in
            let response = try await client.execute(uri: "/.well-known/jwks.json", method: .post)
            try response.expectProblem(.methodNotAllowed)
            #expect(response.headers[.allow] == "GET")
        }
    }
}
