public import CryptoAdapter
public import Foundation

/// Where a verifier finds our public keys.
public enum KeySetLocation: Sendable, Equatable {
    /// The JWKS itself: `https://identity.example.com/.well-known/jwks.json`.
    case jwks(String)
    /// The OpenID discovery document, `…/.well-known/openid-configuration` (or the base URL it
    /// lives under): its `jwks_uri` is fetched, once its `issuer` is checked to be the one expected.
    case discovery(String)
}

/// What a service that verifies our tokens must know: where the keys are, what the tokens
/// must say, and the bounds of the key cache.
public struct IdentityVerifierConfiguration: Sendable {
    /// Where the keys are published.
    public var location: KeySetLocation
    /// The `iss` every token must carry (`JWT_ISSUER` of the identity service).
    public var issuer: String
    /// The audience every token must name in `aud` (`JWT_AUDIENCE`).
    public var audience: String
    /// The one algorithm accepted: ES256 or EdDSA (`JWT_ALGORITHM`).
    public var algorithm: JWTAlgorithm
    /// How far past `exp` (and before `iat`/`nbf`) a token is still accepted, 0…5 s.
    public var leeway: TimeInterval = 5
    /// The shortest time between two fetches caused by tokens naming an unknown `kid`: a flood
    /// of made-up kids costs the identity service one request per interval at most.
    public var unknownKeyRefetchInterval: TimeInterval = 10
    /// How long a JWKS is used when its response has no `Cache-Control: max-age`.
    public var defaultKeyLifetime: TimeInterval = 300
    /// Bounds on the `max-age` taken from the response: a `max-age=0` does not become a fetch
    /// a second, a `max-age` of a year does not keep a withdrawn key.
    public var keyLifetimeBounds: ClosedRange<TimeInterval> = 10...3600
    /// How long past its `max-age` a set may still verify while it cannot be fetched again
    /// (the identity service down or unreachable). Past that, every token is refused until
    /// a fetch succeeds: keys nobody can confirm are not trusted for ever.
    public var staleKeyLimit: TimeInterval = 3600
    /// How long one fetch may take.
    public var fetchTimeout: Duration = .seconds(5)
    /// The largest document read (JWKS or discovery).
    public var maximumDocumentSize: Int = 64 * 1024

    /// A configuration with the default bounds.
    public init(location: KeySetLocation, issuer: String, audience: String, algorithm: JWTAlgorithm, leeway: TimeInterval = 5) {
        self.location = location
        self.issuer = issuer
        self.audience = audience
        self.algorithm = algorithm
        self.leeway = leeway
    }
}
