import Foundation
import Logging
import OTel
import ServiceLifecycle
import Tracing

/// Where the demo server exports traces: OTLP over HTTP with protobuf, through swift-otel
/// (Docs/observability.md). Made only when `OTEL_EXPORTER_OTLP_ENDPOINT` or
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set; without either, no tracer is bootstrapped,
/// so every span the adapters start is the no-op tracer's and costs next to nothing.
///
/// The rest of OpenTelemetry's variables (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
/// `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`, `OTEL_BSP_*`, `OTEL_EXPORTER_OTLP_HEADERS`,
/// `OTEL_PROPAGATORS`, ...) are read by swift-otel from the process environment, as the
/// OpenTelemetry specification defines them. `OTEL_SDK_DISABLED=true` or
/// `OTEL_TRACES_EXPORTER=none` keep tracing off even with an endpoint.
struct TraceExport: Sendable, Equatable {
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`: the collector's base URL; traces go to `/v1/traces` under it.
    var endpoint: String?
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`: the full URL traces are posted to.
    var tracesEndpoint: String?

    /// Nil when neither endpoint is given: tracing is off.
    init?(endpoint: String?, tracesEndpoint: String?) {
        guard endpoint != nil || tracesEndpoint != nil else { return nil }
        self.endpoint = endpoint
        self.tracesEndpoint = tracesEndpoint
    }

    /// The URL spans are posted to, as the OTLP exporter specification derives it.
    var url: String {
        if let tracesEndpoint { return tracesEndpoint }
        let base = endpoint ?? ""
        return base.hasSuffix("/") ? base + "v1/traces" : base + "/v1/traces"
    }

    /// An endpoint variable's value, checked: an absolute http or https URL with a host (what
    /// swift-otel accepts) and without credentials, which belong in
    /// `OTEL_EXPORTER_OTLP_HEADERS`. The error names the variable and echoes the value only
    /// when it has no `@`, so that a credential is never printed.
    static func endpoint(_ text: String?, variable: ConfigurationVariable) throws -> String? {
        guard let text = text?.trimmingCharacters(in: .whitespaces) else { return nil }
        guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased(), scheme == "http" || scheme == "https",
              let host = components.host, !host.isEmpty, components.user == nil, components.password == nil, !text.contains("@")
        else {
            let got = text.contains("@") ? "" : " (got \"\(text)\")"
            throw ConfigurationError(
                "\(variable.name) must be an absolute http or https URL without credentials (they go in OTEL_EXPORTER_OTLP_HEADERS)\(got)"
            )
        }
        return text
    }

    /// Whether the process environment turns tracing off whatever the endpoint
    /// (`OTEL_SDK_DISABLED=true`, `OTEL_TRACES_EXPORTER=none`).
    static func isDisabled(by environment: [String: String]) -> Bool {
        environment["OTEL_SDK_DISABLED"]?.lowercased() == "true" || environment["OTEL_TRACES_EXPORTER"]?.lowercased() == "none"
    }

    /// Bootstraps the tracer (once per process) and returns the service that batches and
    /// exports the spans: run it first in the process's service group, so that it stops last
    /// and flushes what the other services traced while stopping.
    ///
    /// The resource names the service (`OTEL_SERVICE_NAME`, default `identity`), this process
    /// (`service.instance.id`, a UUID per start; `process.pid`) and its role (`identity.role`:
    /// `serve` or `worker`); `OTEL_RESOURCE_ATTRIBUTES` adds to or overrides them.
    func bootstrap(role: String) throws -> any Service {
        var configuration = OTel.Configuration.default
        configuration.logs.enabled = false
        configuration.metrics.enabled = false
        configuration.traces.exporter = .otlp
        configuration.traces.otlpExporter.protocol = .httpProtobuf
        // Set explicitly so that a value from .env counts too; the process environment's, if
        // any, is the same value.
        configuration.traces.otlpExporter.endpoint = url
        configuration.serviceName = "identity"
        configuration.resourceAttributes = [
            "service.instance.id": UUID().uuidString.lowercased(),
            "process.pid": String(ProcessInfo.processInfo.processIdentifier),
            "identity.role": role,
        ]
        let backend = try OTel.makeTracingBackend(configuration: configuration)
        InstrumentationSystem.bootstrap(backend.factory)
        return backend.service
    }

    /// The log metadata provider that adds `trace_id`, `span_id` and `trace_flags` of the
    /// current span to every log line.
    static var metadataProvider: Logger.MetadataProvider {
        OTel.makeLoggingMetadataProvider()
    }
}
