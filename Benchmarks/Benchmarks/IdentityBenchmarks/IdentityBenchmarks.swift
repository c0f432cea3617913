import Benchmark
@_spi(Benchmarks) import CryptoAdapter
import Foundation
@_spi(Benchmarks) import HTTPAdapter
import IdentityDomain
import IdentityPorts

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
    let now = Date()

    /// A token service and a token it issued, for the token benchmarks.
    func prepareTokens() async throws {
        let tokens = await JWTTokenService(configuration: try TokenConfiguration(secret: String(repeating: "s", count: 32)))
        self.tokens = tokens
        token = try await tokens.issue(for: UserID(UUID()), accountVersion: 1, issuedAt: now).token
    }
}

let fixture = Fixture()
