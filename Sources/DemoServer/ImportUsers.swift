import ArgumentParser
import Foundation
import IdentityComposition
import IdentityApplication
import IdentityDomain
import Logging
import PostgresAdapter
import ServiceLifecycle

/// `DemoServer import-users FILE.jsonl`: accounts migrated from another system, with the
/// password hashes they had there.
///
/// The whole file is checked before anything is written: a bad line stops the import with
/// every problem listed by line number (exit 65) and nothing imported. Accounts whose email is
/// already registered are skipped, so a re-run after an interruption finishes the job.
struct ImportUsers: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import-users",
        abstract: "Import accounts from a JSON Lines file of {email, name, password_hash} (needs POSTGRES_HOST).",
        discussion: """
            Each line is one JSON object with exactly the string fields "email", "name" and \
            "password_hash" (an Argon2id PHC string, or a bcrypt $2a$/$2b$/$2y$ hash). Blank lines \
            are ignored. The hash is replaced by a current Argon2id hash on the account's next \
            successful login.
            """
    )

    @Argument(help: "The JSON Lines file to read.") var file: String
    @Flag(help: "Check the file and report, without importing anything.") var dryRun = false

    func run() async throws {
        let settings = Startup.configuration()
        let logger = Startup.logger(settings)
        guard settings.postgres != nil else {
            exitWithConfigurationError(ConfigurationError("POSTGRES_HOST must be set to import users (the in-memory store ends with the process)"))
        }
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: file))
        } catch {
            FileHandle.standardError.write(Data("import-users: cannot read \(file)\n".utf8))
            throw ExitCode(66)  // EX_NOINPUT
        }
        let parsed = UserImportFile.parse(data)

        let wiring = try await Startup.wiring(settings, logger: logger)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for service in wiring.services { group.addTask { try await service.run() } }
            defer { group.cancelAll() }
            do {
                try await wiring.prepare()
            } catch {
                exitCannotStart("\(error) (\(settings.postgres?.summary ?? ""))")
            }
            let problems = parsed.problems + parsed.rows.flatMap { row in
                wiring.service.importErrors(email: row.email, name: row.name, passwordHash: row.passwordHash)
                    .map { "line \(row.line): \($0.pointer.dropFirst()) \($0.detail)" }
            }
            guard problems.isEmpty else {
                Self.report(problems)
                throw ExitCode(65)  // EX_DATAERR
            }
            if dryRun {
                print("\(parsed.rows.count) accounts would be imported (dry run: nothing written)")
                return
            }
            var imported = 0
            var skipped = 0
            for row in parsed.rows {
                do {
                    _ = try await wiring.service.importUser(email: row.email, name: row.name, passwordHash: row.passwordHash)
                    imported += 1
                } catch let error as IdentityError where error == .emailTaken {
                    skipped += 1
                    print("line \(row.line): skipped, the email is already registered")
                } catch {
                    FileHandle.standardError.write(Data("import-users: line \(row.line): \(error); \(imported) imported before it\n".utf8))
                    throw ExitCode(1)
                }
            }
            print("imported \(imported), skipped \(skipped) already registered")
        }
    }

    /// At most `limit` problems on standard error, then how many more there were.
    static func report(_ problems: [String], limit: Int = 50) {
        var text = problems.prefix(limit).joined(separator: "\n") + "\n"
        if problems.count > limit { text += "… and \(problems.count - limit) more\n" }
        text += "import-users: \(problems.count) problem\(problems.count == 1 ? "" : "s"); nothing was imported\n"
        FileHandle.standardError.write(Data(text.utf8))
    }
}

/// The lines of an import file, parsed, with what is wrong with them structurally.
struct UserImportFile: Equatable {
    struct Row: Equatable {
        let line: Int
        let email: String
        let name: String
        let passwordHash: String
    }

    /// The longest line read: far beyond any real account, short of a memory problem.
    static let maxLineLength = 16 * 1024
    static let fields: Set<String> = ["email", "name", "password_hash"]

    var rows: [Row] = []
    var problems: [String] = []

    /// Parses JSON Lines; a line's problems name its number and never quote its hash.
    static func parse(_ data: Data) -> UserImportFile {
        var result = UserImportFile()
        var firstLineOfEmail: [String: Int] = [:]
        let lines = data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        for (index, rawLine) in lines.enumerated() {
            let number = index + 1
            var line = Data(rawLine)
            if line.last == UInt8(ascii: "\r") { line.removeLast() }
            if line.allSatisfy({ $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") }) { continue }
            switch row(line, number: number) {
            case .failure(let problem):
                result.problems.append("line \(number): \(problem)")
            case .success(let row):
                // Duplicates in the file would import the first and skip the rest: say so instead.
                if let canonical = try? Email(row.email).value {
                    if let first = firstLineOfEmail[canonical] {
                        result.problems.append("line \(number): email is the same account as line \(first)")
                        continue
                    }
                    firstLineOfEmail[canonical] = number
                }
                result.rows.append(row)
            }
        }
        return result
    }

    struct LineProblem: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    private static func row(_ line: Data, number: Int) -> Result<Row, LineProblem> {
        guard line.count <= maxLineLength else { return .failure(LineProblem("longer than \(maxLineLength) bytes")) }
        guard String(data: line, encoding: .utf8) != nil else { return .failure(LineProblem("is not UTF-8")) }
        guard let object = (try? JSONSerialization.jsonObject(with: line)) as? [String: Any] else {
            return .failure(LineProblem("is not a JSON object"))
        }
        let unknown = Set(object.keys).subtracting(fields).sorted()
        guard unknown.isEmpty else { return .failure(LineProblem("unknown field \(unknown.joined(separator: ", "))")) }
        var values: [String: String] = [:]
        for field in fields.sorted() {
            guard let value = object[field] else { return .failure(LineProblem("\(field) is missing")) }
            guard let text = value as? String else { return .failure(LineProblem("\(field) must be a string")) }
            values[field] = text
        }
        return .success(Row(line: number, email: values["email"]!, name: values["name"]!, passwordHash: values["password_hash"]!))
    }
}
