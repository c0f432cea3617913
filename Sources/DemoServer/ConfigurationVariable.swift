import AMQPAdapter
import CryptoAdapter
import IdentityPorts
import Logging
import PostgresAdapter

/// One environment variable of contract §8: its name, its default, what it means, and whether
/// it is a secret. `ConfigurationVariable.all` is the one table of them: `ServerConfiguration`
/// reads through it, `DemoServer --help` lists it, and `DemoServer config` prints it, so the
/// three cannot drift apart.
struct ConfigurationVariable: Sendable, Hashable {
    /// The variable's name, as in the environment and `.env`.
    let name: String
    /// The value used when the variable is unset, written as it would be given; nil when the
    /// default is not a single value (see `defaultNote`) or there is none.
    let defaultValue: String?
    /// How `--help` states a default that is not a single value.
    let defaultNote: String?
    /// What it sets, for `--help`.
    let summary: String
    /// Whether the value is read as a secret: never logged, printed or put in an error.
    let isSecret: Bool

    private init(_ name: String, default defaultValue: String? = nil, note: String? = nil, secret: Bool = false, _ summary: String) {
        self.name = name
        self.defaultValue = defaultValue
        self.defaultNote = note
        self.summary = summary
        self.isSecret = secret
    }

    /// Whether a variable called `name` is a secret: one of the table's, or any name a secret
    /// is given by convention (`…_SECRET`, `…_KEY`, `…_PASSWORD`), so that a variable added
    /// later is redacted before anyone remembers to mark it.
    static func isSecret(name: String) -> Bool {
        secretSuffixes.contains { name.hasSuffix($0) } || all.contains { $0.name == name && $0.isSecret }
    }

    static let secretSuffixes = ["_SECRET", "_KEY", "_PASSWORD"]
}

// MARK: - The table

extension ConfigurationVariable {
    static let host = Self("HOST", default: "127.0.0.1", "address to listen on")
    static let port = Self("PORT", default: "8080", "port to listen on (0 picks a free one, logged at start-up)")
    static let logLevel = Self(
        "LOG_LEVEL", default: Logger.Level.info.rawValue,
        "\(Logger.Level.allCases.map(\.rawValue).joined(separator: ", ")); no per-request line at info"
    )
    static let logFormat = Self(
        "LOG_FORMAT", default: LogFormat.text.rawValue,
        "text (lines for people) or json (one JSON object per line: timestamp, level, logger, message, metadata)"
    )
    static let otlpEndpoint = Self(
        "OTEL_EXPORTER_OTLP_ENDPOINT", note: "none: no tracing",
        "OTLP/HTTP (protobuf) collector base URL, such as http://127.0.0.1:4318; traces go to its /v1/traces. "
            + "Set it (or the next) to export traces; the other OTEL_* variables are read as OpenTelemetry defines them"
    )
    static let otlpTracesEndpoint = Self(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", note: "none",
        "the full OTLP/HTTP URL traces are posted to; wins over OTEL_EXPORTER_OTLP_ENDPOINT"
    )

    static let jwtSecret = Self(
        "JWT_SECRET", note: "a random secret per start, with a warning", secret: true,
        "HMAC key, its UTF-8 bytes as given: at least 32 bytes (48 for HS384, 64 for HS512); "
            + "required with RABBITMQ_HOST and an HS* algorithm"
    )
    static let jwtAlgorithm = Self(
        "JWT_ALGORITHM", default: JWTAlgorithm.hs256.rawValue,
        "\(JWTAlgorithm.allCases.map(\.rawValue).joined(separator: ", ")); tokens with any other alg are refused. "
            + "HS* sign with JWT_SECRET; ES256 and EdDSA with key pairs the service keeps (JWT_KEY_ENCRYPTION_KEY)"
    )
    static let jwtKeyEncryptionKey = Self(
        "JWT_KEY_ENCRYPTION_KEY", note: "none; random in memory", secret: true,
        "seals the ES256/EdDSA signing keys at rest (AES-GCM): at least \(KeyEncryptionKey.minimumLength) bytes, "
            + "the same on every instance; required with ES256 or EdDSA outside the in-memory store"
    )
    static let jwtKeyRotationDays = Self(
        "JWT_KEY_ROTATION_DAYS", default: "30",
        "with ES256 or EdDSA: a new signing key every this many days (published 600 s before it signs)"
    )
    static let jwtKeyCheckSeconds = Self(
        "JWT_KEY_CHECK_SECONDS", default: "60",
        "with ES256 or EdDSA: how often each instance runs the rotation and reads the keys again (1-300 s; well inside the 600 s lead)"
    )
    static let publicBaseURL = Self(
        "PUBLIC_BASE_URL", note: "none: each request's Host",
        "absolute http(s) URL clients reach the service at, for the URLs of /.well-known/openid-configuration"
    )
    static let jwtExpireMinutes = Self("JWT_EXPIRE_MINUTES", default: "60", "token lifetime in minutes")
    static let jwtIssuer = Self("JWT_ISSUER", default: "identity", "iss written and required")
    static let jwtAudience = Self("JWT_AUDIENCE", default: "identity", "aud written and required")

