public import IdentityPorts
public import IdentityDomain
public import NIOPosix
import NIOCore
public import CoreMetrics
import CArgon2
import Foundation
import Synchronization
import Tracing

/// Argon2id cost parameters. Defaults are OWASP's: 19 MiB, 2 passes, 1 lane.
///
/// The same caps bound the parameters new hashes are made with and the costs a stored hash
/// may claim before it is handed to libargon2 (`maximumMemoryKiB`, `maximumIterations`,
/// `maximumParallelism`, `maximumWork`): a row or an imported file cannot make one login
/// take a gigabyte-minute, and the server always verifies its own hashes.
public struct Argon2Configuration: Sendable, Equatable, CustomStringConvertible {
    /// Memory cost in KiB (`m`).
    public var memoryKiB: UInt32
    /// Number of passes (`t`).
    public var iterations: UInt32
    /// Lanes (`p`).
    public var parallelism: UInt32
    /// Salt length in bytes.
    public var saltLength: Int
    /// Hash length in bytes.
    public var hashLength: Int

    /// OWASP's recommendation and our default: m = 19 MiB, t = 2, p = 1.
    public static var recommended: Argon2Configuration {
        // These constants pass every check of `init`.
        guard let parameters = try? Argon2Configuration() else { preconditionFailure("the default Argon2 parameters are valid") }
        return parameters
    }

    /// The most memory a hash may use: 1 GiB (libsodium's "sensitive" level), in KiB.
    public static let maximumMemoryKiB: UInt32 = 1_048_576
    /// The most passes a hash may make.
    public static let maximumIterations: UInt32 = 100
    /// The most lanes a hash may have; libargon2 starts a thread per lane.
    public static let maximumParallelism: UInt32 = 16
    /// The most work a hash may cost, memory × passes in KiB: 4 GiB-passes (1 GiB × 4, or
    /// 64 MiB × 64), a few seconds of one core.
    public static let maximumWork: UInt64 = 4_194_304
    /// The longest salt and hash accepted, in bytes.
    public static let maximumLength = 64

    /// Creates parameters; throws `Argon2Error` when libargon2 would refuse them or they
    /// exceed the caps above.
    public init(memoryKiB: UInt32 = 19_456, iterations: UInt32 = 2, parallelism: UInt32 = 1,
                saltLength: Int = 16, hashLength: Int = 32) throws {
        guard (1...Self.maximumParallelism).contains(parallelism) else {
            throw Argon2Error.invalidParameters("parallelism must be from 1 to \(Self.maximumParallelism)")
        }
        guard memoryKiB >= 8 * parallelism else {
            throw Argon2Error.invalidParameters("memory must be at least 8 KiB per lane")
        }
        guard memoryKiB <= Self.maximumMemoryKiB else {
            throw Argon2Error.invalidParameters("memory must be at most \(Self.maximumMemoryKiB) KiB (1 GiB)")
        }
        guard (1...Self.maximumIterations).contains(iterations) else {
            throw Argon2Error.invalidParameters("iterations must be from 1 to \(Self.maximumIterations)")
        }
        guard UInt64(memoryKiB) * UInt64(iterations) <= Self.maximumWork else {
            throw Argon2Error.invalidParameters("memory × iterations must be at most \(Self.maximumWork) KiB (4 GiB-passes)")
        }
        guard (8...Self.maximumLength).contains(saltLength), (16...Self.maximumLength).contains(hashLength) else {
            throw Argon2Error.invalidParameters("salt must be 8 to \(Self.maximumLength) bytes and hash 16 to \(Self.maximumLength)")
        }
        self.memoryKiB = memoryKiB
        self.iterations = iterations
        self.parallelism = parallelism
        self.saltLength = saltLength
        self.hashLength = hashLength
    }

    public var description: String { "m=\(memoryKiB),t=\(iterations),p=\(parallelism)" }
}

