import Foundation
import HostAppKit
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import PostgresAdapter
import Testing

@Suite("The host application embedding Identity")
struct HostAppTests {
    static let secret = String(repeating: "host-app-secret-", count: 3)

    @Test("in memory: register and log in under /identity, reach /notes with the token and not without it, nor after logout")
    func inMemory() async throws {
        let app = try await makeApplication(jwtSecret: Self.secret)
        try await app.test(.router) { client in _ = try await Self.notes(client) }
    }

    @Test("in memory with ES256 (HOST_APP_JWT_ALGORITHM=ES256): the same story, with tokens signed by a key pair the stack made")
    func inMemoryES256() async throws {
        let app = try await makeApplication(jwtSecret: Self.secret, port: 0, keyPairs: true)
        // Live, so that prepare() runs and makes the first key.
        try await app.test(.live) { client in
            let token = try await Self.notes(client)
            let header = try #require(token.split(separator: ".").first.flatMap { Data(base64URL: String($0)) })
            let fields = try #require(try JSONSerialization.jsonObject(with: header) as? [String: Any])
            #expect(fields["alg"] as? String == "ES256" && (fields["kid"] as? String)?.isEmpty == false, "\(fields)")
        }
    }

    static let environment = ProcessInfo.processInfo.environment

    @Test(
        "on PostgreSQL: the same, with the host's own client and Identity's services in the host's group",
        .enabled(if: environment["IDENTITY_TEST_POSTGRES_HOST"] != nil, "IDENTITY_TEST_POSTGRES_HOST is unset: run scripts/test")
    )
    func postgres() async throws {
        let postgres = PostgresConfiguration(
            host: Self.environment["IDENTITY_TEST_POSTGRES_HOST"] ?? "127.0.0.1",
            port: Int(Self.environment["IDENTITY_TEST_POSTGRES_PORT"] ?? "") ?? 5432,
            username: Self.environment["IDENTITY_TEST_POSTGRES_USER"] ?? "postgres",
            database: Self.environment["IDENTITY_TEST_POSTGRES_DB"] ?? "postgres", tls: .disable
        )
        let app = try await makePostgresApplication(postgres: postgres, jwtSecret: Self.secret, port: 0)
        // Live: the server, the client and the services run, and the schema is migrated first.
        try await app.test(.live) { client in _ = try await Self.notes(client) }
    }

    /// The host's story, whatever the store: an account, a token, the host's route with and
    /// without it, and the token refused after a logout; returns that token.
    @discardableResult
    static func notes(_ client: some TestClientProtocol) async throws -> String {
        let json: HTTPFields = [.contentType: "application/json"]
        let email = "host-\(UUID().uuidString.prefix(8).lowercased())@example.com"
        let account = #"{"email":"\#(email)","password":"correct horse battery","name":"Host"}"#
        let registered = try await client.execute(uri: "/identity/users", method: .post, headers: json, body: ByteBuffer(string: account))
        #expect(registered.status == .created)
        let id = try #require(try JSONSerialization.jsonObject(with: Data(String(buffer: registered.body).utf8)) as? [String: Any])["id"] as? String
        let credentials = #"{"email":"\#(email)","password":"correct horse battery"}"#
        let login = try await client.execute(uri: "/identity/auth/login", method: .post, headers: json, body: ByteBuffer(string: credentials))
        let body = try #require(try JSONSerialization.jsonObject(with: Data(String(buffer: login.body).utf8)) as? [String: Any])
        let token = try #require(body["access_token"] as? String)
        let bearer: HTTPFields = [.authorization: "Bearer \(token)"]

        let refused = try await client.execute(uri: "/notes", method: .get)
        #expect(refused.status == .unauthorized)
        let notes = try await client.execute(uri: "/notes", method: .get, headers: bearer)
        #expect(notes.status == .ok)
        #expect(String(buffer: notes.body) == "the notes of \(try #require(id))\n")

        let logout = try await client.execute(uri: "/identity/auth/logout", method: .post, headers: bearer)
        #expect(logout.status == .noContent)
        let afterLogout = try await client.execute(uri: "/notes", method: .get, headers: bearer)
        #expect(afterLogout.status == .unauthorized, "a revoked token no longer reaches the host's route")
        return token
    }
}

extension Data {
    /// Decodes unpadded base64url (a JWT segment).
    init?(base64URL text: String) {
        var text = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        text += String(repeating: "=", count: (4 - text.count % 4) % 4)
        self.init(base64Encoded: text)
    }
}
