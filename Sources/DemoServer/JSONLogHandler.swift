import Foundation
import Logging

/// `LOG_FORMAT`: how log lines are written to standard error.
enum LogFormat: String, CaseIterable, Sendable {
    /// swift-log's `StreamLogHandler` lines, for people (the default).
    case text
    /// One JSON object per line (`JSONLogHandler`), for log collectors.
    case json
}

/// Writes each log record as one JSON object on one line of standard error:
/// `{"timestamp":"2025-01-01T12:00:00.000Z","level":"info","logger":"identity","message":"…","metadata":{…}}`.
///
/// `metadata` merges, later winning, the handler's metadata, the metadata provider's (the
/// trace and span ids when tracing is on) and the record's own; it is left out when empty.
/// Values keep their shape: strings, arrays and objects. A record is written with one
/// `write(2)`, so lines from concurrent tasks do not interleave.
struct JSONLogHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]
    var metadataProvider: Logger.MetadataProvider?
    private let output: @Sendable (Data) -> Void

    init(label: String, level: Logger.Level, metadataProvider: Logger.MetadataProvider?, output: @escaping @Sendable (Data) -> Void = Self.standardError) {
        self.label = label
        self.logLevel = level
        self.metadataProvider = metadataProvider
        self.output = output
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { _, new in new } }
        if let own = event.metadata { merged.merge(own) { _, new in new } }
        var record: [String: Any] = [
            "timestamp": Self.timestamp(Date()), "level": event.level.rawValue, "logger": label, "message": event.message.description,
        ]
        if !merged.isEmpty { record["metadata"] = merged.mapValues(Self.json) }
        var line = (try? JSONSerialization.data(withJSONObject: record, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
        line.append(UInt8(ascii: "\n"))
        output(line)
    }

    /// A metadata value as JSON: a string, an array or an object.
    private static func json(_ value: Logger.Metadata.Value) -> Any {
        switch value {
        case .string(let text): text
        case .stringConvertible(let convertible): convertible.description
        case .array(let values): values.map(json)
        case .dictionary(let values): values.mapValues(json)
        }
    }

    /// RFC 3339 in UTC with milliseconds, as the rest of the API writes instants.
    static func timestamp(_ date: Date) -> String {
        date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true, timeZone: .gmt))
    }

    /// One `write(2)` of the whole line to standard error.
    static let standardError: @Sendable (Data) -> Void = { line in
        line.withUnsafeBytes { bytes in
            var offset = 0
            while offset < bytes.count {
                let written = write(STDERR_FILENO, bytes.baseAddress! + offset, bytes.count - offset)
                if written <= 0 { if errno == EINTR { continue } else { return } }
                offset += written
            }
        }
    }
}

/// `LOG_FORMAT=text`: swift-log's `StreamLogHandler` on standard error, line for line, except
/// that the handler's own metadata is kept as given and handed to the stream handler with each
/// line it logs. `StreamLogHandler` formats its whole metadata every time a key is set, and
/// Hummingbird sets one (the request id) on every request's logger, logged or not.
struct TextLogHandler: LogHandler {
    private var stream: StreamLogHandler
    var metadata: Logger.Metadata = [:]

    init(label: String, level: Logger.Level, metadataProvider: Logger.MetadataProvider?) {
        stream = StreamLogHandler.standardError(label: label, metadataProvider: metadataProvider)
        stream.logLevel = level
    }

    var logLevel: Logger.Level {
        get { stream.logLevel }
        set { stream.logLevel = newValue }
    }

    var metadataProvider: Logger.MetadataProvider? {
        get { stream.metadataProvider }
        set { stream.metadataProvider = newValue }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var event = event
        if !metadata.isEmpty { event.metadata = metadata.merging(event.metadata ?? [:]) { _, line in line } }
        stream.log(event: event)
    }
}
