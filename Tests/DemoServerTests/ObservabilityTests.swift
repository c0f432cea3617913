@testable import DemoServer
import Foundation
import Logging
import Synchronization
import Testing

/// LOG_FORMAT's JSON lines and the tracing switch, in process (the cross-process trace is
/// `TracingEndToEndTests`).
@Suite("Observability configuration")
struct ObservabilityTests {
    /// A JSON log handler whose lines land in memory.
    final class Lines: Sendable {
        private let lines = Mutex<[Data]>([])
        var all: [Data] { lines.withLock { $0 } }

        func handler(label: String = "identity", level: Logger.Level = .info, provider: Logger.MetadataProvider? = nil) -> JSONLogHandler {
            JSONLogHandler(label: label, level: level, metadataProvider: provider) { line in self.lines.withLock { $0.append(line) } }
        }
    }

    func object(_ line: Data) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: line) as? [String: Any])
    }

    @Test("LOG_FORMAT is text by default; json is accepted in any case")
    func logFormat() throws {
        #expect(try ServerConfiguration(from: ConfigurationValues(environment: [:], dotEnv: [:])).logFormat == .text)
        #expect(try ServerConfiguration(from: ConfigurationValues(environment: ["LOG_FORMAT": "JSON"], dotEnv: [:])).logFormat == .json)
    }

    @Test("a JSON log record is one line: timestamp, level, logger, message, and the merged metadata with its shapes")
    func jsonLine() throws {
        let lines = Lines()
        var logger = Logger(label: "identity") { label in
            lines.handler(label: label, provider: Logger.MetadataProvider { ["trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "route": "provider"] })
        }
        logger[metadataKey: "request_id"] = "r-1"
        logger.info("request \"quoted\"\nsecond", metadata: [
            "route": "/users/{user_id}", "status": .stringConvertible(201), "list": ["a", "b"], "nested": ["k": "v"],
        ])
        logger.debug("below the level")
        #expect(lines.all.count == 1, "one line per record at or above the level")
        let line = try #require(lines.all.first)
        #expect(line.last == UInt8(ascii: "\n") && line.dropLast().firstIndex(of: UInt8(ascii: "\n")) == nil, "one line, newline-terminated")
        let record = try object(line)
        #expect(record["level"] as? String == "info" && record["logger"] as? String == "identity")
        #expect(record["message"] as? String == "request \"quoted\"\nsecond")
        let timestamp = try #require(record["timestamp"] as? String)
        #expect(timestamp.hasSuffix("Z") && (try? Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(timestamp)) != nil, "\(timestamp)")
        let metadata = try #require(record["metadata"] as? [String: Any])
        #expect(metadata["request_id"] as? String == "r-1" && metadata["trace_id"] as? String == "4bf92f3577b34da6a3ce929d0e0e4736")
        #expect(metadata["route"] as? String == "/users/{user_id}", "the record's own metadata wins over the provider's")
        #expect(metadata["status"] as? String == "201" && metadata["list"] as? [String] == ["a", "b"])
        #expect((metadata["nested"] as? [String: Any])?["k"] as? String == "v")
        #expect(String(decoding: line, as: UTF8.self).contains(#""route":"/users/{user_id}""#), "slashes are not escaped")
    }

    @Test("a record without metadata has no metadata field")
    func noMetadata() throws {
        let lines = Lines()
        Logger(label: "identity.postgres") { lines.handler(label: $0) }.warning("plain")
        let record = try object(try #require(lines.all.first))
        #expect(record["metadata"] == nil && record["logger"] as? String == "identity.postgres" && record["level"] as? String == "warning")
    }

    @Test("tracing is off without an OTLP endpoint; the traces URL follows the OTLP exporter rules")
    func traceExport() throws {
        func export(_ environment: [String: String]) throws -> TraceExport? {
            try ServerConfiguration(from: ConfigurationValues(environment: environment, dotEnv: [:])).traceExport
        }
        #expect(try export([:]) == nil)
        #expect(try export(["OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"])?.url == "http://collector:4318/v1/traces")
        #expect(try export(["OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"])?.url == "http://collector:4318/v1/traces")
        #expect(try export([
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://traces.example.com/in",
        ])?.url == "https://traces.example.com/in", "the traces endpoint is used as given and wins")
        #expect(TraceExport.isDisabled(by: ["OTEL_SDK_DISABLED": "TRUE"]) && TraceExport.isDisabled(by: ["OTEL_TRACES_EXPORTER": "none"]))
        #expect(!TraceExport.isDisabled(by: ["OTEL_SDK_DISABLED": "false", "OTEL_TRACES_EXPORTER": "otlp"]))
    }

    @Test("an endpoint with credentials is refused without echoing them")
    func endpointCredentials() {
        #expect {
            try ServerConfiguration(from: ConfigurationValues(environment: ["OTEL_EXPORTER_OTLP_ENDPOINT": "https://user:s3cret@collector"], dotEnv: [:]))
        } throws: { error in
            "\(error)".hasPrefix("OTEL_EXPORTER_OTLP_ENDPOINT must be") && !"\(error)".contains("s3cret")
        }
    }
}