/// Why Argon2 could not hash.
public struct Argon2Error: Error, Sendable, Equatable, CustomStringConvertible {
    /// What went wrong.
    public let description: String

    static func invalidParameters(_ reason: String) -> Argon2Error {
        Argon2Error(description: "invalid Argon2 parameters: \(reason)")
    }

    static func library(_ code: Int32) -> Argon2Error {
        Argon2Error(description: "argon2 failed: " + String(cString: argon2_error_message(code)))
    }
}

/// Argon2id through libargon2, producing and verifying PHC strings
/// (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`). It also verifies bcrypt hashes imported from
/// another system (`$2a$`, `$2b$`, `$2y$`), which always need a rehash.
///
/// Hashing blocks a thread for tens of milliseconds, so every call runs on a thread pool
/// (NIO's shared blocking pool by default), never on the caller's event loop. At most
/// `queueLimit` calls wait for a thread of the pool at once; one more throws
/// `HashingOverloaded` at once instead of queueing without bound (contract §3).
public struct Argon2idHasher: PasswordHasher {
    /// The parameters new hashes are made with.
    public let parameters: Argon2Configuration
    /// How many hashes and verifications may wait for a thread at once (`HASH_QUEUE_LIMIT`).
    public var queueLimit: Int { queue.limit }
    /// The default `queueLimit`: 128 waiting, so 50 simultaneous logins all go through.
    public static let defaultQueueLimit = 128
    private let pool: NIOThreadPool
    private let queue: HashingQueue
    private let hashTimer: CoreMetrics.Timer
    private let verifyTimer: CoreMetrics.Timer
    private let yieldsToOtherWork: Bool

    /// Creates a hasher; `pool` runs the blocking work. The time each hash and verification
    /// takes on the pool is recorded as `identity_password_hash_duration_seconds{operation}`.
    ///
    /// With `yieldsToOtherWork`, the pool's threads run at a lower scheduling priority
    /// (nice 10, on Linux) while they hash: a storm of logins then uses the CPU that reads
    /// leave over instead of taking it from the event loops. Give such a hasher a pool of its
    /// own (`Argon2idHasher.makePool()`), since the priority stays with the threads.
    ///
    /// `queueLimit` (at least 1) bounds the calls of this hasher that wait for a thread; work
    /// that others put on the same pool is not counted.
    public init(
        parameters: Argon2Configuration = .recommended, pool: NIOThreadPool = .singleton, metrics: any MetricsFactory = MetricsSystem.factory,
        yieldsToOtherWork: Bool = false, queueLimit: Int = Argon2idHasher.defaultQueueLimit
    ) {
        self.parameters = parameters
        self.pool = pool
        self.queue = HashingQueue(limit: max(1, queueLimit))
        self.yieldsToOtherWork = yieldsToOtherWork
        self.hashTimer = CoreMetrics.Timer(label: "identity_password_hash_duration_seconds", dimensions: [("operation", "hash")], factory: metrics)
        self.verifyTimer = CoreMetrics.Timer(label: "identity_password_hash_duration_seconds", dimensions: [("operation", "verify")], factory: metrics)
    }

    public func hash(_ password: Password) async throws -> String {
        var random = SystemRandomNumberGenerator()
        let salt = (0..<parameters.saltLength).map { _ in UInt8.random(in: 0...255, using: &random) }
        let bytes = Array(password.normalized.utf8)
        let parameters = self.parameters
        return try await Self.inTrace("password.hash", algorithm: "argon2id") {
            try await onPool(timer: hashTimer) { try Self.hashBlocking(bytes, salt: salt, parameters: parameters) }
        }
    }

    /// Runs `body` in a span when a trace is under way (a request's, a command's), else plainly.
    /// The span names the operation and the algorithm only: never the hash or the password.
    private static func inTrace<T>(_ name: String, algorithm: String, _ body: () async throws -> T) async throws -> T {
        guard ServiceContext.current != nil else { return try await body() }
        return try await withSpan(name) { span in
            span.attributes["identity.password.algorithm"] = algorithm
            return try await body()
        }
    }

