import Foundation
import IdentityTestSupport
import Testing

/// The RabbitMQ that scripts/test starts (`IDENTITY_TEST_RABBITMQ_*`), with a fresh virtual
/// host per test, and RabbitMQ nodes of a test's own that it may stop and start.
enum TestRabbitMQ {
    static let environment = ProcessInfo.processInfo.environment
    static var isAvailable: Bool {
        environment["IDENTITY_TEST_RABBITMQ_NODE"] != nil && environment["IDENTITY_TEST_PYTHON"] != nil && PrivatePostgres.isAvailable
    }
    static let skipReason: Comment =
        "IDENTITY_TEST_RABBITMQ_NODE, IDENTITY_TEST_PYTHON or IDENTITY_TEST_POSTGRES_BIN is unset: run scripts/test"

    /// Creates the virtual host `name` afresh on the shared node; returns the demo server's `RABBITMQ_*`.
    static func virtualHost(_ name: String) async throws -> [String: String] {
        let node = environment["IDENTITY_TEST_RABBITMQ_NODE"] ?? ""
        _ = try await runShell("rabbitmqctl -q -n '\(node)' delete_vhost '\(name)' >/dev/null 2>&1")
        guard try await runShell("rabbitmqctl -q -n '\(node)' add_vhost '\(name)' >/dev/null 2>&1") == 0,
              try await runShell("rabbitmqctl -q -n '\(node)' set_permissions -p '\(name)' guest '.*' '.*' '.*' >/dev/null 2>&1") == 0
        else { throw PrivatePostgresError(description: "cannot create virtual host \(name)") }
        return ["RABBITMQ_HOST": environment["IDENTITY_TEST_RABBITMQ_HOST"] ?? "127.0.0.1",
                "RABBITMQ_PORT": environment["IDENTITY_TEST_RABBITMQ_PORT"] ?? "5672", "RABBITMQ_VHOST": name]
    }

    /// The AMQP URL of a broker for pika.
    static func url(_ broker: [String: String]) -> String {
        let vhost = (broker["RABBITMQ_VHOST"] ?? "/").addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "%2F"
        return "amqp://guest:guest@\(broker["RABBITMQ_HOST"] ?? "127.0.0.1"):\(broker["RABBITMQ_PORT"] ?? "5672")/\(vhost)"
    }

    static var peerScript: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Peers/amqp_peer.py").path
    }

    static var python: String { environment["IDENTITY_TEST_PYTHON"] ?? "/usr/bin/python3" }

    /// Starts the pika peer's consumer (Tests/DemoServerTests/Peers/amqp_peer.py): it prints one
    /// JSON line per event and exits after an event of type `last`.
    static func eventConsumer(_ broker: [String: String], last: String) throws -> ServerProcess {
        try ServerProcess(
            environment: [:], arguments: [peerScript, "consume", url(broker), "900", last],
            executable: URL(fileURLWithPath: python)
        )
    }

    /// The distributed demo servers' `COMMAND_SIGNING_KEY` (a test fixture, not a secret).
    static let commandKey = "distributed-tests-command-signing-key-0123456789"

    /// Runs a short pika peer command to completion; returns its exit status and output. With
    /// `signing`, the peer signs what it publishes with `commandKey`.
    static func peer(_ arguments: [String], signing: Bool = false) async throws -> (status: Int32, output: String) {
        let out = NSTemporaryDirectory() + "peer-\(UUID().uuidString).txt"
        defer { try? FileManager.default.removeItem(atPath: out) }
        let quoted = ([python, peerScript] + arguments).map { "'\($0)'" }.joined(separator: " ")
        let key = signing ? "IDENTITY_PEER_COMMAND_KEY='\(commandKey)' " : ""
        let status = try await runShell("\(key)timeout 60 \(quoted) > '\(out)' 2>&1")
        return (status, (try? String(contentsOfFile: out, encoding: .utf8)) ?? "")
    }

    /// How many messages `queue` holds, asked through pika.
    static func messageCount(_ broker: [String: String], queue: String) async throws -> Int? {
        Int(try await peer(["count", url(broker), queue]).output.trimmingCharacters(in: .whitespacesAndNewlines))
    }
}

