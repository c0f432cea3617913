import Foundation
public import Testing

/// A PostgreSQL server of the test's own, in a temporary directory on a free port, that the
/// test may stop and start again without disturbing tests that share the main one.
/// Needs `IDENTITY_TEST_POSTGRES_BIN` (set by `scripts/test`).
public final class PrivatePostgres: Sendable {
    public static var binDirectory: String? { ProcessInfo.processInfo.environment["IDENTITY_TEST_POSTGRES_BIN"] }
    public static var isAvailable: Bool { binDirectory != nil }
    public static let skipReason: Comment = "IDENTITY_TEST_POSTGRES_BIN is unset: run scripts/test, which installs PostgreSQL"

    public let port: Int
    public let directory: String
    private let bin: String

    public init() async throws {
        bin = try #require(Self.binDirectory)
        port = try freePort()
        let base = ProcessInfo.processInfo.environment["IDENTITY_TEST_WORKDIR"] ?? NSTemporaryDirectory()
        directory = (base as NSString).appendingPathComponent("private-pg-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try await runAsOwner("chown postgres \(directory) 2>/dev/null; true", asPostgres: false)
        try await runAsOwner("'\(bin)/initdb' -D '\(directory)/data' -U postgres --auth=trust --no-locale -E UTF8 >/dev/null")
        let settings = "port = \(port)\nunix_socket_directories = '\(directory)'\nlisten_addresses = '127.0.0.1'\nfsync = off\n"
        try await runAsOwner("printf \"\(settings)\" >> '\(directory)/data/postgresql.auto.conf'")
        try await start()
        try await runAsOwner("'\(bin)/psql' -q -h 127.0.0.1 -p \(port) -U postgres -c 'CREATE DATABASE identity' >/dev/null")
    }

    public func start() async throws {
        try await runAsOwner(startCommand)
    }

    public func stop() async throws {
        try await runAsOwner(stopCommand)
    }

    private var startCommand: String { "'\(bin)/pg_ctl' -D '\(directory)/data' -l '\(directory)/log' -w start >/dev/null" }
    private var stopCommand: String { "'\(bin)/pg_ctl' -D '\(directory)/data' -m fast -w stop >/dev/null" }

    /// Stops the server if it runs and deletes its files; blocks, for a `defer`.
    public func destroy() {
        _ = try? runShellBlocking(ownersCommand(stopCommand))
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// The `POSTGRES_*` variables for the demo server.
    public var environment: [String: String] {
        ["POSTGRES_HOST": "127.0.0.1", "POSTGRES_PORT": "\(port)", "POSTGRES_USER": "postgres", "POSTGRES_DB": "identity",
         "POSTGRES_TLS": "disable", "POSTGRES_TIMEOUT_SECONDS": "1"]
    }

    /// Runs a shell command as the `postgres` user when we are root (initdb refuses root).
    private func runAsOwner(_ command: String, asPostgres: Bool = true) async throws {
        let status = try await runShell(asPostgres ? ownersCommand(command) : command)
        guard status == 0 else { throw PrivatePostgresError(description: "command failed (\(status)): \(command)") }
    }

    /// `command` as the `postgres` user when we are root.
    private func ownersCommand(_ command: String) -> String {
        getuid() == 0 ? "su postgres -s /bin/sh -c \"\(command.replacingOccurrences(of: "\"", with: "\\\""))\"" : command
    }
}

/// Runs `/bin/sh -c command` to its end on a thread of its own (see `onOwnThread`).
public func runShell(_ command: String) async throws -> Int32 {
    try await onOwnThread { try runShellBlocking(command) }
}

/// Runs `/bin/sh -c command` and waits for it, blocking the calling thread: for a `defer`.
/// posix_spawn and waitpid rather than Foundation's Process, whose waitUntilExit does not reap
/// children reliably from Swift concurrency's threads.
///
/// The child gets stdin, stdout and stderr and no other descriptor. Without that, a server it
/// starts in the background (`pg_ctl start`, `rabbitmq-server &`) would inherit whatever pipes
/// other tests have open at that moment, such as a demo server's output pipe, and hold them
/// open for its whole life: that test would then wait for an end of output that never comes.
public func runShellBlocking(_ command: String) throws -> Int32 {
    var pid: pid_t = 0
    let argv: [UnsafeMutablePointer<CChar>?] = ["/bin/sh", "-c", command].map { (word: String) in strdup(word) } + [nil]
    defer { argv.forEach { free($0) } }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    guard let closeFrom = closeFrom, closeFrom(&actions, 3) == 0 else {
        throw PrivatePostgresError(description: "posix_spawn_file_actions_addclosefrom_np is unavailable (glibc 2.34 or later)")
    }
    let spawned = posix_spawn(&pid, "/bin/sh", &actions, nil, argv, environ)
    guard spawned == 0 else { throw PrivatePostgresError(description: "posix_spawn failed (\(spawned))") }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) == -1 {
        guard errno == EINTR else { throw PrivatePostgresError(description: "waitpid failed (\(errno))") }
    }
    // WIFEXITED / WEXITSTATUS
    return (status & 0x7F) == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
}

/// glibc's `posix_spawn_file_actions_addclosefrom_np` (2.34), which the Glibc module does not
/// import (it is a GNU extension).
private let closeFrom: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32)? = {
    guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") else { return nil }
    return unsafeBitCast(symbol, to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32).self)
}()

public struct PrivatePostgresError: Error, CustomStringConvertible {
    public let description: String

    /// An error saying `description`.
    public init(description: String) {
        self.description = description
    }
}

/// A TCP port on 127.0.0.1 that is free right now.
public func freePort() throws -> Int {
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
