import Foundation
import IdentityPorts
import NIOCore
import Testing

@testable import MailAdapter

@Suite("RFC 5322 rendering, header encoding, SMTP data and replies")
struct MailRenderingTests {
    private func render(name: String? = "Ada", subject: String = "Hi", text: String = "text", html: String? = "<p>html</p>") -> String {
        let message = MailMessage(
            id: UUID(uuidString: "6F9619FF-8B86-D011-B42D-00C04FC964FF")!, from: MailAddress(address: "noreply@mail.example.com", name: "Identity"),
            to: MailAddress(address: "ada@example.com", name: name), subject: subject, text: text, html: html,
            date: Date(timeIntervalSince1970: 1_796_316_888)
        )
        return String(decoding: MailRendering.render(message), as: UTF8.self)
    }

    private func headerBlock(_ raw: String) -> [String] {
        String(raw[..<raw.range(of: "\r\n\r\n")!.lowerBound]).components(separatedBy: "\r\n")
    }

    @Test("the headers: Date in UTC, From, To, Subject, Message-ID <uuid@from-domain>, MIME-Version, multipart/alternative")
    func headers() {
        let lines = headerBlock(render())
        #expect(lines[0] == "Date: Thu, 03 Dec 2026 16:54:48 +0000")
        #expect(lines[1] == "From: \"Identity\" <noreply@mail.example.com>")
        #expect(lines[2] == "To: \"Ada\" <ada@example.com>")
        #expect(lines[3] == "Subject: Hi")
        #expect(lines[4] == "Message-ID: <6f9619ff-8b86-d011-b42d-00c04fc964ff@mail.example.com>")
        #expect(lines[5] == "MIME-Version: 1.0")
        #expect(lines[6].hasPrefix("Content-Type: multipart/alternative; boundary=\"=_identity_6f9619ff8b86d011b42d00c04fc964ff\""))
        #expect(headerBlock(render(html: nil)).suffix(2) == [
            "Content-Type: text/plain; charset=UTF-8", "Content-Transfer-Encoding: quoted-printable",
        ])
    }

    @Test("non-ASCII names and subjects become RFC 2047 encoded-words of at most 75 characters, on lines of at most 78")
    func encodedWords() {
        let subject = String(repeating: "Vérifiez votre adresse — 確認 ", count: 6)
        let raw = render(name: "Zoë 山田", subject: subject)
        let lines = headerBlock(raw)
        #expect(lines.allSatisfy { $0.utf8.count <= 78 && $0.utf8.allSatisfy { $0 < 0x80 } }, "\(lines)")
        #expect(lines.contains("To: =?UTF-8?B?Wm/DqyDlsbHnlLA=?= <ada@example.com>"))
        let words = raw.matches(of: /=\?UTF-8\?B\?([A-Za-z0-9+\/=]*)\?=/)
        #expect(words.allSatisfy { $0.output.0.count <= 75 })
        // Each word decodes on its own: no UTF-8 sequence is split between two words.
        let decoded = words.compactMap { Data(base64Encoded: String($0.output.1)).flatMap { String(data: $0, encoding: .utf8) } }
        #expect(decoded.count == words.count)
        #expect(decoded.dropFirst().joined() == subject.trimmingCharacters(in: .whitespaces))
    }

    @Test("CR, LF and other control characters in a name or subject never start a header")
    func injection() {
        for evil in ["Eve\r\nBcc: x@example.com", "Eve\nBcc: x@example.com", "Eve\rBcc: x@example.com", "Ève\u{2028}Bcc: x@example.com", "Eve\u{0}\u{85}Bcc: x"] {
            let lines = headerBlock(render(name: evil, subject: evil))
            #expect(!lines.contains { $0.hasPrefix("Bcc") }, "\(evil.debugDescription): \(lines)")
            #expect(lines.allSatisfy { !$0.contains("\r") && !$0.contains("\n") && !$0.contains("\u{0}") })
        }
        #expect(HeaderEncoding.sanitized("a\r\n\tb  c") == "a b c")
        #expect(headerBlock(render(name: "Ada \"Quote\" \\ Back")).contains("To: \"Ada \\\"Quote\\\" \\\\ Back\" <ada@example.com>"))
        // "=?" in plain text would be read as an encoded-word: it is encoded instead.
        #expect(headerBlock(render(subject: "=?UTF-8?B?SGk=?=")).contains { $0.hasPrefix("Subject: =?UTF-8?B?") })
    }

    @Test("quoted-printable: CRLF lines of at most 76 characters, =, trailing white space and UTF-8 encoded")
    func quotedPrintable() {
        #expect(QuotedPrintable.encode("a=b\nc \nd\r\ne\rf") == "a=3Db\r\nc=20\r\nd\r\ne\r\nf")
        #expect(QuotedPrintable.encode("é") == "=C3=A9")
        let long = QuotedPrintable.encode(String(repeating: "é", count: 100) + String(repeating: "x", count: 200))
        #expect(long.components(separatedBy: "\r\n").allSatisfy { $0.count <= 76 })
        #expect(long.replacingOccurrences(of: "=\r\n", with: "").count == 100 * 6 + 200)
    }

    @Test("DATA: lines starting with a dot get another, bare CR and LF become CRLF, and the end is <CRLF>.<CRLF>")
    func dotStuffing() {
        let stuffed = SMTPData.stuffed(Array("a\r\n.\r\n.b\n..c\rd".utf8))
        #expect(String(buffer: stuffed) == "a\r\n..\r\n..b\r\n...c\r\nd\r\n.\r\n")
        #expect(String(buffer: SMTPData.stuffed(Array(".x\r\n".utf8))) == "..x\r\n.\r\n")
    }

    @Test("replies: single and multi-line, CRLF or LF, split anywhere; garbage, mixed codes and endless lines are refused")
    func replies() throws {
        var parser = SMTPReplyParser()
        for piece in ["250-smtp.test gr", "eets you\r\n250-STARTTLS\r", "\n250 AUTH PLAIN LOGIN\r\n220 ready\n"] {
            parser.append(ByteBuffer(string: piece))
        }
        #expect(try parser.next() == SMTPReply(code: 250, lines: ["smtp.test greets you", "STARTTLS", "AUTH PLAIN LOGIN"]))
        #expect(try parser.next() == SMTPReply(code: 220, lines: ["ready"]))
        #expect(try parser.next() == nil)
        #expect(!parser.hasBufferedBytes)
        parser.append(ByteBuffer(string: "354"))
        #expect(try parser.next() == nil)
        #expect(parser.hasBufferedBytes)
        for garbage in ["HELLO\r\n", "25\r\n", "250x\r\n", "999 no\r\n", "250-a\r\n251 b\r\n", String(repeating: "2", count: 5000)] {
            var parser = SMTPReplyParser()
            parser.append(ByteBuffer(string: garbage))
            #expect(throws: SMTPProtocolViolation.self, "\(garbage.prefix(20).debugDescription)") { while try parser.next() != nil {} }
        }
    }

    @Test("addresses: local@domain in printable ASCII, nothing that can end a header or a command")
    func addresses() {
        for good in ["a@example.com", "first.last+tag@sub.example.co.uk", "x@localhost"] {
            #expect(MailAddressCheck.problem(with: good) == nil, "\(good)")
        }
        for bad in ["", "a", "@example.com", "a@", "a b@example.com", "a@example.com\r\n", "<a@example.com>", "a@exa\u{0}mple.com", "ü@example.com",
                    "a@.example.com", "a,b@example.com", String(repeating: "a", count: 250) + "@x.com"] {
            #expect(MailAddressCheck.problem(with: bad) != nil, "\(bad.debugDescription)")
        }
    }

    @Test("credentials print without their password")
    func credentialsDescription() {
        let credentials = SMTPConfiguration.Credentials(username: "mailer", password: "hunter2-secret")
        #expect(!"\(credentials)".contains("hunter2"))
        #expect(!String(reflecting: credentials).contains("hunter2"))
    }
}
