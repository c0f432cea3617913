import Hummingbird
import HTTPTypes
import IdentityApplication
import IdentityPorts
import IdentityDomain
import Foundation

/// The handlers of contract §3. Each one reads its input, calls `IdentityService` (which
/// dispatches commands and runs queries) and renders the result: none touches a store. The
/// routes that need a caller run behind `IdentityBearerAuthenticator`, which puts the
/// principal in the context.
struct IdentityRoutes<Context: IdentityContext>: Sendable {
    let service: IdentityService
    let trustedProxies: TrustedProxies
    let metrics: RequestMetrics?

    /// The routes, the protected ones behind the bearer authenticator.
    func collection() -> RouteCollection<Context> {
        let routes = RouteCollection(context: Context.self)
        routes.post("/users", use: register)
        routes.post("/auth/login", use: login)
        routes.post("/auth/refresh", use: refresh)
        routes.post("/auth/verify-email", use: verifyEmail)
        routes.post("/auth/password-reset", use: requestPasswordReset)
        routes.post("/auth/password-reset/confirm", use: confirmPasswordReset)
        routes.group()
            .add(middleware: IdentityBearerAuthenticator<Context>(service: service))
            .get("/users/me", use: me)
            .put("/users/me", use: updateMe)
            .delete("/users/me", use: deleteMe)
            .get("/users/{user_id}", use: userByID)
            .post("/auth/logout", use: logout)
            .get("/sessions", use: sessions)
            .delete("/sessions", use: endSessions)
            .delete("/sessions/{session_id}", use: endSession)
            .post("/auth/verify-email/resend", use: resendVerification)
        return routes
    }

    func register(_ request: Request, _ context: Context) async throws -> Response {
        var fields = try await RequestBody.jsonObject(of: request)
        let (email, password, name) = try RequestDecoding.registration(&fields)
        let user = try await service.register(email: email, password: password, name: name)
        return selfViewResponse(.created, user, headers: [.location: "/users/\(user.id)"])
    }

    func me(_ request: Request, _ context: Context) async throws -> Response {
        let principal = try context.requirePrincipal()
        return selfViewResponse(.ok, try await service.me(principal))
    }

    func updateMe(_ request: Request, _ context: Context) async throws -> Response {
        let principal = try context.requirePrincipal()
        var fields = try await RequestBody.jsonObject(of: request)
        let name = fields.string("name", required: false)
        let email = fields.string("email", required: false)
        let password = fields.string("password", required: false)
        let current = fields.string("current_password", required: false)
        let structural = fields.problems(known: ["name", "email", "password", "current_password"])
        guard structural.isEmpty else {
            throw ValidationError(
                structural + ProfileChangeInput.errors(name: name, email: email, password: password, currentPassword: current)
            )
        }
        let user = try await service.updateProfile(
            principal, name: name, email: email, password: password, currentPassword: current, client: clientAddress(request, context),
            ifMatch: EntityTag.versions(ifMatch: request.headers[values: .ifMatch])
        )
        return selfViewResponse(.ok, user)
    }

    func deleteMe(_ request: Request, _ context: Context) async throws -> Response {
        let principal = try context.requirePrincipal()
        try await service.deleteAccount(principal)
        return noContent()
    }

    func userByID(_ request: Request, _ context: Context) async throws -> Response {
        let principal = try context.requirePrincipal()
        guard let raw = context.parameters.get("user_id"), let id = UserID(raw) else {
            throw Problem(.notFound, detail: "no such user")
        }
        switch try await service.user(id: id, for: principal) {
        case .own(let record):
            return selfViewResponse(.ok, record)
        case .publicProfile(let id, let name, let createdAt):
            return jsonResponse(.ok, Views.publicView(id: id, name: name, createdAt: createdAt))
        }
    }

