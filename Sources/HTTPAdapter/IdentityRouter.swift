public import Hummingbird
public import IdentityApplication
public import IdentityPorts
import Foundation

/// Builds the HTTP face of the identity service on Hummingbird 2.
public enum IdentityHTTP {
    /// Every route with its methods; drives routing, `Allow` headers and the OpenAPI document tests.
    static let routeTable = RouteTable([
        ("/users", [.post]),
        ("/users/me", [.get, .put, .delete]),
        ("/users/{user_id}", [.get]),
        ("/auth/login", [.post]),
        ("/auth/logout", [.post]),
        ("/health/live", [.get]),
        ("/health/ready", [.get]),
        ("/openapi.json", [.get]),
        ("/metrics", [.get]),
    ])

    /// A router serving contract §1–§4 and the operational routes of §7.
    ///
    /// - Parameters:
    ///   - service: the use cases.
    ///   - readiness: backends that must answer for `GET /health/ready` to say 200.
    ///   - trustedProxies: proxies whose `X-Forwarded-For` names the client (login throttling).
    ///   - metrics: request and login metrics, and what `GET /metrics` serves; nil records none.
    public static func makeRouter(
        service: IdentityService, readiness: [any HealthCheck] = [], trustedProxies: TrustedProxies = .none,
        metrics: IdentityMetrics? = nil
    ) -> Router<IdentityRequestContext> {
        let router = Router(context: IdentityRequestContext.self)
        let recorder = metrics.map { RequestMetrics(factory: $0.factory) }
        if let recorder {
            router.add(middleware: RequestMetricsMiddleware(metrics: recorder, routes: routeTable))
        }
        router.add(middleware: IdentityMiddleware(routes: routeTable))
        let routes = IdentityRoutes(service: service, trustedProxies: trustedProxies, metrics: recorder)
        router.post("/users", use: routes.register)
        router.get("/users/me", use: routes.me)
        router.put("/users/me", use: routes.updateMe)
        router.delete("/users/me", use: routes.deleteMe)
        router.get("/users/{user_id}", use: routes.userByID)
        router.post("/auth/login", use: routes.login)
        router.post("/auth/logout", use: routes.logout)

        let health = HealthRoutes(checks: readiness)
        router.get("/health/live", use: health.live)
        router.get("/health/ready", use: health.ready)
        router.get("/openapi.json") { _, _ in
            jsonResponse(.ok, OpenAPIDocument.json, cacheable: true)
        }
        let exposition = metrics?.exposition
        router.get("/metrics") { _, _ in
            guard let exposition else { throw Problem(.notFound, detail: "metrics are not served by this host") }
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8", .cacheControl: "no-store"],
                body: ResponseBody(byteBuffer: ByteBuffer(bytes: exposition()))
            )
        }
        return router
    }
}

/// `GET /health/live` and `GET /health/ready`.
struct HealthRoutes: Sendable {
    let checks: [any HealthCheck]
    /// How long a backend may take to answer a readiness check.
    static let timeout: Duration = .seconds(2)

    func live(_ request: Request, _ context: IdentityRequestContext) async throws -> Response {
        jsonResponse(.ok, #"{"status":"live"}"#)
    }

    func ready(_ request: Request, _ context: IdentityRequestContext) async throws -> Response {
        for check in checks where !(await Self.answers(check)) {
            throw Problem(.serviceUnavailable, title: "Not ready", detail: "\(check.backendName) is not answering")
        }
        return jsonResponse(.ok, #"{"status":"ready"}"#)
    }

    static func answers(_ check: any HealthCheck) async -> Bool {
        await withTaskGroup(of: Bool.self) { group in
            group.addTask { (try? await check.checkHealth()) != nil }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
    }
}
