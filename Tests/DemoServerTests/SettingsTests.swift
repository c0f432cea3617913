@testable import DemoServer
import Foundation
import Logging
import PostgresAdapter
import AMQPAdapter
import Testing

@Suite("Configuration")
struct SettingsTests {
    func settings(_ environment: [String: String], dotEnv: [String: String] = [:]) throws -> Settings {
        try Settings(from: ConfigurationSource(environment: environment, dotEnv: dotEnv))
    }

    @Test("defaults are the contract's")
    func defaults() throws {
        let settings = try settings([:])
        #expect(settings.host == "127.0.0.1" && settings.port == 8080)
        #expect(settings.jwtAlgorithm == "HS256" && settings.jwtExpireMinutes == 60 && settings.jwtSecret == nil)
        #expect(settings.loginMaxFailures == 5 && settings.loginFailureWindowSeconds == 900 && settings.loginMaxFailuresPerClient == 100)
        #expect(settings.argon2MemoryKiB == 19_456 && settings.argon2Iterations == 2 && settings.argon2Parallelism == 1)
        #expect(settings.hashQueueLimit == 128)
        #expect(settings.logLevel == .info)
    }

    @Test("the environment wins over .env, which wins over the defaults")
    func precedence() throws {
        let settings = try settings(["PORT": "9000"], dotEnv: ["PORT": "9100", "HOST": "0.0.0.0", "JWT_EXPIRE_MINUTES": "5"])
        #expect(settings.port == 9000)
        #expect(settings.host == "0.0.0.0")
        #expect(settings.jwtExpireMinutes == 5)
    }

