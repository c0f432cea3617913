import Foundation
import HostAppKit
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing

@Suite("The host application embedding Identity")
struct HostAppTests {
    @Test("register and log in under /identity, then reach /notes with the token, and not without it")
    func notes() async throws {
        let app = try await makeApplication(jwtSecret: String(repeating: "host-app-secret-", count: 3))
        try await app.test(.router) { client in
            let json: HTTPFields = [.contentType: "application/json"]
            let account = #"{"email":"host@example.com","password":"correct horse battery","name":"Host"}"#
            let registered = try await client.execute(uri: "/identity/users", method: .post, headers: json, body: ByteBuffer(string: account))
            #expect(registered.status == .created)
            let id = try #require(try JSONSerialization.jsonObject(with: Data(String(buffer: registered.body).utf8)) as? [String: Any])["id"] as? String
            let credentials = #"{"email":"host@example.com","password":"correct horse battery"}"#
            let login = try await client.execute(uri: "/identity/auth/login", method: .post, headers: json, body: ByteBuffer(string: credentials))
            let body = try #require(try JSONSerialization.jsonObject(with: Data(String(buffer: login.body).utf8)) as? [String: Any])
            let token = try #require(body["access_token"] as? String)

            let refused = try await client.execute(uri: "/notes", method: .get)
            #expect(refused.status == .unauthorized)
            let notes = try await client.execute(uri: "/notes", method: .get, headers: [.authorization: "Bearer \(token)"])
            #expect(notes.status == .ok)
            #expect(String(buffer: notes.body) == "the notes of \(try #require(id))\n")
        }
    }
}
