import NIOCore

/// One SMTP reply: its code and the text of its lines (RFC 5321 §4.2).
struct SMTPReply: Sendable, Equatable {
    /// The three-digit code.
    let code: Int
    /// The text after the code of each line (one line for a single-line reply).
    let lines: [String]

    /// 2xx.
    var isPositive: Bool { (200..<300).contains(code) }
    /// 5xx.
    var isPermanentNegative: Bool { (500..<600).contains(code) }

    /// The first line's text, shortened and without control characters, for an error.
    var summary: String {
        let text = String((lines.first ?? "").unicodeScalars.filter { $0.value >= 0x20 && $0.value != 0x7F }.prefix(160))
        return text.isEmpty ? "\(code)" : "\(code) \(text)"
    }
}

/// What makes a server's bytes not SMTP.
struct SMTPProtocolViolation: Error, CustomStringConvertible {
    /// What was wrong.
    let description: String
}

/// Splits the server's bytes into replies: CRLF (or bare LF) lines, `ddd-text` continued by
/// `ddd text`, codes 200–599, the same code on every line. A line longer than `maximumLine`
/// bytes, a reply of more than `maximumLines` lines, or a malformed line is a violation, so a
/// server that sends garbage is found out at once and never makes the buffer grow.
struct SMTPReplyParser {
    /// RFC 5321 allows 512 bytes; a little more is tolerated.
    static let maximumLine = 2048
    /// Capability lists are the longest replies we read.
    static let maximumLines = 128

    private var buffer = ByteBuffer()
    private var lines: [String] = []
    private var code: Int?

    /// Whether bytes of an incomplete line or reply are held.
    var hasBufferedBytes: Bool { buffer.readableBytes > 0 || !lines.isEmpty }

    /// Adds bytes read from the server.
    mutating func append(_ bytes: ByteBuffer) {
        var bytes = bytes
        buffer.writeBuffer(&bytes)
    }

    /// The next complete reply, nil when more bytes are needed.
    mutating func next() throws(SMTPProtocolViolation) -> SMTPReply? {
        while true {
            let view = buffer.readableBytesView
            guard let newline = view.firstIndex(of: UInt8(ascii: "\n")) else {
                if buffer.readableBytes > Self.maximumLine { throw SMTPProtocolViolation(description: "a reply line is too long") }
                return nil
            }
            let length = newline - view.startIndex
            guard length <= Self.maximumLine else { throw SMTPProtocolViolation(description: "a reply line is too long") }
            var line = buffer.readBytes(length: length + 1) ?? []
            line.removeLast()
            if line.last == UInt8(ascii: "\r") { line.removeLast() }
            if let reply = try consume(line) { return reply }
        }
    }

    private mutating func consume(_ line: [UInt8]) throws(SMTPProtocolViolation) -> SMTPReply? {
        guard line.count >= 3, line[0...2].allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else {
            throw SMTPProtocolViolation(description: "the server's reply is not SMTP")
        }
        let lineCode = line[0...2].reduce(0) { $0 * 10 + Int($1 - UInt8(ascii: "0")) }
        guard (200..<600).contains(lineCode) else { throw SMTPProtocolViolation(description: "the server's reply is not SMTP") }
        let separator = line.count > 3 ? line[3] : UInt8(ascii: " ")
        guard separator == UInt8(ascii: " ") || separator == UInt8(ascii: "-") else {
            throw SMTPProtocolViolation(description: "the server's reply is not SMTP")
        }
        if let code, code != lineCode { throw SMTPProtocolViolation(description: "a multi-line reply changes its code") }
        code = lineCode
        lines.append(String(decoding: line.dropFirst(4), as: UTF8.self))
        guard lines.count <= Self.maximumLines else { throw SMTPProtocolViolation(description: "a reply has too many lines") }
        guard separator == UInt8(ascii: " ") else { return nil }
        defer { lines = []; code = nil }
        return SMTPReply(code: lineCode, lines: lines)
    }
}
