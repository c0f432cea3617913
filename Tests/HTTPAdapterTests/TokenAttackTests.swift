import Foundation
import HTTPTypes
import HummingbirdTesting
import IdentityTestSupport
import InMemoryAdapter
import Testing

/// The well-known attacks on bearer tokens (contract §4), each one change away from a token
/// that works, tried on every route that takes a token.
enum TokenAttack: String, CaseIterable, CustomTestStringConvertible {
    case algNone, algNoneWithSignature, otherHMACAlgorithm, rs256Header, keyConfusion, wrongKey, tamperedPayload,
         expired, futureIssuedAt, futureNotBefore, wrongIssuer, wrongAudience, missingJTI, missingSubject,
         malformed, revoked, issuedBeforePasswordChange, deletedUser

    var testDescription: String { rawValue }

    /// The token this attack sends, for the account `userID` whose real token is `real`.
    func token(userID: String, real: String, now: Date, client: some TestClientProtocol) async throws -> String {
        let secret = TestIdentity.secret
        var claims = ForgedClaims.valid(sub: userID, now: now)
        let header = #"{"alg":"none","typ":"JWT"}"#
        switch self {
        case .algNone:
            return TokenForger.unsigned(header: header, payload: try TokenForger.json(claims))
        case .algNoneWithSignature:
            let signature = try await TokenForger.sign(claims, key: secret).split(separator: ".")[2]
            return TokenForger.unsigned(header: header, payload: try TokenForger.json(claims)) + signature
        case .otherHMACAlgorithm:
            // HS512 wants a 64-byte key (jwt-kit asserts it); our secret, doubled, is one.
            return try await TokenForger.sign(claims, key: secret + secret, digest: .sha512, alg: "HS512")
        case .rs256Header: return try await TokenForger.sign(claims, key: secret, alg: "RS256")
        case .keyConfusion: return try await TokenForger.sign(claims, key: TokenForger.rsaPublicKeyPEM)
        case .wrongKey: return try await TokenForger.sign(claims, key: String(secret.reversed()))
        case .tamperedPayload:
            let parts = real.split(separator: ".")
            claims.sub = UUID().uuidString.lowercased()
            return "\(parts[0]).\(TokenForger.base64URL(try TokenForger.json(claims))).\(parts[2])"
        case .expired:
            claims.exp = now.timeIntervalSince1970 - 6
            return try await TokenForger.sign(claims, key: secret)
        case .futureIssuedAt:
            claims.iat = now.timeIntervalSince1970 + 60
            return try await TokenForger.sign(claims, key: secret)
        case .futureNotBefore:
            claims.nbf = now.timeIntervalSince1970 + 60
            return try await TokenForger.sign(claims, key: secret)
        case .wrongIssuer:
            claims.iss = "someone-else"
            return try await TokenForger.sign(claims, key: secret)
        case .wrongAudience:
            claims.aud = ["another-service"]
            return try await TokenForger.sign(claims, key: secret)
        case .missingJTI:
            claims.jti = nil
            return try await TokenForger.sign(claims, key: secret)
        case .missingSubject:
            claims.sub = nil
            return try await TokenForger.sign(claims, key: secret)
        case .malformed: return real.replacingOccurrences(of: ".", with: "..")
        case .revoked:
            #expect(try await client.get("/auth/logout", token: real, method: .post).status == .noContent)
            return real
        case .issuedBeforePasswordChange:
            let change = #"{"password":"a brand new password","current_password":"\#(password)"}"#
            let changed = try await client.postJSON("/users/me", change, headers: [.authorization: "Bearer \(real)"], method: .put)
            #expect(changed.status == .ok)
            return real
        case .deletedUser:
            #expect(try await client.get("/users/me", token: real, method: .delete).status == .noContent)
            return real
        }
    }
}

@Suite("Token attacks over HTTP")
struct TokenAttackTests {
    @Test("a token forged with every claim right works: each attack below is one change away from it")
    func baseline() async throws {
        try await withIdentityApp { client, identity in
            let (id, _) = try await client.registerAndLogin()
            let forged = try await TokenForger.sign(ForgedClaims.valid(sub: id, now: identity.clock.now()), key: TestIdentity.secret)
            #expect(try await client.get("/users/me", token: forged).status == .ok)
        }
    }

    @Test("every forged, stale or revoked token gives 401 with an invalid_token challenge on every bearer route",
          arguments: TokenAttack.allCases)
    func attack(_ attack: TokenAttack) async throws {
        try await withIdentityApp { client, identity in
            let (id, real) = try await client.registerAndLogin()
            let token = try await attack.token(userID: id, real: real, now: identity.clock.now(), client: client)
            let bearer: HTTPFields = [.authorization: "Bearer \(token)"]
            let responses = [
                try await client.get("/users/me", token: token),
                try await client.get("/users/\(id)", token: token),
                try await client.postJSON("/users/me", #"{"name":"Mallory"}"#, headers: bearer, method: .put),
                try await client.get("/auth/logout", token: token, method: .post),
                try await client.get("/users/me", token: token, method: .delete),
            ]
            for response in responses {
                try response.expectProblem(.unauthorized)
                #expect(response.headers[.wwwAuthenticate] == #"Bearer error="invalid_token""#)
            }
            if attack != .deletedUser {
                // A password change revokes every token of its millisecond; the test clock is frozen.
                identity.clock.advance(by: 1)
                // The account is untouched: nothing the forged token asked for happened.
                let login = try await client.postJSON("/auth/login", #"{"email":"ada@example.com","password":"\#(attack == .issuedBeforePasswordChange ? "a brand new password" : password)"}"#)
                let fresh = try #require(try login.json()["access_token"] as? String)
                #expect(try await client.get("/users/me", token: fresh).json()["name"] as? String == "Ada")
            }
        }
    }

    @Test("a bearer header that is no token at all gives 401", arguments: [
        "Bearer", "Bearer ", "Bearer not-a-token", "Bearer a.b.c", "Bearer \(String(repeating: "A", count: 8000))",
        "Basic YWRhOnBhc3N3b3Jk", "Bearer x.y.z extra",
    ])
    func notATokenAtAll(header: String) async throws {
        try await withIdentityApp { client, _ in
            let response = try await client.execute(uri: "/users/me", method: .get, headers: [.authorization: header])
            try response.expectProblem(.unauthorized)
            #expect(response.headers[.wwwAuthenticate]?.hasPrefix("Bearer") == true)
        }
    }
}
