import Foundation
import Logging
import CryptoAdapter
import HTTPAdapter
import PostgresAdapter
import AMQPAdapter

/// Every setting of contract §8, validated. Read here only; libraries get typed values.
struct Settings {
    var host = "127.0.0.1"
    var port = 8080
    var logLevel = Logger.Level.info
    var jwtSecret: String?
    var jwtAlgorithm = "HS256"
    var jwtExpireMinutes = 60
    var jwtIssuer = "identity"
    var jwtAudience = "identity"
    var loginMaxFailures = 5
    var loginFailureWindowSeconds = 900
    var loginMaxFailuresPerClient = 100
    var argon2MemoryKiB: UInt32 = 19_456
    var argon2Iterations: UInt32 = 2
    var argon2Parallelism: UInt32 = 1
    /// Hashes and verifications that may wait for a thread before the next is refused (503).
    var hashQueueLimit = Argon2idHasher.defaultQueueLimit
    var postgres: PostgresConfiguration?
    /// Without PostgreSQL: the SQLite file of the embedded store, or `:memory:` for the in-memory store.
    var sqlitePath = "identity.sqlite"
    var postgresTimeoutSeconds = 5
    var rabbitmq: AMQPConfiguration?
    /// The keys that sign and verify commands on the broker (`COMMAND_SIGNING_KEY`); set
    /// whenever `rabbitmq` is.
    var commandSigningKeys: CommandSigningKeys?
    /// Fault injection for tests only: a worker exits after applying a command, before acknowledging it.
    var exitBeforeAcknowledging = false
    var trustedProxies = TrustedProxies.none

    static let algorithms = ["HS256", "HS384", "HS512"]

    init() {}

