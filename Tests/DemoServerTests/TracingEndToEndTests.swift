import Foundation
import IdentityTestSupport
import Testing

/// Traces across processes: an HTTP node and a worker export OTLP/HTTP to a real receiver
/// (Peers/otlp_receiver.py, decoding with the official `opentelemetry-proto`), and one
/// registration through the broker is one trace.
@Suite("DemoServer traces over OTLP", .serialized, .enabled(if: OTLPReceiver.isAvailable, OTLPReceiver.skipReason))
struct TracingEndToEndTests {

    /// One span as the receiver prints it.
    struct ReceivedSpan {
        let traceID: String
        let spanID: String
        let parentSpanID: String
        let name: String
        let kind: String
        let resource: [String: Any]
        let attributes: [String: Any]

        init?(_ line: Substring) {
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let traceID = object["trace_id"] as? String, let spanID = object["span_id"] as? String, let name = object["name"] as? String
            else { return nil }
            self.traceID = traceID
            self.spanID = spanID
            self.parentSpanID = object["parent_span_id"] as? String ?? ""
            self.name = name
            self.kind = object["kind"] as? String ?? ""
            self.resource = object["resource"] as? [String: Any] ?? [:]
            self.attributes = object["attributes"] as? [String: Any] ?? [:]
        }

        var instance: String? { resource["service.instance.id"] as? String }
        var role: String? { resource["identity.role"] as? String }
    }

    static func spans(_ receiver: ServerProcess) -> [ReceivedSpan] {
        receiver.log.split(separator: "\n").compactMap(ReceivedSpan.init)
    }

    @Test("one registration through the broker is one trace: the HTTP node's server span, its send span, the worker's process span (its child) and the worker's PostgreSQL span")
    func registrationIsOneTrace() async throws {
        let receiver = try ServerProcess(
            environment: [:], arguments: [OTLPReceiver.script], executable: URL(fileURLWithPath: try #require(OTLPReceiver.python))
        )
        defer { receiver.stop() }
        var receiverPort: Int?
        #expect(await receiver.waitFor {
            receiverPort = receiver.log.split(separator: "\n").first { $0.hasPrefix("LISTENING ") }.flatMap { Int($0.dropFirst(10)) }
            return receiverPort != nil
        }, "the receiver listens: \(receiver.log)")
        let port = try #require(receiverPort)

        let postgres = try await PrivatePostgres()
        defer { postgres.destroy() }
        let broker = try await TestRabbitMQ.virtualHost("identity-e2e-tracing")
        // A short batch delay so that spans arrive while the processes run; the JSON log lines
        // at debug carry the trace id.
        let env = try await migrated(postgres, broker, [
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:\(port)", "OTEL_BSP_SCHEDULE_DELAY": "100",
            "LOG_FORMAT": "json", "LOG_LEVEL": "debug",
        ])
        let cluster = DistributedTests()
        let worker = try await cluster.worker(env)
        defer { worker.stop() }
        let (node, base) = try await cluster.httpNode(env)
        defer { node.stop() }

