@testable import AMQPAdapter
import Foundation
import IdentityPorts
import IdentityTestSupport
import Logging
import Testing

/// The RabbitMQ that scripts/test starts, found through environment variables; each test
/// gets a virtual host of its own, so that tests running side by side share no queue.
enum TestBroker {
    static let environment = ProcessInfo.processInfo.environment
    static let isAvailable = environment["IDENTITY_TEST_RABBITMQ_HOST"] != nil && environment["IDENTITY_TEST_RABBITMQ_NODE"] != nil
    static let skipReason: Comment = "IDENTITY_TEST_RABBITMQ_HOST/_NODE are unset: run scripts/test, which starts RabbitMQ"

    /// Settings for a fresh, empty virtual host `name`.
    static func settings(virtualHost name: String, commandTimeout: Duration = .seconds(5)) async throws -> AMQPConfiguration {
        let node = environment["IDENTITY_TEST_RABBITMQ_NODE"] ?? ""
        _ = try await rabbitmqctl(node, "delete_vhost", name)
        guard try await rabbitmqctl(node, "add_vhost", name) == 0,
              try await rabbitmqctl(node, "set_permissions", "-p", name, "guest", ".*", ".*", ".*") == 0
        else { throw SetUpFailed(description: "cannot create virtual host \(name)") }
        return AMQPConfiguration(
            host: environment["IDENTITY_TEST_RABBITMQ_HOST"] ?? "127.0.0.1",
            port: Int(environment["IDENTITY_TEST_RABBITMQ_PORT"] ?? "") ?? 5672,
            virtualHost: name, heartbeatSeconds: 5, commandTimeout: commandTimeout
        )
    }

    static func rabbitmqctl(_ node: String, _ arguments: String...) async throws -> Int32 {
        try await run(node, arguments, output: false).status
    }

    /// What `rabbitmqctl -q --no-table-headers` prints, trimmed.
    static func output(_ node: String, _ arguments: String...) async throws -> String {
        try await run(node, ["--no-table-headers"] + arguments, output: true).output
    }

    /// Runs rabbitmqctl to its end on a thread of its own (it takes seconds: an Erlang VM starts).
    /// Its output goes to a file rather than a pipe, which a child of another test could inherit
    /// and hold open.
    private static func run(_ node: String, _ arguments: [String], output: Bool) async throws -> (status: Int32, output: String) {
        try await onOwnThread {
            let file = FileManager.default.temporaryDirectory.appendingPathComponent("rabbitmqctl-\(UUID()).txt")
            guard FileManager.default.createFile(atPath: file.path, contents: nil) else { throw SetUpFailed(description: "cannot create \(file.path)") }
            defer { try? FileManager.default.removeItem(at: file) }
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["rabbitmqctl", "-q", "-n", node] + arguments
            let handle = try FileHandle(forWritingTo: file)
            process.standardOutput = output ? handle : FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            try handle.close()
            process.waitUntilExit()
            let text = (try? String(contentsOf: file, encoding: .utf8)) ?? ""
            return (process.terminationStatus, text.trimmingCharacters(in: .whitespacesAndNewlines))
        }
    }

    /// The command signing keys of the tests' identity processes (a test fixture, not a secret).
    static func keys() throws -> CommandSigningKeys {
        try CommandSigningKeys([Data("amqp-adapter-tests-command-key-0123456789".utf8)])
    }

    static let logger: Logger = {
        var logger = Logger(label: "amqp-test")
        logger.logLevel = .warning
        return logger
    }()

    struct SetUpFailed: Error, CustomStringConvertible {
        let description: String
    }
}