    /// Reads and validates every variable; the first bad one throws a `ConfigurationError`.
    init(from source: ConfigurationSource) throws {
        let reader = Reader(source: source)
        host = reader.string("HOST") ?? host
        port = try reader.integer("PORT", in: 0...65_535) ?? port
        if let level = reader.string("LOG_LEVEL") {
            guard let parsed = Logger.Level(rawValue: level.lowercased()) else {
                throw ConfigurationError("LOG_LEVEL must be one of trace, debug, info, notice, warning, error, critical (got \"\(level)\")")
            }
            logLevel = parsed
        }
        if let secret = reader.string("JWT_SECRET") {
            // Never echo the secret itself.
            guard secret.utf8.count >= 32 else {
                throw ConfigurationError("JWT_SECRET must be at least 32 bytes (got \(secret.utf8.count))")
            }
            jwtSecret = secret
        }
        if let algorithm = reader.string("JWT_ALGORITHM") {
            guard Self.algorithms.contains(algorithm) else {
                throw ConfigurationError("JWT_ALGORITHM must be one of \(Self.algorithms.joined(separator: ", ")) (got \"\(algorithm)\")")
            }
            jwtAlgorithm = algorithm
        }
        jwtExpireMinutes = try reader.integer("JWT_EXPIRE_MINUTES", in: 1...525_600) ?? jwtExpireMinutes
        jwtIssuer = reader.string("JWT_ISSUER") ?? jwtIssuer
        jwtAudience = reader.string("JWT_AUDIENCE") ?? jwtAudience
        loginMaxFailures = try reader.integer("LOGIN_MAX_FAILURES", in: 1...1_000_000) ?? loginMaxFailures
        loginFailureWindowSeconds = try reader.integer("LOGIN_FAILURE_WINDOW_SECONDS", in: 1...31_536_000) ?? loginFailureWindowSeconds
        loginMaxFailuresPerClient = try reader.integer("LOGIN_MAX_FAILURES_PER_CLIENT", in: 1...100_000_000) ?? loginMaxFailuresPerClient
        // The caps that stored hashes are held to too (Argon2Configuration), so the server can
        // always verify the hashes it makes.
        argon2MemoryKiB = try reader.integer("ARGON2_MEMORY_KIB", in: 8...Int(Argon2Configuration.maximumMemoryKiB))
            .map(UInt32.init) ?? argon2MemoryKiB
        argon2Iterations = try reader.integer("ARGON2_ITERATIONS", in: 1...Int(Argon2Configuration.maximumIterations))
            .map(UInt32.init) ?? argon2Iterations
        argon2Parallelism = try reader.integer("ARGON2_PARALLELISM", in: 1...Int(Argon2Configuration.maximumParallelism))
            .map(UInt32.init) ?? argon2Parallelism
        guard argon2MemoryKiB >= 8 * argon2Parallelism else {
            throw ConfigurationError("ARGON2_MEMORY_KIB must be at least 8 × ARGON2_PARALLELISM (got \(argon2MemoryKiB))")
        }
        guard UInt64(argon2MemoryKiB) * UInt64(argon2Iterations) <= Argon2Configuration.maximumWork else {
            throw ConfigurationError(
                "ARGON2_MEMORY_KIB × ARGON2_ITERATIONS must be at most \(Argon2Configuration.maximumWork) (got \(argon2MemoryKiB) × \(argon2Iterations))"
            )
        }
        hashQueueLimit = try reader.integer("HASH_QUEUE_LIMIT", in: 1...1_000_000) ?? hashQueueLimit
        let postgresPort = try reader.integer("POSTGRES_PORT", in: 1...65_535) ?? 5432
        let poolSize = try reader.integer("POSTGRES_POOL_SIZE", in: 1...1000) ?? 20
        postgresTimeoutSeconds = try reader.integer("POSTGRES_TIMEOUT_SECONDS", in: 1...300) ?? postgresTimeoutSeconds
        var tls = PostgresConfiguration.TLSMode.prefer
        if let mode = reader.string("POSTGRES_TLS") {
            guard let parsed = PostgresConfiguration.TLSMode(rawValue: mode.lowercased()) else {
                throw ConfigurationError("POSTGRES_TLS must be one of disable, prefer, require (got \"\(mode)\")")
            }
            tls = parsed
        }
        if let host = reader.string("POSTGRES_HOST") {
            postgres = PostgresConfiguration(
                host: host, port: postgresPort, username: reader.string("POSTGRES_USER") ?? "postgres",
                password: reader.string("POSTGRES_PASSWORD"), database: reader.string("POSTGRES_DB") ?? "identity",
                poolSize: poolSize, tls: tls
            )
        }
        sqlitePath = reader.string("IDENTITY_SQLITE_PATH") ?? sqlitePath
        if let list = reader.string("TRUSTED_PROXIES") {
            guard let proxies = TrustedProxies(list) else {
                throw ConfigurationError("TRUSTED_PROXIES must be a comma-separated list of IP addresses or CIDR blocks (got \"\(list)\")")
            }
            trustedProxies = proxies
        }
        exitBeforeAcknowledging = try reader.flag("IDENTITY_TEST_EXIT_BEFORE_ACK")
        let rabbitTLS = try reader.flag("RABBITMQ_TLS")
        let rabbitPort = try reader.integer("RABBITMQ_PORT", in: 1...65_535) ?? (rabbitTLS ? 5671 : 5672)
        let commandTimeout = try reader.integer("COMMAND_TIMEOUT_SECONDS", in: 1...300) ?? 5
        if let list = reader.string("COMMAND_SIGNING_KEY") {
            // A comma-separated list during a rotation: the first signs, all verify. Never
            // echo a key, nor a part of one.
            let keys = list.split(separator: ",", omittingEmptySubsequences: false)
                .map { Data($0.trimmingCharacters(in: .whitespaces).utf8) }
            do {
                commandSigningKeys = try CommandSigningKeys(keys)
            } catch {
                throw ConfigurationError("COMMAND_SIGNING_KEY: \(error)")
            }
            if let jwtSecret, keys.contains(Data(jwtSecret.utf8)) {
                throw ConfigurationError("COMMAND_SIGNING_KEY must not be JWT_SECRET (one secret, one purpose)")
            }
        }
        if let host = reader.string("RABBITMQ_HOST") {
            // Distributed mode: every instance must share the store and the signing key.
            guard postgres != nil else {
                throw ConfigurationError("RABBITMQ_HOST is set, so POSTGRES_HOST must be too (workers and HTTP nodes share the database)")
            }
            guard jwtSecret != nil else {
                throw ConfigurationError("RABBITMQ_HOST is set, so JWT_SECRET must be too (every instance must verify every token)")
            }
            guard commandSigningKeys != nil else {
                throw ConfigurationError(
                    "RABBITMQ_HOST is set, so COMMAND_SIGNING_KEY must be too (at least 32 bytes; workers apply only commands signed with it)"
                )
            }
            rabbitmq = AMQPConfiguration(
                host: host, port: rabbitPort, username: reader.string("RABBITMQ_USER") ?? "guest",
                password: reader.string("RABBITMQ_PASSWORD") ?? "guest", virtualHost: reader.string("RABBITMQ_VHOST") ?? "/",
                tls: rabbitTLS ? AMQPConfiguration.TLS(caFile: reader.string("RABBITMQ_CA_FILE")) : nil,
                commandTimeout: .seconds(commandTimeout)
            )
        }
    }

    private struct Reader {
        let source: ConfigurationSource

        func string(_ name: String) -> String? {
            source[name]
        }

        /// `1`/`true`/`yes` or `0`/`false`/`no`; unset is false.
        func flag(_ name: String) throws -> Bool {
            guard let text = source[name] else { return false }
            switch text.lowercased() {
            case "1", "true", "yes", "on": return true
            case "0", "false", "no", "off": return false
            default: throw ConfigurationError("\(name) must be 1 or 0 (got \"\(text)\")")
            }
        }

        func integer(_ name: String, in range: ClosedRange<Int>) throws -> Int? {
            guard let text = source[name] else { return nil }
            guard let value = Int(text.trimmingCharacters(in: .whitespaces)), range.contains(value) else {
                throw ConfigurationError("\(name) must be an integer from \(range.lowerBound) to \(range.upperBound) (got \"\(text)\")")
            }
            return value
        }
    }
}
