public import Foundation
public import IdentityPorts
import Testing

/// The behaviour every `Mailer` must show, checked on what actually arrived.
///
/// Give it the mailer and a way to read back every raw message (RFC 5322 bytes) delivered
/// so far, for instance the files of a directory or what a test SMTP server stored. The
/// suite sends its mails to `example.com` addresses and waits up to `timeout` for each.
///
/// ```swift
/// @Test func conforms() async throws {
///     let directory = URL(filePath: "/tmp/mail-test")
///     try await MailerConformance(mailer: FileMailer(directory: directory)) {
///         try FileManager.default.contentsOfDirectory(at: directory, includingPropertiesForKeys: nil)
///             .filter { $0.pathExtension == "eml" }.map { try Data(contentsOf: $0) }
///     }.run()
/// }
/// ```
public struct MailerConformance: Sendable {
    private let mailer: any Mailer
    private let received: @Sendable () async throws -> [Data]
    private let timeout: Duration

    /// Creates the suite for `mailer`; `received` returns the raw messages delivered so far.
    public init(mailer: any Mailer, timeout: Duration = .seconds(10), received: @escaping @Sendable () async throws -> [Data]) {
        self.mailer = mailer
        self.received = received
        self.timeout = timeout
    }

    /// Runs every check.
    public func run() async throws {
        try await unicodeArrivesIntact()
        try await dotLinesSurvive()
        try await textOnlyAndLongLines()
        try await headerInjectionNeverMakesAHeader()
    }

    private func message(
        name: String, subject: String, text: String, html: String?, to: String = "recipient@example.com"
    ) -> MailMessage {
        MailMessage(
            id: UUID(), from: MailAddress(address: "sender@identity.example.com", name: "Identity Service"),
            to: MailAddress(address: to, name: name), subject: subject, text: text, html: html, date: Date()
        )
    }

    /// Sends `message` and returns it as it arrived, parsed.
    private func deliver(_ message: MailMessage) async throws -> ParsedMail? {
        try await mailer.send(message)
        return try await arrival(of: message.id)
    }

