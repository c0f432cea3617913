import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
@testable import HTTPAdapter
import IdentityPorts
import IdentityTestSupport
import NIOCore
import Testing

/// Runs `body` against the identity router in process (or over a live socket).
func withIdentityApp(
    limits: LoginThrottleConfiguration = LoginThrottleConfiguration(), readiness: [any HealthCheck] = [], trustedProxies: TrustedProxies = .none,
    metrics: IdentityMetrics? = nil, mode: TestingSetup = .router,
    _ body: @escaping @Sendable (any TestClientProtocol, TestIdentity) async throws -> Void
) async throws {
    let identity = try await TestIdentity.make(limits: limits)
    let app = Application(router: IdentityHTTP.makeRouter(
        service: identity.service, readiness: readiness, trustedProxies: trustedProxies, metrics: metrics
    ))
    try await app.test(mode) { client in try await body(client, identity) }
}

let jsonHeaders: HTTPFields = [.contentType: "application/json"]
let password = "correct horse battery"

extension TestClientProtocol {
    func postJSON(_ uri: String, _ json: String, headers: HTTPFields = [:], method: HTTPRequest.Method = .post) async throws -> TestResponse {
        var fields = headers
        fields[.contentType] = "application/json"
        return try await execute(uri: uri, method: method, headers: fields, body: ByteBuffer(string: json))
    }

    func postBytes(_ uri: String, _ bytes: [UInt8], contentType: String = "application/json") async throws -> TestResponse {
        try await execute(uri: uri, method: .post, headers: [.contentType: contentType], body: ByteBuffer(bytes: bytes))
    }

    /// Registers `email` and returns its id and a token.
    func registerAndLogin(_ email: String = "ada@example.com", name: String = "Ada") async throws -> (id: String, token: String) {
        let registered = try await postJSON("/users", #"{"email":"\#(email)","password":"\#(password)","name":"\#(name)"}"#)
        #expect(registered.status == .created)
        let id = try #require(try registered.json()["id"] as? String)
        let login = try await postJSON("/auth/login", #"{"email":"\#(email)","password":"\#(password)"}"#)
        #expect(login.status == .ok)
        return (id, try #require(try login.json()["access_token"] as? String))
    }

    func get(_ uri: String, token: String? = nil, method: HTTPRequest.Method = .get) async throws -> TestResponse {
        var headers: HTTPFields = [:]
        if let token { headers[.authorization] = "Bearer \(token)" }
        return try await execute(uri: uri, method: method, headers: headers)
    }
}

extension TestResponse {
    var text: String { String(buffer: body) }

    func json() throws -> [String: Any] {
        let object = try JSONSerialization.jsonObject(with: Data(text.utf8))
        return try #require(object as? [String: Any])
    }

    /// Checks an RFC 9457 problem body with `status`, and returns it.
    @discardableResult
    func expectProblem(_ status: HTTPResponse.Status, sourceLocation: SourceLocation = #_sourceLocation) throws -> [String: Any] {
        #expect(self.status == status, sourceLocation: sourceLocation)
        #expect(headers[.contentType] == "application/problem+json", sourceLocation: sourceLocation)
        #expect(headers[.requestID] != nil, sourceLocation: sourceLocation)
        let body = try json()
        #expect(body["status"] as? Int == Int(status.code), sourceLocation: sourceLocation)
        #expect(body["type"] is String && body["title"] is String && body["detail"] is String, sourceLocation: sourceLocation)
        return body
    }

    /// The pointers of a 422 body's errors.
    func pointers() throws -> [String] {
        let errors = try json()["errors"] as? [[String: Any]] ?? []
        return errors.compactMap { $0["pointer"] as? String }
    }
}
