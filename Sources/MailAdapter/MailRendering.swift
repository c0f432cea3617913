import Foundation
import IdentityPorts

/// A `MailMessage` as RFC 5322 bytes (with MIME): the same bytes whether they go over SMTP or
/// into a file. Lines end in CRLF and none passes 78 characters; the bodies are UTF-8 in
/// quoted-printable; with an HTML body the message is `multipart/alternative` (text first,
/// as RFC 2046 orders the alternatives from plainest to richest).
enum MailRendering {
    /// The rendered message. The addresses must have passed `MailAddressCheck`.
    static func render(_ message: MailMessage) -> [UInt8] {
        let domain = MailAddressCheck.domain(of: message.from.address)
        var headers = [
            "Date: " + rfc5322Date(message.date),
            HeaderEncoding.mailbox("From", address: message.from.address, displayName: message.from.name),
            HeaderEncoding.mailbox("To", address: message.to.address, displayName: message.to.name),
            HeaderEncoding.unstructured("Subject", message.subject),
            "Message-ID: " + messageID(message.id, domain: domain),
            "MIME-Version: 1.0",
        ]
        var body: String
        if let html = message.html {
            // The boundary cannot occur in quoted-printable output: it holds "=_", and a
            // quoted-printable "=" is always followed by two hex digits or a line end.
            let boundary = "=_identity_" + message.id.uuidString.lowercased().replacingOccurrences(of: "-", with: "")
            headers.append("Content-Type: multipart/alternative; boundary=\"\(boundary)\"")
            body = "This is a multipart message in MIME format.\r\n"
            for (type, content) in [("text/plain", message.text), ("text/html", html)] {
                body += "\r\n--\(boundary)\r\n"
                body += "Content-Type: \(type); charset=UTF-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
                body += QuotedPrintable.encode(content)
            }
            body += "\r\n--\(boundary)--\r\n"
        } else {
            headers.append("Content-Type: text/plain; charset=UTF-8")
            headers.append("Content-Transfer-Encoding: quoted-printable")
            body = QuotedPrintable.encode(message.text) + "\r\n"
        }
        return Array((headers.joined(separator: "\r\n") + "\r\n\r\n" + body).utf8)
    }

    /// `<uuid@domain>`, lower case: the id is stable across retries, so is the header.
    static func messageID(_ id: UUID, domain: Substring) -> String {
        "<\(id.uuidString.lowercased())@\(domain)>"
    }

    /// RFC 5322 §3.3, in UTC: `Thu, 03 Dec 2026 16:54:48 +0000`.
    static func rfc5322Date(_ date: Date) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let parts = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second, .weekday], from: date)
        let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        func two(_ value: Int?) -> String { let v = value ?? 0; return v < 10 ? "0\(v)" : "\(v)" }
        return "\(days[(parts.weekday ?? 1) - 1]), \(two(parts.day)) \(months[(parts.month ?? 1) - 1]) \(parts.year ?? 1970) "
            + "\(two(parts.hour)):\(two(parts.minute)):\(two(parts.second)) +0000"
    }
}

/// Quoted-printable (RFC 2045 §6.7) of UTF-8 text, with its line breaks (CRLF, LF or CR)
/// made CRLF and lines of at most 76 characters.
enum QuotedPrintable {
    /// The encoding of `text`, without a final line break.
    static func encode(_ text: String) -> String {
        let normalized = text.replacingOccurrences(of: "\r\n", with: "\n").replacingOccurrences(of: "\r", with: "\n")
        return normalized.split(separator: "\n", omittingEmptySubsequences: false)
            .map { encodeLine(Array($0.utf8)) }
            .joined(separator: "\r\n")
    }

    private static let hex = Array("0123456789ABCDEF".utf8)

    private static func encodeLine(_ bytes: [UInt8]) -> String {
        var output: [UInt8] = []
        var lineLength = 0
        for (index, byte) in bytes.enumerated() {
            let isLast = index == bytes.count - 1
            var token: [UInt8]
            if (byte >= 33 && byte <= 126 && byte != UInt8(ascii: "=")) || ((byte == 0x20 || byte == 0x09) && !isLast) {
                token = [byte]
            } else {
                token = [UInt8(ascii: "="), hex[Int(byte >> 4)], hex[Int(byte & 0x0F)]]
            }
            // A soft break ("=" at the end) keeps every line within 76 characters.
            let room = isLast ? 76 : 75
            if lineLength + token.count > room {
                output += Array("=\r\n".utf8)
                lineLength = 0
            }
            output += token
            lineLength += token.count
        }
        return String(decoding: output, as: UTF8.self)
    }
}
