import Foundation
import IdentityConformance
import IdentityPorts
import Testing

@testable import MailAdapter

@Suite("FileMailer")
struct FileMailerTests {
    private let directory = FileManager.default.temporaryDirectory.appendingPathComponent("identity-mail-\(UUID().uuidString)/nested/mail")

    private func files() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted()
    }

    private func message(id: UUID = UUID(), date: Date, text: String = "Hello") -> MailMessage {
        MailMessage(
            id: id, from: MailAddress(address: "identity@example.com"), to: MailAddress(address: "ada@example.com", name: "Ada"),
            subject: "Hi", text: text, html: nil, date: date
        )
    }

    @Test("passes the Mailer conformance suite, creating its missing directory")
    func conformance() async throws {
        defer { try? FileManager.default.removeItem(at: directory.deletingLastPathComponent().deletingLastPathComponent()) }
        let directory = self.directory
        try await MailerConformance(mailer: FileMailer(directory: directory)) {
            try FileManager.default.contentsOfDirectory(at: directory, includingPropertiesForKeys: nil)
                .filter { $0.pathExtension == "eml" }.map { try Data(contentsOf: $0) }
        }.run()
    }

    @Test("files sort by the mail's time, a resend of the same mail replaces its file, no temporary file stays")
    func namesAndIdempotence() async throws {
        defer { try? FileManager.default.removeItem(at: directory.deletingLastPathComponent().deletingLastPathComponent()) }
        let mailer = FileMailer(directory: directory)
        let early = message(date: Date(timeIntervalSince1970: 1_796_316_888.123))
        let late = message(date: Date(timeIntervalSince1970: 1_796_316_888.5))
        try await mailer.send(late)
        try await mailer.send(early)
        #expect(try files() == [
            "20261203T165448.123Z-\(early.id.uuidString.lowercased()).eml",
            "20261203T165448.500Z-\(late.id.uuidString.lowercased()).eml",
        ])
        let resent = message(id: early.id, date: early.date, text: "Hello again")
        try await mailer.send(resent)
        #expect(try files().count == 2, "the same mail again replaces its file")
        let content = try String(contentsOf: directory.appendingPathComponent(try files()[0]), encoding: .utf8)
        #expect(content.contains("Hello again"))
        #expect(content == String(decoding: MailRendering.render(resent), as: UTF8.self), "the file holds the RFC 5322 bytes")
    }

    @Test("an invalid address is refused permanently and writes nothing; an unwritable directory fails transiently")
    func failures() async throws {
        defer { try? FileManager.default.removeItem(at: directory.deletingLastPathComponent().deletingLastPathComponent()) }
        let bad = MailMessage(
            id: UUID(), from: MailAddress(address: "identity@example.com"), to: MailAddress(address: "a@example.com\nBcc: b@example.com"),
            subject: "x", text: "x", html: nil, date: Date()
        )
        await #expect(throws: MailDeliveryFailure(isPermanent: true, reason: "invalid recipient address: the address contains a control character or a space")) {
            try await FileMailer(directory: directory).send(bad)
        }
        #expect(!FileManager.default.fileExists(atPath: directory.path))
        // A regular file where the directory should be.
        try FileManager.default.createDirectory(at: directory.deletingLastPathComponent(), withIntermediateDirectories: true)
        #expect(FileManager.default.createFile(atPath: directory.path, contents: Data("x".utf8)))
        do {
            try await FileMailer(directory: directory).send(message(date: Date()))
            Issue.record("a send into a file succeeded")
        } catch let failure as MailDeliveryFailure {
            #expect(!failure.isPermanent)
        }
    }
}
