import CoreMetrics
import Foundation
import HTTPAdapter
import IdentityDomain
import IdentityPorts
import Logging
import Metrics
import Prometheus
import ServiceLifecycle

/// The demo server's metrics: one Prometheus registry that every adapter records into through
/// swift-metrics, served at `GET /metrics`.
struct ServerMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()
    let factory: PrometheusMetricsFactory

    init() {
        var factory = PrometheusMetricsFactory(registry: registry)
        // Requests here take well under a millisecond; the default buckets start at 5 ms.
        factory.defaultDurationHistogramBuckets = [
            .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10),
            .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1),
            .milliseconds(2500), .seconds(5), .seconds(10),
        ]
        self.factory = factory
    }

    /// What the HTTP adapter records and serves.
    var http: IdentityMetrics {
        let registry = self.registry
        return IdentityMetrics(factory: factory, exposition: { registry.emitToBuffer() })
    }
}

/// Times every command through the bus it wraps: `identity_command_bus_duration_seconds{command}`
/// (in-process here; over the broker, the round trip).
struct MeasuredCommandBus: CommandBus {
    let inner: any CommandBus
    private let timers: [String: CoreMetrics.Timer]

    init(_ inner: any CommandBus, factory: any MetricsFactory) {
        self.inner = inner
        let names = ["RegisterUser", "UpdateProfile", "DeleteAccount", "RevokeToken", "RehashPassword"]
        self.timers = Dictionary(uniqueKeysWithValues: names.map { name in
            (name, CoreMetrics.Timer(label: "identity_command_bus_duration_seconds", dimensions: [("command", name)], factory: factory))
        })
    }

    func dispatch(_ envelope: CommandEnvelope) async throws -> CommandReply {
        let start = ContinuousClock.now
        defer { timers[envelope.command.name]?.record(duration: ContinuousClock.now - start) }
        return try await inner.dispatch(envelope)
    }
}

/// Samples the age of the oldest unpublished event now and then:
/// `identity_outbox_lag_seconds` (0 when the outbox is empty).
struct OutboxLagSampler: Service {
    let outbox: any EventOutbox
    let clock: any IdentityClock
    let gauge: CoreMetrics.Gauge
    let interval: Duration
    let logger: Logger

    init(outbox: any EventOutbox, clock: any IdentityClock, factory: any MetricsFactory, interval: Duration = .seconds(5), logger: Logger) {
        self.outbox = outbox
        self.clock = clock
        self.gauge = CoreMetrics.Gauge(label: "identity_outbox_lag_seconds", factory: factory)
        self.interval = interval
        self.logger = logger
    }

    /// Records the lag once; the first sample is taken at start-up.
    func sample() async {
        do {
            let oldest = try await outbox.pending(limit: 1).first
            gauge.record(oldest.map { max(0, clock.now().timeIntervalSince($0.event.occurredAt)) } ?? 0)
        } catch {
            logger.debug("outbox lag not sampled", metadata: ["error": "\(error)"])
        }
    }

    func run() async throws {
        await repeatUntilShutdown(every: interval, startingNow: true) { await sample() }
    }
}
