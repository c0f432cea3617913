import Foundation
import Testing

/// A PostgreSQL server of the test's own, in a temporary directory on a free port, that the
/// test may stop and start again without disturbing tests that share the main one.
/// Needs `IDENTITY_TEST_POSTGRES_BIN` (set by `scripts/test`).
final class PrivatePostgres: Sendable {
    static var binDirectory: String? { ProcessInfo.processInfo.environment["IDENTITY_TEST_POSTGRES_BIN"] }
    static var isAvailable: Bool { binDirectory != nil }
    static let skipReason: Comment = "IDENTITY_TEST_POSTGRES_BIN is unset: run scripts/test, which installs PostgreSQL"

    let port: Int
    let directory: String
    private let bin: String

    init() throws {
        bin = try #require(Self.binDirectory)
        port = try freePort()
        let base = ProcessInfo.processInfo.environment["IDENTITY_TEST_WORKDIR"] ?? NSTemporaryDirectory()
        directory = (base as NSString).appendingPathComponent("private-pg-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try runAsOwner("chown postgres \(directory) 2>/dev/null; true", asPostgres: false)
        try runAsOwner("'\(bin)/initdb' -D '\(directory)/data' -U postgres --auth=trust --no-locale -E UTF8 >/dev/null")
        let settings = "port = \(port)\nunix_socket_directories = '\(directory)'\nlisten_addresses = '127.0.0.1'\nfsync = off\n"
        try runAsOwner("printf \"\(settings)\" >> '\(directory)/data/postgresql.auto.conf'")
        try start()
        try runAsOwner("'\(bin)/psql' -q -h 127.0.0.1 -p \(port) -U postgres -c 'CREATE DATABASE identity' >/dev/null")
    }

    func start() throws {
        try runAsOwner("'\(bin)/pg_ctl' -D '\(directory)/data' -l '\(directory)/log' -w start >/dev/null")
    }

    func stop() throws {
        try runAsOwner("'\(bin)/pg_ctl' -D '\(directory)/data' -m fast -w stop >/dev/null")
    }

    /// Stops the server if it runs and deletes its files.
    func destroy() {
        try? stop()
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// The `POSTGRES_*` variables for the demo server.
    var environment: [String: String] {
        ["POSTGRES_HOST": "127.0.0.1", "POSTGRES_PORT": "\(port)", "POSTGRES_USER": "postgres", "POSTGRES_DB": "identity",
         "POSTGRES_TLS": "disable", "POSTGRES_TIMEOUT_SECONDS": "1"]
    }

    /// Runs a shell command as the `postgres` user when we are root (initdb refuses root).
    private func runAsOwner(_ command: String, asPostgres: Bool = true) throws {
        let line = asPostgres && getuid() == 0
            ? "su postgres -s /bin/sh -c \"\(command.replacingOccurrences(of: "\"", with: "\\\""))\"" : command
        let status = try runShell(line)
        guard status == 0 else { throw PrivatePostgresError(description: "command failed (\(status)): \(command)") }
    }
}

/// Runs `/bin/sh -c command` and waits for it. posix_spawn and waitpid rather than Foundation's
/// Process, whose waitUntilExit does not reap children reliably from Swift concurrency's threads.
func runShell(_ command: String) throws -> Int32 {
    var pid: pid_t = 0
    let argv: [UnsafeMutablePointer<CChar>?] = ["/bin/sh", "-c", command].map { (word: String) in strdup(word) } + [nil]
    defer { argv.forEach { free($0) } }
    let spawned = posix_spawn(&pid, "/bin/sh", nil, nil, argv, environ)
    guard spawned == 0 else { throw PrivatePostgresError(description: "posix_spawn failed (\(spawned))") }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) == -1 {
        guard errno == EINTR else { throw PrivatePostgresError(description: "waitpid failed (\(errno))") }
    }
    // WIFEXITED / WEXITSTATUS
    return (status & 0x7F) == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
}

struct PrivatePostgresError: Error, CustomStringConvertible {
    let description: String
}

/// A TCP port on 127.0.0.1 that is free right now.
func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
    }
    guard bound else { throw PrivatePostgresError(description: "no free port") }
    return Int(UInt16(bigEndian: address.sin_port))
}