    static let loginMaxFailures = Self(
        "LOGIN_MAX_FAILURES", default: String(LoginThrottleConfiguration().maxFailuresPerEmail),
        "failed logins per email within the window before 429"
    )
    static let loginFailureWindowSeconds = Self(
        "LOGIN_FAILURE_WINDOW_SECONDS", default: String(Int(LoginThrottleConfiguration().window)),
        "the sliding window of failed logins, in seconds"
    )
    static let loginMaxFailuresPerClient = Self(
        "LOGIN_MAX_FAILURES_PER_CLIENT", default: String(LoginThrottleConfiguration().maxFailuresPerClient),
        "failed logins per client address within the window before 429"
    )
    static let refreshIdleDays = Self(
        "REFRESH_IDLE_DAYS", default: String(Int(SessionConfiguration().idleLifetime / 86_400)),
        "a session ends this many days after its last refresh"
    )
    static let sessionMaxDays = Self(
        "SESSION_MAX_DAYS", default: String(Int(SessionConfiguration().absoluteLifetime / 86_400)),
        "a session ends this many days after its login, however often it is refreshed"
    )
    static let trustedProxies = Self(
        "TRUSTED_PROXIES", note: "none: the socket peer is the client",
        "proxies (IP addresses or CIDR blocks, comma-separated) whose X-Forwarded-For names the client"
    )

    static let argon2MemoryKiB = Self(
        "ARGON2_MEMORY_KIB", default: String(Argon2Configuration.recommended.memoryKiB),
        "Argon2id memory in KiB: at least 8 per lane, at most \(Argon2Configuration.maximumMemoryKiB); "
            + "memory × iterations at most \(Argon2Configuration.maximumWork)"
    )
    static let argon2Iterations = Self(
        "ARGON2_ITERATIONS", default: String(Argon2Configuration.recommended.iterations),
        "Argon2id passes, at most \(Argon2Configuration.maximumIterations)"
    )
    static let argon2Parallelism = Self(
        "ARGON2_PARALLELISM", default: String(Argon2Configuration.recommended.parallelism),
        "Argon2id lanes, at most \(Argon2Configuration.maximumParallelism)"
    )
    static let hashQueueLimit = Self(
        "HASH_QUEUE_LIMIT", default: String(Argon2idHasher.defaultQueueLimit),
        "hashes that may wait for a hashing thread; one more answers 503 at once"
    )

    private static let postgresDefaults = PostgresConfiguration(host: "")
    static let postgresHost = Self(
        "POSTGRES_HOST", note: "none: the embedded store", "set to keep everything in PostgreSQL"
    )
    static let postgresPort = Self("POSTGRES_PORT", default: String(postgresDefaults.port), "PostgreSQL port")
    static let postgresUser = Self("POSTGRES_USER", default: postgresDefaults.username, "PostgreSQL user")
    static let postgresPassword = Self("POSTGRES_PASSWORD", note: "none", secret: true, "PostgreSQL password")
    static let postgresDB = Self("POSTGRES_DB", default: postgresDefaults.database, "PostgreSQL database")
    static let postgresPoolSize = Self(
        "POSTGRES_POOL_SIZE", default: String(postgresDefaults.poolSize), "connections the pool keeps open"
    )
    static let postgresTLS = Self(
        "POSTGRES_TLS", default: postgresDefaults.tls.rawValue,
        PostgresConfiguration.TLSMode.allCases.map(\.rawValue).joined(separator: ", ")
    )
    static let postgresTimeoutSeconds = Self(
        "POSTGRES_TIMEOUT_SECONDS", default: "5", "deadline of each PostgreSQL operation (503 after it)"
    )
    static let sqlitePath = Self(
        "IDENTITY_SQLITE_PATH", default: "identity.sqlite",
        "without PostgreSQL: the embedded store's SQLite file, or :memory:"
    )

