import Benchmark
import Crypto
@_spi(Benchmarks) import CryptoAdapter
import Foundation
@_spi(Benchmarks) import HTTPAdapter
import IdentityDomain
import IdentityPorts
import InMemoryAdapter

let benchmarks: @Sendable () -> Void = {
    // Each sample runs 1,000 iterations, so the harness's own work between samples (it
    // resumes an async body through a semaphore) is spread over them; figures are per
    // iteration.
    Benchmark.defaultConfiguration = .init(
        metrics: [.throughput, .wallClock, .mallocCountTotal],
        scalingFactor: .kilo,
        maxDuration: .seconds(3),
        maxIterations: 1_000_000
    )

    // Token verification: what every authenticated request pays before the revocation check;
    // and the same token through the general path (header rules, then jwt-kit): what every
    // token cost before the compact path, and what an unusual one still costs.
    // nonisolated(nonsending): calling the closure must not add a hop that verify itself avoids.
    let verifications: [(String, nonisolated(nonsending) @Sendable (JWTTokenService, String, Date) async throws -> VerifiedToken)] = [
        ("token verification (HS256, every claim)", { try await $0.verify($1, now: $2) }),
        ("token verification, general path (jwt-kit)", { try await $0.verifyGenerally($1, now: $2) }),
    ]
    for (name, verify) in verifications {
        Benchmark(name) { benchmark async throws in
            guard let tokens = fixture.tokens else { return }
            let (token, now) = (fixture.token, fixture.now)
            for _ in benchmark.scaledIterations {
                blackHole(try await verify(tokens, token, now))
            }
        } setup: {
            try await fixture.prepareTokens()
        }
    }

    // Key-pair verification (contract §10): our whole path (the compact form, the claims)
    // against swift-crypto's own check of the same signature over the same bytes, already
    // decoded: the target is at least 90 % of the raw rate.
    for algorithm in [JWTAlgorithm.es256, .eddsa] {
        Benchmark("token verification (\(algorithm.rawValue), every claim)") { benchmark async throws in
            guard let pair = fixture.pairs[algorithm] else { return }
            let now = fixture.now
            for _ in benchmark.scaledIterations {
                blackHole(try await pair.service.verify(pair.token, now: now))
            }
        } setup: {
            try await fixture.preparePairs()
        }
        Benchmark("raw signature check (\(algorithm.rawValue), swift-crypto)") { benchmark in
            guard let pair = fixture.pairs[algorithm] else { return }
            for _ in benchmark.scaledIterations {
                blackHole(pair.rawCheck())
            }
        } setup: {
            try await fixture.preparePairs()
        }
    }

    Benchmark("email canonicalisation (trim, NFKC, lower-case, rules)") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try Email("  Ada.Lovelace+News@Example.COM "))
        }
    }

    Benchmark("request decoding (POST /users body, strict JSON)") { benchmark in
        let body = Array(#"{"email":"ada@example.com","password":"correct horse battery staple","name":"Ada Lovelace"}"#.utf8)
        for _ in benchmark.scaledIterations {
            blackHole(try RequestDecoding.registration(json: body))
        }
    }
}

/// What the token benchmark's setup makes once, before its iterations.
final class Fixture: @unchecked Sendable {
    // Written by the setup hook before the measured closure runs, then only read.
    var tokens: JWTTokenService?
    var token = ""
    var pairs: [JWTAlgorithm: KeyPairFixture] = [:]
    let now = Date()

    /// A token service and a token it issued, for the token benchmarks.
    func prepareTokens() async throws {
        let tokens = await JWTTokenService(configuration: try TokenConfiguration(secret: String(repeating: "s", count: 32)))
        self.tokens = tokens
        token = try await tokens.issue(for: UserID(UUID()), accountVersion: 1, issuedAt: now).token
    }
}

/// A key-pair token service, a token it issued, and the same signature for swift-crypto alone.
struct KeyPairFixture: Sendable {
    let service: JWTTokenService
    let token: String
    let rawCheck: @Sendable () -> Bool

    static func make(_ algorithm: JWTAlgorithm, now: Date) async throws -> KeyPairFixture {
        let store = InMemorySigningKeyStore()
        let kek = KeyEncryptionKey.random()
        let clock = ManualClock(now)
        let policy = try SigningKeyPolicy(algorithm: algorithm, tokenLifetime: 3600, leeway: 5)
        try await SigningKeyRotator(store: store, policy: policy, keyEncryptionKey: kek, clock: clock).rotate()
        let keys = try await SigningKeys.load(store: store, algorithm: algorithm, keyEncryptionKey: kek, clock: clock)
        let service = await JWTTokenService(configuration: try TokenConfiguration(signingKeys: keys))
        let token = try await service.issue(for: UserID(UUID()), accountVersion: 1, issuedAt: now).token
        let parts = token.split(separator: ".").map(String.init)
        let input = Array("\(parts[0]).\(parts[1])".utf8)
        let signature = base64URL(parts[2])
        let jwk = service.jwks().keys[0]
        switch algorithm {
        case .es256:
            let key = try P256.Signing.PublicKey(rawRepresentation: base64URL(jwk.x) + base64URL(jwk.y ?? ""))
            return KeyPairFixture(service: service, token: token) {
                guard let parsed = try? P256.Signing.ECDSASignature(rawRepresentation: signature) else { return false }
                return key.isValidSignature(parsed, for: input)
            }
        default:
            let key = try Curve25519.Signing.PublicKey(rawRepresentation: base64URL(jwk.x))
            return KeyPairFixture(service: service, token: token) { key.isValidSignature(signature, for: input) }
        }
    }

    private static func base64URL(_ text: String) -> [UInt8] {
        var text = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        text += String(repeating: "=", count: (4 - text.count % 4) % 4)
        return Array(Data(base64Encoded: text) ?? Data())
    }
}

extension Fixture {
    /// The ES256 and EdDSA fixtures, made once.
    func preparePairs() async throws {
        guard pairs.isEmpty else { return }
        for algorithm in [JWTAlgorithm.es256, .eddsa] {
            pairs[algorithm] = try await KeyPairFixture.make(algorithm, now: now)
        }
    }
}

let fixture = Fixture()
