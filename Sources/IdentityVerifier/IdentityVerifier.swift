public import AsyncHTTPClient
import CryptoAdapter
public import HTTPAdapter
public import IdentityApplication
public import IdentityPorts
public import Logging
public import ServiceLifecycle

/// Verifies our access tokens in another service: the keys fetched from our JWKS
/// (`JWKSCache`), the tokens checked exactly as the identity service checks them
/// (`PublicKeyVerifier`), revocations followed through the host's `RevocationStore`
/// (IdentityApplication's `Authenticator`), and a Hummingbird middleware that puts the
/// `Principal` into `context.principal` as `IdentityBearerAuthenticator` does.
///
/// Run it as a `Service` (it keeps the keys current), next to the revocation store's own
/// service if it has one (`PostgresRevocationCache`).
public struct IdentityVerifier: Service {
    /// The keys, fetched and kept current.
    public let keys: JWKSCache
    /// Bearer token → `Principal`, with the revocation checks.
    public let authenticator: Authenticator

    /// A verifier for `configuration` whose revocations come from `revocations` (a
    /// `PostgresRevocationCache` over the identity service's database, say); throws
    /// `TokenConfigurationError` for an HMAC algorithm, a leeway outside 0…5 s, or an empty
    /// issuer or audience.
    public init(
        configuration: IdentityVerifierConfiguration, revocations: any RevocationStore, httpClient: HTTPClient = .shared,
        clock: any IdentityClock = SystemClock(), logger: Logger = Logger(label: "identity.verifier")
    ) throws {
        let keys = JWKSCache(configuration: configuration, httpClient: httpClient, clock: clock, logger: logger)
        let verifier = try PublicKeyVerifier(
            source: keys, algorithm: configuration.algorithm, issuer: configuration.issuer, audience: configuration.audience,
            leeway: configuration.leeway
        )
        self.keys = keys
        self.authenticator = Authenticator(verifier: verifier, revocations: revocations, clock: clock)
    }

    /// Middleware for the host's routes: lets a request through only with a bearer token we
    /// issued and have not revoked, and puts its user in `context.principal`; anything else gets
    /// the identity service's 401 problem+json with `WWW-Authenticate`.
    public func bearerAuthenticator<Context: IdentityContext>(context: Context.Type = Context.self) -> IdentityBearerAuthenticator<Context> {
        IdentityHTTP.bearerAuthenticator(authenticator: authenticator, context: context)
    }

    /// The principal behind `token`; throws `TokenRejected` when it must not be honoured.
    public func authenticate(bearer token: String) async throws -> Principal {
        try await authenticator.authenticate(bearer: token)
    }

    /// Keeps the keys current until the service group shuts down.
    public func run() async throws {
        try await keys.run()
    }
}
