public import Hummingbird
public import IdentityApplication
public import IdentityPorts
public import Foundation
import IdentityAdapterSupport

/// Builds the HTTP face of the identity service on Hummingbird 2.
public enum IdentityHTTP {
    /// Every route with its methods; drives routing, `Allow` headers and the OpenAPI document tests.
    static let routeTable = RouteTable([
        ("/users", [.post]),
        ("/users/me", [.get, .put, .delete]),
        ("/users/{user_id}", [.get]),
        ("/auth/login", [.post]),
        ("/auth/refresh", [.post]),
        ("/auth/logout", [.post]),
        ("/auth/verify-email", [.post]),
        ("/auth/verify-email/resend", [.post]),
        ("/auth/password-reset", [.post]),
        ("/auth/password-reset/confirm", [.post]),
        ("/sessions", [.get, .delete]),
        ("/sessions/{session_id}", [.delete]),
        ("/health/live", [.get]),
        ("/health/ready", [.get]),
        ("/openapi.json", [.get]),
        ("/metrics", [.get]),
        ("/.well-known/jwks.json", [.get]),
        ("/.well-known/openid-configuration", [.get]),
    ])

    /// A router serving contract §1–§4, the discovery routes of §10 and the operational routes of §7.
    ///
    /// - Parameters:
    ///   - service: the use cases.
    ///   - readiness: backends that must answer for `GET /health/ready` to say 200.
    ///   - trustedProxies: proxies whose `X-Forwarded-For` names the client (login throttling).
    ///   - metrics: request and login metrics, and what `GET /metrics` serves; nil records none.
    ///   - publicBaseURL: the absolute base URL discovery names (`PUBLIC_BASE_URL`); nil: each
    ///     request's `Host`.
    ///   - tracing: a server span per request (Hummingbird's `TracingMiddleware`). A host that
    ///     bootstraps no tracer passes false and saves the middleware's work (span attributes,
    ///     a task-local context, a wrapped body) on every request.
    public static func makeRouter(
        service: IdentityService, readiness: [any HealthCheck] = [], trustedProxies: TrustedProxies = .none,
        metrics: IdentityMetrics? = nil, publicBaseURL: URL? = nil, tracing: Bool = true
    ) -> Router<IdentityRequestContext> {
        let router = Router(context: IdentityRequestContext.self)
        // Outermost: a server span per request, named after the route template, that sees the
        // final status.
        if tracing { router.add(middleware: TracingMiddleware()) }
        let recorder = metrics.map { RequestMetrics(factory: $0.factory) }
        if let recorder {
            router.add(middleware: RequestMetricsMiddleware(metrics: recorder, routes: routeTable))
        }
        router.add(middleware: IdentityMiddleware(routes: routeTable))
        router.addRoutes(IdentityRoutes(service: service, trustedProxies: trustedProxies, metrics: recorder).collection())

        DiscoveryRoutes<IdentityRequestContext>(service: service, publicBaseURL: publicBaseURL.map(baseURLText), prefix: "").add(to: router)

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

extension IdentityHTTP {
    /// Adds the users and auth routes of contract §3 (`/users…`, `/auth/login`, `/auth/logout`)
    /// to a host application's router under `prefix` (such as `/identity`), with problem+json
    /// errors and request ids on those routes. Health, `/openapi.json` and `/metrics` stay the
    /// host's to serve. Protect the host's own routes with `bearerAuthenticator(service:)`.
    ///
    /// - Parameters:
    ///   - router: the host's router, on any context that conforms to `IdentityContext`.
    ///   - prefix: where to mount the routes; `""` mounts them at the root.
    ///   - service: the use cases, on the adapters of the host's choice.
    ///   - trustedProxies: proxies whose `X-Forwarded-For` names the client (login throttling).
    public static func addRoutes<Context: IdentityContext>(
        to router: Router<Context>, atPath prefix: String, service: IdentityService, trustedProxies: TrustedProxies = .none
    ) {
        router.group(RouterPath(prefix))
            .add(middleware: IdentityMiddleware(routes: routeTable))
            .addRoutes(routes(service: service, trustedProxies: trustedProxies))
    }

    /// The users and auth routes of contract §3 as a Hummingbird route collection, for a host
    /// that mounts them itself (`router.addRoutes(_:atPath:)`). The routes that need a caller
    /// sit behind `IdentityBearerAuthenticator`, and their handlers read
    /// `context.requirePrincipal()`. Mount them under `IdentityMiddleware`'s problem+json and
    /// request ids with `addRoutes(to:atPath:service:trustedProxies:)` unless the host does its own.
    public static func routes<Context: IdentityContext>(
        service: IdentityService, trustedProxies: TrustedProxies = .none, context: Context.Type = Context.self
    ) -> RouteCollection<Context> {
        IdentityRoutes<Context>(service: service, trustedProxies: trustedProxies, metrics: nil).collection()
    }

    /// Middleware for a host's own routes: lets a request through only with a bearer token that
    /// `service` honours (signature, claims, revocation; no account row is read), and puts its
    /// user in `context.principal` (or `try context.requirePrincipal()`). Anything else gets the
    /// same 401 problem+json, with `WWW-Authenticate`, as the identity routes give.
    public static func bearerAuthenticator<Context: IdentityContext>(
        service: IdentityService, context: Context.Type = Context.self
    ) -> IdentityBearerAuthenticator<Context> {
        IdentityBearerAuthenticator(authenticator: service.authenticator)
    }

    /// The same middleware over an `Authenticator` of the host's making: for a service that
    /// only verifies our tokens (IdentityVerifier's, with the published keys and a shared
    /// `RevocationStore`) and runs no `IdentityService`. Same `context.principal`, same 401.
    public static func bearerAuthenticator<Context: IdentityContext>(
        authenticator: Authenticator, context: Context.Type = Context.self
    ) -> IdentityBearerAuthenticator<Context> {
        IdentityBearerAuthenticator(authenticator: authenticator)
    }
}

/// See `IdentityHTTP.bearerAuthenticator(service:)` and `bearerAuthenticator(authenticator:)`.
public struct IdentityBearerAuthenticator<Context: IdentityContext>: RouterMiddleware {
    private let authenticator: Authenticator

    init(service: IdentityService) {
        self.init(authenticator: service.authenticator)
    }

    init(authenticator: Authenticator) {
        self.authenticator = authenticator
    }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        do {
            context.principal = try await BearerToken.authenticate(request, with: authenticator)
        } catch {
            // Outside the identity routes nothing has given the request an id yet.
            if context.requestID.isEmpty { context.requestID = RequestID.of(request) }
            return Problem.from(error).response(requestID: context.requestID)
        }
        return try await next(request, context)
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

    /// Asks every backend at once; 503 names each one that did not answer, in the configured order.
    func ready(_ request: Request, _ context: IdentityRequestContext) async throws -> Response {
        let failing = await withTaskGroup(of: (Int, Bool).self) { group in
            for (index, check) in checks.enumerated() { group.addTask { (index, await Self.answers(check)) } }
            var failing: [Int] = []
            for await (index, answered) in group where !answered { failing.append(index) }
            return failing.sorted().map { checks[$0].backendName }
        }
        guard failing.isEmpty else {
            let names = failing.joined(separator: " and ")
            throw Problem(.serviceUnavailable, title: "Not ready", detail: "\(names) \(failing.count == 1 ? "is" : "are") not answering")
        }
        return jsonResponse(.ok, #"{"status":"ready"}"#)
    }

    static func answers(_ check: any HealthCheck) async -> Bool {
        (try? await Deadline.run(timeout, timeoutError: { BackendUnavailable(backend: check.backendName) }) {
            try await check.checkHealth()
        }) != nil
    }
}
