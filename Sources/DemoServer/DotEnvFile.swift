import Foundation

/// The `.env` file: `KEY=value` lines, read strictly.
///
/// Ours rather than swift-configuration's `EnvironmentVariablesProvider(environmentFilePath:)`,
/// whose parser keeps quotes as part of a value, does not know `export `, and skips a line it
/// cannot read without a word: a quoted `JWT_SECRET="…"` would silently become a different key.
/// The values parsed here feed an `EnvironmentVariablesProvider` all the same (`ConfigurationValues`).
enum DotEnvFile {
    /// The variables of the file at `path`; empty when there is no such file.
    static func load(path: String) throws -> [String: String] {
        guard FileManager.default.fileExists(atPath: path) else { return [:] }
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw ConfigurationError(".env: cannot be read as UTF-8 text")
        }
        return try parse(text)
    }

    /// Parses `KEY=value` lines: blank lines and `#` comments are skipped, `export ` is
    /// allowed, values may be single- or double-quoted, and ` #` starts a comment after an
    /// unquoted value. A line that is none of these throws, naming its number (never its value).
    static func parse(_ text: String) throws -> [String: String] {
        var values: [String: String] = [:]
        for (number, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            var line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.hasSuffix("\r") { line.removeLast() }
            if line.isEmpty || line.hasPrefix("#") { continue }
            if line.hasPrefix("export ") { line = String(line.dropFirst(7)).trimmingCharacters(in: .whitespaces) }
            guard let equals = line.firstIndex(of: "=") else {
                throw ConfigurationError(".env line \(number + 1): expected KEY=value")
            }
            let key = line[..<equals].trimmingCharacters(in: .whitespaces)
            guard !key.isEmpty, key.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }) else {
                throw ConfigurationError(".env line \(number + 1): invalid variable name")
            }
            var value = line[line.index(after: equals)...].trimmingCharacters(in: .whitespaces)
            if let quote = value.first, quote == "\"" || quote == "'" {
                guard value.count >= 2, value.last == quote else {
                    throw ConfigurationError(".env line \(number + 1): unterminated quote in \(key)")
                }
                value = String(value.dropFirst().dropLast())
            } else if let hash = value.range(of: " #") {
                value = value[..<hash.lowerBound].trimmingCharacters(in: .whitespaces)
            }
            values[key] = value
        }
        return values
    }
}
