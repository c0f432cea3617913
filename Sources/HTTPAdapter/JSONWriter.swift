import IdentityApplication
import IdentityPorts
import IdentityDomain
import Foundation

/// Writes the few JSON shapes the API returns, field by field: exact names, exact timestamp
/// format, and no encoder in the hot path.
struct JSONWriter {
    private(set) var text = "{"
    private var first = true

    mutating func field(_ name: String, _ value: String) {
        key(name)
        Self.appendQuoted(value, to: &text)
    }

    mutating func field(_ name: String, _ value: Int) {
        key(name)
        text += String(value)
    }

    /// A string, or `null` when there is none.
    mutating func field(_ name: String, _ value: String?) {
        guard let value else { return raw(name, "null") }
        field(name, value)
    }

    mutating func field(_ name: String, _ value: Bool) {
        raw(name, value ? "true" : "false")
    }

    mutating func raw(_ name: String, _ json: String) {
        key(name)
        text += json
    }

    private mutating func key(_ name: String) {
        if !first { text += "," }
        first = false
        Self.appendQuoted(name, to: &text)
        text += ":"
    }

    func finished() -> String { text + "}" }

    static func quoted(_ value: String) -> String {
        var out = ""
        appendQuoted(value, to: &out)
        return out
    }

    static func appendQuoted(_ value: String, to out: inout String) {
        out += "\""
        // The common case (tokens, ids, names in ASCII): nothing to escape, appended whole
        // rather than scalar by scalar. U+2028 and U+2029 start with 0xE2 in UTF-8.
        if !value.utf8.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") || $0 == 0xE2 }) {
            out += value
            out += "\""
            return
        }
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{2028}": out += "\\u2028"
            case "\u{2029}": out += "\\u2029"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
    }
}

/// The JSON views of contract §3.
enum Views {
    static func selfView(_ user: UserRecord) -> String {
        var json = JSONWriter()
        json.field("id", user.id.description)
        json.field("email", user.email)
        json.field("name", user.name)
        json.field("email_verified", user.emailVerified)
        json.field("created_at", user.createdAt.rfc3339)
        json.field("updated_at", user.updatedAt.rfc3339)
        return json.finished()
    }

    static func publicView(id: UserID, name: String, createdAt: Date) -> String {
        var json = JSONWriter()
        json.field("id", id.description)
        json.field("name", name)
        json.field("created_at", createdAt.rfc3339)
        return json.finished()
    }

    /// A login's or a refresh's reply: the access token and the session's refresh token.
    static func token(_ pair: SignIn) -> String {
        var json = JSONWriter()
        json.field("access_token", pair.token)
        json.field("token_type", "bearer")
        json.field("expires_in", pair.expiresIn)
        json.field("refresh_token", pair.refreshToken)
        return json.finished()
    }

    /// `GET /sessions`: the caller's open sessions, newest first.
    static func sessions(_ sessions: [SessionRecord]) -> String {
        let items = sessions.map { session -> String in
            var item = JSONWriter()
            item.field("id", session.id.description)
            item.field("created_at", session.createdAt.rfc3339)
            item.field("last_used_at", session.lastUsedAt.rfc3339)
            item.field("user_agent", session.userAgent)
            item.field("ip", session.clientAddress)
            item.field("current", session.isCurrent)
            return item.finished()
        }
        var json = JSONWriter()
        json.raw("sessions", "[" + items.joined(separator: ",") + "]")
        return json.finished()
    }
}
