import AMQPAdapter
import CryptoAdapter
import Foundation
import HTTPAdapter
import IdentityComposition
import IdentityPorts
import Logging
import PostgresAdapter

/// Every setting of contract §8, as the typed configuration each library takes. Read here
/// only (`ConfigurationVariable.all`), and each value checked once: its form here, its
/// meaning by its own type (`TokenConfiguration`, `Argon2Configuration`, `CommandSigningKeys`,
/// `TrustedProxies`), whose error becomes one line naming the variable.
struct ServerConfiguration: Sendable, CustomStringConvertible {
    var host: String
    var port: Int
    var logLevel: Logger.Level
    /// How log lines are written (`LOG_FORMAT`).
    var logFormat: LogFormat
    /// Where traces are exported; nil (no OTLP endpoint set) keeps tracing off.
    var traceExport: TraceExport?
    /// How tokens are signed; with a random secret when `JWT_SECRET` is unset.
    var tokens: TokenConfiguration
    /// Whether `tokens` has a secret made at start-up, so tokens will not survive a restart.
    var usesRandomJWTSecret: Bool
    /// With ES256 or EdDSA: the key-encryption key and the rotation interval.
    var keyPairs: KeyPairSigning?
    /// The absolute base URL discovery names (`PUBLIC_BASE_URL`), without a trailing slash.
    var publicBaseURL: URL?
    var argon2: Argon2Configuration
    /// Hashes and verifications that may wait for a thread before the next is refused (503).
    var hashQueueLimit: Int
    var throttle: LoginThrottleConfiguration
    var sessions: SessionConfiguration
    var trustedProxies: TrustedProxies
    var postgres: PostgresConfiguration?
    /// The deadline of every PostgreSQL operation.
    var postgresTimeout: Duration
    /// Without PostgreSQL: the SQLite file of the embedded store, or `:memory:` for the in-memory store.
    var sqlitePath: String
    /// Whether everything is kept in memory and ends with the process (no PostgreSQL, `:memory:`).
    var isInMemory: Bool { postgres == nil && sqlitePath == ":memory:" }
    var rabbitmq: AMQPConfiguration?
    /// The keys that sign and verify commands on the broker (`COMMAND_SIGNING_KEY`); set
    /// whenever `rabbitmq` is.
    var commandSigningKeys: CommandSigningKeys?
    /// Email verification and password reset (contract §11).
    var mail: MailSettings
    /// Fault injection for tests only: a worker exits after applying a command, before acknowledging it.
    var exitBeforeAcknowledging: Bool
    /// Every variable of the table with the value used and where it came from (`DemoServer config`).
    var effective: [EffectiveValue]

