@testable import CryptoAdapter
import Foundation
import IdentityConformance
import IdentityDomain
import IdentityPorts
import IdentityTestSupport
import Testing

@Suite("JWT token service")
struct JWTTokenServiceTests {
    static let secret = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    let now = Date(timeIntervalSince1970: 1_790_000_000.5)
    let user = UserID(UUID())

    func service(algorithm: JWTAlgorithm = .hs256) async throws -> JWTTokenService {
        await JWTTokenService(configuration: try TokenConfiguration(secret: Self.secret, algorithm: algorithm, issuer: "identity", audience: "identity"))
    }

    /// Claims that pass every check, for forging variations of.
    func validClaims() -> ForgedClaims {
        ForgedClaims.valid(sub: user.description, now: now)
    }

    /// Signs `claims` with `key` (HMAC) and the given header `alg`.
    func forge(_ claims: ForgedClaims, key: String = secret, digest: TokenForger.Digest = .sha256, alg: String = "HS256") async throws -> String {
        try await TokenForger.sign(claims, key: key, digest: digest, alg: alg)
    }

    func expectRejected(_ token: String, _ reason: TokenRejected, _ comment: Comment, service: JWTTokenService? = nil) async throws {
        let service = if let service { service } else { try await self.service() }
        await #expect(throws: reason, comment) { try await service.verify(token, now: now) }
    }

    static func base64URL(_ text: String) -> String {
        TokenForger.base64URL(text)
    }

    @Test("passes the TokenService conformance suite", arguments: JWTAlgorithm.hmac)
    func conformance(algorithm: JWTAlgorithm) async throws {
        try await TokenServiceConformance(service: try await service(algorithm: algorithm), lifetime: 3600).run()
    }

    @Test("a token forged with every claim right verifies (the forging itself is sound)")
    func forgedBaseline() async throws {
        let verified = try await service().verify(try await forge(validClaims()), now: now)
        #expect(verified.userID == user)
    }

