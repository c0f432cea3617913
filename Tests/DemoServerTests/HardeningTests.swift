import Foundation
import IdentityTestSupport
import Testing

/// Hostile input against the built binary over a real socket: what a scanner or an attacker
/// sends. Every answer is a 4xx, never a 5xx; the process neither crashes nor grows.
@Suite("DemoServer under hostile input", .serialized)
struct HardeningTests {
    static let megabyte = 1024 * 1024

    func withServer(_ environment: [String: String] = [:], _ body: (ServerProcess, Int) async throws -> Void) async throws {
        let server = try ServerProcess(environment: EndToEndTests.environment.merging(environment) { $1 })
        defer { server.stop() }
        let port = try #require(await server.port(), "\(server.log)")
        try await body(server, port)
        #expect(server.process.isRunning, "the server is still running")
        #expect(try await call("GET", "http://127.0.0.1:\(port)/health/live").status == 200, "and still answers")
        #expect(!server.log.contains("request failed"), "no request failed with a 5xx: \(server.log)")
    }

    /// Streams up to `total` bytes of body in chunks and returns the response the server gave
    /// (blocking socket calls, on a thread of their own).
    func upload(port: Int, head: String, total: Int, chunked: Bool) async throws -> (response: RawResponse?, sent: Int) {
        try await onOwnThread {
            let connection = try RawConnection(port: port)
            guard connection.send(head) else { return (nil, 0) }
            let chunk = [UInt8](repeating: UInt8(ascii: "a"), count: 64 * 1024)
            let framed = chunked ? Array("10000\r\n".utf8) + chunk + Array("\r\n".utf8) : chunk
            var sent = 0
            var early: [UInt8] = []
            while sent < total {
                early = connection.available()
                if !early.isEmpty { break }  // the server has answered: stop sending, as a client would
                guard connection.send(framed) else { break }
                sent += chunk.count
            }
            return (connection.readResponse(startingWith: early), sent)
        }
    }

    /// Sends `bytes` on a connection of their own and reads the answer, on a thread of its own.
    func exchange(port: Int, _ bytes: [UInt8]) async throws -> RawResponse? {
        try await onOwnThread {
            let connection = try RawConnection(port: port)
            _ = connection.send(bytes)
            return connection.readResponse()
        }
    }

    @Test("a 100 MB upload is cut off with 413, chunked or declared, and the server's memory does not grow")
    func hugeUpload() async throws {
        try await withServer { server, port in
            // Warm up the code paths (and their allocations) first, so the comparison is fair.
            _ = try await upload(port: port, head: "POST /users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
                           total: Self.megabyte, chunked: true)
            let before = try residentBytes(pid: server.process.processIdentifier)
            for _ in 0..<2 {
                let streamed = try await upload(
                    port: port, head: "POST /users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
                    total: 100 * Self.megabyte, chunked: true)
                #expect(streamed.response?.status == 413, "a chunked body is cut off while it is read")
                let declared = try await upload(
                    port: port, head: "POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: \(100 * Self.megabyte)\r\n\r\n",
                    total: 100 * Self.megabyte, chunked: false)
                #expect(declared.response?.status == 413, "a declared 100 MB body is refused")
            }
            let after = try residentBytes(pid: server.process.processIdentifier)
            #expect(after - before < 16 * Self.megabyte, "resident memory grew from \(before / 1024) KiB to \(after / 1024) KiB")
        }
    }

