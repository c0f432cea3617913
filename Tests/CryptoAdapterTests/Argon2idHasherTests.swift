import CArgon2
@testable import CryptoAdapter
import IdentityConformance
import IdentityDomain
import NIOPosix
import Prometheus
import Testing

@Suite("Argon2id hasher")
struct Argon2idHasherTests {
    @Test("passes the PasswordHasher conformance suite at cheap parameters")
    func conformanceCheap() async throws {
        try await PasswordHasherConformance(hasher: Argon2idHasher(parameters: try Argon2Parameters(memoryKiB: 64, iterations: 1))).run()
    }

    @Test("passes the PasswordHasher conformance suite at the OWASP defaults")
    func conformanceDefault() async throws {
        try await PasswordHasherConformance(hasher: Argon2idHasher(parameters: try Argon2Parameters())).run()
    }

    @Test("writes a PHC string with the configured parameters")
    func phcFormat() async throws {
        let hasher = Argon2idHasher(parameters: try Argon2Parameters())
        let hash = try await hasher.hash(try Password("a long enough password"))
        #expect(hash.hasPrefix("$argon2id$v=19$m=19456,t=2,p=1$"))
        #expect(hash.split(separator: "$").count == 5)
    }

    @Test("a hash made with other parameters still verifies and asks for a rehash")
    func olderParameters() async throws {
        let old = Argon2idHasher(parameters: try Argon2Parameters(memoryKiB: 64, iterations: 1))
        let current = Argon2idHasher(parameters: try Argon2Parameters(memoryKiB: 128, iterations: 2))
        let password = try Password("a long enough password")
        let oldHash = try await old.hash(password)
        #expect(try await current.verify(password, against: oldHash))
        #expect(current.needsRehash(oldHash))
        #expect(current.recognizes(oldHash), "an importer accepts a hash with other parameters")
        #expect(!current.needsRehash(try await current.hash(password)))
    }

    @Test("refuses parameters libargon2 would refuse", arguments: [
        (UInt32(4), UInt32(1), UInt32(1)), (UInt32(64), UInt32(0), UInt32(1)), (UInt32(64), UInt32(1), UInt32(0)),
        (UInt32(16), UInt32(1), UInt32(4)), (UInt32(5_000_000), UInt32(1), UInt32(1)),
    ])
    func badParameters(memory: UInt32, iterations: UInt32, parallelism: UInt32) {
        #expect(throws: Argon2Error.self) {
            try Argon2Parameters(memoryKiB: memory, iterations: iterations, parallelism: parallelism)
        }
    }

    @Test("parses only well-formed Argon2id PHC strings")
    func phcParsing() {
        #expect(Argon2PHC("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA") == Argon2PHC("$argon2id$v=19$m=19456,t=2,p=1$eA$eQ"))
        #expect(Argon2PHC("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA")?.memoryKiB == 19456)
        for bad in ["$argon2i$v=19$m=1,t=1,p=1$a$b", "$argon2id$v=19$m=1,t=1$a$b", "$argon2id$v=x$m=1,t=1,p=1$a$b",
                    "$argon2id$v=19$m=1,t=1,p=1,q=2$a$b", "$argon2id$v=19$m=1,t=1,p=1$$b", "$2b$12$abcdefghijklmnopqrstuv"] {
            #expect(Argon2PHC(bad) == nil, "\(bad)")
        }
    }

    @Test("a stored hash that claims absurd costs or another version is neither recognized nor handed to libargon2", arguments: [
        "$argon2id$v=19$m=8388608,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",   // 8 GiB
        "$argon2id$v=19$m=64,t=0,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",        // no pass
        "$argon2id$v=19$m=64,t=1,p=16$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",       // < 8 KiB per lane
        "$argon2id$v=42$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",        // unknown version
    ])
    func absurdCosts(hash: String) async throws {
        let hasher = Argon2idHasher(parameters: try Argon2Parameters(memoryKiB: 64, iterations: 1))
        #expect(!hasher.recognizes(hash))
        #expect(try await !hasher.verify(try Password("a long enough password"), against: hash))
    }
}

@Suite("Argon2id hasher metrics")
struct Argon2idHasherMetricsTests {
    @Test("every hash and verification is timed under identity_password_hash_duration_seconds{operation}")
    func timed() async throws {
        let registry = PrometheusCollectorRegistry()
        let hasher = Argon2idHasher(parameters: try Argon2Parameters(memoryKiB: 64, iterations: 1),
                                    metrics: PrometheusMetricsFactory(registry: registry))
        let password = try Password("a long enough password")
        let hash = try await hasher.hash(password)
        _ = try await hasher.verify(password, against: hash)
        _ = try await hasher.verify(password, against: "$2b$04$abcdefghijklmnopqrstuuqREtd3VJD2QVZbuFskFSLk6eRIrQoOS")
        _ = try await hasher.verify(password, against: "not a hash")  // refused before any work: not timed
        let text = registry.emitToString()
        #expect(text.contains(#"identity_password_hash_duration_seconds_count{operation="hash"} 1"#), "\(text)")
        #expect(text.contains(#"identity_password_hash_duration_seconds_count{operation="verify"} 2"#), "\(text)")
    }
}

@Suite("Argon2id hasher threads")
struct Argon2idHasherThreadTests {
    /// The niceness of the one thread of `pool`.
    func niceness(of pool: NIOThreadPool) async throws -> Int32 {
        try await pool.runIfActive { identity_thread_priority() }
    }

    @Test("a hasher that yields runs its pool's threads at nice 10; one that does not leaves them alone", arguments: [true, false])
    func priority(yields: Bool) async throws {
        let pool = NIOThreadPool(numberOfThreads: 1)
        pool.start()
        let before = try await niceness(of: pool)
        let hasher = Argon2idHasher(parameters: try Argon2Parameters(memoryKiB: 64, iterations: 1), pool: pool, yieldsToOtherWork: yields)
        _ = try await hasher.hash(try Password("a long enough password"))
        #expect(try await niceness(of: pool) == (yields ? max(before, 10) : before))
        try await pool.shutdownGracefully()
    }
}
