import Foundation
import NotesServiceKit
import Testing

/// The real identity service (`DemoServer`, built from the root package: scripts/test passes its
/// path in `IDENTITY_TEST_DEMOSERVER`) on PostgreSQL with ES256, and the real notes service,
/// both under libfaketime with one shared, movable clock (`FAKETIME_TIMESTAMP_FILE`).
@Suite("The notes service verifies the identity service's tokens", .serialized)
struct NotesEndToEndTests {
    static let environment = ProcessInfo.processInfo.environment

    static var libfaketime: String? {
        let directories = ((try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib")) ?? []).map { "/usr/lib/\($0)/faketime" }
        return (directories + ["/usr/lib/faketime", "/usr/local/lib/faketime"]).map { "\($0)/libfaketime.so.1" }
            .first { FileManager.default.fileExists(atPath: $0) }
    }

    static var notesBinary: String {
        let here = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        for candidate in [here, here.deletingLastPathComponent()] where FileManager.default.isExecutableFile(atPath: candidate.appendingPathComponent("NotesService").path) {
            return candidate.appendingPathComponent("NotesService").path
        }
        return ".build/debug/NotesService"
    }

    static var ready: Bool {
        environment["IDENTITY_TEST_DEMOSERVER"] != nil && environment["IDENTITY_TEST_POSTGRES_HOST"] != nil && libfaketime != nil
    }

    @Test("settings: one of the JWKS and discovery URLs, a key pair algorithm, PostgreSQL for revocations")
    func settings() throws {
        let base = ["IDENTITY_JWKS_URL": "http://127.0.0.1:1/.well-known/jwks.json", "POSTGRES_HOST": "127.0.0.1"]
        let settings = try NotesSettings(environment: base)
        #expect(settings.verifier.algorithm.rawValue == "ES256" && settings.verifier.issuer == "identity" && settings.port == 8081)
        #expect(throws: NotesSettingsError.self) { try NotesSettings(environment: base.merging(["IDENTITY_DISCOVERY_URL": "http://x"]) { $1 }) }
        #expect(throws: NotesSettingsError.self) { try NotesSettings(environment: base.merging(["IDENTITY_ALGORITHM": "HS256"]) { $1 }) }
        #expect(throws: NotesSettingsError.self) { try NotesSettings(environment: base.filter { $0.key != "POSTGRES_HOST" }) }
    }

    @Test(
        "a token is accepted; a logged-out one refused within 1 s; tokens survive a key rotation; another issuer's refused",
        .enabled(if: ready, "needs IDENTITY_TEST_DEMOSERVER, IDENTITY_TEST_POSTGRES_HOST and libfaketime: run scripts/test")
    )
    func endToEnd() async throws {
        let demoServer = try #require(Self.environment["IDENTITY_TEST_DEMOSERVER"])
        let database = "notes_e2e_\(UUID().uuidString.prefix(8).lowercased())"
        try await Self.psql("CREATE DATABASE \(database)")
        do {
            try await scenario(demoServer: demoServer, database: database)
        } catch {
            try? await Self.psql("DROP DATABASE IF EXISTS \(database) WITH (FORCE)")
            throw error
        }
        try await Self.psql("DROP DATABASE IF EXISTS \(database) WITH (FORCE)")
    }

    /// The story, on `database`; every process it starts is stopped when it returns.
    func scenario(demoServer: String, database: String) async throws {

        // One clock for both services, moved by rewriting the file (read at every call).
        let clockFile = FileManager.default.temporaryDirectory.appendingPathComponent("notes-clock-\(UUID())")
        try "+0".write(to: clockFile, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: clockFile) }
        let shared = [
            "LD_PRELOAD": try #require(Self.libfaketime), "FAKETIME_TIMESTAMP_FILE": clockFile.path, "FAKETIME_NO_CACHE": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            "POSTGRES_HOST": Self.environment["IDENTITY_TEST_POSTGRES_HOST"] ?? "127.0.0.1",
            "POSTGRES_PORT": Self.environment["IDENTITY_TEST_POSTGRES_PORT"] ?? "5432",
            "POSTGRES_USER": Self.environment["IDENTITY_TEST_POSTGRES_USER"] ?? "postgres", "POSTGRES_DB": database,
        ].merging(Self.environment["IDENTITY_TEST_POSTGRES_PASSWORD"].map { ["POSTGRES_PASSWORD": $0] } ?? [:]) { $1 }
        let identityEnvironment = shared.merging([
            "HOST": "127.0.0.1", "PORT": "0", "JWT_ALGORITHM": "ES256", "JWT_KEY_ENCRYPTION_KEY": "notes-e2e key-encryption key, 32 bytes or more",
            "ARGON2_MEMORY_KIB": "1024", "ARGON2_ITERATIONS": "1", "LOG_LEVEL": "info", "POSTGRES_TLS": "disable",
            "MAIL_DIR": FileManager.default.temporaryDirectory.appendingPathComponent("notes-mail-\(UUID())").path,
        ]) { $1 }

        // Commands run on the real clock: a Swift program under libfaketime started by Foundation's
        // Process sees no arguments (it would serve). A rotation at the real time is what a serving
        // instance whose clock is shifted later sees 700 s after.
        let unshifted = identityEnvironment.filter { !$0.key.hasPrefix("FAKETIME") && $0.key != "LD_PRELOAD" }
        let migrate = try ChildProcess(demoServer, ["migrate", "up"], environment: unshifted)
        defer { migrate.stop() }
        #expect(await migrate.exitStatus() == 0, "\(migrate.log)")
        let identity = try ChildProcess(demoServer, ["serve"], environment: identityEnvironment)
        defer { identity.stop() }
        let identityPort = try #require(await identity.port(after: "serving"), "\(identity.log)")
        let base = "http://127.0.0.1:\(identityPort)"

        let notes = try ChildProcess(Self.notesBinary, [], environment: shared.merging([
            "HOST": "127.0.0.1", "PORT": "0", "IDENTITY_DISCOVERY_URL": base, "IDENTITY_ISSUER": "identity",
            "IDENTITY_AUDIENCE": "identity", "IDENTITY_ALGORITHM": "ES256",
        ]) { $1 })
        defer { notes.stop() }
        let notesURL = "http://127.0.0.1:\(try #require(await notes.port(after: "notes serving"), "\(notes.log)"))/notes"

        // An account, and a token the notes service accepts.
        let registered = try await call("POST", "\(base)/users", json: #"{"email":"ada@example.com","password":"correct horse battery","name":"Ada"}"#)
        #expect(registered.status == 201, "\(registered.body)")
        let id = try #require(registered.json["id"] as? String)
        let first = try await Self.token(base)
        let accepted = try await call("GET", notesURL, token: first)
        #expect(accepted.status == 200, "\(accepted.body)\n\(notes.log)")
        #expect(accepted.json["user"] as? String == id)
        #expect(try await call("GET", notesURL).status == 401)

        // A logout on the identity service: refused here within 1 s (PostgreSQL LISTEN/NOTIFY).
        let second = try await Self.token(base)
        #expect(try await call("GET", notesURL, token: second).status == 200)
        #expect(try await call("POST", "\(base)/auth/logout", token: second).status == 204)
        let refusedInTime = try await poll(within: 1) { try await call("GET", notesURL, token: second).status == 401 }
        #expect(refusedInTime, "a logged-out token is refused within 1 s")
        #expect(try await call("GET", notesURL, token: first).status == 200, "the other session's token is unaffected")

        // A rotation: the new key is published at once and signs 600 s later; shift both clocks past that.
        let oldKid = try #require(kid(of: first))
        let rotate = try ChildProcess(demoServer, ["keys", "rotate"], environment: unshifted)
        defer { rotate.stop() }
        #expect(await rotate.exitStatus() == 0, "\(rotate.log)")
        #expect(rotate.log.contains("created "), "\(rotate.log)")
        try "+700".write(to: clockFile, atomically: true, encoding: .utf8)
        let rotated = try await Self.token(base)
        let newKid = try #require(kid(of: rotated))
        #expect(newKid != oldKid, "the new key signs after 600 s")
        let learned = try await call("GET", notesURL, token: rotated)
        #expect(learned.status == 200, "the new key is learned on its first token: \(learned.body)\n\(notes.log)")
        #expect(try await call("GET", notesURL, token: first).status == 200, "a token of the retired key still works")

        // Another issuer, signing with the very same keys (a second instance on the database): refused.
        let elsewhere = try ChildProcess(demoServer, ["serve"], environment: identityEnvironment.merging(["JWT_ISSUER": "elsewhere"]) { $1 })
        defer { elsewhere.stop() }
        let elsewherePort = try #require(await elsewhere.port(after: "serving"), "\(elsewhere.log)")
        let foreign = try await Self.token("http://127.0.0.1:\(elsewherePort)")
        #expect(kid(of: foreign) == newKid, "same key, only the issuer differs")
        #expect(try await call("GET", notesURL, token: foreign).status == 401)
        #expect(try await call("GET", notesURL, token: rotated).status == 200)
    }

    static func token(_ base: String) async throws -> String {
        let login = try await call("POST", "\(base)/auth/login", json: #"{"email":"ada@example.com","password":"correct horse battery"}"#)
        return try #require(login.json["access_token"] as? String, "\(login.status) \(login.body)")
    }

    /// Runs one statement with `psql` on the test server's `postgres` database.
    static func psql(_ statement: String) async throws {
        var arguments = ["-q", "-v", "ON_ERROR_STOP=1", "-h", environment["IDENTITY_TEST_POSTGRES_HOST"] ?? "127.0.0.1",
                         "-p", environment["IDENTITY_TEST_POSTGRES_PORT"] ?? "5432", "-U", environment["IDENTITY_TEST_POSTGRES_USER"] ?? "postgres"]
        arguments += ["-d", "postgres", "-c", statement]
        let psql = try ChildProcess("/usr/bin/psql", arguments, environment: environment["IDENTITY_TEST_POSTGRES_PASSWORD"].map { ["PGPASSWORD": $0] } ?? [:])
        defer { psql.stop() }
        guard await psql.exitStatus(within: 60) == 0 else { throw TestFailure("psql \(statement) failed: \(psql.log)") }
    }
}