    private func arrival(of id: UUID) async throws -> ParsedMail? {
        let marker = id.uuidString.lowercased()
        let deadline = ContinuousClock.now + timeout
        while true {
            for raw in try await received() {
                guard let mail = ParsedMail(raw), (mail.header("Message-ID") ?? "").lowercased().contains(marker) else { continue }
                return mail
            }
            guard ContinuousClock.now < deadline else {
                Issue.record("the mail \(marker) did not arrive within \(timeout)")
                return nil
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    private func unicodeArrivesIntact() async throws {
        let text = "Grüße, Zoë!\nÜberprüfen Sie: https://example.com/verify-email?token=abc_DEF-123\n\n日本語のテキスト — ok\n"
        let html = "<p>Grüße, <b>Zoë</b> — 日本語</p>\n<p><a href=\"https://example.com/verify-email?token=abc_DEF-123\">link</a></p>\n"
        let sent = message(name: "Zoë Ünïcode 山田", subject: "Vérifiez votre adresse — 確認してください ✓", text: text, html: html)
        guard let mail = try await deliver(sent) else { return }
        #expect(mail.decodedHeader("Subject") == sent.subject, "the subject arrives intact")
        #expect(mail.decodedHeader("To")?.contains("Zoë Ünïcode 山田") == true, "the recipient's name arrives intact")
        #expect(mail.decodedHeader("To")?.contains("<recipient@example.com>") == true, "the recipient's address is in To")
        #expect(mail.decodedHeader("From")?.contains("sender@identity.example.com") == true, "the sender is in From")
        #expect(mail.header("Date") != nil, "there is a Date")
        #expect(mail.header("MIME-Version") == "1.0", "MIME-Version is 1.0")
        let messageID = mail.header("Message-ID") ?? ""
        #expect(messageID.hasPrefix("<") && messageID.hasSuffix(">") && messageID.contains("@"), "the Message-ID is <id@domain>: \(messageID)")
        #expect(mail.header("Content-Type")?.lowercased().hasPrefix("multipart/alternative") == true, "text and HTML make multipart/alternative")
        let parts = mail.parts()
        #expect(parts.map(\.type) == ["text/plain", "text/html"], "a text part, then an HTML part")
        #expect(parts.first?.text.map(Self.lines) == Self.lines(text), "the text body arrives intact")
        #expect(parts.last?.text.map(Self.lines) == Self.lines(html), "the HTML body arrives intact")
        #expect(mail.rawLines.allSatisfy { $0.utf8.count <= 998 }, "no line passes 998 characters")
        #expect(mail.rawLines.allSatisfy { $0.utf8.allSatisfy { $0 < 0x80 } }, "the raw message is 7-bit")
    }

    private func dotLinesSurvive() async throws {
        let text = "first\n.\n.hidden\n..two dots\nmiddle\n.\n"
        let sent = message(name: "Dot", subject: "Dots", text: text, html: "<p>\n.\n.p</p>\n.")
        guard let mail = try await deliver(sent) else { return }
        let parts = mail.parts()
        #expect(parts.first?.text.map(Self.lines) == Self.lines(text), "lines that are or start with \".\" arrive intact")
        #expect(parts.last?.text.map(Self.lines) == Self.lines("<p>\n.\n.p</p>\n."), "also in the HTML part")
    }

    private func textOnlyAndLongLines() async throws {
        let long = String(repeating: "0123456789", count: 150) + " " + String(repeating: "é", count: 600)
        let sent = message(name: "Plain", subject: String(repeating: "long subject ", count: 20), text: long + "\nend", html: nil)
        guard let mail = try await deliver(sent) else { return }
        #expect(mail.header("Content-Type")?.lowercased().hasPrefix("text/plain") == true, "without HTML the mail is text/plain")
        #expect(mail.parts().first?.text.map(Self.lines) == Self.lines(long + "\nend"), "a 2,100-character line arrives intact")
        #expect(mail.decodedHeader("Subject") == sent.subject.trimmingCharacters(in: .whitespaces), "a long subject is folded and unfolds intact")
        #expect(mail.rawLines.allSatisfy { $0.utf8.count <= 998 }, "no line passes 998 characters")
    }

    private func headerInjectionNeverMakesAHeader() async throws {
        // An address with CR/LF is refused, permanently, and never reaches a server.
        let bad = message(name: "Bad", subject: "Bad", text: "bad", html: nil, to: "victim@example.com\r\nBcc: injected-rcpt@example.com")
        do {
            try await mailer.send(bad)
            Issue.record("an address with CR LF was sent")
        } catch let failure as MailDeliveryFailure {
            #expect(failure.isPermanent, "an invalid address is a permanent failure")
        }
        for address in ["no-at-sign", "a b@example.com", "<x@example.com>", "x@example.com>\r\nDATA"] {
            await #expect(throws: MailDeliveryFailure.self, "the address \(address.debugDescription) is refused") {
                try await mailer.send(message(name: "Bad", subject: "Bad", text: "bad", html: nil, to: address))
            }
        }
        // Names and subjects with CR/LF arrive, their text kept, without an extra header.
        let names = ["Eve\r\nBcc: injected-bcc@example.com", "Eve\nX-Injected: name", "Ève\r\nX-Injected: ünïcode"]
        for name in names {
            let sent = message(name: name, subject: "Hello\r\nX-Injected: subject\r\nBcc: injected@example.com", text: "body", html: "<p>body</p>")
            guard let mail = try await deliver(sent) else { return }
            let names = mail.headers.map { $0.name.lowercased() }
            #expect(!names.contains("bcc") && !names.contains("x-injected"), "no header is injected: \(names)")
            #expect(Set(names).count == names.count, "every header appears once: \(names)")
            #expect(mail.decodedHeader("Subject")?.contains("X-Injected: subject") == true, "the subject's text is kept on one line")
            #expect(mail.parts().first?.text.map(Self.lines) == ["body"], "the body is intact")
        }
        let everything = try await received().map { String(decoding: $0, as: UTF8.self) }
        #expect(!everything.contains { $0.contains("injected-rcpt@example.com") }, "the refused mail never arrived")
    }

    private static func lines(_ text: String) -> [String] {
        var lines = text.replacingOccurrences(of: "\r\n", with: "\n").split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        while lines.last == "" { lines.removeLast() }
        return lines
    }
}

/// Just enough of RFC 5322, MIME and RFC 2047 to read what a mailer sent.
struct ParsedMail {
    struct Part {
        let type: String
        let text: String?
    }

    let headers: [(name: String, value: String)]
    let body: String
    let rawLines: [String]

    init?(_ data: Data) {
        let raw = String(decoding: data, as: UTF8.self).replacingOccurrences(of: "\r\n", with: "\n")
        rawLines = raw.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard let (headers, body) = Self.split(raw) else { return nil }
        self.headers = headers
        self.body = body
    }

    /// Headers (unfolded) and body of a message or a part.
    static func split(_ raw: String) -> ([(name: String, value: String)], String)? {
        guard let end = raw.range(of: "\n\n") else { return nil }
        var headers: [(name: String, value: String)] = []
        for line in raw[..<end.lowerBound].split(separator: "\n") {
            if line.first == " " || line.first == "\t", let last = headers.popLast() {
                headers.append((last.name, last.value + line))
            } else if let colon = line.firstIndex(of: ":") {
                headers.append((String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
            }
        }
        return (headers, String(raw[end.upperBound...]))
    }

    func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }

    /// The header with its encoded-words decoded (white space between two of them dropped).
    func decodedHeader(_ name: String) -> String? {
        header(name).map(Self.decodeWords)
    }

    static func decodeWords(_ value: String) -> String {
        let pattern = /=\?([^?]+)\?([BbQq])\?([^?]*)\?=/
        var output = ""
        var rest = Substring(value)
        var previousWasWord = false
        while let match = rest.firstMatch(of: pattern) {
            let between = rest[..<match.range.lowerBound]
            if !(previousWasWord && between.allSatisfy(\.isWhitespace)) { output += between }
            let bytes: Data?
            if match.output.2.uppercased() == "B" {
                bytes = Data(base64Encoded: String(match.output.3))
            } else {
                bytes = quotedPrintable(String(match.output.3).replacingOccurrences(of: "_", with: " "))
            }
            output += bytes.map { String(decoding: $0, as: UTF8.self) } ?? String(match.output.0)
            rest = rest[match.range.upperBound...]
            previousWasWord = true
        }
        // Folding white space unfolds to the white space after the line break.
        return output + rest
    }

    func parts() -> [Part] {
        let type = header("Content-Type") ?? "text/plain"
        guard type.lowercased().hasPrefix("multipart/"), let boundary = Self.parameter("boundary", of: type) else {
            return [Part(type: Self.mediaType(type), text: Self.decode(body, encoding: header("Content-Transfer-Encoding")))]
        }
        var parts: [Part] = []
        let sections = body.components(separatedBy: "\n--" + boundary)
        for section in sections.dropFirst() {
            if section.hasPrefix("--") { break }
            guard let (headers, content) = Self.split(String(section.drop { $0 != "\n" }.dropFirst())) else { continue }
            let partType = headers.first { $0.name.lowercased() == "content-type" }?.value ?? "text/plain"
            let encoding = headers.first { $0.name.lowercased() == "content-transfer-encoding" }?.value
            parts.append(Part(type: Self.mediaType(partType), text: Self.decode(content, encoding: encoding)))
        }
        return parts
    }

    private static func mediaType(_ value: String) -> String {
        String(value.split(separator: ";").first ?? "").trimmingCharacters(in: .whitespaces).lowercased()
    }

    private static func parameter(_ name: String, of value: String) -> String? {
        for piece in value.split(separator: ";").dropFirst() {
            let pair = piece.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            if pair.count == 2, pair[0].lowercased() == name { return pair[1].trimmingCharacters(in: CharacterSet(charactersIn: "\"")) }
        }
        return nil
    }

    private static func decode(_ content: String, encoding: String?) -> String? {
        switch encoding?.lowercased() {
        case "quoted-printable":
            return quotedPrintable(content.replacingOccurrences(of: "=\n", with: "")).map { String(decoding: $0, as: UTF8.self) }
        case "base64":
            return Data(base64Encoded: content.filter { !$0.isWhitespace }).map { String(decoding: $0, as: UTF8.self) }
        default:
            return content
        }
    }

    private static func quotedPrintable(_ text: String) -> Data? {
        var bytes: [UInt8] = []
        var iterator = Array(text.utf8).makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "=") else { bytes.append(byte); continue }
            guard let high = iterator.next(), let low = iterator.next(), let value = UInt8(String(decoding: [high, low], as: UTF8.self), radix: 16) else {
                return nil
            }
            bytes.append(value)
        }
        return Data(bytes)
    }
}
