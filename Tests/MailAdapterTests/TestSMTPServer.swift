import Foundation
import Testing

/// The Python with aiosmtpd that scripts/test installs; without it the SMTP tests are skipped.
let smtpPython = ProcessInfo.processInfo.environment["IDENTITY_TEST_SMTP_PYTHON"].flatMap { $0.isEmpty ? nil : $0 }

/// A private SMTP server (scripts/smtp-test-server.py on aiosmtpd) for one test, on a free
/// loopback port, storing what it accepts in a directory of its own.
final class TestSMTPServer: @unchecked Sendable {
    /// What the server is.
    struct Options {
        var mode = "smtp"
        var tls = "none"
        var certificate: TestCertificates.Server?
        var auth: (user: String, password: String)?
        var reject: [String] = []
        var port = 0
    }

    let directory: URL
    let maildir: URL
    private(set) var port = 0
    private var process: Process?
    private let options: Options

    init(_ options: Options) async throws {
        self.options = options
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("identity-smtp-\(UUID().uuidString)")
        maildir = directory.appendingPathComponent("mail")
        try FileManager.default.createDirectory(at: maildir, withIntermediateDirectories: true)
        try await start(port: options.port)
    }

    /// Starts the server (again), on `port` or a free one, and waits until it listens.
    func start(port requested: Int? = nil) async throws {
        let portFile = directory.appendingPathComponent("port")
        try? FileManager.default.removeItem(at: portFile)
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("scripts/smtp-test-server.py")
        var arguments = [
            script.path, "--port", String(requested ?? port), "--port-file", portFile.path, "--maildir", maildir.path,
            "--mode", options.mode, "--tls", options.tls,
        ]
        if let certificate = options.certificate { arguments += ["--cert", certificate.certificate.path, "--key", certificate.key.path] }
        for address in options.reject { arguments += ["--reject", address] }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: smtpPython ?? "/usr/bin/false")
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        if let auth = options.auth { environment["SMTP_TEST_AUTH"] = "\(auth.user):\(auth.password)" }
        process.environment = environment
        process.standardOutput = FileHandle.nullDevice
        let logPath = directory.appendingPathComponent("server.log").path
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        process.standardError = FileHandle(forWritingAtPath: logPath)
        try process.run()
        self.process = process
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            if let text = try? String(contentsOf: portFile, encoding: .utf8), let port = Int(text) {
                self.port = port
                return
            }
            guard process.isRunning else { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        let output = (try? String(contentsOf: directory.appendingPathComponent("server.log"), encoding: .utf8)) ?? ""
        stop()
        throw TestServerError(description: "the SMTP test server did not start: \(output.suffix(2000))")
    }

    /// Stops the server (by its process id) and waits for it.
    func stop() {
        guard let process, process.isRunning else { return }
        process.terminate()
        process.waitUntilExit()
        self.process = nil
    }

    /// The messages accepted so far, raw.
    func received() throws -> [Data] {
        try FileManager.default.contentsOfDirectory(at: maildir, includingPropertiesForKeys: nil)
            .filter { $0.pathExtension == "eml" }
            .sorted { $0.lastPathComponent < $1.lastPathComponent }
            .map { try Data(contentsOf: $0) }
    }

    deinit {
        stop()
        try? FileManager.default.removeItem(at: directory)
    }
}

struct TestServerError: Error, CustomStringConvertible {
    let description: String
}

/// A certificate authority made for one test run with the openssl command, and server
/// certificates it issues for `localhost` and 127.0.0.1. No key is ever committed.
final class TestCertificates: @unchecked Sendable {
    struct Server {
        let certificate: URL
        let key: URL
    }

    let directory: URL
    let caCertificate: URL

    init(name: String) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("identity-ca-\(name)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        caCertificate = directory.appendingPathComponent("ca.pem")
        try Self.openssl([
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", directory.appendingPathComponent("ca.key").path, "-out", caCertificate.path,
            "-days", "2", "-subj", "/CN=Identity test CA \(name)",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        ])
    }

    /// A server certificate for `names` (DNS names) and 127.0.0.1.
    func issue(for names: [String] = ["localhost"]) throws -> Server {
        let stem = UUID().uuidString
        let key = directory.appendingPathComponent("\(stem).key"), request = directory.appendingPathComponent("\(stem).csr")
        let certificate = directory.appendingPathComponent("\(stem).pem"), extensions = directory.appendingPathComponent("\(stem).ext")
        try Self.openssl([
            "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key.path,
            "-out", request.path, "-subj", "/CN=\(names.first ?? "localhost")",
        ])
        let sans = (names.map { "DNS:\($0)" } + ["IP:127.0.0.1"]).joined(separator: ",")
        try "subjectAltName=\(sans)\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n".write(to: extensions, atomically: true, encoding: .utf8)
        try Self.openssl([
            "x509", "-req", "-in", request.path, "-CA", caCertificate.path, "-CAkey", directory.appendingPathComponent("ca.key").path,
            "-CAcreateserial", "-out", certificate.path, "-days", "2", "-extfile", extensions.path,
        ])
        return Server(certificate: certificate, key: key)
    }

    private static func openssl(_ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw TestServerError(description: "openssl \(arguments.first ?? "") failed (\(process.terminationStatus))")
        }
    }

    deinit {
        try? FileManager.default.removeItem(at: directory)
    }
}