        let registered = try await call("POST", "\(base)/users", json: #"{"email":"ada@example.com","password":"correct horse battery","name":"Ada"}"#)
        #expect(registered.status == 201, "a command through the broker and the worker")

        // The spans of the registration: the server span of POST /users, and in its trace the
        // worker's process span and the PostgreSQL insert.
        var trace: [ReceivedSpan] = []
        let complete = await receiver.waitFor(seconds: 60) {
            let all = Self.spans(receiver)
            guard let server = all.first(where: { $0.name == "/users" && $0.kind == "SPAN_KIND_SERVER" }) else { return false }
            trace = all.filter { $0.traceID == server.traceID }
            return trace.contains { $0.name == "process RegisterUser" } && trace.contains { $0.name == "PostgresUserStore.insert" }
        }
        #expect(complete, "the trace reaches the receiver: \(Self.spans(receiver).map { "\($0.name)@\($0.role ?? "?")" })")
        let server = try #require(trace.first { $0.name == "/users" })
        let hash = try #require(trace.first { $0.name == "password.hash" }, "the hash, on the HTTP node")
        let send = try #require(trace.first { $0.name == "send RegisterUser" }, "the bus's producer span")
        let process = try #require(trace.first { $0.name == "process RegisterUser" }, "the worker's consumer span")
        let insert = try #require(trace.first { $0.name == "PostgresUserStore.insert" }, "the store's span")

        #expect(server.parentSpanID.isEmpty, "the HTTP server span is the root")
        #expect(server.attributes["http.route"] as? String == "/users" && server.attributes["http.response.status_code"] as? Int == 201)
        #expect(hash.parentSpanID == server.spanID && send.parentSpanID == server.spanID)
        #expect(send.kind == "SPAN_KIND_PRODUCER" && process.kind == "SPAN_KIND_CONSUMER" && insert.kind == "SPAN_KIND_CLIENT")
        #expect(process.parentSpanID == send.spanID, "the worker's span is the child of the HTTP node's, across the broker")
        #expect(process.attributes["messaging.destination.name"] as? String == "identity.commands")
        #expect(try ancestors(of: insert, in: trace).contains(process.spanID), "the insert runs within the worker's command span")
        #expect(insert.attributes["db.system.name"] as? String == "postgresql")

        // Store spans live only within a trace: background polling (outbox relay, revocation
        // feed) starts no root trace of its own.
        let roots = Self.spans(receiver).filter { $0.parentSpanID.isEmpty }.map(\.name)
        #expect(Set(roots) == ["/users"] || roots.allSatisfy { $0.hasPrefix("/") }, "only HTTP requests start traces: \(roots)")

        // Two processes: the HTTP node's spans and the worker's have their own instance ids.
        for span in [server, hash, send] { #expect(span.role == "serve") }
        for span in [process, insert] { #expect(span.role == "worker") }
        let serveInstance = try #require(server.instance)
        let workerInstance = try #require(process.instance)
        #expect(serveInstance != workerInstance)
        #expect(send.instance == serveInstance && insert.instance == workerInstance)
        #expect(server.resource["service.name"] as? String == "identity" && process.resource["service.name"] as? String == "identity")
        #expect(server.resource["process.pid"] as? String != process.resource["process.pid"] as? String)

        // Logs carry the trace id: the node's JSON request line, the worker's applied command.
        let requestLine = try #require(
            jsonLines(node.log).first { $0["message"] as? String == "request" && ($0["metadata"] as? [String: Any])?["route"] as? String == "/users" },
            "the node logs the request at debug: \(node.log)"
        )
        let metadata = try #require(requestLine["metadata"] as? [String: Any])
        #expect(metadata["trace_id"] as? String == server.traceID)
        #expect(metadata["status"] as? String == "201" && metadata["method"] as? String == "POST")
        #expect(metadata["request_id"] as? String == registered.headers["x-request-id"] && metadata["duration_ms"] != nil)
        #expect(requestLine["level"] as? String == "debug" && requestLine["logger"] as? String == "identity")
        #expect(!node.log.contains("correct horse battery"), "no password in any log line")
        let applied = try #require(jsonLines(worker.log).first { $0["message"] as? String == "applied a command" }, "\(worker.log)")
        #expect((applied["metadata"] as? [String: Any])?["trace_id"] as? String == server.traceID)
    }

    /// The span ids above `span`, nearest first, within `trace`.
    func ancestors(of span: ReceivedSpan, in trace: [ReceivedSpan]) throws -> [String] {
        var ids: [String] = []
        var current = span
        while !current.parentSpanID.isEmpty, let parent = trace.first(where: { $0.spanID == current.parentSpanID }) {
            ids.append(parent.spanID)
            current = parent
            try #require(ids.count < 64, "no cycle")
        }
        return ids
    }

    func jsonLines(_ log: String) -> [[String: Any]] {
        log.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }
}

/// The OTLP receiver peer (Peers/otlp_receiver.py) and the Python that runs it
/// (`IDENTITY_TEST_OTLP_PYTHON`, a venv with a pinned `opentelemetry-proto` that scripts/test makes).
enum OTLPReceiver {
    static var python: String? { ProcessInfo.processInfo.environment["IDENTITY_TEST_OTLP_PYTHON"] }
    static var isAvailable: Bool { TestRabbitMQ.isAvailable && python != nil }
    static let skipReason: Comment =
        "IDENTITY_TEST_OTLP_PYTHON (a Python with opentelemetry-proto), IDENTITY_TEST_RABBITMQ_NODE or IDENTITY_TEST_POSTGRES_BIN is unset: run scripts/test"
    static var script: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Peers/otlp_receiver.py").path
    }
}
