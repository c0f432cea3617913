@testable import DemoServer
import CryptoAdapter
import Foundation
import HTTPAdapter
import IdentityApplication
import IdentityComposition
import IdentityPorts
import Logging
import MailAdapter
import PostgresAdapter
import AMQPAdapter
import Testing

@Suite("Configuration")
struct ServerConfigurationTests {
    func configuration(_ environment: [String: String], dotEnv: [String: String] = [:]) throws -> ServerConfiguration {
        try ServerConfiguration(from: ConfigurationValues(environment: environment, dotEnv: dotEnv))
    }

    static let secret = String(repeating: "s", count: 32)

    /// A bad value for each variable that has a form to break (the free-text ones have none).
    static let badValues: [(name: String, value: String)] = [
        ("PORT", "eighty"), ("PORT", "70000"), ("LOG_LEVEL", "loud"), ("JWT_ALGORITHM", "none"), ("JWT_ALGORITHM", "RS256"),
        ("JWT_EXPIRE_MINUTES", "0"), ("JWT_SECRET", "too-short"), ("LOGIN_MAX_FAILURES", "-1"),
        ("LOGIN_FAILURE_WINDOW_SECONDS", "1.5"), ("LOGIN_MAX_FAILURES_PER_CLIENT", "0"), ("REFRESH_IDLE_DAYS", "0"),
        ("SESSION_MAX_DAYS", "forever"), ("SESSION_MAX_DAYS", "3651"), ("ARGON2_MEMORY_KIB", "4"),
        ("ARGON2_ITERATIONS", "0"), ("ARGON2_PARALLELISM", "x"), ("ARGON2_MEMORY_KIB", "4194304"), ("ARGON2_ITERATIONS", "101"),
        ("ARGON2_PARALLELISM", "17"), ("ARGON2_MEMORY_KIB", "-1"), ("HASH_QUEUE_LIMIT", "0"), ("HASH_QUEUE_LIMIT", "many"),
        ("HASH_QUEUE_LIMIT", "-1"), ("POSTGRES_PORT", "0"), ("RABBITMQ_PORT", "port"), ("TRUSTED_PROXIES", "10.0.0.0/33"),
        ("TRUSTED_PROXIES", "proxy.local"), ("POSTGRES_POOL_SIZE", "0"), ("POSTGRES_TLS", "maybe"),
        ("POSTGRES_TIMEOUT_SECONDS", "0"), ("RABBITMQ_TLS", "maybe"), ("COMMAND_TIMEOUT_SECONDS", "0"),
        ("IDENTITY_TEST_EXIT_BEFORE_ACK", "sometimes"), ("COMMAND_SIGNING_KEY", "too-short"),
        ("COMMAND_SIGNING_KEY", String(repeating: "k", count: 32) + ",short"), ("COMMAND_SIGNING_KEY", String(repeating: "k", count: 32) + ","),
        ("JWT_KEY_ENCRYPTION_KEY", "too-short-key"), ("JWT_KEY_ENCRYPTION_KEY", String(repeating: "k", count: 31)),
        ("JWT_KEY_ROTATION_DAYS", "0"), ("JWT_KEY_ROTATION_DAYS", "-30"), ("JWT_KEY_ROTATION_DAYS", "monthly"),
        ("JWT_KEY_ROTATION_DAYS", "3651"), ("JWT_KEY_CHECK_SECONDS", "0"), ("JWT_KEY_CHECK_SECONDS", "301"),
        ("JWT_KEY_CHECK_SECONDS", "1m"), ("PUBLIC_BASE_URL", "id.example.com"), ("PUBLIC_BASE_URL", "ftp://id.example.com"),
        ("PUBLIC_BASE_URL", "https://id.example.com/?next=1"), ("PUBLIC_BASE_URL", "https://id.example.com/#top"),
        ("PUBLIC_BASE_URL", "https://user:pw@id.example.com"), ("PUBLIC_BASE_URL", "https://"), ("PUBLIC_BASE_URL", "/relative"),
        ("SMTP_PORT", "0"), ("SMTP_PORT", "smtp"), ("SMTP_TLS", "ssl"), ("SMTP_FROM", "no-at-sign"), ("SMTP_FROM", "a@b\r\nBcc: c@d"),
        ("SMTP_FROM", "Ada <ada@example.com>"), ("SMTP_USER", "ada"), ("SMTP_TIMEOUT_SECONDS", "0"), ("SMTP_TIMEOUT_SECONDS", "601"),
        ("MAIL_MAX_ATTEMPTS", "0"), ("MAIL_MAX_ATTEMPTS", "101"), ("MAIL_RETRY_SECONDS", "0"), ("MAIL_RETRY_SECONDS", "3601"),
        ("MAIL_CLAIM_SECONDS", "4"), ("MAIL_CLAIM_SECONDS", "86401"), ("MAIL_CLAIM_SECONDS", "5m"), ("MAIL_CLAIM_SECONDS", "30"),
        ("EMAIL_VERIFICATION_TTL_HOURS", "0"), ("EMAIL_VERIFICATION_TTL_HOURS", "721"), ("PASSWORD_RESET_TTL_MINUTES", "0"),
        ("PASSWORD_RESET_TTL_MINUTES", "1441"), ("REQUIRE_VERIFIED_EMAIL", "sometimes"),
        ("LOG_FORMAT", "xml"), ("LOG_FORMAT", "logfmt"), ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "grpc://collector:4317"), ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://"),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "https://user:token@collector/v1/traces"),
    ]

    /// Variables whose every non-empty value is accepted: names, addresses, paths and passwords.
    static let freeText: Set = [
        "HOST", "JWT_ISSUER", "JWT_AUDIENCE", "POSTGRES_HOST", "POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB",
        "IDENTITY_SQLITE_PATH", "RABBITMQ_HOST", "RABBITMQ_USER", "RABBITMQ_PASSWORD", "RABBITMQ_VHOST", "RABBITMQ_CA_FILE",
        "SMTP_HOST", "SMTP_PASSWORD", "SMTP_CA_FILE", "MAIL_DIR", "MAIL_TEMPLATES_DIR",
    ]

    @Test("defaults are the contract's")
    func defaults() throws {
        let configuration = try configuration([:])
        #expect(configuration.host == "127.0.0.1" && configuration.port == 8080 && configuration.logLevel == .info)
        #expect(configuration.tokens.algorithm == .hs256 && configuration.tokens.lifetime == 3600)
        #expect(configuration.tokens.issuer == "identity" && configuration.tokens.audience == "identity")
        #expect(configuration.usesRandomJWTSecret && configuration.tokens.secret.count >= 32)
        #expect(configuration.throttle == LoginThrottleConfiguration(maxFailuresPerEmail: 5, maxFailuresPerClient: 100, window: 900))
        #expect(configuration.argon2.memoryKiB == 19_456 && configuration.argon2.iterations == 2 && configuration.argon2.parallelism == 1)
        #expect(configuration.hashQueueLimit == 128)
        #expect(configuration.postgres == nil && configuration.rabbitmq == nil && configuration.commandSigningKeys == nil)
        #expect(configuration.sqlitePath == "identity.sqlite" && configuration.postgresTimeout == .seconds(5))
        #expect(configuration.trustedProxies == .none && !configuration.exitBeforeAcknowledging)
        #expect(configuration.mail.smtp == nil && configuration.mail.directory == "./mail" && configuration.mail.from == "identity@localhost")
        #expect(configuration.mail.policy == AccountMailPolicy() && configuration.mail.delivery == MailDelivery.Policy())
        #expect(configuration.mail.baseURL.absoluteString == "http://127.0.0.1:8080")
    }

    @Test("SMTP settings are read; a password needs TLS; tokens are sealed under JWT_KEY_ENCRYPTION_KEY, else JWT_SECRET")
    func mail() throws {
        let secret = String(repeating: "s", count: 32)
        let smtp = try configuration([
            "SMTP_HOST": "mail.example.com", "SMTP_PORT": "465", "SMTP_TLS": "TLS", "SMTP_USER": "ada", "SMTP_PASSWORD": "pw",
            "MAIL_MAX_ATTEMPTS": "3", "MAIL_RETRY_SECONDS": "5", "MAIL_CLAIM_SECONDS": "60", "EMAIL_VERIFICATION_TTL_HOURS": "2", "PASSWORD_RESET_TTL_MINUTES": "10",
            "REQUIRE_VERIFIED_EMAIL": "1", "JWT_SECRET": secret, "PUBLIC_BASE_URL": "https://id.example.com/",
        ]).mail
        #expect(smtp.smtp?.host == "mail.example.com" && smtp.smtp?.port == 465 && smtp.smtp?.security == .tls && smtp.smtp?.username == "ada")
        #expect(smtp.delivery.maxAttempts == 3 && smtp.delivery.firstRetryDelay == 5 && smtp.delivery.lease == 60)
        #expect(smtp.policy == AccountMailPolicy(verificationTTL: 7200, resetTTL: 600, requireVerifiedEmail: true))
        #expect(smtp.sealingSecret == secret && smtp.baseURL.absoluteString == "https://id.example.com")
        #expect(try configuration(["JWT_SECRET": secret, "JWT_KEY_ENCRYPTION_KEY": String(repeating: "k", count: 32)]).mail.sealingSecret?.first == "k")
        #expect(throws: ConfigurationError.self) {
            try configuration(["SMTP_HOST": "mail.example.com", "SMTP_TLS": "none", "SMTP_USER": "ada", "SMTP_PASSWORD": "pw"])
        }
        let description = "\(try configuration(["SMTP_HOST": "mail.example.com", "SMTP_USER": "ada", "SMTP_PASSWORD": "hunter2-hunter2"]))"
        #expect(!description.contains("hunter2"), "the SMTP password is redacted")
    }

    @Test("the environment wins over .env, which wins over the defaults")
    func precedence() throws {
        let configuration = try configuration(["PORT": "9000"], dotEnv: ["PORT": "9100", "HOST": "0.0.0.0", "JWT_EXPIRE_MINUTES": "5"])
        #expect(configuration.port == 9000)
        #expect(configuration.host == "0.0.0.0")
        #expect(configuration.tokens.lifetime == 300)
    }

    @Test("a bad value stops start-up with one line naming the variable", arguments: badValues)
    func invalid(name: String, value: String) throws {
        #expect {
            try configuration([name: value])
        } throws: { error in
            let line = "\(error)"
            return error is ConfigurationError && line.hasPrefix(name) && !line.contains("\n")
        }
    }

    @Test("every variable of the table is free text or has a bad value tested")
    func everyVariableHasABadValue() {
        let tested = Set(Self.badValues.map(\.name)).union(Self.freeText)
        #expect(Set(ConfigurationVariable.all.map(\.name)) == tested)
    }

    @Test("HASH_QUEUE_LIMIT and the Argon2 costs at their caps are read")
    func hashingLimits() throws {
        let configuration = try configuration(["HASH_QUEUE_LIMIT": "16", "ARGON2_MEMORY_KIB": "1048576", "ARGON2_ITERATIONS": "4", "ARGON2_PARALLELISM": "16"])
        #expect(configuration.hashQueueLimit == 16)
        #expect(configuration.argon2 == (try Argon2Configuration(memoryKiB: 1_048_576, iterations: 4, parallelism: 16)))
    }

    @Test("Argon2 costs the library refuses together stop start-up with one line naming the variables given, and its reason")
    func argon2Work() {
        #expect {
            try configuration(["ARGON2_MEMORY_KIB": "1048576", "ARGON2_ITERATIONS": "5"])
        } throws: { error in
            "\(error)" == "ARGON2_MEMORY_KIB=1048576, ARGON2_ITERATIONS=5: invalid Argon2 parameters: memory × iterations must be at most 4194304 KiB (4 GiB-passes)"
        }
        #expect {
            try configuration(["ARGON2_MEMORY_KIB": "64", "ARGON2_PARALLELISM": "16"])
        } throws: { "\($0)".hasPrefix("ARGON2_MEMORY_KIB=64, ARGON2_PARALLELISM=16: invalid Argon2 parameters: memory must be at least 8 KiB per lane") }
    }

    @Test("JWT_ALGORITHM is a JWTAlgorithm, and the secret's minimum follows it")
    func algorithm() throws {
        #expect(try configuration(["JWT_ALGORITHM": "HS384", "JWT_SECRET": String(repeating: "s", count: 48)]).tokens.algorithm == .hs384)
        #expect {
            try configuration(["JWT_ALGORITHM": "HS512", "JWT_SECRET": Self.secret])
        } throws: { "\($0)" == "JWT_SECRET: the JWT secret must be at least 64 bytes for HS512 (got 32)" }
        #expect {
            try configuration(["JWT_ALGORITHM": "hs256"])
        } throws: { "\($0)" == "JWT_ALGORITHM must be one of HS256, HS384, HS512, ES256, EdDSA (got \"hs256\")" }
        let random = try configuration(["JWT_ALGORITHM": "HS512"])
        #expect(random.usesRandomJWTSecret && random.tokens.secret.count >= 64, "a random secret long enough for the algorithm")
    }

    static let kek = String(repeating: "key-encryption-", count: 3)

    @Test("ES256 and EdDSA sign with key pairs: a key-encryption key is required outside the in-memory store, random in it")
    func keyPairs() throws {
        for algorithm in ["ES256", "EdDSA"] {
            let sqlite = ["JWT_ALGORITHM": algorithm]
            #expect {
                _ = try configuration(sqlite)
            } throws: { error in
                "\(error)".hasPrefix("JWT_KEY_ENCRYPTION_KEY is required with JWT_ALGORITHM=\(algorithm)") && !"\(error)".contains("\n")
            }
            #expect(throws: ConfigurationError.self, "PostgreSQL too") { _ = try configuration(sqlite.merging(["POSTGRES_HOST": "db"]) { $1 }) }
            let inMemory = try configuration(["JWT_ALGORITHM": algorithm, "IDENTITY_SQLITE_PATH": ":memory:"])
            #expect(inMemory.tokens.algorithm.rawValue == algorithm && inMemory.tokens.signingKeys == nil)
            #expect(inMemory.keyPairs?.rotationInterval == TimeInterval(30 * 86_400))
            #expect(inMemory.keyPairs?.checkInterval == .seconds(60), "JWT_KEY_CHECK_SECONDS' default")
            #expect(!inMemory.usesRandomJWTSecret, "no JWT_SECRET is used, so none is made")
            let durable = try configuration([
                "JWT_ALGORITHM": algorithm, "JWT_KEY_ENCRYPTION_KEY": Self.kek, "JWT_KEY_ROTATION_DAYS": "7", "JWT_KEY_CHECK_SECONDS": "5",
            ])
            #expect(durable.keyPairs?.rotationInterval == TimeInterval(7 * 86_400))
            #expect(durable.keyPairs?.checkInterval == .seconds(5))
        }
        #expect(try configuration([:]).keyPairs == nil, "HS256: no key pairs")
    }

    @Test("a short or missing key-encryption key is never echoed; a rotation shorter than a token's life is refused naming both")
    func keyPairErrors() throws {
        let short = "short-key-encryption-secret"
        #expect {
            _ = try configuration(["JWT_ALGORITHM": "ES256", "JWT_KEY_ENCRYPTION_KEY": short])
        } throws: { error in
            "\(error)" == "JWT_KEY_ENCRYPTION_KEY must be at least 32 bytes (got \(short.utf8.count))"
        }
        #expect {
            _ = try configuration([
                "JWT_ALGORITHM": "EdDSA", "JWT_KEY_ENCRYPTION_KEY": Self.kek, "JWT_KEY_ROTATION_DAYS": "1", "JWT_EXPIRE_MINUTES": "1440",
            ])
        } throws: { error in
            "\(error)".hasPrefix("JWT_KEY_ROTATION_DAYS=1: ") && "\(error)".contains("JWT_EXPIRE_MINUTES=1440")
        }
        let distributed = try configuration([
            "JWT_ALGORITHM": "ES256", "JWT_KEY_ENCRYPTION_KEY": Self.kek, "POSTGRES_HOST": "db", "RABBITMQ_HOST": "mq",
            "COMMAND_SIGNING_KEY": String(repeating: "c", count: 32),
        ])
        #expect(distributed.rabbitmq != nil, "distributed mode needs no JWT_SECRET with key pairs")
        #expect(!distributed.description.contains(Self.kek) && distributed.description.contains("JWT_KEY_ENCRYPTION_KEY=<redacted>"))
    }

    @Test("PUBLIC_BASE_URL: an absolute http(s) URL, its trailing slash dropped")
    func publicBaseURL() throws {
        #expect(try configuration([:]).publicBaseURL == nil)
        #expect(try configuration(["PUBLIC_BASE_URL": "https://id.example.com/"]).publicBaseURL?.absoluteString == "https://id.example.com")
        #expect(try configuration(["PUBLIC_BASE_URL": "http://127.0.0.1:8080/identity"]).publicBaseURL?.absoluteString
            == "http://127.0.0.1:8080/identity")
    }

    @Test("the JWT_* variables make the token configuration")
    func tokens() throws {
        let configuration = try configuration([
            "JWT_SECRET": Self.secret, "JWT_ISSUER": "issuer", "JWT_AUDIENCE": "audience", "JWT_EXPIRE_MINUTES": "15",
        ])
        #expect(!configuration.usesRandomJWTSecret && configuration.tokens.secret == Array(Self.secret.utf8))
        #expect(configuration.tokens.issuer == "issuer" && configuration.tokens.audience == "audience" && configuration.tokens.lifetime == 900)
    }

    @Test("a secret is never echoed in an error")
    func secretNotEchoed() {
        #expect {
            try configuration(["JWT_SECRET": "tiny-secret-value"])
        } throws: { !"\($0)".contains("tiny-secret-value") }
        let long = String(repeating: "a-long-enough-command-key-", count: 2)
        for value in ["tiny-command-key", "\(long),tiny-command-key", "tiny-command-key,\(long)"] {
            #expect {
                try configuration(["COMMAND_SIGNING_KEY": value])
            } throws: { !"\($0)".contains("tiny-command-key") && !"\($0)".contains(long) }
        }
    }

    @Test("every variable named like a secret is marked secret, and so is any other such name")
    func secretsMarked() {
        for variable in ConfigurationVariable.all where ConfigurationVariable.secretSuffixes.contains(where: { variable.name.hasSuffix($0) }) {
            #expect(variable.isSecret, "\(variable.name)")
        }
        #expect(Set(ConfigurationVariable.all.filter(\.isSecret).map(\.name))
                == ["JWT_SECRET", "JWT_KEY_ENCRYPTION_KEY", "POSTGRES_PASSWORD", "RABBITMQ_PASSWORD", "COMMAND_SIGNING_KEY", "SMTP_PASSWORD"])
        #expect(ConfigurationVariable.isSecret(name: "SMTP_PASSWORD") && ConfigurationVariable.isSecret(name: "JWT_KEY_ENCRYPTION_KEY"))
        #expect(!ConfigurationVariable.isSecret(name: "PORT") && !ConfigurationVariable.isSecret(name: "POSTGRES_USER"))
    }

    @Test("swift-configuration's providers print secrets as <REDACTED>, from the environment and from .env")
    func providersRedact() {
        let values = ConfigurationValues(
            environment: ["JWT_SECRET": "environment-jwt-secret", "PORT": "9000"],
            dotEnv: ["POSTGRES_PASSWORD": "dotenv-password", "SMTP_PASSWORD": "future-password", "HOST": "0.0.0.0"]
        )
        let printed = String(reflecting: values)
        #expect(printed.contains("JWT_SECRET=<REDACTED>") && printed.contains("POSTGRES_PASSWORD=<REDACTED>"))
        #expect(printed.contains("SMTP_PASSWORD=<REDACTED>") && printed.contains("PORT=9000") && printed.contains("HOST=0.0.0.0"))
        for secret in ["environment-jwt-secret", "dotenv-password", "future-password"] {
            #expect(!printed.contains(secret))
        }
    }

    @Test(".env lines: comments, export, quotes, inline comments; a bad line names its number")
    func dotEnv() throws {
        let parsed = try DotEnvFile.parse("""
            # comment

            export PORT=9001
            HOST = "0.0.0.0"
            JWT_ISSUER='issuer # not a comment'
            JWT_AUDIENCE="a=b"
            LOG_LEVEL=debug # trailing comment\r
            """)
        #expect(parsed == ["PORT": "9001", "HOST": "0.0.0.0", "JWT_ISSUER": "issuer # not a comment", "JWT_AUDIENCE": "a=b", "LOG_LEVEL": "debug"])
        #expect { try DotEnvFile.parse("PORT=1\nno equals sign") } throws: { "\($0)" == ".env line 2: expected KEY=value" }
        #expect { try DotEnvFile.parse("BAD-NAME=1") } throws: { "\($0)".contains("line 1") }
        #expect { try DotEnvFile.parse("JWT_SECRET=\"open-secret") } throws: { "\($0)".contains("unterminated") && !"\($0)".contains("open-secret") }
    }

    @Test("a .env file is optional, and read through the same reader as the environment")
    func dotEnvFile() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("identity-\(UUID()).env").path
        #expect(try DotEnvFile.load(path: path) == [:], "no file, no values")
        try Data("export PORT=9002\nJWT_SECRET='\(Self.secret)'\nHOST=\n".utf8).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let configuration = try configuration(["HOST": "10.0.0.1"], dotEnv: try DotEnvFile.load(path: path))
        #expect(configuration.port == 9002 && configuration.host == "10.0.0.1")
        #expect(configuration.tokens.secret == Array(Self.secret.utf8), "the quotes are not part of the secret")
    }

    @Test("POSTGRES_HOST selects PostgreSQL, with the other POSTGRES_* variables or their defaults")
    func postgres() throws {
        #expect(try configuration([:]).postgres == nil)
        let defaults = try #require(try configuration(["POSTGRES_HOST": "db"]).postgres)
        #expect(defaults == PostgresConfiguration(host: "db", port: 5432, username: "postgres", password: nil,
                                                  database: "identity", poolSize: 20, tls: .prefer))
        let given = try configuration([
            "POSTGRES_HOST": "db", "POSTGRES_PORT": "6543", "POSTGRES_USER": "u", "POSTGRES_PASSWORD": "p",
            "POSTGRES_DB": "d", "POSTGRES_POOL_SIZE": "4", "POSTGRES_TLS": "REQUIRE", "POSTGRES_TIMEOUT_SECONDS": "2",
        ])
        let postgres = try #require(given.postgres)
        #expect(postgres == PostgresConfiguration(host: "db", port: 6543, username: "u", password: "p", database: "d",
                                                  poolSize: 4, tls: .require))
        #expect(given.postgresTimeout == .seconds(2))
        #expect(!postgres.summary.contains("p@") && postgres.summary == "db:6543/d", "the summary never shows the password")
    }

    @Test("an empty value counts as unset")
    func emptyIsUnset() throws {
        #expect(try configuration(["PORT": ""], dotEnv: ["PORT": "9100"]).port == 9100)
        #expect(try configuration(["JWT_SECRET": ""]).usesRandomJWTSecret)
        #expect(try configuration([:], dotEnv: ["PORT": ""]).port == 8080)
    }

    @Test("RABBITMQ_HOST selects distributed mode, which needs POSTGRES_HOST and JWT_SECRET; TLS moves the default port")
    func rabbitmq() throws {
        let secret = ["JWT_SECRET": Self.secret]
        #expect(try configuration([:]).rabbitmq == nil)
        #expect { try configuration(["RABBITMQ_HOST": "mq"].merging(secret) { $1 }) } throws: { "\($0)".hasPrefix("RABBITMQ_HOST") && "\($0)".contains("POSTGRES_HOST") }
        #expect { try configuration(["RABBITMQ_HOST": "mq", "POSTGRES_HOST": "db"]) } throws: { "\($0)".contains("JWT_SECRET must be too") }
        #expect { try configuration(["RABBITMQ_HOST": "mq", "POSTGRES_HOST": "db"].merging(secret) { $1 }) } throws: {
            "\($0)".hasPrefix("RABBITMQ_HOST is set, so COMMAND_SIGNING_KEY must be too")
        }
        let base = ["RABBITMQ_HOST": "mq", "POSTGRES_HOST": "db", "COMMAND_SIGNING_KEY": String(repeating: "c", count: 32)]
            .merging(secret) { $1 }
        let defaults = try #require(try configuration(base).rabbitmq)
        #expect(defaults == AMQPConfiguration(host: "mq", port: 5672, username: "guest", password: "guest", virtualHost: "/",
                                              tls: nil, commandTimeout: .seconds(5)))
        let given = try #require(try configuration(base.merging([
            "RABBITMQ_TLS": "1", "RABBITMQ_USER": "u", "RABBITMQ_PASSWORD": "hunter2", "RABBITMQ_VHOST": "v",
            "RABBITMQ_CA_FILE": "/ca.pem", "COMMAND_TIMEOUT_SECONDS": "9",
        ]) { $1 }).rabbitmq)
        #expect(given.port == 5671 && given.tls == AMQPConfiguration.TLS(caFile: "/ca.pem") && given.virtualHost == "v")
        #expect(given.commandTimeout == .seconds(9) && given.username == "u" && given.password == "hunter2")
        #expect(given.summary == "amqps://u@mq:5671", "the summary never shows the password")
    }

    @Test("COMMAND_SIGNING_KEY: one key, or a comma-separated list whose first signs; never JWT_SECRET")
    func commandSigningKey() throws {
        #expect(try configuration([:]).commandSigningKeys == nil)
        let one = try #require(try configuration(["COMMAND_SIGNING_KEY": String(repeating: "c", count: 32)]).commandSigningKeys)
        #expect(one.keyIDs.count == 1)
        let new = String(repeating: "n", count: 40), old = String(repeating: "o", count: 32)
        let rotating = try #require(try configuration(["COMMAND_SIGNING_KEY": "\(new) , \(old)"]).commandSigningKeys)
        #expect(rotating.keyIDs == [try CommandSigningKeys([Data(new.utf8)]).keyIDs[0], try CommandSigningKeys([Data(old.utf8)]).keyIDs[0]],
                "both keys, trimmed, the first signing")
        #expect { try configuration(["JWT_SECRET": Self.secret, "COMMAND_SIGNING_KEY": "\(new),\(Self.secret)"]) } throws: {
            "\($0)" == "COMMAND_SIGNING_KEY must not be JWT_SECRET (one secret, one purpose)"
        }
    }

    @Test("the effective configuration: every variable once, in the table's order, with its origin; secrets redacted")
    func effective() throws {
        let configuration = try configuration(
            ["PORT": "9000", "JWT_SECRET": "a-jwt-secret-of-more-than-32-bytes!", "RABBITMQ_TLS": "1"],
            dotEnv: ["PORT": "9100", "HOST": "0.0.0.0", "POSTGRES_PASSWORD": "a-database-password"]
        )
        let lines = configuration.description.split(separator: "\n").map(String.init)
        #expect(lines.map { String($0.prefix { $0 != "=" }) } == ConfigurationVariable.all.map(\.name))
        for expected in [
            "PORT=9000  # env", "HOST=0.0.0.0  # .env", "LOG_LEVEL=info  # default", "JWT_SECRET=<redacted>  # env",
            "POSTGRES_PASSWORD=<redacted>  # .env", "COMMAND_SIGNING_KEY=<unset>  # unset", "POSTGRES_HOST=  # unset",
            "RABBITMQ_PORT=5671  # default", "RABBITMQ_PASSWORD=<redacted>  # default", "RABBITMQ_TLS=1  # env",
        ] {
            #expect(lines.contains(expected), "\(expected)\n--- in ---\n\(configuration.description)")
        }
        #expect(!configuration.description.contains("a-jwt-secret") && !configuration.description.contains("a-database-password"))
        #expect("\(configuration)" == configuration.description, "an interpolation shows no more than that")
    }

    @Test("--help lists every variable of the table with its default")
    func helpText() {
        let help = ConfigurationVariable.helpText
        for variable in ConfigurationVariable.all {
            #expect(help.contains("  \(variable.name) (default: \(variable.defaultDescription))"), "\(variable.name)")
        }
        #expect(help.split(separator: "\n").allSatisfy { $0.count <= 80 }, "no line is re-wrapped by the help printer")
    }

    @Test("README's configuration table names every variable of the table")
    func readme() throws {
        let readme = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("README.md")
        let text = try String(contentsOf: readme, encoding: .utf8)
        let section = try #require(text.components(separatedBy: "## Configuration").dropFirst().first?.components(separatedBy: "\n## ").first)
        for variable in ConfigurationVariable.all {
            #expect(section.contains("`\(variable.name)`"), "\(variable.name) is missing from README.md's configuration table")
        }
    }
}
