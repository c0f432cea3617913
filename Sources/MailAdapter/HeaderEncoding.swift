import Foundation

/// Header field values that can never break a header: display names and subjects are
/// cleaned of control characters (CR and LF become spaces), kept as they are when they are
/// plain printable ASCII, and otherwise written as RFC 2047 encoded-words (`=?UTF-8?B?…?=`),
/// folded so that no header line passes 78 characters.
enum HeaderEncoding {
    /// The longest encoded-word RFC 2047 allows.
    private static let maximumEncodedWord = 75

    /// `text` with every control character (C0, DEL, C1, and the Unicode line and paragraph
    /// separators) replaced by a space and runs of white space collapsed.
    static func sanitized(_ text: String) -> String {
        var result = ""
        var lastWasSpace = false
        for scalar in text.unicodeScalars {
            let isBreak = scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value)
                || scalar == "\u{2028}" || scalar == "\u{2029}" || scalar == " "
            if isBreak {
                if !lastWasSpace { result.unicodeScalars.append(" ") }
                lastWasSpace = true
            } else {
                result.unicodeScalars.append(scalar)
                lastWasSpace = false
            }
        }
        return result.trimmingCharacters(in: .whitespaces)
    }

    /// A complete header field `name: value` for unstructured text (a subject), folded, with
    /// CRLF line ends but no final CRLF.
    static func unstructured(_ name: String, _ text: String) -> String {
        let clean = sanitized(text)
        let prefix = name + ": "
        if isPlainASCII(clean) && !clean.contains("=?") {
            return fold(prefix: prefix, words: clean.split(separator: " ").map(String.init))
        }
        return fold(prefix: prefix, words: encodedWords(clean, firstLineRoom: 78 - prefix.count))
    }

    /// A complete header field `name: mailbox` (a checked address with an optional name).
    static func mailbox(_ name: String, address: String, displayName: String?) -> String {
        let prefix = name + ": "
        let clean = displayName.map(sanitized) ?? ""
        guard !clean.isEmpty else { return prefix + address }
        let words: [String]
        if isPlainASCII(clean) && !clean.contains("=?") {
            // A quoted-string: the only characters to escape are the quote and the backslash.
            let quoted = "\"" + clean.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
            words = [quoted]
        } else {
            words = encodedWords(clean, firstLineRoom: 78 - prefix.count)
        }
        return fold(prefix: prefix, words: words + ["<\(address)>"])
    }

    private static func isPlainASCII(_ text: String) -> Bool {
        text.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7F }
    }

    /// `text` as base64 encoded-words, each at most 75 characters, never splitting a
    /// character's UTF-8 bytes between two words (RFC 2047 §5).
    static func encodedWords(_ text: String, firstLineRoom: Int = 75) -> [String] {
        let overhead = "=?UTF-8?B??=".count
        var words: [String] = []
        var chunk: [UInt8] = []
        func encodedLength(_ count: Int) -> Int { overhead + (count + 2) / 3 * 4 }
        for character in text {
            let bytes = Array(String(character).utf8)
            let room = words.isEmpty ? min(maximumEncodedWord, max(firstLineRoom, 30)) : maximumEncodedWord
            if !chunk.isEmpty && encodedLength(chunk.count + bytes.count) > room {
                words.append("=?UTF-8?B?" + Data(chunk).base64EncodedString() + "?=")
                chunk = []
            }
            chunk += bytes
        }
        if !chunk.isEmpty || words.isEmpty {
            words.append("=?UTF-8?B?" + Data(chunk).base64EncodedString() + "?=")
        }
        return words
    }

    /// Joins `words` after `prefix` with spaces, starting a new (folded) line whenever a line
    /// would pass 78 characters. A single word longer than a line stays whole (998 is the
    /// hard limit, and words here are far shorter).
    private static func fold(prefix: String, words: [String]) -> String {
        var lines: [String] = []
        var line = prefix.trimmingCharacters(in: .whitespaces)
        var lineHasWord = false
        for word in words {
            if lineHasWord && line.count + 1 + word.count > 78 {
                lines.append(line)
                line = " " + word
            } else {
                line += " " + word
            }
            lineHasWord = true
        }
        lines.append(line)
        return lines.joined(separator: "\r\n")
    }
}