    public func verify(_ password: Password, against phc: String) async throws -> Bool {
        try await Self.inTrace("password.verify", algorithm: BcryptVerifier.handles(phc) ? "bcrypt" : "argon2id") {
            try await verifyOnPool(password, against: phc)
        }
    }

    private func verifyOnPool(_ password: Password, against phc: String) async throws -> Bool {
        if BcryptVerifier.handles(phc) {
            let bytes = Array(password.normalized.utf8)
            return try await onPool(timer: verifyTimer) { BcryptVerifier.verifyBlocking(bytes, against: phc) }
        }
        // Only well-formed Argon2id strings within sane costs reach libargon2.
        guard let stored = Argon2PHC(phc), stored.isVerifiable else { return false }
        let bytes = Array(password.normalized.utf8)
        return try await onPool(timer: verifyTimer) {
            phc.withCString { encoded in
                bytes.withUnsafeBytes { argon2id_verify(encoded, $0.baseAddress, $0.count) == ARGON2_OK.rawValue }
            }
        }
    }

    /// A started pool with one thread per core, for a hasher of its own.
    public static func makePool() -> NIOThreadPool {
        let pool = NIOThreadPool(numberOfThreads: System.coreCount)
        pool.start()
        return pool
    }

    /// How many hashes and verifications of this hasher are waiting for a thread now.
    public var waitingJobs: Int { queue.waiting }

    /// Runs blocking work on the pool, timing the work itself (not the wait for a thread).
    /// Throws `HashingOverloaded` at once when `queueLimit` calls are already waiting.
    private func onPool<T: Sendable>(timer: CoreMetrics.Timer, _ work: @escaping @Sendable () throws -> T) async throws -> T {
        let ticket = try queue.enter()
        // A job that never starts (cancelled while queued, pool stopped) leaves the queue here.
        defer { ticket.leave() }
        let yields = yieldsToOtherWork
        return try await pool.runIfActive {
            ticket.leave()
            // A syscall of a microsecond before tens of milliseconds of hashing; idempotent.
            if yields { _ = identity_lower_thread_priority(10) }
            let start = DispatchTime.now().uptimeNanoseconds
            defer { timer.recordNanoseconds(Int64(DispatchTime.now().uptimeNanoseconds - start)) }
            return try work()
        }
    }

    public func recognizes(_ stored: String) -> Bool {
        if BcryptVerifier.handles(stored) { return true }
        guard let phc = Argon2PHC(stored) else { return false }
        return phc.isVerifiable
    }

    public func needsRehash(_ phc: String) -> Bool {
        guard let stored = Argon2PHC(phc) else { return true }
        return stored.memoryKiB != parameters.memoryKiB || stored.iterations != parameters.iterations
            || stored.parallelism != parameters.parallelism || stored.version != 19
    }