    /// Requests no client library would send. Each gets a 4xx answer.
    static let hostileRequests: [(String, [UInt8])] = [
        ("a 1 MB header", Array("GET /users/me HTTP/1.1\r\nHost: x\r\nX-Big: \(String(repeating: "a", count: 1024 * 1024))\r\n\r\n".utf8)),
        ("a thousand headers", Array(("GET /users/me HTTP/1.1\r\nHost: x\r\n" + (0..<1000).map { "X-H\($0): v\r\n" }.joined() + "\r\n").utf8)),
        ("a 64 KiB URL", Array("GET /users/\(String(repeating: "a", count: 64 * 1024)) HTTP/1.1\r\nHost: x\r\n\r\n".utf8)),
        ("a 1 MB URL", Array("GET /\(String(repeating: "a", count: 1024 * 1024)) HTTP/1.1\r\nHost: x\r\n\r\n".utf8)),
        ("a 4 KiB path of an id", Array("GET /users/\(String(repeating: "9", count: 4096)) HTTP/1.1\r\nHost: x\r\n\r\n".utf8)),
        ("invalid UTF-8 in the path", Array("GET /users/".utf8) + [0xFF, 0xFE, 0xC0, 0x80] + Array(" HTTP/1.1\r\nHost: x\r\n\r\n".utf8)),
        ("percent-encoded NUL and invalid UTF-8", Array("GET /users/%00%FF%C0%80 HTTP/1.1\r\nHost: x\r\n\r\n".utf8)),
        ("a NUL byte in a header", Array("GET /users/me HTTP/1.1\r\nHost: x\r\nX-A: a".utf8) + [0] + Array("b\r\n\r\n".utf8)),
        ("invalid UTF-8 in the bearer token", Array("GET /users/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ".utf8) + [0xFF, 0xFE] + Array("\r\n\r\n".utf8)),
        ("invalid UTF-8 in X-Request-ID", Array("GET /users/me HTTP/1.1\r\nHost: x\r\nX-Request-ID: ".utf8) + [0xFF] + Array("\r\n\r\n".utf8)),
        ("invalid UTF-8 in the Content-Type", Array("POST /users HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Type: application/json; charset=".utf8) + [0xFF] + Array("\r\n\r\n{}".utf8)),
        ("invalid UTF-8 in a form body", Array("POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: 22\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\nusername=a&password=".utf8) + [0xFF, 0xFE]),
        ("a body whose declared length is negative", Array("POST /users HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\nContent-Type: application/json\r\n\r\n".utf8)),
        ("two Content-Lengths that disagree", Array("POST /users HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\nContent-Type: application/json\r\n\r\n{}".utf8)),
        ("a request line that is not HTTP", Array("HELLO THERE\r\n\r\n".utf8)),
    ]

    @Test("huge headers, very long URLs, NUL and invalid UTF-8 anywhere: 4xx, never 5xx, never a crash")
    func hostileRequests() async throws {
        try await withServer { _, port in
            var answers: [String: Int] = [:]
            for (name, bytes) in Self.hostileRequests {
                answers[name] = try await exchange(port: port, bytes)?.status ?? 0  // 0: dropped without an answer
            }
            let wrong = answers.filter { !(400..<500).contains($0.value) }
            #expect(wrong.isEmpty, "each gets a 4xx answer; these did not: \(wrong)")
            #expect(answers.count == Self.hostileRequests.count)
        }
    }

    @Test("at trace level no log line holds a password, a token or a hash, whatever the requests were")
    func logRedaction() async throws {
        try await withServer(["LOG_LEVEL": "trace"]) { server, port in
            let base = "http://127.0.0.1:\(port)"
            let secrets = ["correct horse battery", "a new secret password", "wrong-guess-password", "tiny-pw"]
            _ = try await call("POST", "\(base)/users", json: #"{"email":"ada@example.com","password":"correct horse battery","name":"Ada"}"#)
            _ = try await call("POST", "\(base)/users", json: #"{"email":"bad","password":"tiny-pw","name":"Ada","extra":1}"#)
            _ = try await call("POST", "\(base)/auth/login", json: #"{"email":"ada@example.com","password":"wrong-guess-password"}"#)
            _ = try await call("POST", "\(base)/auth/login", json: #"{"email":"ada@example.com","password":"correct horse battery""#)
            let login = try await call("POST", "\(base)/auth/login", json: #"{"email":"ada@example.com","password":"correct horse battery"}"#)
            let token = try #require(login.json["access_token"] as? String)
            let formBody = "username=ada%40example.com&password=wrong-guess-password"
            let form = "POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: \(formBody.utf8.count)\r\n\r\n\(formBody)"
            #expect(try await exchange(port: port, Array(form.utf8))?.status == 401)
            _ = try await call("PUT", "\(base)/users/me", json: #"{"password":"a new secret password","current_password":"wrong-guess-password"}"#, token: token)
            _ = try await call("PUT", "\(base)/users/me", json: #"{"password":"a new secret password","current_password":"correct horse battery"}"#, token: token)
            _ = try await call("GET", "\(base)/users/me", token: token)
            _ = try await call("GET", "\(base)/users/me", token: token + "x")
            _ = try await call("POST", "\(base)/auth/logout", token: token)

            let log = server.log
            #expect(log.contains("request_id"), "trace logging is on and names requests")
            #expect(log.contains("hb.request.id="), "the text lines carry the request logger's own metadata (Hummingbird's request id)")
            for secret in secrets {
                #expect(!log.contains(secret), "a password in the log: \(secret)")
                #expect(!log.contains(secret.replacingOccurrences(of: " ", with: "+")), "a form-encoded password in the log")
            }
            #expect(!log.contains(token), "a token in the log")
            #expect(!log.contains(String(token.split(separator: ".")[2])), "a token's signature in the log")
            #expect(!log.contains("$argon2id$"), "a hash in the log")
        }
    }
}
