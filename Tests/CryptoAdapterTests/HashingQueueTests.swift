@testable import CryptoAdapter
import IdentityDomain
import IdentityPorts
import IdentityTestSupport
import NIOPosix
import Testing

/// The bounded queue of contract §3 (`HASH_QUEUE_LIMIT`). The pool's one thread is held by a
/// job of the test (`HashingJam`), so what the hasher submits waits, and is counted, until the
/// test lets it go: no timing decides anything.
@Suite("Argon2id hasher queue")
struct HashingQueueTests {
    let password = try! Password(HashingJam.password)

    @Test("with 2 jobs waiting and a limit of 2, the next hash and the next verification fail at once; the waiting ones finish")
    func refusesBeyondTheLimit() async throws {
        try await HashingJam.with(queueLimit: 2) { jam in
            let hash = try await jam.hasher.hash(password)
            try await jam.jam()
            let waiting = try await jam.fill(2, against: hash)
            let (hasher, password) = (jam.hasher, password)
            await #expect(throws: HashingOverloaded(limit: 2)) {
                try await jam.refusedAtOnce { try await hasher.verify(password, against: hash) }
            }
            await #expect(throws: HashingOverloaded(limit: 2)) { try await jam.refusedAtOnce { try await hasher.hash(password) } }
            await #expect(throws: HashingOverloaded(limit: 2)) {
                try await jam.refusedAtOnce {
                    try await hasher.verify(password, against: "$2b$04$abcdefghijklmnopqrstuuqREtd3VJD2QVZbuFskFSLk6eRIrQoOS")
                }
            }
            #expect(jam.hasher.waitingJobs == 2, "a refused call takes no place")
            jam.release()
            for task in waiting { #expect(try await task.value) }
            #expect(jam.hasher.waitingJobs == 0)
            #expect(try await jam.hasher.verify(password, against: hash), "room again once the queue drains")
        }
    }

    @Test("a refused stored hash takes no place in the queue and is answered even when it is full")
    func refusedHashesDoNotQueue() async throws {
        try await HashingJam.with(queueLimit: 1) { jam in
            let hash = try await jam.hasher.hash(password)
            try await jam.jam()
            let waiting = try await jam.fill(1, against: hash)
            let (hasher, password) = (jam.hasher, password)
            #expect(try await !jam.refusedAtOnce {
                try await hasher.verify(password, against: "$argon2id$v=19$m=64,t=4294967295,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA")
            })
            #expect(try await !jam.refusedAtOnce { try await hasher.verify(password, against: "not a hash") })
            jam.release()
            for task in waiting { #expect(try await task.value) }
        }
    }

    @Test("at the default limit, 50 simultaneous verifications all wait and all succeed")
    func fiftyAtTheDefault() async throws {
        try await HashingJam.with(queueLimit: Argon2idHasher.defaultQueueLimit) { jam in
            #expect(jam.hasher.queueLimit == 128)
            let hash = try await jam.hasher.hash(password)
            try await jam.jam()
            let waiting = try await jam.fill(50, against: hash)
            jam.release()
            for task in waiting { #expect(try await task.value) }
            #expect(jam.hasher.waitingJobs == 0)
        }
    }

    @Test("a waiting job that is cancelled gives its place back when the pool drops it")
    func cancelledJobsLeave() async throws {
        try await HashingJam.with(queueLimit: 2) { jam in
            let hash = try await jam.hasher.hash(password)
            try await jam.jam()
            let waiting = try await jam.fill(2, against: hash)
            waiting[0].cancel()
            jam.release()
            await #expect(throws: CancellationError.self) { try await waiting[0].value }
            #expect(try await waiting[1].value)
            #expect(jam.hasher.waitingJobs == 0)
            let more = try await jam.fill(0, against: hash)
            #expect(more.isEmpty)
            #expect(try await jam.hasher.verify(password, against: hash))
        }
    }

    @Test("a limit below 1 is taken as 1")
    func minimumLimit() throws {
        #expect(Argon2idHasher(queueLimit: 0).queueLimit == 1)
        #expect(Argon2idHasher(queueLimit: -5).queueLimit == 1)
    }
}
