import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Testing

/// A program of the test, its output in a file (a pipe could be inherited by another test's child).
final class ChildProcess: @unchecked Sendable {
    // Process is not Sendable; the test touches it from one task at a time.
    let process: Process
    private let logFile: URL

    init(_ executable: String, _ arguments: [String], environment: [String: String]) throws {
        process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        var env = ["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"]
        env.merge(environment) { $1 }
        process.environment = env
        logFile = FileManager.default.temporaryDirectory.appendingPathComponent("notes-e2e-\(UUID()).log")
        guard FileManager.default.createFile(atPath: logFile.path, contents: nil) else { throw TestFailure("cannot create \(logFile.path)") }
        let handle = try FileHandle(forWritingTo: logFile)
        defer { try? handle.close() }
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
    }

    /// Everything the process has written so far.
    var log: String { (try? String(contentsOf: logFile, encoding: .utf8)) ?? "" }

    /// The port of the first line matching `prefix` followed by `http://127.0.0.1:PORT`.
    func port(after prefix: String) async -> Int? {
        var port: Int?
        _ = await poll(within: 60) {
            guard let range = log.range(of: prefix + #" on http://127\.0\.0\.1:(\d+)"#, options: .regularExpression) else { return false }
            port = Int(log[range].split(separator: ":").last ?? "")
            return port != nil
        }
        return port
    }

    /// Waits for the process to exit (polling: no thread blocked) and returns its status.
    func exitStatus(within seconds: Double = 120) async -> Int32? {
        guard await poll(within: seconds, { !process.isRunning }) else { return nil }
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// Stops the process (SIGTERM) and waits for it.
    func stop() {
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
        try? FileManager.default.removeItem(at: logFile)
    }
}

/// Polls `condition` every 10 ms until it holds or `seconds` pass; returns whether it held.
func poll(within seconds: Double, _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + .seconds(seconds)
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return try await condition()
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

struct Reply {
    let status: Int
    let body: String
    var json: [String: Any] { (try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]) ?? [:] }
}

func call(_ method: String, _ url: String, json: String? = nil, token: String? = nil) async throws -> Reply {
    var request = URLRequest(url: try #require(URL(string: url)))
    request.httpMethod = method
    if let json {
        request.httpBody = Data(json.utf8)
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
    }
    if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
    let (data, response) = try await URLSession.shared.data(for: request)
    return Reply(status: try #require(response as? HTTPURLResponse).statusCode, body: String(decoding: data, as: UTF8.self))
}

/// The `kid` in a token's header.
func kid(of token: String) -> String? {
    var base64 = String(token.prefix { $0 != "." }).replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
    base64 += String(repeating: "=", count: (4 - base64.count % 4) % 4)
    guard let data = Data(base64Encoded: base64), let header = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return nil }
    return header["kid"] as? String
}
