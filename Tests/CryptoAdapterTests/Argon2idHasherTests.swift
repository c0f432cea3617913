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
        try await PasswordHasherConformance(hasher: Argon2idHasher(parameters: try Argon2Configuration(memoryKiB: 64, iterations: 1))).run()
    }

    @Test("passes the PasswordHasher conformance suite at the OWASP defaults")
    func conformanceDefault() async throws {
        try await PasswordHasherConformance(hasher: Argon2idHasher(parameters: try Argon2Configuration())).run()
    }

    @Test("writes a PHC string with the configured parameters")
    func phcFormat() async throws {
        let hasher = Argon2idHasher(parameters: try Argon2Configuration())
        let hash = try await hasher.hash(try Password("a long enough password"))
        #expect(hash.hasPrefix("$argon2id$v=19$m=19456,t=2,p=1$"))
        #expect(hash.split(separator: "$").count == 5)
    }

    @Test("a hash made with other parameters still verifies and asks for a rehash")
    func olderParameters() async throws {
        let old = Argon2idHasher(parameters: try Argon2Configuration(memoryKiB: 64, iterations: 1))
        let current = Argon2idHasher(parameters: try Argon2Configuration(memoryKiB: 128, iterations: 2))
        let password = try Password("a long enough password")
        let oldHash = try await old.hash(password)
        #expect(try await current.verify(password, against: oldHash))
        #expect(current.needsRehash(oldHash))
        #expect(current.recognizes(oldHash), "an importer accepts a hash with other parameters")
        #expect(!current.needsRehash(try await current.hash(password)))
    }

    @Test("refuses parameters libargon2 would refuse, and costs above the caps", arguments: [
        (UInt32(4), UInt32(1), UInt32(1)), (UInt32(64), UInt32(0), UInt32(1)), (UInt32(64), UInt32(1), UInt32(0)),
        (UInt32(16), UInt32(1), UInt32(4)), (UInt32(5_000_000), UInt32(1), UInt32(1)),
        (UInt32(1_048_577), UInt32(1), UInt32(1)), (UInt32(64), UInt32(101), UInt32(1)), (UInt32(1024), UInt32(1), UInt32(17)),
        (UInt32(1_048_576), UInt32(5), UInt32(1)), (UInt32(64), UInt32.max, UInt32(1)), (UInt32.max, UInt32(1), UInt32(1)),
    ])
    func badParameters(memory: UInt32, iterations: UInt32, parallelism: UInt32) {
        #expect(throws: Argon2Error.self) {
            try Argon2Configuration(memoryKiB: memory, iterations: iterations, parallelism: parallelism)
        }
    }

    @Test("the caps admit what a demanding operator chooses: 1 GiB × 4 passes, 16 lanes, 64-byte salt and hash")
    func atTheCaps() async throws {
        #expect(throws: Never.self) { try Argon2Configuration(memoryKiB: 1_048_576, iterations: 4, parallelism: 16) }
        #expect(throws: Never.self) { try Argon2Configuration(memoryKiB: 65_536, iterations: 64, parallelism: 4) }
        let hasher = Argon2idHasher(parameters: try Argon2Configuration(memoryKiB: 64, iterations: 1))
        #expect(hasher.recognizes("$argon2id$v=19$m=1048576,t=4,p=16$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"))
        #expect(hasher.recognizes("$argon2id$v=19$m=64,t=100,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"))
        let long = Argon2idHasher(parameters: try Argon2Configuration(memoryKiB: 64, iterations: 1, saltLength: 64, hashLength: 64))
        let password = try Password("a long enough password")
        let hash = try await long.hash(password)
        #expect(hasher.recognizes(hash))
        #expect(try await hasher.verify(password, against: hash))
    }

    @Test("parses only well-formed Argon2id PHC strings, in libargon2's own form")
    func phcParsing() {
        #expect(Argon2PHC("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA")?.memoryKiB == 19456)
        #expect(Argon2PHC("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA")
                    .map { [$0.saltLength, $0.hashLength] } == [8, 16])
        for bad in ["$argon2i$v=19$m=1,t=1,p=1$a$b", "$argon2id$v=19$m=1,t=1$a$b", "$argon2id$v=x$m=1,t=1,p=1$a$b",
                    "$argon2id$v=19$m=1,t=1,p=1,q=2$a$b", "$argon2id$v=19$m=1,t=1,p=1$$b", "$2b$12$abcdefghijklmnopqrstuv",
                    "$argon2id$v=19$t=1,m=64,p=1$c2FsdA$aGFzaA",     // another order
                    "$argon2id$v=19$m=64,m=64,t=1,p=1$c2FsdA$aGFzaA", // a cost twice
                    "$argon2id$v=19$m=+64,t=1,p=1$c2FsdA$aGFzaA",    // a sign
                    "$argon2id$v=19$m= 64,t=1,p=1$c2FsdA$aGFzaA",    // a space
                    "$argon2id$v=19$m=64,t=1,p=1,$c2FsdA$aGFzaA",    // a trailing comma
                    "$argon2id$v=19$m=64,t=4294967296,p=1$c2FsdA$aGFzaA", // over 32 bits
                    "$argon2id$v=19$m=64,t=1,p=1$c2FsdA==$aGFzaA",   // padded
                    "$argon2id$v=19$m=64,t=1,p=1$c2F*dA$aGFzaA",     // not base64
                    "$argon2id$v=19$m=64,t=1,p=1$c2Fsd$aGFzaA"] {    // 4n+1 characters are no base64
            #expect(Argon2PHC(bad) == nil, "\(bad)")
        }
    }

    @Test("a stored hash that claims absurd costs or another version is neither recognized nor handed to libargon2", arguments: [
        "$argon2id$v=19$m=8388608,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",   // 8 GiB
        "$argon2id$v=19$m=4294967295,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", // 4 TiB
        "$argon2id$v=19$m=2097152,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",   // 2 GiB, over the 1 GiB cap
        "$argon2id$v=19$m=64,t=4294967295,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", // 2^32 - 1 passes
        "$argon2id$v=19$m=64,t=101,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",      // over 100 passes
        "$argon2id$v=19$m=1048576,t=5,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",   // 5 GiB-passes of work
        "$argon2id$v=19$m=262144,t=17,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",   // 256 MiB × 17: 4.25 GiB-passes
        "$argon2id$v=19$m=1048576,t=1,p=16777215$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", // 16 million lanes (threads)
        "$argon2id$v=19$m=4294967295,t=4294967295,p=4294967295$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", // everything
        "$argon2id$v=19$m=1024,t=1,p=17$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",     // over 16 lanes
        "$argon2id$v=19$m=64,t=0,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",        // no pass
        "$argon2id$v=19$m=64,t=1,p=0$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",        // no lane
        "$argon2id$v=19$m=64,t=1,p=16$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",       // < 8 KiB per lane
        "$argon2id$v=42$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",        // unknown version
        "$argon2id$v=19$m=64,t=1,p=1$c2FsdA$aGFzaGhhc2hoYXNoaGFzaA",             // a 4-byte salt
        "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaA",                        // a 4-byte hash
        "$argon2id$v=19$m=64,t=1,p=1$" + String(repeating: "c2Fs", count: 22) + "$aGFzaGhhc2hoYXNoaGFzaA", // a 66-byte salt
        "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$" + String(repeating: "aGFz", count: 22),                 // a 66-byte hash
    ])
    func absurdCosts(hash: String) async throws {
        let hasher = Argon2idHasher(parameters: try Argon2Configuration(memoryKiB: 64, iterations: 1))
        #expect(!hasher.recognizes(hash), "an importer refuses it")
        #expect(try await !hasher.verify(try Password("a long enough password"), against: hash))
        // A pool that never started fails any job handed to it: verify answers without one.
        let idle = NIOThreadPool(numberOfThreads: 1)
        let unpooled = Argon2idHasher(parameters: try Argon2Configuration(memoryKiB: 64, iterations: 1), pool: idle)
        #expect(try await !unpooled.verify(try Password("a long enough password"), against: hash), "refused before libargon2")
    }

    @Test("the idle-pool probe above can fail: a verifiable hash does go to the pool")
    func idlePoolProbe() async throws {
        let idle = NIOThreadPool(numberOfThreads: 1)
        let unpooled = Argon2idHasher(parameters: try Argon2Configuration(memoryKiB: 64, iterations: 1), pool: idle)
        await #expect(throws: (any Error).self) {
            try await unpooled.verify(try Password("a long enough password"), against: "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA")
        }
        #expect(unpooled.waitingJobs == 0, "a job the pool never ran leaves the queue")
    }
}

@Suite("Argon2id hasher metrics")
struct Argon2idHasherMetricsTests {
    @Test("every hash and verification is timed under identity_password_hash_duration_seconds{operation}")
    func timed() async throws {
        let registry = PrometheusCollectorRegistry()
        let hasher = Argon2idHasher(parameters: try Argon2Configuration(memoryKiB: 64, iterations: 1),
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
        let hasher = Argon2idHasher(parameters: try Argon2Configuration(memoryKiB: 64, iterations: 1), pool: pool, yieldsToOtherWork: yields)
        _ = try await hasher.hash(try Password("a long enough password"))
        #expect(try await niceness(of: pool) == (yields ? max(before, 10) : before))
        try await pool.shutdownGracefully()
    }
}
