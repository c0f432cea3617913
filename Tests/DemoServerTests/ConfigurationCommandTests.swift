@testable import DemoServer
import Foundation
import IdentityTestSupport
import Testing

/// Configuration as the built binary shows it: `--help`, `DemoServer config`, the line and exit
/// code of a bad value, and secrets kept out of every output.
@Suite("DemoServer configuration commands")
struct ConfigurationCommandTests {
    static let jwtSecret = "binary-test-jwt-secret-0123456789abcdef"
    static let databasePassword = "binary-test-database-password"
    static let signingKey = "binary-test-command-signing-key-0123456789"

    /// Runs the binary to completion in `directory` (a fresh one when nil).
    func run(_ arguments: [String], _ environment: [String: String], in directory: URL? = nil) async throws -> (status: Int32, output: String) {
        let process = try ServerProcess(environment: environment, arguments: arguments, directory: directory)
        defer { process.stop() }
        #expect(await process.waitForExit())
        process.process.waitUntilExit()
        return (process.process.terminationStatus, process.log)
    }

    @Test("--help lists every variable of the table with its default, and exits 0")
    func help() async throws {
        let (status, output) = try await run(["--help"], [:])
        #expect(status == 0)
        // Whatever the help printer wraps, the words stay in order.
        let words = output.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        for variable in ConfigurationVariable.all {
            #expect(words.contains("\(variable.name) (default: \(variable.defaultDescription))"), "\(variable.name)\n--- in ---\n\(output)")
        }
        #expect(words.contains("HASH_QUEUE_LIMIT (default: 128)") && words.contains("RABBITMQ_PORT (default: 5672, or 5671 with RABBITMQ_TLS)"))
        #expect(words.contains("config"), "and the config command")
    }

    @Test("`config` prints the effective configuration: the environment over ./.env over the defaults, secrets redacted, exit 0")
    func config() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("identity-config-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let dotEnv = """
            # the .env of a deployment
            export PORT=9100
            HOST="0.0.0.0"
            POSTGRES_PASSWORD='\(Self.databasePassword)'
            LOG_LEVEL=debug # inline comment
            """
        try Data(dotEnv.utf8).write(to: directory.appendingPathComponent(".env"))
        let (status, output) = try await run(["config"], ["PORT": "9000", "JWT_SECRET": Self.jwtSecret], in: directory)
        #expect(status == 0, "\(output)")
        let lines = output.split(separator: "\n").map(String.init)
        #expect(lines.count == ConfigurationVariable.all.count, "one line a variable: \(output)")
        for expected in [
            "PORT=9000  # env", "HOST=0.0.0.0  # .env", "LOG_LEVEL=debug  # .env", "JWT_SECRET=<redacted>  # env",
            "POSTGRES_PASSWORD=<redacted>  # .env", "JWT_ALGORITHM=HS256  # default", "COMMAND_SIGNING_KEY=<unset>  # unset",
        ] {
            #expect(lines.contains(expected), "\(expected)\n--- in ---\n\(output)")
        }
        #expect(!output.contains(Self.jwtSecret) && !output.contains(Self.databasePassword))
    }

    @Test("a bad value stops `config` as it stops `serve`: one line naming the variable, exit 78", arguments: ServerConfigurationTests.badValues)
    func badValue(name: String, value: String) async throws {
        let (status, output) = try await run(["config"], [name: value])
        #expect(status == 78)
        let lines = output.split(separator: "\n")
        #expect(lines.count == 1 && lines.first?.hasPrefix("invalid configuration: \(name)") == true, "\(output)")
        if ConfigurationVariable.isSecret(name: name) {
            #expect(!output.contains(value), "a secret is never echoed")
        }
    }

    @Test("a bad .env line stops start-up with one line naming its number, exit 78")
    func badDotEnv() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("identity-config-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try Data("PORT=9000\nJWT_SECRET=\"\(Self.jwtSecret)\n".utf8).write(to: directory.appendingPathComponent(".env"))
        let (status, output) = try await run(["serve"], [:], in: directory)
        #expect(status == 78)
        #expect(output == "invalid configuration: .env line 2: unterminated quote in JWT_SECRET\n")
    }

    @Test("swift-configuration's access log (CONFIG_ACCESS_LOG_FILE) records every read, secrets redacted")
    func accessLog() async throws {
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("identity-access-\(UUID()).log")
        defer { try? FileManager.default.removeItem(at: log) }
        let (status, output) = try await run(["config"], [
            "CONFIG_ACCESS_LOG_FILE": log.path, "JWT_SECRET": Self.jwtSecret, "COMMAND_SIGNING_KEY": Self.signingKey,
            "RABBITMQ_PASSWORD": Self.databasePassword, "PORT": "9000",
        ])
        #expect(status == 0, "\(output)")
        let text = try String(contentsOf: log, encoding: .utf8)
        #expect(text.contains("JWT_SECRET") && text.contains("COMMAND_SIGNING_KEY") && text.contains("9000"), "\(text)")
        for secret in [Self.jwtSecret, Self.signingKey, Self.databasePassword] {
            #expect(!text.contains(secret), "\(text)")
        }
    }

    @Test("at LOG_LEVEL=trace no configured secret reaches the log (nor a user's password)")
    func traceLog() async throws {
        let environment = EndToEndTests.environment.merging([
            "LOG_LEVEL": "trace", "JWT_SECRET": Self.jwtSecret, "POSTGRES_PASSWORD": Self.databasePassword,
            "COMMAND_SIGNING_KEY": Self.signingKey, "RABBITMQ_PASSWORD": "binary-test-broker-password",
        ]) { $1 }
        let server = try ServerProcess(environment: environment)
        defer { server.stop() }
        let port = try #require(await server.port(), "\(server.log)")
        let base = "http://127.0.0.1:\(port)"
        let password = "trace-test-user-password"
        #expect(try await call("POST", "\(base)/users", json: #"{"email":"trace@example.com","password":"\#(password)","name":"T"}"#).status == 201)
        let login = try await call("POST", "\(base)/auth/login", json: #"{"email":"trace@example.com","password":"\#(password)"}"#)
        let token = try #require(login.json["access_token"] as? String)
        #expect(try await call("GET", "\(base)/users/me", token: token).status == 200)
        // Refused requests are logged (at debug), each with its request id.
        #expect(try await call("POST", "\(base)/auth/login", json: #"{"email":"trace@example.com","password":"a-wrong-guess"}"#).status == 401)
        #expect(try await call("GET", "\(base)/users/me", token: token + "x").status == 401)
        let log = server.log  // before `stop`, which deletes it
        #expect(log.contains("request_id") && log.contains("trace identity"), "trace logging is on and names requests: \(log)")
        for secret in [Self.jwtSecret, Self.databasePassword, Self.signingKey, "binary-test-broker-password", password, "a-wrong-guess"] {
            #expect(!log.contains(secret), "\(secret) in\n\(log)")
        }
    }
}
