import Hummingbird
public import HTTPTypes
import IdentityApplication
import IdentityPorts
public import IdentityDomain
import Logging

/// An RFC 9457 problem: what every error response of the API is.
public struct Problem: Error, Sendable, CustomStringConvertible {
    /// HTTP status.
    public var status: HTTPResponse.Status
    /// Short, fixed summary for the status or kind of problem.
    public var title: String
    /// What went wrong for this request; safe to show (no SQL, no passwords, no stack).
    public var detail: String
    /// Per-field validation failures (422 only).
    public var errors: [FieldError] = []
    /// Extra response headers (`WWW-Authenticate`, `Retry-After`, `Allow`).
    public var headers: HTTPFields = [:]
    /// A `type` more specific than the status's own (such as `refresh-token-reused`).
    var specificType: String?

    /// Creates a problem.
    public init(_ status: HTTPResponse.Status, title: String? = nil, detail: String, errors: [FieldError] = [], headers: HTTPFields = [:]) {
        self.status = status
        self.title = title ?? status.reasonPhrase
        self.detail = detail
        self.errors = errors
        self.headers = headers
    }

    public var description: String { "\(status.code) \(title): \(detail)" }

    /// The `type` URI: a stable, documented name per kind of problem.
    var type: String {
        if let specificType { return specificType }
        return switch status.code {
        case 400: "urn:identity:problem:bad-request"
        case 401: "urn:identity:problem:unauthorized"
        case 403: "urn:identity:problem:forbidden"
        case 404: "urn:identity:problem:not-found"
        case 405: "urn:identity:problem:method-not-allowed"
        case 409: "urn:identity:problem:conflict"
        case 412: "urn:identity:problem:precondition-failed"
        case 413: "urn:identity:problem:content-too-large"
        case 415: "urn:identity:problem:unsupported-media-type"
        case 422: "urn:identity:problem:validation"
        case 429: "urn:identity:problem:too-many-requests"
        case 503: "urn:identity:problem:unavailable"
        default: "about:blank"
        }
    }

    /// The problem+json body.
    var json: String {
        var json = JSONWriter()
        json.field("type", type)
        json.field("title", title)
        json.field("status", status.code)
        json.field("detail", detail)
        if !errors.isEmpty {
            let items = errors.map { error -> String in
                var item = JSONWriter()
                item.field("pointer", error.pointer)
                item.field("detail", error.detail)
                return item.finished()
            }
            json.raw("errors", "[" + items.joined(separator: ",") + "]")
        }
        return json.finished()
    }

    /// The response for this problem.
    func response(requestID: String?) -> Response {
        var fields = headers
        fields[.contentType] = "application/problem+json"
        fields[.cacheControl] = "no-store"
        if let requestID { fields[.requestID] = requestID }
        return Response(status: status, headers: fields, body: .init(byteBuffer: ByteBuffer(string: json)))
    }
}

/// The bearer challenge when no usable credentials were sent at all.
struct AuthenticationRequired: Error, CustomStringConvertible {
    var description: String { "authentication required" }
}

extension Problem {
    /// Maps any error to the problem a client sees: the only place where that happens.
    ///
    /// Unknown errors become a generic 500 whose detail says nothing about the cause; the
    /// cause is logged by the caller with the request id.
    static func from(_ error: any Error) -> Problem {
        switch error {
        case let problem as Problem:
            return problem
        case let error as ValidationError:
            return Problem(.unprocessableContent, title: "Validation failed", detail: "the request has invalid fields", errors: error.errors)
        case let error as IdentityError:
            switch error {
            case .emailTaken: return Problem(.conflict, title: "Email taken", detail: error.description)
            case .concurrentUpdate: return Problem(.conflict, title: "Conflict", detail: error.description)
            case .preconditionFailed: return Problem(.preconditionFailed, title: "Precondition failed", detail: error.description)
            case .userNotFound: return Problem(.notFound, detail: error.description)
            case .wrongCurrentPassword: return Problem(.forbidden, title: "Wrong current password", detail: error.description)
            case .invalidCredentials:
                return Problem(.unauthorized, title: "Invalid credentials", detail: error.description, headers: [.wwwAuthenticate: "Bearer"])
            case .sessionNotFound: return Problem(.notFound, detail: error.description)
            case .refreshTokenRefused: return Problem(.unauthorized, title: "Invalid refresh token", detail: error.description)
            case .refreshTokenReused:
                var problem = Problem(.unauthorized, title: "Refresh token reused", detail: error.description)
                problem.specificType = "urn:identity:problem:refresh-token-reused"
                return problem
            case .invalidToken:
                var problem = Problem(.badRequest, title: "Invalid token", detail: error.description)
                problem.specificType = "urn:identity:problem:invalid-token"
                return problem
            case .emailNotVerified:
                var problem = Problem(.forbidden, title: "Email not verified", detail: error.description)
                problem.specificType = "urn:identity:problem:email-not-verified"
                return problem
            case .currentPasswordRequired:
                return Problem(.unprocessableContent, title: "Validation failed", detail: error.description,
                               errors: [FieldError(pointer: "/current_password", detail: "is required to change email or password")])
            default: return Problem(.internalServerError, detail: "the server could not complete the request")
            }
        case let error as MailNotOffered:
            return Problem(.notFound, detail: error.description)
        case let error as LoginThrottled:
            return Problem(.tooManyRequests, detail: error.description, headers: [.retryAfter: String(error.retryAfterSeconds)])
        case is TokenRejected:
            return Problem(.unauthorized, detail: "the access token is invalid, expired or revoked",
                           headers: [.wwwAuthenticate: #"Bearer error="invalid_token""#])
        case is AuthenticationRequired:
            return Problem(.unauthorized, detail: "a bearer token is required", headers: [.wwwAuthenticate: "Bearer"])
        case let error as MalformedJSON:
            return Problem(.badRequest, title: "Malformed JSON", detail: error.description)
        case let error as HashingOverloaded:
            // Load shedding (contract §3): only routes that hash get here.
            return Problem(.serviceUnavailable, title: "Overloaded", detail: error.description,
                           headers: [.retryAfter: String(error.retryAfterSeconds)])
        case let error as LoginAttemptsBusy:
            return Problem(.serviceUnavailable, title: "Overloaded", detail: error.description,
                           headers: [.retryAfter: String(error.retryAfterSeconds)])
        case let error as BackendUnavailable:
            return Problem(.serviceUnavailable, detail: error.description, headers: [.retryAfter: "1"])
        case let error as HTTPError:
            return Problem(error.status, detail: error.body ?? error.status.reasonPhrase.lowercased(), headers: error.headers)
        case let error as any HTTPResponseError:
            return Problem(error.status, detail: error.status.reasonPhrase.lowercased())
        default:
            return Problem(.internalServerError, detail: "the server could not complete the request")
        }
    }
}

extension HTTPField.Name {
    /// `X-Request-ID`
    static let requestID = HTTPField.Name("X-Request-ID")!
    /// `X-Forwarded-For`, believed only from trusted proxies
    static let xForwardedFor = HTTPField.Name("X-Forwarded-For")!
    /// `Pragma` (RFC 6749 §5.1 asks for `no-cache` on token responses)
    static let pragma = HTTPField.Name("Pragma")!
}
