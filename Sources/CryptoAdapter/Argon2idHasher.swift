public import IdentityPorts
public import IdentityDomain
public import NIOPosix
import NIOCore
public import CoreMetrics
import CArgon2
import Foundation

/// Argon2id cost parameters. Defaults are OWASP's: 19 MiB, 2 passes, 1 lane.
public struct Argon2Parameters: Sendable, Equatable, CustomStringConvertible {
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
    public static var recommended: Argon2Parameters {
        // These constants pass every check of `init`.
        guard let parameters = try? Argon2Parameters() else { preconditionFailure("the default Argon2 parameters are valid") }
        return parameters
    }

    /// Creates parameters; throws `Argon2Error` when libargon2 would refuse them.
    public init(memoryKiB: UInt32 = 19_456, iterations: UInt32 = 2, parallelism: UInt32 = 1,
                saltLength: Int = 16, hashLength: Int = 32) throws {
        guard (1...0xFF_FFFF).contains(parallelism) else { throw Argon2Error.invalidParameters("parallelism must be 1 or more") }
        guard memoryKiB >= 8 * parallelism else {
            throw Argon2Error.invalidParameters("memory must be at least 8 KiB per lane")
        }
        guard memoryKiB <= 4_194_304 else { throw Argon2Error.invalidParameters("memory must be at most 4 GiB") }
        guard iterations >= 1 else { throw Argon2Error.invalidParameters("iterations must be 1 or more") }
        guard saltLength >= 8, hashLength >= 16 else { throw Argon2Error.invalidParameters("salt ≥ 8 and hash ≥ 16 bytes") }
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
/// (NIO's shared blocking pool by default), never on the caller's event loop.
public struct Argon2idHasher: PasswordHasher {
    /// The parameters new hashes are made with.
    public let parameters: Argon2Parameters
    private let pool: NIOThreadPool
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
    public init(
        parameters: Argon2Parameters = .recommended, pool: NIOThreadPool = .singleton, metrics: any MetricsFactory = MetricsSystem.factory,
        yieldsToOtherWork: Bool = false
    ) {
        self.parameters = parameters
        self.pool = pool
        self.yieldsToOtherWork = yieldsToOtherWork
        self.hashTimer = CoreMetrics.Timer(label: "identity_password_hash_duration_seconds", dimensions: [("operation", "hash")], factory: metrics)
        self.verifyTimer = CoreMetrics.Timer(label: "identity_password_hash_duration_seconds", dimensions: [("operation", "verify")], factory: metrics)
    }

    public func hash(_ password: Password) async throws -> String {
        var random = SystemRandomNumberGenerator()
        let salt = (0..<parameters.saltLength).map { _ in UInt8.random(in: 0...255, using: &random) }
        let bytes = Array(password.normalized.utf8)
        let parameters = self.parameters
        return try await onPool(timer: hashTimer) { try Self.hashBlocking(bytes, salt: salt, parameters: parameters) }
    }

    public func verify(_ password: Password, against phc: String) async throws -> Bool {
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

    /// Runs blocking work on the pool, timing the work itself (not the wait for a thread).
    private func onPool<T: Sendable>(timer: CoreMetrics.Timer, _ work: @escaping @Sendable () throws -> T) async throws -> T {
        let yields = yieldsToOtherWork
        return try await pool.runIfActive {
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

    static func hashBlocking(_ password: [UInt8], salt: [UInt8], parameters p: Argon2Parameters) throws -> String {
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

/// The parameters written in an Argon2id PHC string.
struct Argon2PHC: Equatable {
    var version: Int
    var memoryKiB: UInt32
    var iterations: UInt32
    var parallelism: UInt32

    /// Whether libargon2 may be handed this string: version 19 (or the older 16), and costs
    /// that `Argon2Parameters` accepts, so a stored hash cannot claim gigabytes.
    var isVerifiable: Bool {
        [16, 19].contains(version)
            && (try? Argon2Parameters(memoryKiB: memoryKiB, iterations: iterations, parallelism: parallelism)) != nil
    }

    /// Parses `$argon2id$v=19$m=..,t=..,p=..$salt$hash`; nil for anything else.
    init?(_ phc: String) {
        let fields = phc.split(separator: "$", omittingEmptySubsequences: false)
        guard fields.count == 6, fields[0].isEmpty, fields[1] == "argon2id", fields[2].hasPrefix("v="),
              let version = Int(fields[2].dropFirst(2)), !fields[4].isEmpty, !fields[5].isEmpty
        else { return nil }
        var values: [Substring: UInt32] = [:]
        for pair in fields[3].split(separator: ",") {
            let kv = pair.split(separator: "=", maxSplits: 1)
            guard kv.count == 2, let value = UInt32(kv[1]) else { return nil }
            values[kv[0]] = value
        }
        guard let m = values["m"], let t = values["t"], let p = values["p"], values.count == 3 else { return nil }
        self.version = version
        self.memoryKiB = m
        self.iterations = t
        self.parallelism = p
    }
}