    func login(_ request: Request, _ context: Context) async throws -> Response {
        let type = try RequestBody.mediaType(of: request, accepting: [.json, .form])
        let bytes = try await RequestBody.bytes(of: request)
        let email: String?
        let password: String?
        let structural: [FieldError]
        let emailField: String
        if type == .json {
            var fields = try RequestBody.parseJSONObject(bytes)
            emailField = "email"
            email = fields.string("email", required: true)
            password = fields.string("password", required: true)
            structural = fields.problems(known: ["email", "password"])
        } else {
            // The OAuth2 password grant (RFC 6749 §4.3), so that OpenAPI "Authorize" works.
            var fields = try RequestBody.parseForm(bytes)
            if let grant = fields.string("grant_type", required: false), grant != "password" {
                throw Problem(.badRequest, title: "Unsupported grant type", detail: "grant_type must be \"password\"")
            }
            emailField = "username"
            email = fields.string("username", required: true)
            password = fields.string("password", required: true)
            structural = fields.problems(known: ["username", "password", "grant_type", "scope", "client_id", "client_secret"])
        }
        guard structural.isEmpty, let email, let password else {
            throw ValidationError(structural + LoginInput.errors(email: email, password: password, emailField: emailField))
        }
        let token: SignIn
        do {
            token = try await service.login(
                email: email, password: password, client: clientAddress(request, context), userAgent: request.headers[.userAgent],
                emailField: emailField
            )
            metrics?.login(.success)
        } catch let error as LoginThrottled {
            metrics?.login(.throttled)
            throw error
        } catch let error as IdentityError where error == .invalidCredentials {
            metrics?.login(.failure)
            throw error
        }
        return jsonResponse(.ok, Views.token(token), headers: [.pragma: "no-cache"])
    }

    func logout(_ request: Request, _ context: Context) async throws -> Response {
        let principal = try context.requirePrincipal()
        try await service.logout(principal)
        return noContent()
    }

    /// `POST /auth/refresh`: JSON `{"refresh_token"}` or the OAuth2 refresh grant (RFC 6749 §6).
    func refresh(_ request: Request, _ context: Context) async throws -> Response {
        let type = try RequestBody.mediaType(of: request, accepting: [.json, .form])
        let bytes = try await RequestBody.bytes(of: request)
        var fields: RequestFields
        let known: Set<String>
        if type == .json {
            fields = try RequestBody.parseJSONObject(bytes)
            known = ["refresh_token"]
        } else {
            fields = try RequestBody.parseForm(bytes)
            guard fields.string("grant_type", required: false) == "refresh_token" else {
                throw Problem(.badRequest, title: "Unsupported grant type", detail: "grant_type must be \"refresh_token\"")
            }
            known = ["grant_type", "refresh_token", "scope", "client_id", "client_secret"]
        }
        let token = fields.string("refresh_token", required: true)
        let structural = fields.problems(known: known)
        guard structural.isEmpty, let token else { throw ValidationError(structural) }
        let pair = try await service.refresh(token, client: clientAddress(request, context))
        return jsonResponse(.ok, Views.token(pair), headers: [.pragma: "no-cache"])
    }

    /// `GET /sessions`: the caller's open sessions, newest first.
    func sessions(_ request: Request, _ context: Context) async throws -> Response {
        let principal = try context.requirePrincipal()
        return jsonResponse(.ok, Views.sessions(try await service.sessions(principal)))
    }

    /// `DELETE /sessions/{id}`: ends one of the caller's sessions; 404 for anything else.
    func endSession(_ request: Request, _ context: Context) async throws -> Response {
        let principal = try context.requirePrincipal()
        try await service.endSession(principal, id: context.parameters.get("session_id") ?? "")
        return noContent()
    }

    /// `DELETE /sessions?scope=others|all`.
    func endSessions(_ request: Request, _ context: Context) async throws -> Response {
        let principal = try context.requirePrincipal()
        let scopes = request.uri.queryParameters.getAll("scope")
        guard scopes.count == 1, let scope = SessionScope(rawValue: scopes[0]) else {
            throw Problem(.badRequest, detail: "scope must be given once, as others or all")
        }
        try await service.endSessions(principal, scope: scope)
        return noContent()
    }

