import Foundation
import NIOCore
import HTTPTypes
import HummingbirdTesting
@testable import HTTPAdapter
import IdentityPorts
import Testing

@Suite("HTTP: framing and conventions")
struct FramingTests {
    @Test("malformed JSON gives 400", arguments: [
        "{", "{\"email\":}", "[1,2", "nul", "{\"a\":1}{", "{'a':1}", "{\"a\":01}", "{\"a\":\"\\x\"}", "{\"a\":\"\u{1}\"}", "",
    ])
    func malformed(body: String) async throws {
        try await withIdentityApp { client, _ in
            try await client.postJSON("/users", body).expectProblem(.badRequest)
        }
    }

    static let hostileBodies: [[UInt8]] = {
        let deep: [UInt8] = Array(String(repeating: "[", count: 33).utf8) + Array(String(repeating: "]", count: 33).utf8)
        let badUTF8: [UInt8] = Array(#"{"name":"#.utf8) + [0x22, 0xC3, 0x28, 0x22, 0x7D]
        let encodedSurrogate: [UInt8] = Array("{\"name\":\"".utf8) + [0xED, 0xA0, 0x80] + Array("\"}".utf8)
        let overlong: [UInt8] = Array("{\"name\":\"".utf8) + [0xC0, 0xAF] + Array("\"}".utf8)
        let bom: [UInt8] = [0xEF, 0xBB, 0xBF] + Array("{}".utf8)
        let escapes = [#"{"name":"\u0000"}"#, #"{"name":"\ud800"}"#, #"{"name":"\udc00x"}"#, #"{"name":"\ud800\u0041"}"#,
                       #"{"name":"a","name":"b"}"#]
        return [deep, badUTF8, encodedSurrogate, overlong, bom] + escapes.map { Array($0.utf8) }
    }()

    @Test("JSON deeper than 32, invalid UTF-8, NUL, lone surrogates and duplicate keys give 400, never 500",
          arguments: hostileBodies)
    func hostile(bytes: [UInt8]) async throws {
        try await withIdentityApp { client, _ in
            try await client.postBytes("/users", bytes).expectProblem(.badRequest)
        }
    }

    @Test("nesting of exactly 32 is parsed (and then refused as not an object)")
    func depthLimit() async throws {
        let nested = String(repeating: "[", count: 32) + String(repeating: "]", count: 32)
        #expect(throws: Never.self) { try StrictJSONParser.parse(Array(nested.utf8)) }
        try await withIdentityApp { client, _ in
            try await client.postJSON("/users", nested).expectProblem(.unprocessableContent)
        }
    }

    @Test("a valid surrogate pair and escaped text decode exactly")
    func surrogatePair() throws {
        let value = try StrictJSONParser.parse(Array(#"{"a":"\ud83d\ude00 \"q\" \\ \/ é\n","b":[true,false,null,-1.5e3]}"#.utf8))
        #expect(value == .object([("a", .string("😀 \"q\" \\ / é\n")),
                                  ("b", .array([.bool(true), .bool(false), .null, .number("-1.5e3")]))]))
    }

    @Test("a string whose plain ASCII beginning runs into an escape, a non-ASCII character or a control character decodes (or is refused) exactly")
    func plainPrefix() throws {
        let value = try StrictJSONParser.parse(Array(#"{"a":"plain \"quoted\" text","b":"naïve","c":"tab\tend","d":"all plain"}"#.utf8))
        #expect(value == .object([("a", .string("plain \"quoted\" text")), ("b", .string("naïve")), ("c", .string("tab\tend")),
                                  ("d", .string("all plain"))]))
        #expect(throws: MalformedJSON.self) { try StrictJSONParser.parse(Array("{\"a\":\"plain\u{01}\"}".utf8)) }
        #expect(throws: MalformedJSON.self) { try StrictJSONParser.parse(Array(#"{"a":"plain, unterminated"#.utf8)) }
    }

    @Test("a body over 16 KiB gives 413, whether declared or streamed")
    func tooLarge() async throws {
        try await withIdentityApp { client, _ in
            let big = #"{"email":"a@example.com","password":"\#(String(repeating: "x", count: 17_000))","name":"A"}"#
            try await client.postJSON("/users", big).expectProblem(.contentTooLarge)
        }
        try await withIdentityApp(mode: .live) { client, _ in
            let big = #"{"email":"a@example.com","password":"\#(String(repeating: "x", count: 17_000))","name":"A"}"#
            try await client.postJSON("/users", big).expectProblem(.contentTooLarge)
            // A body of exactly 16 KiB is read (and refused for its content, not its size).
            let padding = String(repeating: " ", count: 16 * 1024 - 2)
            try await client.postJSON("/users", "{" + padding + "}").expectProblem(.unprocessableContent)
        }
    }

    @Test("an unsupported Content-Type gives 415", arguments: ["text/plain", "application/xml", "", "application/json; charset=latin1"])
    func unsupportedMediaType(type: String) async throws {
        try await withIdentityApp { client, _ in
            var headers: HTTPFields = [:]
            if !type.isEmpty { headers[.contentType] = type }
            let response = try await client.execute(uri: "/users", method: .post, headers: headers, body: ByteBuffer(string: "{}"))
            try response.expectProblem(.unsupportedMediaType)
            let form = try await client.postBytes("/users", Array("email=a".utf8), contentType: "application/x-www-form-urlencoded")
            try form.expectProblem(.unsupportedMediaType)
        }
    }

