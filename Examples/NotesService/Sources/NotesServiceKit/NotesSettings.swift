import CryptoAdapter
import Foundation
import IdentityVerifier
import PostgresAdapter

/// How the notes service is configured: from the environment.
///
/// | Variable | Meaning |
/// |---|---|
/// | `HOST`, `PORT` | where to listen (127.0.0.1, 8081; port 0 picks a free one, logged) |
/// | `IDENTITY_JWKS_URL` | the identity service's JWKS, or else |
/// | `IDENTITY_DISCOVERY_URL` | its discovery document (or its base URL); the `issuer` there must be `IDENTITY_ISSUER` |
/// | `IDENTITY_ISSUER`, `IDENTITY_AUDIENCE` | what the tokens must say (`JWT_ISSUER`, `JWT_AUDIENCE` there; default `identity`) |
/// | `IDENTITY_ALGORITHM` | `ES256` (default) or `EdDSA`: `JWT_ALGORITHM` there |
/// | `POSTGRES_HOST`, `POSTGRES_PORT`, `POSTGRES_USER`, `POSTGRES_PASSWORD`, `POSTGRES_DB` | the identity service's database, whose revocations are followed |
public struct NotesSettings: Sendable {
    /// The address to listen on.
    public var host: String
    /// The port to listen on; 0 picks a free one.
    public var port: Int
    /// What the verifier needs.
    public var verifier: IdentityVerifierConfiguration
    /// The identity service's database.
    public var postgres: PostgresConfiguration

    /// The settings in `environment`; throws `NotesSettingsError` for a missing or invalid one.
    public init(environment: [String: String]) throws {
        host = environment["HOST"] ?? "127.0.0.1"
        guard let port = Int(environment["PORT"] ?? "8081"), (0...65535).contains(port) else { throw NotesSettingsError("PORT must be 0…65535") }
        self.port = port
        let location: KeySetLocation
        switch (environment["IDENTITY_JWKS_URL"], environment["IDENTITY_DISCOVERY_URL"]) {
        case (let jwks?, nil): location = .jwks(jwks)
        case (nil, let discovery?): location = .discovery(discovery)
        default: throw NotesSettingsError("set exactly one of IDENTITY_JWKS_URL and IDENTITY_DISCOVERY_URL")
        }
        guard let algorithm = JWTAlgorithm(rawValue: environment["IDENTITY_ALGORITHM"] ?? "ES256"), algorithm.isAsymmetric else {
            throw NotesSettingsError("IDENTITY_ALGORITHM must be ES256 or EdDSA: a verifier of published keys cannot check a shared secret")
        }
        verifier = IdentityVerifierConfiguration(
            location: location, issuer: environment["IDENTITY_ISSUER"] ?? "identity", audience: environment["IDENTITY_AUDIENCE"] ?? "identity",
            algorithm: algorithm
        )
        guard let postgresHost = environment["POSTGRES_HOST"] else {
            throw NotesSettingsError("POSTGRES_HOST is required: revocations (logouts, ended sessions) are read from the identity service's database")
        }
        guard let postgresPort = Int(environment["POSTGRES_PORT"] ?? "5432") else { throw NotesSettingsError("POSTGRES_PORT must be a number") }
        postgres = PostgresConfiguration(
            host: postgresHost, port: postgresPort, username: environment["POSTGRES_USER"] ?? "postgres",
            password: environment["POSTGRES_PASSWORD"], database: environment["POSTGRES_DB"] ?? "identity", poolSize: 4, tls: .disable
        )
    }
}

/// A setting is missing or invalid.
public struct NotesSettingsError: Error, Sendable, CustomStringConvertible {
    /// Which, and why.
    public let description: String
    init(_ description: String) { self.description = description }
}
