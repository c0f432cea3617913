import Configuration
import Foundation

/// Where configuration comes from: a swift-configuration `ConfigReader` over the process
/// environment, then the `.env` file in the working directory; `ServerConfiguration` adds the
/// defaults. An empty value counts as unset, in either.
///
/// Both providers mark every secret (`ConfigurationVariable.isSecret(name:)`), so swift-configuration
/// redacts them wherever it prints a value: a provider's debug description, an access log
/// (`CONFIG_ACCESS_LOG_FILE`).
struct ConfigurationValues: Sendable, CustomDebugStringConvertible {
    /// Which layer gave a variable its value.
    enum Origin: String, Sendable {
        /// The process environment.
        case environment = "env"
        /// The `.env` file.
        case dotEnv = ".env"
        /// The table's default (`ConfigurationVariable.defaultValue`), or one computed from other variables.
        case `default`
        /// Neither given nor defaulted.
        case unset
    }

    private let reader: ConfigReader
    private let providers: [EnvironmentVariablesProvider]
    // Names only, never values: enough to say where a value came from.
    private let environmentNames: Set<String>
    private let dotEnvNames: Set<String>

    /// Values from `environment`, then `dotEnv`.
    init(environment: [String: String], dotEnv: [String: String]) {
        let environment = environment.filter { !$0.value.isEmpty }
        let dotEnv = dotEnv.filter { !$0.value.isEmpty }
        let secrets = SecretsSpecifier<String, String>.dynamic { name, _ in ConfigurationVariable.isSecret(name: name) }
        providers = [
            EnvironmentVariablesProvider(environmentVariables: environment, secretsSpecifier: secrets),
            EnvironmentVariablesProvider(environmentVariables: dotEnv, secretsSpecifier: secrets),
        ]
        reader = ConfigReader(providers: providers)
        environmentNames = Set(environment.keys)
        dotEnvNames = Set(dotEnv.keys)
    }

    /// The process environment and `./.env` (if present).
    static func load(dotEnvPath: String = ".env") throws -> ConfigurationValues {
        ConfigurationValues(environment: ProcessInfo.processInfo.environment, dotEnv: try DotEnvFile.load(path: dotEnvPath))
    }

    /// The value given for `variable` and where it was given, or nil when it is unset.
    func value(of variable: ConfigurationVariable) -> (text: String, origin: Origin)? {
        // One key component, so that no character of the name is read as a separator.
        guard let text = reader.string(forKey: ConfigKey([variable.name]), isSecret: variable.isSecret) else { return nil }
        return (text, environmentNames.contains(variable.name) ? .environment : .dotEnv)
    }

    /// Every value of both layers as swift-configuration prints them, secrets as `<REDACTED>`.
    var debugDescription: String {
        providers.map { String(reflecting: $0) }.joined(separator: "\n")
    }
}
