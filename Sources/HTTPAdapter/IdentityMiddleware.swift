import Hummingbird
import HTTPTypes
import IdentityPorts
import Logging
import Foundation

/// The outermost middleware of the identity router.
///
/// - gives each request an id (the client's `X-Request-ID` when it is 1–128 characters of
///   `[A-Za-z0-9._-]`) and puts it on the response and on every line it logs (on the logger
///   of a failed request only: setting metadata on every request's logger cost every request);
/// - turns every error into an RFC 9457 problem response (see `Problem.from`), logging
///   server errors with their cause and the request id;
/// - answers 405 with `Allow` for a known path with an unsupported method;
/// - logs one line per request at `debug` (`request`, with method, route template, status and
///   duration in milliseconds): never at `info`, which must stay quiet under load.
struct IdentityMiddleware<Context: IdentityContext>: RouterMiddleware {
    let routes: RouteTable

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        let response = try await respond(request, context: context, next: next)
        if context.logger.logLevel <= .debug {
            context.logger.debug("request", metadata: [
                "request_id": .string(response.headers[.requestID] ?? ""), "method": .string(request.method.rawValue),
                "route": .string(routes.name(of: request, matched: context.endpointPath)), "status": .stringConvertible(Int(response.status.code)),
                "duration_ms": .string(Self.milliseconds(ContinuousClock.now - start)),
            ])
        }
        return response
    }

    /// Milliseconds with three decimals.
    static func milliseconds(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        let microseconds = seconds * 1_000_000 + attoseconds / 1_000_000_000_000
        return String(format: "%.3f", Double(microseconds) / 1000)
    }

    private func respond(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        let requestID = RequestID.of(request)
        context.requestID = requestID
        do {
            var response = try await next(request, context)
            response.headers[.requestID] = requestID
            return response
        } catch {
            var problem = Problem.from(error)
            if problem.status == .notFound, error is HTTPError, let allowed = routes.allowedMethods(for: request.uri.path) {
                problem = Problem(
                    .methodNotAllowed, detail: "\(request.method.rawValue) is not allowed here",
                    headers: [.allow: allowed.map(\.rawValue).joined(separator: ", ")]
                )
            }
            // Only a failed request's logger carries the id: setting metadata costs every request.
            var logger = context.logger
            logger[metadataKey: "request_id"] = .string(requestID)
            if error is HashingOverloaded {
                // Shed load is counted by the request metrics (503); a line each would flood the log.
                logger.debug("request shed: password hashing overloaded")
            } else if problem.status == .serviceUnavailable {
                logger.warning("backend unavailable", metadata: ["error": "\(error)"])
            } else if problem.status.code >= 500 {
                logger.error("request failed", metadata: ["error": "\(String(reflecting: type(of: error))): \(error)"])
            } else {
                logger.debug("request refused", metadata: ["status": "\(problem.status.code)"])
            }
            return problem.response(requestID: requestID)
        }
    }
}

/// Request ids: the client's when acceptable, else 16 random hex digits.
enum RequestID {
    /// The request's id: the client's `X-Request-ID` when acceptable, else a new one.
    static func of(_ request: Request) -> String {
        acceptable(request.headers[.requestID]) ?? generate()
    }

    static func acceptable(_ value: String?) -> String? {
        guard let value, (1...128).contains(value.utf8.count) else { return nil }
        let ok = value.utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"):
                true
            default: false
            }
        }
        return ok ? value : nil
    }

    static func generate() -> String {
        var random = SystemRandomNumberGenerator()
        let value = random.next() as UInt64
        let hex = String(value, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }
}

/// The routes of the API as templates with their methods: the source of `Allow` headers.
struct RouteTable {
    let routes: [(template: [String], methods: [HTTPRequest.Method])]

    init(_ routes: [(String, [HTTPRequest.Method])]) {
        self.routes = routes.map { (path, methods) in (path.split(separator: "/").map(String.init), methods) }
    }

    /// The methods of the first template matching `path`, or nil when no template does.
    func allowedMethods(for path: String) -> [HTTPRequest.Method]? {
        route(for: path)?.methods
    }

    /// The route of a request as metrics and logs name it: the matched template
    /// (`/users/{user_id}`); for a wrong method the template of the path; `unmatched` for a
    /// path the API does not have.
    func name(of request: Request, matched: String?) -> String {
        if let matched, matched != "NotFound" { return matched }
        return template(for: request.uri.path) ?? "unmatched"
    }

    /// The first template matching `path`, written as registered (`/users/{user_id}`).
    func template(for path: String) -> String? {
        route(for: path).map { "/" + $0.template.joined(separator: "/") }
    }

    private func route(for path: String) -> (template: [String], methods: [HTTPRequest.Method])? {
        let segments = path.split(separator: "/")
        return routes.first { route in
            route.template.count == segments.count
                && zip(route.template, segments).allSatisfy { template, segment in template.hasPrefix("{") || template == segment }
        }
    }
}