    /// Reads and checks every variable; the first bad one throws a `ConfigurationError`.
    init(from values: ConfigurationValues) throws {
        typealias Variable = ConfigurationVariable
        var reader = VariableReader(values)
        host = try reader.required(Variable.host, expected: "an address") { $0 }
        port = try reader.integer(Variable.port, in: 0...65_535)
        logLevel = try reader.choice(Variable.logLevel, Logger.Level.self) { $0.lowercased() }
        logFormat = try reader.choice(Variable.logFormat, LogFormat.self) { $0.lowercased() }
        traceExport = TraceExport(
            endpoint: try TraceExport.endpoint(reader.string(Variable.otlpEndpoint), variable: Variable.otlpEndpoint),
            tracesEndpoint: try TraceExport.endpoint(reader.string(Variable.otlpTracesEndpoint), variable: Variable.otlpTracesEndpoint)
        )

        let secret = try reader.string(Variable.jwtSecret)
        let algorithm = try reader.choice(Variable.jwtAlgorithm, JWTAlgorithm.self)
        let lifetime = try reader.integer(Variable.jwtExpireMinutes, in: 1...525_600)
        let issuer = try reader.required(Variable.jwtIssuer, expected: "text") { $0 }
        let audience = try reader.required(Variable.jwtAudience, expected: "text") { $0 }
        let keyEncryptionKey = try reader.string(Variable.jwtKeyEncryptionKey)
        let rotationDays = try reader.integer(Variable.jwtKeyRotationDays, in: 1...3_650)
        let checkSeconds = try reader.integer(Variable.jwtKeyCheckSeconds, in: 1...300)
        publicBaseURL = try reader.read(
            Variable.publicBaseURL, expected: "an absolute http or https URL without credentials, query or fragment", Self.baseURL
        )
        usesRandomJWTSecret = secret == nil && !algorithm.isAsymmetric
        do {
            tokens =
                if algorithm.isAsymmetric {
                    try TokenConfiguration(keyPairs: algorithm, issuer: issuer, audience: audience, lifetime: TimeInterval(lifetime * 60))
                } else {
                    try TokenConfiguration(
                        secret: secret ?? Self.randomSecret(for: algorithm), algorithm: algorithm, issuer: issuer, audience: audience,
                        lifetime: TimeInterval(lifetime * 60)
                    )
                }
        } catch {
            // Issuer and audience are never empty (an empty value is unset) and the lifetime is
            // positive, so only the secret can be refused; the error gives its length, never it.
            throw ConfigurationError("\(Variable.jwtSecret.name): \(error)")
        }

        throttle = LoginThrottleConfiguration(
            maxFailuresPerEmail: try reader.integer(Variable.loginMaxFailures, in: 1...1_000_000),
            maxFailuresPerClient: try reader.integer(Variable.loginMaxFailuresPerClient, in: 1...100_000_000),
            window: TimeInterval(try reader.integer(Variable.loginFailureWindowSeconds, in: 1...31_536_000))
        )
        sessions = SessionConfiguration(
            idleLifetime: TimeInterval(try reader.integer(Variable.refreshIdleDays, in: 1...3_650) * 86_400),
            absoluteLifetime: TimeInterval(try reader.integer(Variable.sessionMaxDays, in: 1...3_650) * 86_400)
        )
        trustedProxies = try reader.read(
            Variable.trustedProxies, expected: "a comma-separated list of IP addresses or CIDR blocks", TrustedProxies.init
        ) ?? .none

        let argon2Variables = [Variable.argon2MemoryKiB, Variable.argon2Iterations, Variable.argon2Parallelism]
        let costs = try argon2Variables.map { variable in
            try reader.required(variable, expected: "a whole number") { UInt32($0.trimmingCharacters(in: .whitespaces)) }
        }
        do {
            argon2 = try Argon2Configuration(memoryKiB: costs[0], iterations: costs[1], parallelism: costs[2])
        } catch {
            // The defaults are valid, so the variables given are the ones to change.
            let given = zip(argon2Variables, costs).filter { reader.given(argon2Variables).contains($0.0) }
            throw ConfigurationError("\(given.map { "\($0.0.name)=\($0.1)" }.joined(separator: ", ")): \(error)")
        }
        hashQueueLimit = try reader.integer(Variable.hashQueueLimit, in: 1...1_000_000)

        let postgresHost = try reader.string(Variable.postgresHost)
        let postgresPort = try reader.integer(Variable.postgresPort, in: 1...65_535)
        let postgresUser = try reader.required(Variable.postgresUser, expected: "text") { $0 }
        let postgresPassword = try reader.string(Variable.postgresPassword)
        let postgresDB = try reader.required(Variable.postgresDB, expected: "text") { $0 }
        let poolSize = try reader.integer(Variable.postgresPoolSize, in: 1...1000)
        let tls = try reader.choice(Variable.postgresTLS, PostgresConfiguration.TLSMode.self) { $0.lowercased() }
        postgresTimeout = .seconds(try reader.integer(Variable.postgresTimeoutSeconds, in: 1...300))
        sqlitePath = try reader.required(Variable.sqlitePath, expected: "a path") { $0 }
        postgres = postgresHost.map { host in
            PostgresConfiguration(
                host: host, port: postgresPort, username: postgresUser, password: postgresPassword, database: postgresDB,
                poolSize: poolSize, tls: tls
            )
        }

        keyPairs = try Self.keyPairs(
            algorithm: algorithm, keyEncryptionKey: keyEncryptionKey, rotationDays: rotationDays, checkSeconds: checkSeconds, tokens: tokens,
            inMemory: postgres == nil && sqlitePath == ":memory:"  // isInMemory, before self is complete
        )

        let rabbitMQHost = try reader.string(Variable.rabbitMQHost)
        let rabbitTLS = try reader.flag(Variable.rabbitMQTLS)
        let rabbitPort = try reader.integer(Variable.rabbitMQPort, in: 1...65_535, fallback: rabbitTLS ? 5671 : 5672)
        let rabbitUser = try reader.required(Variable.rabbitMQUser, expected: "text") { $0 }
        let rabbitPassword = try reader.required(Variable.rabbitMQPassword, expected: "text") { $0 }
        let virtualHost = try reader.required(Variable.rabbitMQVirtualHost, expected: "text") { $0 }
        let caFile = try reader.string(Variable.rabbitMQCAFile)
        let commandTimeout = try reader.integer(Variable.commandTimeoutSeconds, in: 1...300)
        commandSigningKeys = try Self.signingKeys(reader.string(Variable.commandSigningKey), jwtSecret: secret)
        mail = try MailSettings(
            reader: &reader, jwtSecret: algorithm.isAsymmetric ? nil : secret, keyEncryptionKey: keyEncryptionKey,
            baseURL: publicBaseURL ?? URL(string: "http://\(host.contains(":") ? "[\(host)]" : host):\(port)")
        )
        exitBeforeAcknowledging = try reader.flag(Variable.exitBeforeAcknowledging)
        // In the table's order, whatever the order of reading.
        let read = reader.effective
        effective = ConfigurationVariable.all.compactMap { variable in read.first { $0.variable == variable } }
            + read.filter { !ConfigurationVariable.all.contains($0.variable) }

        rabbitmq = nil
        if let rabbitMQHost {
            // Distributed mode: every instance must share the store and the keys.
            guard postgres != nil else {
                throw ConfigurationError("RABBITMQ_HOST is set, so POSTGRES_HOST must be too (workers and HTTP nodes share the database)")
            }
            guard secret != nil || algorithm.isAsymmetric else {
                throw ConfigurationError("RABBITMQ_HOST is set, so JWT_SECRET must be too (every instance must verify every token)")
            }
            guard commandSigningKeys != nil else {
                throw ConfigurationError(
                    "RABBITMQ_HOST is set, so COMMAND_SIGNING_KEY must be too (at least 32 bytes; workers apply only commands signed with it)"
                )
            }
            rabbitmq = AMQPConfiguration(
                host: rabbitMQHost, port: rabbitPort, username: rabbitUser, password: rabbitPassword, virtualHost: virtualHost,
                tls: rabbitTLS ? AMQPConfiguration.TLS(caFile: caFile) : nil, commandTimeout: .seconds(commandTimeout)
            )
        }
    }