/// A RabbitMQ node of the test's own, in a temporary directory on free ports.
final class PrivateRabbitMQ: Sendable {
    let port: Int
    let node: String
    let directory: String
    private let distributionPort: Int
    /// The `amqps://` port when started with TLS (certificates made by a CA of the test's own,
    /// for the name `localhost`; `caFile` is that CA).
    let tlsPort: Int?

    var caFile: String { "\(directory)/ca.pem" }

    init(tls: Bool = false) async throws {
        port = try freePort()
        distributionPort = try freePort()
        tlsPort = tls ? try freePort() : nil
        node = "identity-private-\(UUID().uuidString.prefix(8).lowercased())@localhost"
        let base = ProcessInfo.processInfo.environment["IDENTITY_TEST_WORKDIR"] ?? NSTemporaryDirectory()
        directory = (base as NSString).appendingPathComponent("private-rabbit-\(UUID().uuidString.prefix(8))")
        _ = try await runShell(
            "mkdir -p '\(directory)/mnesia' '\(directory)/log' && : > '\(directory)/plugins' && echo '\(node)' > '\(directory)/node'"
        )
        if let tlsPort {
            let d = directory
            let made = try await runShell("""
                cd '\(d)' && openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=identity-test-ca \
                    -keyout ca.key -out ca.pem >/dev/null 2>&1 \
                && openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout server.key -out server.csr >/dev/null 2>&1 \
                && printf 'subjectAltName=DNS:localhost\\n' > san.ext \
                && openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile san.ext \
                    -out server.pem >/dev/null 2>&1 \
                && printf 'listeners.ssl.default = 127.0.0.1:\(tlsPort)\\nssl_options.cacertfile = \(d)/ca.pem\\nssl_options.certfile = \(d)/server.pem\\nssl_options.keyfile = \(d)/server.key\\nssl_options.verify = verify_none\\nssl_options.fail_if_no_peer_cert = false\\n' > rabbitmq.conf \
                && chmod 644 server.key
                """)
            guard made == 0 else { throw PrivatePostgresError(description: "cannot make TLS certificates") }
        }
        _ = try await runShell("id rabbitmq >/dev/null 2>&1 && chown -R rabbitmq:rabbitmq '\(directory)'; true")
        try await start()
    }

    var environment: [String: String] { ["RABBITMQ_HOST": "127.0.0.1", "RABBITMQ_PORT": "\(port)"] }

    /// Starts the node and waits until it accepts connections.
    func start() async throws {
        let variables = "RABBITMQ_NODENAME='\(node)' RABBITMQ_NODE_PORT=\(port) RABBITMQ_NODE_IP_ADDRESS=127.0.0.1"
            + " RABBITMQ_DIST_PORT=\(distributionPort) RABBITMQ_MNESIA_BASE='\(directory)/mnesia'"
            + " RABBITMQ_LOG_BASE='\(directory)/log' RABBITMQ_ENABLED_PLUGINS_FILE='\(directory)/plugins'"
            + (tlsPort == nil ? "" : " RABBITMQ_CONFIG_FILE='\(directory)/rabbitmq.conf'")
        _ = try await runShell("\(variables) nohup rabbitmq-server >>'\(directory)/server.log' 2>&1 &")
        // await_startup fails at once until the node has registered: poll it.
        let node = node
        let started = try await eventually(within: 90) {
            try await runShell("timeout 20 rabbitmqctl -q -n '\(node)' await_startup >/dev/null 2>&1") == 0
        }
        guard started else { throw PrivatePostgresError(description: "private RabbitMQ did not start") }
    }

    func stop() async throws {
        _ = try await runShell(stopCommand)
    }

    private var stopCommand: String { "timeout 60 rabbitmqctl -q -n '\(node)' stop >/dev/null 2>&1" }

    /// Stops the node if it runs and deletes its files; blocks, for a `defer`.
    func destroy() {
        _ = try? runShellBlocking(stopCommand)
        try? FileManager.default.removeItem(atPath: directory)
    }
}