    @Test("writes iss, aud, sub, iat, exp, jti and ver, with alg and typ in the header; iat and exp as integers")
    func claimsWritten() async throws {
        let token = try await service().issue(for: user, accountVersion: 2, issuedAt: now.addingTimeInterval(0.789)).token
        let parts = token.split(separator: ".")
        let header = try JSONSerialization.jsonObject(with: Data(try #require(Base64URL.decode(parts[0].utf8)))) as? [String: Any]
        let payload = try JSONSerialization.jsonObject(with: Data(try #require(Base64URL.decode(parts[1].utf8)))) as? [String: Any]
        #expect(header?["alg"] as? String == "HS256")
        #expect(header?["typ"] as? String == "JWT")
        #expect(Set(payload?.keys.map { $0 } ?? []) == ["iss", "aud", "sub", "iat", "exp", "jti", "ver"])
        #expect(payload?["sub"] as? String == user.description)
        #expect(payload?["ver"] as? Int == 2)
        // NumericDate without a fraction, as every JWT library reads it: the digits alone.
        let text = String(decoding: try #require(Base64URL.decode(parts[1].utf8)), as: UTF8.self)
        let iat = try #require(text.firstMatch(of: #/"iat":([0-9.eE+-]+)/#)?.output.1)
        let exp = try #require(text.firstMatch(of: #/"exp":([0-9.eE+-]+)/#)?.output.1)
        #expect(iat.allSatisfy(\.isNumber) && exp.allSatisfy(\.isNumber), "iat \(iat) and exp \(exp) are integers")
        #expect(Int(iat) == Int(now.addingTimeInterval(0.789).timeIntervalSince1970), "iat is the second the token was issued in")
    }

    @Test("alg none is refused, with or without a signature")
    func algNone() async throws {
        let header = Self.base64URL(#"{"alg":"none","typ":"JWT"}"#)
        let payload = Self.base64URL(#"{"iss":"identity","aud":["identity"],"sub":"\#(user)","iat":\#(now.timeIntervalSince1970),"exp":\#(now.timeIntervalSince1970 + 60),"jti":"x"}"#)
        try await expectRejected("\(header).\(payload).", .algorithmNotAllowed, "alg none, empty signature")
        let valid = try await forge(validClaims())
        let signature = valid.split(separator: ".")[2]
        try await expectRejected("\(header).\(payload).\(signature)", .algorithmNotAllowed, "alg none with a signature")
    }

    @Test("an algorithm other than the configured one is refused even when signed with our secret")
    func otherAlgorithm() async throws {
        try await expectRejected(try await forge(validClaims(), digest: .sha512, alg: "HS512"), .algorithmNotAllowed, "HS512 token on an HS256 service")
        try await expectRejected(try await forge(validClaims(), alg: "RS256"), .algorithmNotAllowed, "RS256 header")
        try await expectRejected(try await forge(validClaims(), alg: "hs256"), .algorithmNotAllowed, "alg is case-sensitive")
    }

    @Test("HS256 signed with an RSA public key (key confusion) is refused")
    func keyConfusion() async throws {
        let publicKey = TokenForger.rsaPublicKeyPEM
        try await expectRejected(try await forge(validClaims(), key: publicKey), .badSignature, "HMAC keyed with the public key")
    }

    @Test("a wrong key, a tampered payload or a crit header is refused")
    func wrongKeyAndTampering() async throws {
        try await expectRejected(try await forge(validClaims(), key: "another-secret-another-secret-0000-another-secret-another-secret"), .badSignature, "wrong key")
        let valid = try await forge(validClaims())
        let parts = valid.split(separator: ".").map(String.init)
        var elevated = validClaims()
        elevated.sub = UserID(UUID()).description
        let otherPayload = try await forge(elevated).split(separator: ".")[1]
        try await expectRejected("\(parts[0]).\(otherPayload).\(parts[2])", .badSignature, "payload swapped under the old signature")
        let crit = Self.base64URL(#"{"alg":"HS256","crit":["exp"]}"#)
        try await expectRejected("\(crit).\(parts[1]).\(parts[2])", .malformed, "crit header")
        try await expectRejected("\(parts[0])=.\(parts[1]).\(parts[2])", .malformed, "padded base64")
        try await expectRejected("not-a-token", .malformed, "garbage")
    }

    @Test("expired (beyond the 5 s leeway), future iat and future nbf are refused")
    func times() async throws {
        var claims = validClaims()
        claims.exp = now.timeIntervalSince1970 - 6
        try await expectRejected(try await forge(claims), .expired, "expired 6 s ago")
        claims.exp = now.timeIntervalSince1970 - 4
        _ = try await service().verify(try await forge(claims), now: now)
        claims = validClaims()
        claims.iat = now.timeIntervalSince1970 + 6
        try await expectRejected(try await forge(claims), .notYetValid, "issued 6 s in the future")
        claims = validClaims()
        claims.nbf = now.timeIntervalSince1970 + 60
        try await expectRejected(try await forge(claims), .notYetValid, "not valid before a minute from now")
    }

    @Test("wrong iss or aud is refused")
    func issuerAudience() async throws {
        var claims = validClaims()
        claims.iss = "someone-else"
        try await expectRejected(try await forge(claims), .wrongIssuer, "wrong iss")
        claims.iss = nil
        try await expectRejected(try await forge(claims), .wrongIssuer, "missing iss")
        claims = validClaims()
        claims.aud = ["another-service"]
        try await expectRejected(try await forge(claims), .wrongAudience, "wrong aud")
        claims.aud = ["another-service", "identity"]
        _ = try await service().verify(try await forge(claims), now: now)
    }

    @Test("missing or malformed sub, jti, iat or exp is refused")
    func missingClaims() async throws {
        for mutate in [{ (c: inout ForgedClaims) in c.sub = nil }, { $0.sub = "not-a-uuid" }, { $0.jti = nil }, { $0.jti = "" },
                       { $0.iat = nil }, { $0.exp = nil }] as [(inout ForgedClaims) -> Void] {
            var claims = validClaims()
            mutate(&claims)
            try await expectRejected(try await forge(claims), .missingClaim, "missing claim")
        }
    }

    @Test("a secret under 32 bytes, a bad lifetime or a leeway over 5 s is refused")
    func configuration() {
        #expect(throws: TokenConfigurationError.self) { try TokenConfiguration(secret: String(repeating: "x", count: 31)) }
        #expect((try? TokenConfiguration(secret: String(repeating: "x", count: 32))) != nil)
        #expect(throws: TokenConfigurationError.self) { try TokenConfiguration(secret: String(repeating: "x", count: 47), algorithm: .hs384) }
        #expect(throws: TokenConfigurationError.self) { try TokenConfiguration(secret: String(repeating: "x", count: 63), algorithm: .hs512) }
        #expect((try? TokenConfiguration(secret: String(repeating: "x", count: 64), algorithm: .hs512)) != nil)
        #expect(throws: TokenConfigurationError.self) { try TokenConfiguration(secret: Self.secret, lifetime: 0) }
        #expect(throws: TokenConfigurationError.self) { try TokenConfiguration(secret: Self.secret, leeway: 6) }
        #expect(TokenConfiguration.randomSecret().utf8.count >= 32)
    }
}