    @Test("JSON with a charset parameter is accepted")
    func charset() async throws {
        try await withIdentityApp { client, _ in
            let body = #"{"email":"a@example.com","password":"\#(password)","name":"A"}"#
            let response = try await client.execute(uri: "/users", method: .post, headers: [.contentType: "Application/JSON; charset=UTF-8"],
                                                    body: ByteBuffer(string: body))
            #expect(response.status == .created)
        }
    }

    @Test("an unknown path gives 404; a known path with a wrong method gives 405 with Allow", arguments: [
        ("/nope", HTTPRequest.Method.get, nil as String?),
        ("/users/me/extra", .get, nil),
        ("/users", .get, "POST"),
        ("/users/me", .patch, "GET, PUT, DELETE"),
        ("/users/3f2504e0-4f89-11d3-9a0c-0305e82c3301", .delete, "GET"),
        ("/auth/login", .get, "POST"),
        ("/auth/logout", .get, "POST"),
        ("/health/live", .post, "GET"),
        ("/openapi.json", .delete, "GET"),
    ])
    func routing(path: String, method: HTTPRequest.Method, allow: String?) async throws {
        try await withIdentityApp { client, _ in
            let response = try await client.execute(uri: path, method: method)
            if let allow {
                try response.expectProblem(.methodNotAllowed)
                #expect(response.headers[.allow] == allow)
            } else {
                try response.expectProblem(.notFound)
            }
        }
    }

    @Test("X-Request-ID: a valid client value is echoed, anything else is replaced", arguments: [
        ("abc-123_x.y", true), (String(repeating: "a", count: 128), true), (String(repeating: "a", count: 129), false),
        ("has space", false), ("semi;colon", false), ("ünïcode", false),
    ])
    func requestID(value: String, echoed: Bool) async throws {
        try await withIdentityApp { client, _ in
            let response = try await client.execute(uri: "/health/live", method: .get, headers: [.requestID: value])
            let returned = try #require(response.headers[.requestID])
            if echoed {
                #expect(returned == value)
            } else {
                #expect(returned != value && RequestID.acceptable(returned) != nil)
            }
            // An error response follows the same rule.
            let error = try await client.execute(uri: "/nope", method: .get, headers: [.requestID: value])
            let onError = try #require(error.headers[.requestID])
            if echoed {
                #expect(onError == value)
            } else {
                #expect(onError != value && RequestID.acceptable(onError) != nil)
            }
        }
    }

    @Test("a generated request id differs per request")
    func generated() async throws {
        try await withIdentityApp { client, _ in
            let a = try await client.get("/health/live").headers[.requestID]
            let b = try await client.get("/health/live").headers[.requestID]
            #expect(a != nil && a != b)
        }
    }
}

@Suite("HTTP: operations")
struct OperationsTests {
    struct Failing: HealthCheck {
        let backendName = "postgres"
        func checkHealth() async throws { throw BackendUnavailable(backend: "postgres") }
    }

    struct Healthy: HealthCheck {
        let backendName = "rabbitmq"
        func checkHealth() async throws {}
    }

    @Test("live is 200; ready is 200 when every backend answers")
    func health() async throws {
        try await withIdentityApp(readiness: [Healthy()]) { client, _ in
            let live = try await client.get("/health/live")
            let ready = try await client.get("/health/ready")
            #expect(live.status == .ok)
            #expect(ready.status == .ok)
        }
    }

    @Test("ready is 503 naming the backend that does not answer; live stays 200")
    func notReady() async throws {
        try await withIdentityApp(readiness: [Healthy(), Failing()]) { client, _ in
            let ready = try await client.get("/health/ready")
            let body = try ready.expectProblem(.serviceUnavailable)
            #expect((body["detail"] as? String)?.contains("postgres") == true)
            #expect(try await client.get("/health/live").status == .ok)
        }
    }

    @Test("/openapi.json is OpenAPI 3.1 and documents exactly the routes served, with their errors")
    func openAPI() async throws {
        try await withIdentityApp { client, _ in
            let response = try await client.get("/openapi.json")
            #expect(response.status == .ok)
            let document = try response.json()
            #expect(document["openapi"] as? String == "3.1.0")
            let paths = try #require(document["paths"] as? [String: [String: Any]])
            var documented: [String: Set<String>] = [:]
            for (path, operations) in paths { documented[path] = Set(operations.keys.map { $0.uppercased() }) }
            var served: [String: Set<String>] = [:]
            for route in IdentityHTTP.routeTable.routes {
                served["/" + route.template.joined(separator: "/")] = Set(route.methods.map(\.rawValue))
            }
            #expect(documented == served)
            let secured = ["/users/me", "/users/{user_id}", "/auth/logout"]
            for path in secured {
                for (_, operation) in paths[path] ?? [:] {
                    let responses = (operation as? [String: Any])?["responses"] as? [String: Any]
                    #expect(responses?["401"] != nil, "\(path) documents 401")
                }
            }
            let register = (paths["/users"]?["post"] as? [String: Any])?["responses"] as? [String: Any] ?? [:]
            #expect(Set(register.keys).isSuperset(of: ["201", "400", "409", "413", "415", "422"]))
            let login = (paths["/auth/login"]?["post"] as? [String: Any])?["responses"] as? [String: Any] ?? [:]
            #expect(Set(login.keys).isSuperset(of: ["200", "401", "422", "429"]))
        }
    }
}