    // MARK: email verification and password reset (contract §11)

    /// `POST /auth/verify-email` `{"token"}` → 200 self view.
    func verifyEmail(_ request: Request, _ context: Context) async throws -> Response {
        let token = try await Self.token(of: request, alsoKnown: [])
        return selfViewResponse(.ok, try await service.verifyEmail(token: token.token))
    }

    /// `POST /auth/verify-email/resend` (bearer) → 202.
    func resendVerification(_ request: Request, _ context: Context) async throws -> Response {
        let principal = try context.requirePrincipal()
        try await service.resendVerification(principal, client: clientAddress(request, context))
        return Self.accepted()
    }

    /// `POST /auth/password-reset` `{"email"}` → 202, the same answer whatever the account.
    func requestPasswordReset(_ request: Request, _ context: Context) async throws -> Response {
        var fields = try await RequestBody.jsonObject(of: request)
        let email = fields.string("email", required: true)
        let structural = fields.problems(known: ["email"])
        guard structural.isEmpty, let email else { throw ValidationError(structural) }
        try await service.requestPasswordReset(email: email, client: clientAddress(request, context))
        return Self.accepted()
    }

    /// `POST /auth/password-reset/confirm` `{"token","password"}` → 204.
    func confirmPasswordReset(_ request: Request, _ context: Context) async throws -> Response {
        let fields = try await Self.token(of: request, alsoKnown: ["password"])
        guard let password = fields.password else { throw ValidationError([FieldError(pointer: "/password", detail: "is required")]) }
        try await service.confirmPasswordReset(token: fields.token, password: password)
        return noContent()
    }

    /// The `token` of a JSON body (and `password` when known): a token that is missing, not a
    /// string or over-long is `invalid-token` (400), like any other token that is not one.
    private static func token(of request: Request, alsoKnown: Set<String>) async throws -> (token: String, password: String?) {
        var fields = try await RequestBody.jsonObject(of: request)
        let password = alsoKnown.contains("password") ? fields.string("password", required: true) : nil
        let token = fields.string("token", required: false)
        let structural = fields.problems(known: alsoKnown.union(["token"]))
        if structural.contains(where: { $0.pointer == "/token" }) { throw IdentityError.invalidToken }
        guard structural.isEmpty else { throw ValidationError(structural) }
        guard let token, token.utf8.count <= 256 else { throw IdentityError.invalidToken }
        return (token, password)
    }

    private static func accepted() -> Response {
        jsonResponse(.accepted, #"{"status":"accepted"}"#)
    }

    // MARK: helpers

    /// The client that login throttling counts: the socket peer, or behind trusted proxies the
    /// first untrusted `X-Forwarded-For` hop; keyed per IPv4 address and per IPv6 /64.
    func clientAddress(_ request: Request, _ context: Context) -> String? {
        trustedProxies.clientAddress(peer: context.remoteAddress?.ipAddress, forwardedFor: request.headers[.xForwardedFor])
            .map(IPAddress.throttlingKey(for:))
    }
}

/// How request bodies become the service's arguments; `@_spi(Benchmarks)` lets the
/// microbenchmarks (`Benchmarks/`) time it without making it API.
@_spi(Benchmarks) public enum RequestDecoding {
    /// The fields of a `POST /users` body, as the route reads them: strict JSON, known fields
    /// only, every bad field reported at once in a `ValidationError`.
    public static func registration(json body: [UInt8]) throws -> (email: String, password: String, name: String) {
        var fields = try RequestBody.parseJSONObject(body)
        return try registration(&fields)
    }