    static func hashBlocking(_ password: [UInt8], salt: [UInt8], parameters p: Argon2Configuration) throws -> String {
        let length = argon2_encodedlen(p.iterations, p.memoryKiB, p.parallelism, UInt32(salt.count), UInt32(p.hashLength), Argon2_id)
        var encoded = [CChar](repeating: 0, count: length)
        let code = password.withUnsafeBytes { pwd in
            salt.withUnsafeBytes { saltBytes in
                argon2id_hash_encoded(
                    p.iterations, p.memoryKiB, p.parallelism, pwd.baseAddress, pwd.count,
                    saltBytes.baseAddress, saltBytes.count, p.hashLength, &encoded, length
                )
            }
        }
        guard code == ARGON2_OK.rawValue else { throw Argon2Error.library(code) }
        return String(decoding: encoded.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// Counts the calls of one hasher that wait for a thread, and refuses one more than the limit.
final class HashingQueue: Sendable {
    let limit: Int
    private let count = Mutex(0)

    init(limit: Int) {
        self.limit = limit
    }

    var waiting: Int { count.withLock { $0 } }

    /// Takes a place in the queue; throws `HashingOverloaded` when `limit` are taken.
    func enter() throws(HashingOverloaded) -> Ticket {
        let admitted = count.withLock { waiting in
            guard waiting < limit else { return false }
            waiting += 1
            return true
        }
        guard admitted else { throw HashingOverloaded(limit: limit) }
        return Ticket(queue: self)
    }

    fileprivate func release() {
        count.withLock { $0 -= 1 }
    }

    /// One place in the queue, given back once however often `leave` is called.
    final class Ticket: Sendable {
        private let queue: HashingQueue
        private let left = Atomic(false)

        fileprivate init(queue: HashingQueue) {
            self.queue = queue
        }

        /// Gives the place back: when the job starts, or when it ends without starting.
        func leave() {
            if left.exchange(true, ordering: .acquiringAndReleasing) == false { queue.release() }
        }
    }
}

/// The parameters written in an Argon2id PHC string.
struct Argon2PHC: Equatable {
    var version: Int
    var memoryKiB: UInt32
    var iterations: UInt32
    var parallelism: UInt32
    /// Bytes of salt and of hash, from the lengths of their unpadded base64.
    var saltLength: Int
    var hashLength: Int

    /// Whether libargon2 may be handed this string: version 19 (or the older 16), and costs
    /// and lengths that `Argon2Configuration` accepts, so a stored hash cannot claim gigabytes,
    /// billions of passes or a thread per lane by the hundred.
    var isVerifiable: Bool {
        [16, 19].contains(version)
            && (try? Argon2Configuration(
                memoryKiB: memoryKiB, iterations: iterations, parallelism: parallelism, saltLength: saltLength, hashLength: hashLength
            )) != nil
    }

    /// Parses `$argon2id$v=19$m=..,t=..,p=..$salt$hash` as libargon2 writes it (the three costs
    /// in that order, decimal digits only, salt and hash in unpadded base64); nil for anything else.
    init?(_ phc: String) {
        let fields = phc.split(separator: "$", omittingEmptySubsequences: false)
        guard fields.count == 6, fields[0].isEmpty, fields[1] == "argon2id", fields[2].hasPrefix("v="),
              let version = Self.decimal(fields[2].dropFirst(2)),
              let saltLength = Self.base64Length(fields[4]), let hashLength = Self.base64Length(fields[5])
        else { return nil }
        let costs = fields[3].split(separator: ",", omittingEmptySubsequences: false)
        guard costs.count == 3, costs[0].hasPrefix("m="), costs[1].hasPrefix("t="), costs[2].hasPrefix("p="),
              let m = Self.decimal(costs[0].dropFirst(2)), let t = Self.decimal(costs[1].dropFirst(2)),
              let p = Self.decimal(costs[2].dropFirst(2))
        else { return nil }
        self.version = Int(version)
        self.memoryKiB = m
        self.iterations = t
        self.parallelism = p
        self.saltLength = saltLength
        self.hashLength = hashLength
    }

    /// 1–10 decimal digits that fit in 32 bits (no sign, no spaces); nil otherwise.
    private static func decimal(_ text: Substring) -> UInt32? {
        guard (1...10).contains(text.utf8.count), text.utf8.allSatisfy({ (0x30...0x39).contains($0) }) else { return nil }
        return UInt32(text)
    }

    /// The bytes encoded by unpadded standard base64 `text`; nil when it is not such base64.
    private static func base64Length(_ text: Substring) -> Int? {
        let count = text.utf8.count
        guard count > 0, count % 4 != 1, text.utf8.allSatisfy({ byte in
            (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte) || (0x30...0x39).contains(byte)
                || byte == UInt8(ascii: "+") || byte == UInt8(ascii: "/")
        }) else { return nil }
        return count * 3 / 4
    }
}
