import IdentityPorts
import Tracing

/// How a command's trace crosses the broker (Docs/observability.md): the bus injects the
/// context of its `send` span into the headers `traceparent` and `tracestate` (W3C Trace
/// Context, as the bootstrapped tracer writes them), and the worker extracts it as the parent
/// of its `process` span. With tracing off (the no-op tracer) nothing is written or read.
///
/// The headers are not covered by the command MAC: they change nothing the worker applies,
/// and leaving them out keeps the MAC's version 1 unchanged. A worker follows them only for a
/// message whose MAC verifies.
enum TraceHeaders {
    static let parent = "traceparent"
    static let state = "tracestate"

    /// The current context (the bus's span), as headers.
    static func current() -> [String: String] {
        var headers: [String: String] = [:]
        if let context = ServiceContext.current {
            InstrumentationSystem.instrument.inject(context, into: &headers, using: Writer())
        }
        return headers
    }

    /// The context `headers` carry, on a fresh top-level context.
    static func context(from headers: [String: String]) -> ServiceContext {
        var context = ServiceContext.topLevel
        if !headers.isEmpty {
            InstrumentationSystem.instrument.extract(headers, into: &context, using: Reader())
        }
        return context
    }

    /// The span attributes of a command message (OpenTelemetry's messaging conventions).
    static func describe(_ span: any Span, operation: String, command: String, messageID: String?) {
        span.attributes["messaging.system"] = "rabbitmq"
        span.attributes["messaging.destination.name"] = AMQPTopology.commandQueue
        span.attributes["messaging.operation.type"] = operation
        span.attributes["identity.command"] = command
        if let messageID { span.attributes["messaging.message.id"] = AMQPCommandWorker.loggable(messageID) }
    }

    /// A span name for a command `type` as received: the command's name when it is one we
    /// know, so that an untrusted property cannot make span names without bound.
    static func commandName(_ type: String?) -> String {
        guard let type, CommandWire.commandTypes.contains(type) else { return "command" }
        return type
    }

    private struct Writer: Injector {
        func inject(_ value: String, forKey key: String, into carrier: inout [String: String]) {
            carrier[key] = value
        }
    }

    private struct Reader: Extractor {
        func extract(key: String, from carrier: [String: String]) -> String? {
            carrier[key]
        }
    }
}