    @Test("a bad value stops start-up with one line naming the variable", arguments: [
        ("PORT", "eighty"), ("PORT", "70000"), ("LOG_LEVEL", "loud"), ("JWT_ALGORITHM", "none"), ("JWT_ALGORITHM", "RS256"),
        ("JWT_EXPIRE_MINUTES", "0"), ("JWT_SECRET", "too-short"), ("LOGIN_MAX_FAILURES", "-1"),
        ("LOGIN_FAILURE_WINDOW_SECONDS", "1.5"), ("ARGON2_MEMORY_KIB", "4"), ("ARGON2_ITERATIONS", "0"),
        ("ARGON2_PARALLELISM", "x"), ("ARGON2_MEMORY_KIB", "4194304"), ("ARGON2_ITERATIONS", "101"), ("ARGON2_PARALLELISM", "17"),
        ("HASH_QUEUE_LIMIT", "0"), ("HASH_QUEUE_LIMIT", "many"), ("HASH_QUEUE_LIMIT", "-1"), ("POSTGRES_PORT", "0"), ("RABBITMQ_PORT", "port"),
        ("TRUSTED_PROXIES", "10.0.0.0/33"), ("TRUSTED_PROXIES", "proxy.local"), ("POSTGRES_POOL_SIZE", "0"), ("POSTGRES_TLS", "maybe"), ("POSTGRES_TIMEOUT_SECONDS", "0"),
        ("RABBITMQ_TLS", "maybe"), ("COMMAND_TIMEOUT_SECONDS", "0"), ("IDENTITY_TEST_EXIT_BEFORE_ACK", "sometimes"),
        ("COMMAND_SIGNING_KEY", "too-short"), ("COMMAND_SIGNING_KEY", String(repeating: "k", count: 32) + ",short"),
        ("COMMAND_SIGNING_KEY", String(repeating: "k", count: 32) + ","),
    ])
    func invalid(name: String, value: String) throws {
        #expect {
            try settings([name: value])
        } throws: { error in
            let line = "\(error)"
            return line.hasPrefix(name) && !line.contains("\n")
        }
    }

    @Test("HASH_QUEUE_LIMIT and the Argon2 costs at their caps are read")
    func hashingLimits() throws {
        let settings = try settings(["HASH_QUEUE_LIMIT": "16", "ARGON2_MEMORY_KIB": "1048576", "ARGON2_ITERATIONS": "4", "ARGON2_PARALLELISM": "16"])
        #expect(settings.hashQueueLimit == 16)
        #expect(settings.argon2MemoryKiB == 1_048_576 && settings.argon2Iterations == 4 && settings.argon2Parallelism == 16)
    }

    @Test("Argon2 costs whose work (memory × passes) exceeds the cap stop start-up with one line naming them")
    func argon2Work() {
        #expect {
            try settings(["ARGON2_MEMORY_KIB": "1048576", "ARGON2_ITERATIONS": "5"])
        } throws: { error in
            let line = "\(error)"
            return line.hasPrefix("ARGON2_MEMORY_KIB × ARGON2_ITERATIONS") && !line.contains("\n")
        }
    }

    @Test("the secret is never echoed in an error")
    func secretNotEchoed() {
        #expect {
            try settings(["JWT_SECRET": "tiny-secret-value"])
        } throws: { !"\($0)".contains("tiny-secret-value") }
        let long = String(repeating: "a-long-enough-command-key-", count: 2)
        for value in ["tiny-command-key", "\(long),tiny-command-key", "tiny-command-key,\(long)"] {
            #expect {
                try settings(["COMMAND_SIGNING_KEY": value])
            } throws: { !"\($0)".contains("tiny-command-key") && !"\($0)".contains(long) }
        }
    }

    @Test(".env lines: comments, export, quotes, inline comments; a bad line names its number")
    func dotEnv() throws {
        let parsed = try ConfigurationSource.parseDotEnv("""
            # comment

            export PORT=9001
            HOST = "0.0.0.0"
            JWT_ISSUER='issuer # not a comment'
            LOG_LEVEL=debug # trailing comment\r
            """)
        #expect(parsed == ["PORT": "9001", "HOST": "0.0.0.0", "JWT_ISSUER": "issuer # not a comment", "LOG_LEVEL": "debug"])
        #expect { try ConfigurationSource.parseDotEnv("PORT=1\nno equals sign") } throws: { "\($0)".contains("line 2") }
        #expect { try ConfigurationSource.parseDotEnv("BAD-NAME=1") } throws: { "\($0)".contains("line 1") }
        #expect { try ConfigurationSource.parseDotEnv("A=\"open") } throws: { "\($0)".contains("unterminated") }
    }

    @Test("POSTGRES_HOST selects PostgreSQL, with the other POSTGRES_* variables or their defaults")
    func postgres() throws {
        #expect(try settings([:]).postgres == nil)
        let defaults = try #require(try settings(["POSTGRES_HOST": "db"]).postgres)
        #expect(defaults == PostgresConfiguration(host: "db", port: 5432, username: "postgres", password: nil,
                                                      database: "identity", poolSize: 20, tls: .prefer))
        let given = try #require(try settings([
            "POSTGRES_HOST": "db", "POSTGRES_PORT": "6543", "POSTGRES_USER": "u", "POSTGRES_PASSWORD": "p",
            "POSTGRES_DB": "d", "POSTGRES_POOL_SIZE": "4", "POSTGRES_TLS": "REQUIRE",
        ]).postgres)
        #expect(given == PostgresConfiguration(host: "db", port: 6543, username: "u", password: "p", database: "d",
                                                   poolSize: 4, tls: .require))
        #expect(!given.summary.contains("p@") && given.summary == "db:6543/d", "the summary never shows the password")
    }

    @Test("an empty value counts as unset")
    func emptyIsUnset() throws {
        #expect(try settings(["PORT": ""], dotEnv: ["PORT": "9100"]).port == 9100)
        #expect(try settings(["JWT_SECRET": ""]).jwtSecret == nil)
    }

    @Test("RABBITMQ_HOST selects distributed mode, which needs POSTGRES_HOST and JWT_SECRET; TLS moves the default port")
    func rabbitmq() throws {
        let secret = ["JWT_SECRET": String(repeating: "s", count: 32)]
        #expect(try settings([:]).rabbitmq == nil)
        #expect { try settings(["RABBITMQ_HOST": "mq"].merging(secret) { $1 }) } throws: { "\($0)".hasPrefix("RABBITMQ_HOST") && "\($0)".contains("POSTGRES_HOST") }
        #expect { try settings(["RABBITMQ_HOST": "mq", "POSTGRES_HOST": "db"]) } throws: { "\($0)".contains("JWT_SECRET must be too") }
        #expect { try settings(["RABBITMQ_HOST": "mq", "POSTGRES_HOST": "db"].merging(secret) { $1 }) } throws: {
            "\($0)".hasPrefix("RABBITMQ_HOST is set, so COMMAND_SIGNING_KEY must be too")
        }
        let base = ["RABBITMQ_HOST": "mq", "POSTGRES_HOST": "db", "COMMAND_SIGNING_KEY": String(repeating: "c", count: 32)]
            .merging(secret) { $1 }
        let defaults = try #require(try settings(base).rabbitmq)
        #expect(defaults == AMQPConfiguration(host: "mq", port: 5672, username: "guest", password: "guest", virtualHost: "/",
                                         tls: nil, commandTimeout: .seconds(5)))
        let given = try #require(try settings(base.merging([
            "RABBITMQ_TLS": "1", "RABBITMQ_USER": "u", "RABBITMQ_PASSWORD": "hunter2", "RABBITMQ_VHOST": "v",
            "RABBITMQ_CA_FILE": "/ca.pem", "COMMAND_TIMEOUT_SECONDS": "9",
        ]) { $1 }).rabbitmq)
        #expect(given.port == 5671 && given.tls == AMQPConfiguration.TLS(caFile: "/ca.pem") && given.virtualHost == "v")
        #expect(given.commandTimeout == .seconds(9) && given.username == "u")
        #expect(given.summary == "amqps://u@mq:5671", "the summary never shows the password")
    }

    @Test("COMMAND_SIGNING_KEY: one key, or a comma-separated list whose first signs; never JWT_SECRET")
    func commandSigningKey() throws {
        #expect(try settings([:]).commandSigningKeys == nil)
        let one = try #require(try settings(["COMMAND_SIGNING_KEY": String(repeating: "c", count: 32)]).commandSigningKeys)
        #expect(one.keyIDs.count == 1)
        let new = String(repeating: "n", count: 40), old = String(repeating: "o", count: 32)
        let rotating = try #require(try settings(["COMMAND_SIGNING_KEY": "\(new) , \(old)"]).commandSigningKeys)
        #expect(rotating.keyIDs == [try CommandSigningKeys([Data(new.utf8)]).keyIDs[0], try CommandSigningKeys([Data(old.utf8)]).keyIDs[0]],
                "both keys, trimmed, the first signing")
        let secret = String(repeating: "s", count: 32)
        #expect { try settings(["JWT_SECRET": secret, "COMMAND_SIGNING_KEY": "\(new),\(secret)"]) } throws: {
            "\($0)" == "COMMAND_SIGNING_KEY must not be JWT_SECRET (one secret, one purpose)"
        }
    }
}
