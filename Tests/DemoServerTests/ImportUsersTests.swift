@testable import DemoServer
import Foundation
import IdentityTestSupport
import Testing

/// A bcrypt hash of "correct horse battery" (cost 4), as a Python or PHP system would hold it.
let legacyBcrypt = "$2b$04$abcdefghijklmnopqrstuuqREtd3VJD2QVZbuFskFSLk6eRIrQoOS"

@Suite("import-users file")
struct UserImportFileTests {
    func parse(_ text: String) -> UserImportFile { UserImportFile.parse(Data(text.utf8)) }

    @Test("rows keep their line numbers; blank lines and CRLF endings are fine")
    func rows() {
        let file = parse("""
            {"email":"a@example.com","name":"A","password_hash":"h1"}\r

            {"name":"B","password_hash":"h2","email":"b@example.com"}
            """)
        #expect(file.problems.isEmpty)
        #expect(file.rows == [
            .init(line: 1, email: "a@example.com", name: "A", passwordHash: "h1"),
            .init(line: 3, email: "b@example.com", name: "B", passwordHash: "h2"),
        ])
    }

    @Test("every structural problem is reported with its line, never quoting the hash", arguments: [
        (#"{"email":"a@example.com","name":"A"}"#, "line 1: password_hash is missing"),
        (#"{"email":"a@example.com","name":"A","password_hash":"SECRET","is_admin":true}"#, "line 1: unknown field is_admin"),
        (#"{"email":5,"name":"A","password_hash":"SECRET"}"#, "line 1: email must be a string"),
        (#"["a@example.com","A","SECRET"]"#, "line 1: is not a JSON object"),
        (#"{"email":"a@example.com","name":"A","password_hash":"SECRET""#, "line 1: is not a JSON object"),
    ])
    func structuralProblems(line: String, expected: String) {
        let file = parse(line)
        #expect(file.rows.isEmpty)
        #expect(file.problems == [expected])
        #expect(!file.problems.joined().contains("SECRET"))
    }

    @Test("invalid UTF-8, an over-long line and the same account twice are refused")
    func bytesAndDuplicates() {
        var bytes = Data(#"{"email":"a@example.com","name":"A"#.utf8)
        bytes.append(0xFF)
        bytes.append(contentsOf: Array(#"","password_hash":"h"}"#.utf8))
        #expect(UserImportFile.parse(bytes).problems == ["line 1: is not UTF-8"])

        let long = #"{"email":"a@example.com","name":"A","password_hash":""# + String(repeating: "x", count: 17_000) + #""}"#
        #expect(parse(long).problems == ["line 1: longer than 16384 bytes"])

        let twice = parse("""
            {"email":"Ada@Example.com","name":"A","password_hash":"h"}
            {"email":"ada@example.com ","name":"B","password_hash":"h"}
            """)
        #expect(twice.problems == ["line 2: email is the same account as line 1"])
        #expect(twice.rows.count == 1)
    }
}

@Suite("DemoServer import-users on PostgreSQL", .serialized, .enabled(if: PrivatePostgres.isAvailable, PrivatePostgres.skipReason))
struct ImportUsersEndToEndTests {
    func write(_ text: String) throws -> String {
        let path = NSTemporaryDirectory() + "identity-import-\(UUID()).jsonl"
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        return path
    }

    @Test("a file with a bad line imports nothing; a good one imports, a re-run skips, and the imported bcrypt password logs in")
    func importThenLogin() async throws {
        let postgres = try await PrivatePostgres()
        defer { postgres.destroy() }
        let env = EndToEndTests.environment.merging(postgres.environment) { $1 }
        #expect(try await runDemoServer(["migrate", "up"], environment: env).status == 0)

        let good = """
            {"email":"Legacy@Example.com","name":"Legacy","password_hash":"\(legacyBcrypt)"}
            {"email":"second@example.com","name":"Second","password_hash":"$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHRzYWx0$Vzo3PxMTZWFNkpt1sTFq6HQiovdpTuvFDPMlH+0SOTc"}
            """
        let bad = try write(good + "\n" + #"{"email":"nope","name":"X","password_hash":"plaintext-password"}"#)
        defer { try? FileManager.default.removeItem(atPath: bad) }
        let refused = try await runDemoServer(["import-users", bad], environment: env)
        #expect(refused.status == 65, "\(refused.output)")
        #expect(refused.output.contains("line 3: email"), "\(refused.output)")
        #expect(refused.output.contains("line 3: password_hash is not a password hash this service can verify"))
        #expect(refused.output.contains("nothing was imported"))
        #expect(!refused.output.contains("plaintext-password"), "a hash (or a password in its place) is never echoed")

        let path = try write(good)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let dry = try await runDemoServer(["import-users", "--dry-run", path], environment: env)
        #expect(dry.status == 0 && dry.output.contains("2 accounts would be imported"), "\(dry.output)")
        let imported = try await runDemoServer(["import-users", path], environment: env)
        #expect(imported.status == 0 && imported.output.contains("imported 2, skipped 0"), "\(imported.output)")
        let again = try await runDemoServer(["import-users", path], environment: env)
        #expect(again.status == 0 && again.output.contains("imported 0, skipped 2"), "a re-run finishes an interrupted import: \(again.output)")

        let missing = try await runDemoServer(["import-users", path + ".missing"], environment: env)
        #expect(missing.status == 66 && missing.output.contains("cannot read"))

        let server = try ServerProcess(environment: env)
        defer { server.stop() }
        let base = "http://127.0.0.1:\(try #require(await server.port(), "\(server.log)"))"
        let login = try await call("POST", "\(base)/auth/login", json: #"{"email":"legacy@example.com","password":"correct horse battery"}"#)
        #expect(login.status == 200, "the imported bcrypt hash verifies")
        let token = try #require(login.json["access_token"] as? String)
        #expect(try await call("GET", "\(base)/users/me", token: token).json["name"] as? String == "Legacy")
        let wrong = try await call("POST", "\(base)/auth/login", json: #"{"email":"legacy@example.com","password":"correct horse battery!"}"#)
        #expect(wrong.status == 401)
    }

    @Test("without POSTGRES_HOST import-users refuses with one line (exit 78)")
    func needsPostgres() async throws {
        let result = try await runDemoServer(["import-users", "/nonexistent.jsonl"], environment: EndToEndTests.environment)
        #expect(result.status == 78)
        #expect(result.output.contains("invalid configuration: POSTGRES_HOST must be set to import users"))
    }
}
