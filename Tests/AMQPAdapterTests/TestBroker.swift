@testable import AMQPAdapter
import Foundation
import IdentityPorts
import Logging
import Testing

/// The RabbitMQ that scripts/test starts, found through environment variables; each test
/// gets a virtual host of its own, so that tests running side by side share no queue.
enum TestBroker {
    static let environment = ProcessInfo.processInfo.environment
    static let isAvailable = environment["IDENTITY_TEST_RABBITMQ_HOST"] != nil && environment["IDENTITY_TEST_RABBITMQ_NODE"] != nil
    static let skipReason: Comment = "IDENTITY_TEST_RABBITMQ_HOST/_NODE are unset: run scripts/test, which starts RabbitMQ"

    /// Settings for a fresh, empty virtual host `name`.
    static func settings(virtualHost name: String, commandTimeout: Duration = .seconds(5)) throws -> AMQPSettings {
        let node = environment["IDENTITY_TEST_RABBITMQ_NODE"] ?? ""
        _ = try rabbitmqctl(node, "delete_vhost", name)
        guard try rabbitmqctl(node, "add_vhost", name) == 0,
              try rabbitmqctl(node, "set_permissions", "-p", name, "guest", ".*", ".*", ".*") == 0
        else { throw SetUpFailed(description: "cannot create virtual host \(name)") }
        return AMQPSettings(
            host: environment["IDENTITY_TEST_RABBITMQ_HOST"] ?? "127.0.0.1",
            port: Int(environment["IDENTITY_TEST_RABBITMQ_PORT"] ?? "") ?? 5672,
            virtualHost: name, heartbeatSeconds: 5, commandTimeout: commandTimeout
        )
    }

    static func rabbitmqctl(_ node: String, _ arguments: String...) throws -> Int32 {
        try run(node, arguments, output: nil)
    }

    /// What `rabbitmqctl -q --no-table-headers` prints, trimmed.
    static func output(_ node: String, _ arguments: String...) throws -> String {
        let pipe = Pipe()
        _ = try run(node, ["--no-table-headers"] + arguments, output: pipe)
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    private static func run(_ node: String, _ arguments: [String], output: Pipe?) throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["rabbitmqctl", "-q", "-n", node] + arguments
        process.standardOutput = output ?? FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        return process.terminationStatus
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

/// Polls `condition` until it holds or `seconds` pass; returns whether it held.
func eventually(within seconds: Double = 20, _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + .seconds(seconds)
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return try await condition()
}
