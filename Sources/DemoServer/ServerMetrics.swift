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