    private static let rabbitMQDefaults = AMQPConfiguration(host: "")
    static let rabbitMQHost = Self(
        "RABBITMQ_HOST", note: "none: commands run in process",
        "set for distributed mode (needs POSTGRES_HOST, COMMAND_SIGNING_KEY, and JWT_SECRET or JWT_KEY_ENCRYPTION_KEY)"
    )
    static let rabbitMQPort = Self(
        "RABBITMQ_PORT", note: "\(rabbitMQDefaults.port), or 5671 with RABBITMQ_TLS", "RabbitMQ port"
    )
    static let rabbitMQUser = Self("RABBITMQ_USER", default: rabbitMQDefaults.username, "RabbitMQ user")
    static let rabbitMQPassword = Self(
        "RABBITMQ_PASSWORD", default: rabbitMQDefaults.password, secret: true, "RabbitMQ password"
    )
    static let rabbitMQVirtualHost = Self("RABBITMQ_VHOST", default: rabbitMQDefaults.virtualHost, "RabbitMQ virtual host")
    static let rabbitMQTLS = Self("RABBITMQ_TLS", default: "0", "1 for amqps:// (certificate and host name verified)")
    static let rabbitMQCAFile = Self(
        "RABBITMQ_CA_FILE", note: "the system's", "PEM file of the certificate authorities to trust"
    )
    static let commandTimeoutSeconds = Self(
        "COMMAND_TIMEOUT_SECONDS", default: String(rabbitMQDefaults.commandTimeout.components.seconds),
        "how long an HTTP node waits for a worker's reply before 503"
    )
    static let commandSigningKey = Self(
        "COMMAND_SIGNING_KEY", note: "none; required with RABBITMQ_HOST", secret: true,
        "signs commands on the broker: at least \(CommandSigningKeys.minimumKeyBytes) bytes, not JWT_SECRET; "
            + "a comma-separated list while rotating (the first signs)"
    )

    static let smtpHost = Self(
        "SMTP_HOST", note: "none: mail is written to files in MAIL_DIR", "SMTP server for verification and reset mail"
    )
    static let smtpPort = Self("SMTP_PORT", default: "587", "SMTP port (465 is usual with SMTP_TLS=tls)")
    static let smtpUser = Self("SMTP_USER", note: "none: no AUTH", "SMTP user (AUTH PLAIN or LOGIN, only over TLS)")
    static let smtpPassword = Self("SMTP_PASSWORD", note: "none", secret: true, "SMTP password")
    static let smtpFrom = Self("SMTP_FROM", default: "identity@localhost", "the From address of every mail")
    static let smtpTLS = Self(
        "SMTP_TLS", default: "starttls", "starttls, tls (implicit, port 465) or none; certificates and host names are verified"
    )
    static let smtpCAFile = Self("SMTP_CA_FILE", note: "none: the system's", "PEM file of the CA certificates that SMTP servers are trusted under")
    static let smtpTimeoutSeconds = Self(
        "SMTP_TIMEOUT_SECONDS", default: "30", "the longest an SMTP server may take to connect or answer one step (1-600)"
    )
    static let mailDirectory = Self("MAIL_DIR", default: "./mail", "without SMTP_HOST: where each mail is written as an .eml file")
    static let mailMaxAttempts = Self(
        "MAIL_MAX_ATTEMPTS", default: "10", "delivery attempts of one mail before it is given up on (1-100)"
    )
    static let mailRetrySeconds = Self(
        "MAIL_RETRY_SECONDS", default: "30", "the wait after a failed delivery, doubled after each further failure up to an hour (1-3600)"
    )
    static let mailClaimSeconds = Self(
        "MAIL_CLAIM_SECONDS", default: "300",
        "how long a deliverer's claim keeps others off a mail; a crashed deliverer's mail goes out again after it (5-86400, above SMTP_TIMEOUT_SECONDS)"
    )
    static let mailTemplatesDirectory = Self(
        "MAIL_TEMPLATES_DIR", note: "none: the built-in templates",
        "templates that replace the built-in ones, file by file (KIND.subject|text|html.mustache; see Docs/mail.md)"
    )
    static let emailVerificationTTLHours = Self(
        "EMAIL_VERIFICATION_TTL_HOURS", default: "24", "how long an email-verification token works (1-720)"
    )
    static let passwordResetTTLMinutes = Self(
        "PASSWORD_RESET_TTL_MINUTES", default: "30", "how long a password-reset token works (1-1440)"
    )
    static let requireVerifiedEmail = Self(
        "REQUIRE_VERIFIED_EMAIL", default: "0", "1: a login with the right password for an unverified email is refused (403)"
    )

