public import CoreMetrics
import Hummingbird
import Metrics
import HTTPTypes
import Foundation
import Synchronization

/// What the HTTP adapter measures, through swift-metrics (contract §7): requests by method,
/// route template and status, their durations, and login outcomes. The host picks the backend;
/// with `exposition` set, `GET /metrics` serves it.
public struct IdentityMetrics: Sendable {
    /// Where the counters and timers are made.
    public let factory: any MetricsFactory
    /// The text served at `GET /metrics` (Prometheus exposition format); nil answers 404 there.
    public let exposition: (@Sendable () -> [UInt8])?

    /// Metrics through `factory` (the global `MetricsSystem` by default).
    public init(factory: any MetricsFactory = MetricsSystem.factory, exposition: (@Sendable () -> [UInt8])? = nil) {
        self.factory = factory
        self.exposition = exposition
    }
}

/// How a login ended, for `identity_logins_total{outcome}`.
enum LoginOutcome: String, CaseIterable {
    case success, failure, throttled
}

/// The request counters and timers, made once per label set and cached.
final class RequestMetrics: Sendable {
    struct Key: Hashable {
        let method: String
        let route: String
        let status: Int
    }

    private let factory: any MetricsFactory
    private let perKey = Mutex<[Key: (requests: CoreMetrics.Counter, duration: CoreMetrics.Timer)]>([:])
    private let logins: [LoginOutcome: CoreMetrics.Counter]

    init(factory: any MetricsFactory) {
        self.factory = factory
        var logins: [LoginOutcome: CoreMetrics.Counter] = [:]
        for outcome in LoginOutcome.allCases {
            logins[outcome] = CoreMetrics.Counter(label: "identity_logins_total", dimensions: [("outcome", outcome.rawValue)], factory: factory)
        }
        self.logins = logins
    }

    func record(_ key: Key, duration: Duration) {
        let metrics = perKey.withLock { cache in
            if let found = cache[key] { return found }
            let dimensions = [("method", key.method), ("route", key.route), ("status", String(key.status))]
            let made = (
                CoreMetrics.Counter(label: "http_requests_total", dimensions: dimensions, factory: factory),
                CoreMetrics.Timer(label: "http_request_duration_seconds", dimensions: dimensions, factory: factory)
            )
            cache[key] = made
            return made
        }
        metrics.requests.increment()
        metrics.duration.record(duration: duration)
    }

    func login(_ outcome: LoginOutcome) {
        logins[outcome]?.increment()
    }
}

/// Methods reported by name; any other token counts as `other`.
private let knownMethods: Set<HTTPRequest.Method> = [.get, .head, .post, .put, .delete, .patch, .options]

/// The outermost middleware when metrics are on: times every request and counts it under its
/// route template, never its raw path, so the label set stays small whatever clients send.
struct RequestMetricsMiddleware<Context: RequestContext>: RouterMiddleware {
    let metrics: RequestMetrics
    let routes: RouteTable


    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        do {
            let response = try await next(request, context)
            record(request, context, status: Int(response.status.code), since: start)
            return response
        } catch {
            // The identity middleware inside turns errors into responses; this is a last resort.
            record(request, context, status: Int((error as? any HTTPResponseError)?.status.code ?? 500), since: start)
            throw error
        }
    }

    private func record(_ request: Request, _ context: Context, status: Int, since start: ContinuousClock.Instant) {
        let method = knownMethods.contains(request.method) ? request.method.rawValue : "other"
        metrics.record(.init(method: method, route: route(request, context), status: status), duration: ContinuousClock.now - start)
    }

    /// The matched template (`/users/{user_id}`); for a wrong method the template of the path;
    /// `unmatched` for a path the API does not have.
    private func route(_ request: Request, _ context: Context) -> String {
        routes.name(of: request, matched: context.endpointPath)
    }
}
