@_spi(Benchmarks) @testable import CryptoAdapter
import Crypto
import Foundation
import IdentityConformance
import IdentityDomain
import IdentityPorts
import InMemoryAdapter
import Testing

/// One instance's view of a signing-key store: its rotator, its keys, its token service.
struct KeyPairInstance {
    static let kekSecret = "a key-encryption key of 32 bytes or more, for tests"
    let algorithm: JWTAlgorithm
    let store: any SigningKeyStore
    let clock: ManualClock
    let kek: KeyEncryptionKey
    let rotator: SigningKeyRotator
    let keys: SigningKeys
    let service: JWTTokenService

    /// An instance on `store` (a fresh in-memory one by default); the first rotation makes a key.
    static func make(
        _ algorithm: JWTAlgorithm, store: (any SigningKeyStore)? = nil, clock: ManualClock = ManualClock(), issuer: String = "identity",
        kekSecret: String = kekSecret, rotate: Bool = true
    ) async throws -> KeyPairInstance {
        let store = store ?? InMemorySigningKeyStore()
        let kek = try KeyEncryptionKey(kekSecret, for: algorithm)
        let rotator = SigningKeyRotator(
            store: store, policy: try SigningKeyPolicy(algorithm: algorithm, tokenLifetime: 3600, leeway: 5), keyEncryptionKey: kek, clock: clock
        )
        if rotate { try await rotator.rotate() }
        let keys = try await SigningKeys.load(store: store, algorithm: algorithm, keyEncryptionKey: kek, clock: clock)
        let service = await JWTTokenService(configuration: try TokenConfiguration(signingKeys: keys, issuer: issuer, audience: "identity"))
        return KeyPairInstance(algorithm: algorithm, store: store, clock: clock, kek: kek, rotator: rotator, keys: keys, service: service)
    }

    /// The key that signs now, as the service holds it.
    func signingKey() async throws -> (kid: String, key: PrivateSigningKey) {
        try await keys.signer(at: clock.now())
    }

    /// A token with `header` and `payload` (JSON texts), signed as `sign` says.
    static func token(header: String, payload: String, sign: ([UInt8]) throws -> [UInt8]) rethrows -> String {
        let input = Base64URL.encode(Array(header.utf8)) + "." + Base64URL.encode(Array(payload.utf8))
        return input + "." + Base64URL.encode(try sign(Array(input.utf8)))
    }

    /// Claims that pass every check at `now`.
    static func payload(now: Date, issuer: String = "identity") -> String {
        let iat = Int(now.timeIntervalSince1970)
        return #"{"aud":["identity"],"exp":\#(iat + 3600),"iat":\#(iat),"iss":"\#(issuer)","jti":"\#(UUID())","sub":"\#(UUID())","ver":1}"#
    }
}