    static let exitBeforeAcknowledging = Self(
        "IDENTITY_TEST_EXIT_BEFORE_ACK", default: "0",
        "tests only: 1 makes a worker exit after a commit, before the ack"
    )

    /// Every variable, in the order `--help` and `DemoServer config` list them.
    static let all: [ConfigurationVariable] = [
        host, port, logLevel, logFormat, otlpEndpoint, otlpTracesEndpoint,
        jwtSecret, jwtAlgorithm, jwtKeyEncryptionKey, jwtKeyRotationDays, jwtKeyCheckSeconds, jwtExpireMinutes, jwtIssuer, jwtAudience, publicBaseURL,
        loginMaxFailures, loginFailureWindowSeconds, loginMaxFailuresPerClient, refreshIdleDays, sessionMaxDays, trustedProxies,
        argon2MemoryKiB, argon2Iterations, argon2Parallelism, hashQueueLimit,
        postgresHost, postgresPort, postgresUser, postgresPassword, postgresDB, postgresPoolSize, postgresTLS,
        postgresTimeoutSeconds, sqlitePath,
        rabbitMQHost, rabbitMQPort, rabbitMQUser, rabbitMQPassword, rabbitMQVirtualHost, rabbitMQTLS, rabbitMQCAFile,
        commandTimeoutSeconds, commandSigningKey,
        smtpHost, smtpPort, smtpUser, smtpPassword, smtpFrom, smtpTLS, smtpCAFile, smtpTimeoutSeconds, mailDirectory, mailMaxAttempts,
        mailRetrySeconds, mailClaimSeconds, mailTemplatesDirectory, emailVerificationTTLHours, passwordResetTTLMinutes, requireVerifiedEmail,
        exitBeforeAcknowledging,
    ]
}

// MARK: - Help

extension ConfigurationVariable {
    /// How `--help` states the default.
    var defaultDescription: String {
        if let defaultNote { return defaultNote }
        return defaultValue ?? "none"
    }

    /// The variables for `DemoServer --help`: a name and its default on one line, what it
    /// sets below, every line short enough that the help is not re-wrapped.
    static var helpText: String {
        var lines = wrap(
            "CONFIGURATION: environment variables, then a .env file in the working directory, then these defaults. "
                + "An empty value counts as unset. A bad value stops start-up with one line naming the variable "
                + "(exit 78). Secrets are never printed; `DemoServer config` shows the effective values.",
            width: 78
        )
        lines.append("")
        for variable in all {
            lines.append("  \(variable.name) (default: \(variable.defaultDescription))\(variable.isSecret ? " [secret]" : "")")
            lines += wrap(variable.summary, width: 72).map { "      " + $0 }
        }
        return lines.joined(separator: "\n")
    }

    private static func wrap(_ text: String, width: Int) -> [String] {
        var lines: [String] = []
        var line = ""
        for word in text.split(separator: " ") {
            if !line.isEmpty, line.count + 1 + word.count > width {
                lines.append(line)
                line = ""
            }
            line += line.isEmpty ? String(word) : " " + word
        }
        if !line.isEmpty { lines.append(line) }
        return lines
    }
}
