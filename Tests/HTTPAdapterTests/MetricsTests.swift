import Foundation
import HTTPTypes
import HummingbirdTesting
@testable import HTTPAdapter
import IdentityPorts
import IdentityTestSupport
import Prometheus
import Testing

@Suite("HTTP: metrics")
struct MetricsTests {
    /// A router whose metrics go to a registry of the test's own.
    func withMetrics(_ body: @escaping @Sendable (any TestClientProtocol, PrometheusCollectorRegistry) async throws -> Void) async throws {
        let registry = PrometheusCollectorRegistry()
        let metrics = IdentityMetrics(factory: PrometheusMetricsFactory(registry: registry), exposition: { registry.emitToBuffer() })
        try await withIdentityApp(limits: LoginThrottleConfiguration(maxFailuresPerEmail: 1), metrics: metrics) { client, _ in
            try await body(client, registry)
        }
    }

    @Test("requests are counted and timed by method, route template and status; logins by outcome")
    func requestsAndLogins() async throws {
        try await withMetrics { client, registry in
            let (id, token) = try await client.registerAndLogin()
            _ = try await client.get("/users/\(id)", token: token)
            _ = try await client.get("/users/\(UUID())", token: token)
            _ = try await client.postJSON("/auth/login", #"{"email":"ada@example.com","password":"wrong password"}"#)
            _ = try await client.postJSON("/auth/login", #"{"email":"ada@example.com","password":"wrong password"}"#)
            _ = try await client.get("/no/such/path/\(UUID())")
            _ = try await client.get("/users/me", method: .patch)

            let text = registry.emitToString()
            for line in [
                #"http_requests_total{method="POST",route="/users",status="201"} 1"#,
                #"http_requests_total{method="GET",route="/users/{user_id}",status="200"} 1"#,
                #"http_requests_total{method="GET",route="/users/{user_id}",status="404"} 1"#,
                #"http_requests_total{method="POST",route="/auth/login",status="429"} 1"#,
                #"http_requests_total{method="GET",route="unmatched",status="404"} 1"#,
                #"http_requests_total{method="PATCH",route="/users/me",status="405"} 1"#,
                #"identity_logins_total{outcome="success"} 1"#,
                #"identity_logins_total{outcome="failure"} 1"#,
                #"identity_logins_total{outcome="throttled"} 1"#,
                #"http_request_duration_seconds_count{method="POST",route="/users",status="201"} 1"#,
            ] {
                #expect(text.contains(line + "\n"), "\(line)\n--- in ---\n\(text)")
            }
            #expect(!text.contains(id), "no raw path (or id) becomes a label")
        }
    }

    @Test("GET /metrics serves the Prometheus text; without an exposition it is a 404 problem")
    func endpoint() async throws {
        try await withMetrics { client, _ in
            _ = try await client.get("/health/live")
            let response = try await client.get("/metrics")
            #expect(response.status == .ok)
            #expect(response.headers[.contentType] == "text/plain; version=0.0.4; charset=utf-8")
            #expect(response.text.contains("# TYPE http_requests_total counter"))
            #expect(response.text.contains(#"http_requests_total{method="GET",route="/health/live",status="200"} 1"#))
        }
        try await withIdentityApp { client, _ in
            try await client.get("/metrics").expectProblem(.notFound)
        }
    }

    @Test("methods outside the standard set are counted as other, so clients cannot grow the label set")
    func unknownMethods() async throws {
        try await withMetrics { client, registry in
            for name in ["BREW", "PROPFIND", "X-\(UUID())"] {
                _ = try await client.execute(uri: "/users/me", method: try #require(HTTPRequest.Method(name)), headers: [:])
            }
            let text = registry.emitToString()
            #expect(text.contains(#"http_requests_total{method="other",route="/users/me",status="405"} 3"#), "\(text)")
            #expect(!text.contains("BREW") && !text.contains("PROPFIND"))
        }
    }
}