    /// `JWT_KEY_ENCRYPTION_KEY`, `JWT_KEY_ROTATION_DAYS` and `JWT_KEY_CHECK_SECONDS` as the composition takes them: nil
    /// with an HMAC algorithm (a key given is still checked); required with ES256 or EdDSA
    /// unless the store is in memory, where a random key seals keys that end with the process.
    private static func keyPairs(
        algorithm: JWTAlgorithm, keyEncryptionKey secret: String?, rotationDays: Int, checkSeconds: Int, tokens: TokenConfiguration,
        inMemory: Bool
    ) throws -> KeyPairSigning? {
        let key: KeyEncryptionKey
        do {
            if let secret {
                key = try KeyEncryptionKey(secret, for: algorithm)
            } else if !algorithm.isAsymmetric {
                return nil
            } else if inMemory {
                key = .random()
            } else {
                throw ConfigurationError(
                    "JWT_KEY_ENCRYPTION_KEY is required with JWT_ALGORITHM=\(algorithm.rawValue) and a durable store "
                        + "(at least \(KeyEncryptionKey.minimumLength) bytes, the same on every instance)"
                )
            }
        } catch let error as TokenConfigurationError {
            // It names the variable and gives the length, never the key.
            throw ConfigurationError(error.description)
        }
        guard algorithm.isAsymmetric else { return nil }
        let interval = TimeInterval(rotationDays * 86_400)
        do {
            _ = try SigningKeyPolicy(algorithm: algorithm, tokenLifetime: tokens.lifetime, leeway: tokens.leeway, rotationInterval: interval)
        } catch {
            throw ConfigurationError("JWT_KEY_ROTATION_DAYS=\(rotationDays): \(error) (JWT_EXPIRE_MINUTES=\(Int(tokens.lifetime / 60)))")
        }
        return KeyPairSigning(keyEncryptionKey: key, rotationInterval: interval, checkInterval: .seconds(checkSeconds))
    }

    /// `PUBLIC_BASE_URL`: an absolute http(s) URL with a host, and no credentials, query or
    /// fragment; a trailing slash is dropped.
    static func baseURL(_ text: String) -> URL? {
        var text = text.trimmingCharacters(in: .whitespaces)
        while text.hasSuffix("/") { text.removeLast() }
        guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased(), scheme == "http" || scheme == "https",
              let host = components.host, !host.isEmpty, components.user == nil, components.password == nil, components.query == nil,
              components.fragment == nil, !text.contains(where: { $0.isWhitespace })
        else { return nil }
        return components.url
    }

    /// `COMMAND_SIGNING_KEY`: a comma-separated list during a rotation, the first signing and
    /// all verifying. Never echoes a key, nor a part of one.
    private static func signingKeys(_ list: String?, jwtSecret: String?) throws -> CommandSigningKeys? {
        guard let list else { return nil }
        let keys = list.split(separator: ",", omittingEmptySubsequences: false).map { Data($0.trimmingCharacters(in: .whitespaces).utf8) }
        if let jwtSecret, keys.contains(Data(jwtSecret.utf8)) {
            throw ConfigurationError("COMMAND_SIGNING_KEY must not be JWT_SECRET (one secret, one purpose)")
        }
        do {
            return try CommandSigningKeys(keys)
        } catch {
            throw ConfigurationError("COMMAND_SIGNING_KEY: \(error)")
        }
    }

    /// A fresh secret long enough for `algorithm` (embedded mode without `JWT_SECRET`).
    static func randomSecret(for algorithm: JWTAlgorithm) -> String {
        var secret = TokenConfiguration.randomSecret()
        while secret.utf8.count < TokenConfiguration.minimumSecretLength(for: algorithm) {
            secret += TokenConfiguration.randomSecret()
        }
        return secret
    }

    /// The effective configuration, one `NAME=value  # origin` a line, secrets redacted: what
    /// `DemoServer config` prints, and all an interpolation of the configuration ever shows.
    var description: String {
        effective.map(\.line).joined(separator: "\n")
    }
}