/// The parts of a compact token, decoded.
func decodedParts(_ token: String) throws -> (header: [String: Any], payload: [String: Any], signature: [UInt8]) {
    let parts = token.split(separator: ".", omittingEmptySubsequences: false).map { Array($0.utf8) }
    let header = try JSONSerialization.jsonObject(with: Data(try #require(Base64URL.decode(parts[0])))) as? [String: Any]
    let payload = try JSONSerialization.jsonObject(with: Data(try #require(Base64URL.decode(parts[1])))) as? [String: Any]
    return (try #require(header), try #require(payload), try #require(Base64URL.decode(parts[2])))
}

@Suite("Tokens signed with key pairs (ES256, EdDSA)")
struct KeyPairTokenTests {
    @Test("passes the TokenService conformance suite", arguments: JWTAlgorithm.asymmetric)
    func conformance(algorithm: JWTAlgorithm) async throws {
        let instance = try await KeyPairInstance.make(algorithm, clock: ManualClock(Date(timeIntervalSince1970: 1_790_000_000)))
        try await TokenServiceConformance(service: instance.service, lifetime: 3600).run()
    }

    @Test("every header has alg, kid and typ; the kid is the RFC 7638 thumbprint of the JWK the JWKS lists", arguments: JWTAlgorithm.asymmetric)
    func headerAndJWKS(algorithm: JWTAlgorithm) async throws {
        let instance = try await KeyPairInstance.make(algorithm)
        let token = try await instance.service.issue(for: UserID(UUID()), accountVersion: 1, issuedAt: instance.clock.now()).token
        let (header, payload, signature) = try decodedParts(token)
        #expect(Set(header.keys) == ["alg", "kid", "typ"])
        #expect(header["alg"] as? String == algorithm.rawValue)
        #expect(Set(payload.keys) == ["iss", "aud", "sub", "iat", "exp", "jti", "ver"])
        #expect(signature.count == 64, "r ‖ s for ES256, 64 bytes for Ed25519")
        let jwks = instance.service.jwks()
        let key = try #require(jwks.keys.first)
        #expect(jwks.keys.count == 1)
        #expect(header["kid"] as? String == key.kid)
        #expect(key.kid == key.thumbprint)
        #expect(key.alg == algorithm.rawValue && key.use == "sig")
        let json = try #require(try JSONSerialization.jsonObject(with: jwks.json()) as? [String: [[String: String]]])
        let member = try #require(json["keys"]?.first)
        switch algorithm {
        case .es256:
            #expect(Set(member.keys) == ["kty", "crv", "x", "y", "kid", "alg", "use"])
            #expect(member["kty"] == "EC" && member["crv"] == "P-256")
            let point = try #require(Base64URL.decode(Array(key.x.utf8))) + (try #require(Base64URL.decode(Array((key.y ?? "").utf8))))
            #expect(point.count == 64)
            _ = try P256.Signing.PublicKey(rawRepresentation: point)
        default:
            #expect(Set(member.keys) == ["kty", "crv", "x", "kid", "alg", "use"])
            #expect(member["kty"] == "OKP" && member["crv"] == "Ed25519")
            #expect(try #require(Base64URL.decode(Array(key.x.utf8))).count == 32)
        }
    }

    @Test("the first key signs in the second it was made, and for a clock a little behind, though iat is rounded down before it",
          arguments: JWTAlgorithm.asymmetric)
    func firstKeyAtOnce(algorithm: JWTAlgorithm) async throws {
        let instance = try await KeyPairInstance.make(algorithm, clock: ManualClock(Date(timeIntervalSince1970: 1_790_000_000.75)))
        for offset in [0, 0.1, -0.5, -3] {
            let issued = try await instance.service.issue(for: UserID(UUID()), accountVersion: 1, issuedAt: instance.clock.now().addingTimeInterval(offset))
            _ = try await instance.service.verify(issued.token, now: instance.clock.now())
        }
    }

    @Test("an HMAC service publishes no keys")
    func hmacJWKS() async throws {
        let service = await JWTTokenService(configuration: try TokenConfiguration(secret: String(repeating: "s", count: 32)))
        #expect(String(decoding: service.jwks().json(), as: UTF8.self) == #"{"keys":[]}"#)
    }

    @Test("the tokens we issue take the compact path, and both paths agree on them and on tampered ones", arguments: JWTAlgorithm.asymmetric)
    func compactPath(algorithm: JWTAlgorithm) async throws {
        let instance = try await KeyPairInstance.make(algorithm)
        let now = instance.clock.now()
        let token = try await instance.service.issue(for: UserID(UUID()), accountVersion: 4, issuedAt: now).token
        guard case .signed = instance.service.verifyCompactly(token) else {
            Issue.record("an issued token is verified by the compact path")
            return
        }
        let fast = try await instance.service.verify(token, now: now)
        let general = try await instance.service.verifyGenerally(token, now: now)
        #expect(fast == general)
        var bytes = Array(token.utf8)
        bytes[bytes.count - 10] = bytes[bytes.count - 10] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
        let tampered = String(decoding: bytes, as: UTF8.self)
        await #expect(throws: TokenRejected.badSignature) { try await instance.service.verify(tampered, now: now) }
        await #expect(throws: TokenRejected.badSignature) { try await instance.service.verifyGenerally(tampered, now: now) }
    }

    @Test("ES256 signatures are written low-S, and a high-S twin (which swift-crypto accepts) is refused on both paths")
    func highS() async throws {
        let instance = try await KeyPairInstance.make(.es256)
        let now = instance.clock.now()
        var sawHigh = false
        for _ in 0..<16 {
            let token = try await instance.service.issue(for: UserID(UUID()), accountVersion: 1, issuedAt: now).token
            let parts = token.split(separator: ".").map(String.init)
            let signature = try #require(Base64URL.decode(Array(parts[2].utf8)))
            #expect(ECDSASignatureForm.isCanonical(signature), "we write s ≤ n/2")
            let twin = Array(signature.prefix(32)) + ECDSASignatureForm.subtractFromOrder(Array(signature.suffix(32)))
            #expect(!ECDSASignatureForm.isCanonical(twin))
            let publicKey = try P256.Signing.PublicKey(rawRepresentation: try #require(instance.keys.current.published.first).publicKey)
            let raw = try P256.Signing.ECDSASignature(rawRepresentation: twin)
            sawHigh = sawHigh || publicKey.isValidSignature(raw, for: Array("\(parts[0]).\(parts[1])".utf8))
            let forged = "\(parts[0]).\(parts[1]).\(Base64URL.encode(twin))"
            await #expect(throws: TokenRejected.badSignature) { try await instance.service.verify(forged, now: now) }
            await #expect(throws: TokenRejected.badSignature) { try await instance.service.verifyGenerally(forged, now: now) }
        }
        #expect(sawHigh, "the high-S twin is a valid signature to swift-crypto: the refusal is ours")
    }

    @Test("a truncated or lengthened ECDSA or Ed25519 signature is refused", arguments: JWTAlgorithm.asymmetric)
    func truncated(algorithm: JWTAlgorithm) async throws {
        let instance = try await KeyPairInstance.make(algorithm)
        let now = instance.clock.now()
        let token = try await instance.service.issue(for: UserID(UUID()), accountVersion: 1, issuedAt: now).token
        let parts = token.split(separator: ".").map(String.init)
        let signature = try #require(Base64URL.decode(Array(parts[2].utf8)))
        for variant in [Array(signature.dropLast()), Array(signature.prefix(32)), signature + [0], []] {
            let forged = "\(parts[0]).\(parts[1]).\(Base64URL.encode(variant))"
            await #expect(throws: TokenRejected.badSignature, "\(variant.count) bytes") { try await instance.service.verify(forged, now: now) }
            await #expect(throws: TokenRejected.badSignature) { try await instance.service.verifyGenerally(forged, now: now) }
        }
    }

    @Test("a kid we never published, or none, is refused even when the signature is ours", arguments: JWTAlgorithm.asymmetric)
    func unknownKid(algorithm: JWTAlgorithm) async throws {
        let instance = try await KeyPairInstance.make(algorithm)
        let now = instance.clock.now()
        let (_, key) = try await instance.signingKey()
        for header in [#"{"alg":"\#(algorithm.rawValue)","kid":"never-published","typ":"JWT"}"#, #"{"alg":"\#(algorithm.rawValue)","typ":"JWT"}"#] {
            let token = try KeyPairInstance.token(header: header, payload: KeyPairInstance.payload(now: now), sign: key.sign)
            await #expect(throws: TokenRejected.unknownKey, "\(header)") { try await instance.service.verify(token, now: now) }
        }
    }

    @Test("an alg that is not the key's is refused, whatever signs it", arguments: JWTAlgorithm.asymmetric)
    func algorithmMismatch(algorithm: JWTAlgorithm) async throws {
        let instance = try await KeyPairInstance.make(algorithm)
        let now = instance.clock.now()
        let (kid, key) = try await instance.signingKey()
        for alg in ["ES256", "EdDSA", "ES384", "RS256", "HS256", "none", "es256"] where alg != algorithm.rawValue {
            let token = try KeyPairInstance.token(header: #"{"alg":"\#(alg)","kid":"\#(kid)","typ":"JWT"}"#, payload: KeyPairInstance.payload(now: now), sign: key.sign)
            await #expect(throws: TokenRejected.algorithmNotAllowed, "alg \(alg)") { try await instance.service.verify(token, now: now) }
        }
    }

    @Test("HS256 keyed with our public key (PEM, raw, x9.63) is refused", arguments: JWTAlgorithm.asymmetric)
    func publicKeyAsHMACSecret(algorithm: JWTAlgorithm) async throws {
        let instance = try await KeyPairInstance.make(algorithm)
        let now = instance.clock.now()
        let record = try #require(instance.keys.current.published.first)
        var secrets: [[UInt8]] = [Array(record.publicKey)]
        if algorithm == .es256 {
            let key = try P256.Signing.PublicKey(rawRepresentation: record.publicKey)
            secrets += [Array(key.pemRepresentation.utf8), Array(key.x963Representation), Array(key.derRepresentation)]
        } else {
            let jwk = try #require(instance.service.jwks().keys.first)
            secrets += [Array(jwk.x.utf8)]
        }
        for secret in secrets {
            for alg in ["HS256", algorithm.rawValue] {
                let token = KeyPairInstance.token(header: #"{"alg":"\#(alg)","kid":"\#(record.kid)","typ":"JWT"}"#, payload: KeyPairInstance.payload(now: now)) {
                    Array(HMAC<SHA256>.authenticationCode(for: $0, using: SymmetricKey(data: secret)))
                }
                await #expect(throws: TokenRejected.self, "HMAC under the public key, alg \(alg)") { try await instance.service.verify(token, now: now) }
            }
        }
    }

    @Test("a token carrying its own key (jwk, jku, x5u, x5c) is refused and never verified with that key", arguments: JWTAlgorithm.asymmetric)
    func keyInHeader(algorithm: JWTAlgorithm) async throws {
        let instance = try await KeyPairInstance.make(algorithm)
        let attacker = try await KeyPairInstance.make(algorithm)
        let now = instance.clock.now()
        let (attackerKid, attackerKey) = try await attacker.signingKey()
        let attackerJWK = String(decoding: try JSONEncoder().encode(try #require(attacker.service.jwks().keys.first)), as: UTF8.self)
        let ourKid = try #require(instance.service.jwks().keys.first).kid
        for kid in [attackerKid, ourKid] {
            for member in [#""jwk":\#(attackerJWK)"#, #""jku":"https://attacker.example/jwks.json""#, #""x5u":"https://attacker.example/cert.pem""#,
                           #""x5c":["MIIB"]"#, #""jwk":null"#] {
                let header = #"{"alg":"\#(algorithm.rawValue)","kid":"\#(kid)","typ":"JWT",\#(member)}"#
                let token = try KeyPairInstance.token(header: header, payload: KeyPairInstance.payload(now: now), sign: attackerKey.sign)
                await #expect(throws: TokenRejected.keyInHeader, "\(member)") { try await instance.service.verify(token, now: now) }
            }
        }
        // Without the member, the attacker's signature under our kid is simply wrong.
        let token = try KeyPairInstance.token(header: CompactTokenVerifier.header(algorithm: algorithm, kid: ourKid), payload: KeyPairInstance.payload(now: now),
                                              sign: attackerKey.sign)
        await #expect(throws: TokenRejected.badSignature) { try await instance.service.verify(token, now: now) }
    }

    @Test("a token signed by another issuer's key is refused: its kid is not ours", arguments: JWTAlgorithm.asymmetric)
    func anotherIssuer(algorithm: JWTAlgorithm) async throws {
        let ours = try await KeyPairInstance.make(algorithm)
        for issuer in ["identity", "someone-else"] {
            let theirs = try await KeyPairInstance.make(algorithm, clock: ours.clock, issuer: issuer)
            let token = try await theirs.service.issue(for: UserID(UUID()), accountVersion: 1, issuedAt: ours.clock.now()).token
            await #expect(throws: TokenRejected.unknownKey) { try await ours.service.verify(token, now: ours.clock.now()) }
        }
    }

    @Test("an HMAC service refuses a header that carries a key too")
    func hmacKeyInHeader() async throws {
        let secret = String(repeating: "s", count: 32)
        let service = await JWTTokenService(configuration: try TokenConfiguration(secret: secret))
        let now = Date()
        let token = KeyPairInstance.token(header: #"{"alg":"HS256","typ":"JWT","jku":"https://attacker.example/"}"#, payload: KeyPairInstance.payload(now: now)) {
            Array(HMAC<SHA256>.authenticationCode(for: $0, using: SymmetricKey(data: Array(secret.utf8))))
        }
        await #expect(throws: TokenRejected.keyInHeader) { try await service.verify(token, now: now) }
    }
}
