import Foundation

/// Where configuration comes from: the environment first, then a `.env` file in the working
/// directory, then the defaults in `Settings`.
struct ConfigurationSource {
    private let environment: [String: String]
    private let dotEnv: [String: String]

    init(environment: [String: String], dotEnv: [String: String]) {
        self.environment = environment
        self.dotEnv = dotEnv
    }

    /// The process environment and `./.env` (if present).
    static func load(dotEnvPath: String = ".env") throws -> ConfigurationSource {
        var dotEnv: [String: String] = [:]
        if FileManager.default.fileExists(atPath: dotEnvPath) {
            guard let data = FileManager.default.contents(atPath: dotEnvPath),
                  let text = String(data: data, encoding: .utf8)
            else { throw ConfigurationError(".env: cannot be read as UTF-8 text") }
            dotEnv = try parseDotEnv(text)
        }
        return ConfigurationSource(environment: ProcessInfo.processInfo.environment, dotEnv: dotEnv)
    }

    /// The value of `name`, or nil when it is unset (an empty value counts as unset).
    subscript(name: String) -> String? {
        if let value = environment[name], !value.isEmpty { return value }
        if let value = dotEnv[name], !value.isEmpty { return value }
        return nil
    }

    /// Parses `KEY=value` lines: blank lines and `#` comments are skipped, `export ` is
    /// allowed, values may be single- or double-quoted.
    static func parseDotEnv(_ text: String) throws -> [String: String] {
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

/// A configuration value that stops start-up; its description is the one line printed.
struct ConfigurationError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