    static func registration(_ fields: inout RequestFields) throws -> (email: String, password: String, name: String) {
        let email = fields.string("email", required: true)
        let password = fields.string("password", required: true)
        let name = fields.string("name", required: true)
        // Structural problems and value rules are reported together: one entry per bad field.
        let structural = fields.problems(known: ["email", "password", "name"])
        guard structural.isEmpty, let email, let password, let name else {
            throw ValidationError(structural + RegistrationInput.errors(email: email, password: password, name: name))
        }
        return (email, password, name)
    }
}

/// Reads `Authorization: Bearer …` and asks the service's authenticator about it.
enum BearerToken {
    static func authenticate(_ request: Request, with authenticator: Authenticator) async throws -> Principal {
        guard let header = request.headers[.authorization] else { throw AuthenticationRequired() }
        return try await authenticator.authenticate(bearer: try token(in: header))
    }

    /// The token of `Bearer <token>` (RFC 6750 §2.1: the scheme in any case, one or more
    /// spaces, the token; spaces and tabs around it are dropped). Read byte by byte: every
    /// authenticated request pays for this, and Foundation's trimming, which bridges through
    /// UTF-16, was a sixth of a host route's CPU.
    static func token(in header: String) throws -> String {
        let bytes = header.utf8
        func isBlank(_ byte: UInt8) -> Bool { byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") }
        var index = bytes.startIndex
        while index < bytes.endIndex, bytes[index] == UInt8(ascii: " ") { index = bytes.index(after: index) }
        let schemeStart = index
        while index < bytes.endIndex, bytes[index] != UInt8(ascii: " ") { index = bytes.index(after: index) }
        // ASCII letters compare case-insensitively with their bit 0x20 set.
        guard bytes[schemeStart..<index].elementsEqual("bearer".utf8, by: { $0 | 0x20 == $1 }) else {
            throw AuthenticationRequired()
        }
        while index < bytes.endIndex, bytes[index] == UInt8(ascii: " ") { index = bytes.index(after: index) }
        guard index < bytes.endIndex else { throw AuthenticationRequired() }
        var end = bytes.endIndex
        while end > index, isBlank(bytes[bytes.index(before: end)]) { end = bytes.index(before: end) }
        while index < end, isBlank(bytes[index]) { index = bytes.index(after: index) }
        guard index < end else { throw TokenRejected.malformed }
        return String(header[index..<end])
    }
}

/// A JSON response that no cache may keep.
func jsonResponse(_ status: HTTPResponse.Status, _ body: String, headers: HTTPFields = [:], cacheable: Bool = false) -> Response {
    var fields = headers
    fields[.contentType] = "application/json"
    if !cacheable { fields[.cacheControl] = "no-store" }
    return Response(status: status, headers: fields, body: .init(byteBuffer: ByteBuffer(string: body)))
}

/// A self view, with the account's version as its strong `ETag` (what `If-Match` names).
func selfViewResponse(_ status: HTTPResponse.Status, _ user: UserRecord, headers: HTTPFields = [:]) -> Response {
    var fields = headers
    fields[.eTag] = EntityTag.of(user)
    return jsonResponse(status, Views.selfView(user), headers: fields)
}

/// The account version as an entity tag (`"v3"`), and back from `If-Match`.
enum EntityTag {
    static func of(_ user: UserRecord) -> String { "\"v\(user.version)\"" }

    /// The versions an `If-Match` field names: nil when there is none, or `*` (any current
    /// account); otherwise the versions of its strong tags, where a weak or foreign tag names
    /// none (RFC 9110 §13.1.1: If-Match compares strongly), so an empty list never matches.
    static func versions(ifMatch values: [String]) -> [Int]? {
        let tags = values.flatMap { $0.split(separator: ",") }.map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard !tags.isEmpty, !tags.contains("*") else { return nil }
        return tags.compactMap { tag -> Int? in
            guard tag.hasPrefix("\"v"), tag.hasSuffix("\""), tag.count > 3 else { return nil }
            let digits = tag.dropFirst(2).dropLast()
            guard digits.count <= 18, digits.allSatisfy(\.isASCII), digits.allSatisfy(\.isNumber) else { return nil }
            return Int(digits)
        }
    }
}

/// 204, not cacheable.
func noContent() -> Response {
    Response(status: .noContent, headers: [.cacheControl: "no-store"])
}
