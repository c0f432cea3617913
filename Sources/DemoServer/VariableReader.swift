import Foundation

/// A configuration value that stops start-up; its description is the one line printed. It
/// names the variable and never holds a secret's value.
struct ConfigurationError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A variable's value as the server uses it, for `DemoServer config`.
struct EffectiveValue: Sendable, Equatable {
    let variable: ConfigurationVariable
    /// The value given or defaulted; nil when unset.
    let text: String?
    let origin: ConfigurationValues.Origin

    /// `NAME=value  # origin`, a secret's value shown as `<redacted>` (or `<unset>`).
    var line: String {
        let shown: String
        if variable.isSecret {
            shown = text == nil ? "<unset>" : "<redacted>"
        } else {
            shown = text ?? ""
        }
        return "\(variable.name)=\(shown)  # \(origin.rawValue)"
    }
}

/// Reads variables of the table, each through its own parse, and records what it read.
///
/// A value that does not parse throws a `ConfigurationError` naming the variable; the value is
/// quoted in it unless the variable is a secret. What the value must mean beyond its form (a
/// secret's length, the Argon2 costs) is for the type it becomes to check.
struct VariableReader {
    private let values: ConfigurationValues
    /// Each variable read, in the order read.
    private(set) var effective: [EffectiveValue] = []

    init(_ values: ConfigurationValues) {
        self.values = values
    }

    /// The variables that were given rather than defaulted, among `variables`.
    func given(_ variables: [ConfigurationVariable]) -> [ConfigurationVariable] {
        variables.filter { variable in
            effective.contains { $0.variable == variable && ($0.origin == .environment || $0.origin == .dotEnv) }
        }
    }

    /// The value of `variable` parsed by `parse`, or `fallback` (else the table's default) when
    /// unset, or nil when there is neither. `expected` completes "NAME must be …".
    mutating func read<Value>(
        _ variable: ConfigurationVariable, fallback: String? = nil, expected: String, _ parse: (String) -> Value?
    ) throws -> Value? {
        let given = values.value(of: variable)
        guard let text = given?.text ?? fallback ?? variable.defaultValue else {
            effective.append(EffectiveValue(variable: variable, text: nil, origin: .unset))
            return nil
        }
        guard let value = parse(text) else {
            let got = variable.isSecret ? "" : " (got \(String(reflecting: text)))"
            throw ConfigurationError("\(variable.name) must be \(expected)\(got)")
        }
        effective.append(EffectiveValue(variable: variable, text: text, origin: given?.origin ?? .default))
        return value
    }

    /// `read` for a variable that always has a value: a default in the table, or `fallback`.
    mutating func required<Value>(
        _ variable: ConfigurationVariable, fallback: String? = nil, expected: String, _ parse: (String) -> Value?
    ) throws -> Value {
        guard let value = try read(variable, fallback: fallback, expected: expected, parse) else {
            preconditionFailure("\(variable.name) has a default")
        }
        return value
    }

    /// Any non-empty text.
    mutating func string(_ variable: ConfigurationVariable) throws -> String? {
        try read(variable, expected: "text") { $0 }
    }

    /// An integer in `range`.
    mutating func integer(_ variable: ConfigurationVariable, in range: ClosedRange<Int>, fallback: Int? = nil) throws -> Int {
        try required(
            variable, fallback: fallback.map(String.init), expected: "an integer from \(range.lowerBound) to \(range.upperBound)"
        ) { text in
            Int(text.trimmingCharacters(in: .whitespaces)).flatMap { range.contains($0) ? $0 : nil }
        }
    }

    /// `1`/`true`/`yes`/`on` or `0`/`false`/`no`/`off`.
    mutating func flag(_ variable: ConfigurationVariable) throws -> Bool {
        try required(variable, expected: "1 or 0") { text in
            switch text.lowercased() {
            case "1", "true", "yes", "on": true
            case "0", "false", "no", "off": false
            default: nil
            }
        }
    }

    /// One of `Choice`'s raw values, compared after `normalize`.
    mutating func choice<Choice: RawRepresentable<String> & CaseIterable>(
        _ variable: ConfigurationVariable, _ type: Choice.Type, normalize: (String) -> String = { $0 }
    ) throws -> Choice {
        let names = Choice.allCases.map(\.rawValue).joined(separator: ", ")
        return try required(variable, expected: "one of \(names)") { Choice(rawValue: normalize($0)) }
    }
}
