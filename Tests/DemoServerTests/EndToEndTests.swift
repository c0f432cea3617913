import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import IdentityTestSupport
import Testing

/// Runs the built `DemoServer` binary (or another program) and talks to it over a real socket.
///
/// What it prints goes to a file, not a pipe. The tests run side by side in one process, and a
/// pipe's write end can be inherited by a child that another test starts at the same moment; a
/// long-lived one keeps the pipe from ever reaching its end. A file has no end to wait for:
/// once the process has exited, the file holds everything it wrote.
final class ServerProcess: @unchecked Sendable {
    // Process is not Sendable; the tests touch it from one task at a time.
    let process: Process
    let directory: URL
    private let logFile: URL

    static var binary: URL {
        let here = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        for candidate in [here, here.deletingLastPathComponent()] {
            let url = candidate.appendingPathComponent("DemoServer")
            if FileManager.default.isExecutableFile(atPath: url.path) { return url }
        }
        return URL(fileURLWithPath: ".build/debug/DemoServer")
    }

    /// Whether `stop` deletes `directory` (it does unless the caller gave one).
    private let ownsDirectory: Bool

    init(
        environment: [String: String], arguments: [String] = ["serve"], executable: URL = ServerProcess.binary,
        directory given: URL? = nil
    ) throws {
        ownsDirectory = given == nil
        directory = given ?? FileManager.default.temporaryDirectory.appendingPathComponent("identity-e2e-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        process = Process()
        process.executableURL = executable
        process.arguments = arguments
        process.currentDirectoryURL = directory
        var env = ["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"]
        env.merge(environment) { $1 }
        process.environment = env
        logFile = FileManager.default.temporaryDirectory.appendingPathComponent("identity-output-\(UUID()).log")
        guard FileManager.default.createFile(atPath: logFile.path, contents: nil) else {
            throw PrivatePostgresError(description: "cannot create \(logFile.path)")
        }
        let handle = try FileHandle(forWritingTo: logFile)
        defer { try? handle.close() }
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
    }

    /// Everything the process has written so far.
    var log: String { (try? String(contentsOf: logFile, encoding: .utf8)) ?? "" }

    /// Waits until the process has exited, when `log` holds everything it wrote.
    func waitForExit(seconds: Double = 120) async -> Bool {
        await waitFor(seconds: seconds) { !process.isRunning }
    }

    /// Polls `condition` until it holds or `seconds` pass.
    func waitFor(seconds: Double = 60, _ condition: () -> Bool) async -> Bool {
        await eventually(within: seconds, condition)
    }

    /// The port from the startup line `identity serving on http://HOST:PORT`.
    func port() async -> Int? {
        var port: Int?
        _ = await waitFor {
            guard let range = log.range(of: #"serving on http://127\.0\.0\.1:(\d+)"#, options: .regularExpression) else { return false }
            port = Int(log[range].split(separator: ":").last ?? "")
            return port != nil
        }
        return port
    }

    /// Stops the process (SIGTERM) and waits for it: short, and callable from a `defer`.
    func stop() {
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
        if ownsDirectory { try? FileManager.default.removeItem(at: directory) }
        try? FileManager.default.removeItem(at: logFile)
    }
}

struct HTTPReply {
    let status: Int
    let headers: [String: String]
    let json: [String: Any]
}

func call(_ method: String, _ url: String, json: String? = nil, token: String? = nil) async throws -> HTTPReply {
    var request = URLRequest(url: try #require(URL(string: url)))
    request.httpMethod = method
    if let json {
        request.httpBody = Data(json.utf8)
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
    }
    if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
    let (data, response) = try await URLSession.shared.data(for: request)
    let http = try #require(response as? HTTPURLResponse)
    var headers: [String: String] = [:]
    for (key, value) in http.allHeaderFields { headers["\(key)".lowercased()] = "\(value)" }
    let object = data.isEmpty ? [:] : (try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:])
    return HTTPReply(status: http.statusCode, headers: headers, json: object)
}

@Suite("DemoServer end to end", .serialized)
struct EndToEndTests {
    static let environment = [
        "HOST": "127.0.0.1", "PORT": "0", "JWT_SECRET": "end-to-end-secret-end-to-end-secret-0123",
        "ARGON2_MEMORY_KIB": "1024", "ARGON2_ITERATIONS": "1", "LOG_LEVEL": "info", "IDENTITY_SQLITE_PATH": ":memory:",
        // Mail goes to files in a folder of the test run's, never into the working copy.
        "MAIL_DIR": FileManager.default.temporaryDirectory.appendingPathComponent("identity-e2e-mail-\(ProcessInfo.processInfo.processIdentifier)").path,
    ]

    @Test("register → login → me → update → logout → 401 over a socket, then a graceful stop")
    func flow() async throws {
        let server = try ServerProcess(environment: Self.environment)
        defer { server.stop() }
        let port = try #require(await server.port(), "the server logs the port it listens on: \(server.log)")
        #expect(server.log.contains("store=in-memory bus=in-process"), "the startup line names the adapters")
        let base = "http://127.0.0.1:\(port)"

        let registered = try await call("POST", "\(base)/users", json: #"{"email":"Ada@Example.com","password":"correct horse battery","name":"Ada"}"#)
        #expect(registered.status == 201)
        let id = try #require(registered.json["id"] as? String)
        #expect(registered.headers["location"] == "/users/\(id)")

        let login = try await call("POST", "\(base)/auth/login", json: #"{"email":"ada@example.com","password":"correct horse battery"}"#)
        #expect(login.status == 200)
        let token = try #require(login.json["access_token"] as? String)

        let me = try await call("GET", "\(base)/users/me", token: token)
        #expect(me.status == 200)
        #expect(me.json["email"] as? String == "ada@example.com")
        #expect(me.headers["cache-control"] == "no-store")
        let requestID = try #require(me.headers["x-request-id"])

        let updated = try await call("PUT", "\(base)/users/me", json: #"{"name":"Countess"}"#, token: token)
        #expect(updated.status == 200)
        #expect(updated.json["name"] as? String == "Countess")

        #expect(try await call("POST", "\(base)/auth/logout", token: token).status == 204)
        let after = try await call("GET", "\(base)/users/me", token: token)
        #expect(after.status == 401)
        #expect(after.headers["www-authenticate"] == #"Bearer error="invalid_token""#)

        server.process.terminate()  // SIGTERM
        #expect(await server.waitFor { !server.process.isRunning }, "SIGTERM stops the server")
        #expect(server.process.terminationStatus == 0, "a graceful stop exits 0")
        #expect(server.log.contains("identity stopped"))
        #expect(!server.log.contains("correct horse battery"), "no password in the log")
        #expect(!server.log.contains(token), "no token in the log")
        _ = requestID
    }

    @Test("GET /metrics: requests by route template, logins, hash time, command bus time and outbox lag")
    func metrics() async throws {
        let server = try ServerProcess(environment: Self.environment)
        defer { server.stop() }
        let base = "http://127.0.0.1:\(try #require(await server.port(), "\(server.log)"))"
        let registered = try await call("POST", "\(base)/users", json: #"{"email":"ada@example.com","password":"correct horse battery","name":"Ada"}"#)
        let id = try #require(registered.json["id"] as? String)
        let token = try #require(try await call("POST", "\(base)/auth/login",
            json: #"{"email":"ada@example.com","password":"correct horse battery"}"#).json["access_token"] as? String)
        _ = try await call("GET", "\(base)/users/\(id)", token: token)

        var request = URLRequest(url: try #require(URL(string: "\(base)/metrics")))
        request.httpMethod = "GET"
        let (data, response) = try await URLSession.shared.data(for: request)
        #expect((response as? HTTPURLResponse)?.statusCode == 200)
        let text = String(decoding: data, as: UTF8.self)
        for expected in [
            #"http_requests_total{method="POST",route="/users",status="201"} 1"#,
            #"http_requests_total{method="GET",route="/users/{user_id}",status="200"} 1"#,
            #"identity_logins_total{outcome="success"} 1"#,
            #"identity_password_hash_duration_seconds_count{operation="hash"} 2"#,  // the start-up dummy hash, the registration's
            #"identity_password_hash_duration_seconds_count{operation="verify"} 1"#,
            #"identity_command_bus_duration_seconds_count{command="RegisterUser"} 1"#,
            "identity_outbox_lag_seconds ",
            #"http_request_duration_seconds_bucket{method="POST",route="/users",status="201",le="0.00025"}"#,
        ] {
            #expect(text.contains(expected), "\(expected)\n--- in ---\n\(text)")
        }
    }

    @Test("a bad variable stops start-up with one line naming it, exit code 78")
    func badConfiguration() async throws {
        var environment = Self.environment
        environment["PORT"] = "eighty"
        let server = try ServerProcess(environment: environment)
        defer { server.stop() }
        #expect(await server.waitForExit())
        #expect(server.process.terminationStatus == 78)
        let lines = server.log.split(separator: "\n")
        #expect(lines.count == 1 && lines.first?.hasPrefix("invalid configuration: PORT") == true, "\(server.log)")
    }

    @Test("by default the embedded store is identity.sqlite in the working directory: a restart keeps accounts and logouts")
    func sqliteDefault() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("identity-sqlite-\(UUID())")
        defer { try? FileManager.default.removeItem(at: directory) }
        var environment = Self.environment
        environment["IDENTITY_SQLITE_PATH"] = nil
        let first = try ServerProcess(environment: environment, directory: directory)
        let port = try #require(await first.port(), "\(first.log)")
        #expect(first.log.contains("store=sqlite(identity.sqlite)"))
        let base = "http://127.0.0.1:\(port)"
        #expect(try await call("POST", "\(base)/users", json: #"{"email":"kept@example.com","password":"correct horse battery","name":"Kept"}"#).status == 201)
        let login = try await call("POST", "\(base)/auth/login", json: #"{"email":"kept@example.com","password":"correct horse battery"}"#)
        let revoked = try #require(login.json["access_token"] as? String)
        #expect(try await call("POST", "\(base)/auth/logout", token: revoked).status == 204)
        first.stop()
        #expect(FileManager.default.fileExists(atPath: directory.appendingPathComponent("identity.sqlite").path))

        let second = try ServerProcess(environment: environment, directory: directory)
        defer { second.stop() }
        let again = "http://127.0.0.1:\(try #require(await second.port()))"
        let relogin = try await call("POST", "\(again)/auth/login", json: #"{"email":"kept@example.com","password":"correct horse battery"}"#)
        #expect(relogin.status == 200, "the account survived the restart")
        #expect(try await call("GET", "\(again)/users/me", token: revoked).status == 401, "and so did the logout")
    }

    @Test("an IDENTITY_SQLITE_PATH that cannot be opened stops start-up with one line, exit code 69")
    func sqliteUnopenable() async throws {
        var environment = Self.environment
        environment["IDENTITY_SQLITE_PATH"] = "/nonexistent-directory/identity.sqlite"
        let (status, output) = try await runDemoServer(["serve"], environment: environment)
        #expect(status == 69)
        #expect(output.hasPrefix("cannot start: cannot open the SQLite database at /nonexistent-directory/identity.sqlite"), "\(output)")
    }

    @Test("`DemoServer worker` without RABBITMQ_HOST stops with one line, exit code 78")
    func workerNeedsABroker() async throws {
        let (status, output) = try await runDemoServer(["worker"], environment: Self.environment)
        #expect(status == 78)
        #expect(output.hasPrefix("invalid configuration: RABBITMQ_HOST must be set for `DemoServer worker`"), "\(output)")
    }

    @Test("without JWT_SECRET the embedded server starts with a random one and warns")
    func randomSecret() async throws {
        var environment = Self.environment
        environment["JWT_SECRET"] = nil
        let server = try ServerProcess(environment: environment)
        defer { server.stop() }
        #expect(await server.port() != nil)
        #expect(server.log.contains("JWT_SECRET is unset"))
    }
}
