public import Foundation

/// The algorithms a token may be signed with (`JWT_ALGORITHM`, contract §10): HMAC under the
/// shared secret `JWT_SECRET`, or a key pair the service holds itself (ES256, EdDSA).
public enum JWTAlgorithm: String, Sendable, CaseIterable {
    /// HMAC with SHA-256 under `JWT_SECRET`: the embedded default.
    case hs256 = "HS256"
    /// HMAC with SHA-384 under `JWT_SECRET`.
    case hs384 = "HS384"
    /// HMAC with SHA-512 under `JWT_SECRET`.
    case hs512 = "HS512"
    /// ECDSA on P-256 with SHA-256, key pairs from `SigningKeys`.
    case es256 = "ES256"
    /// Ed25519, key pairs from `SigningKeys`.
    case eddsa = "EdDSA"

    /// The HMAC algorithms, which sign with the shared secret.
    public static let hmac: [JWTAlgorithm] = [.hs256, .hs384, .hs512]
    /// The algorithms that sign with key pairs the service holds.
    public static let asymmetric: [JWTAlgorithm] = [.es256, .eddsa]

    /// Whether it signs with a key pair (and so needs `SigningKeys`), not the shared secret.
    public var isAsymmetric: Bool { Self.asymmetric.contains(self) }
}

/// How tokens are signed and which claims they must carry.
public struct TokenConfiguration: Sendable {
    /// The HMAC key: the UTF-8 bytes of `JWT_SECRET` as given (empty with a key pair algorithm).
    public private(set) var secret: [UInt8]
    /// The one algorithm accepted; a token whose header names another is refused.
    public private(set) var algorithm: JWTAlgorithm
    /// Where the key pairs come from, with ES256 and EdDSA; nil with HMAC, and in a
    /// configuration made with `init(keyPairs:...)` until `signing(with:)` gives it keys.
    public private(set) var signingKeys: SigningKeys?
    /// `iss` written and required.
    public let issuer: String
    /// `aud` written and required.
    public let audience: String
    /// Lifetime of a token: `exp = iat + lifetime`.
    public let lifetime: TimeInterval
    /// Clock leeway for `exp`, `iat` and `nbf` (at most 5 s).
    public let leeway: TimeInterval

    /// The shortest secret accepted for `algorithm`, in bytes: 32, or the digest size when
    /// larger (RFC 7518 §3.2: 48 for HS384, 64 for HS512); 0 for a key pair algorithm, which
    /// takes no secret.
    public static func minimumSecretLength(for algorithm: JWTAlgorithm) -> Int {
        switch algorithm {
        case .hs256: 32
        case .hs384: 48
        case .hs512: 64
        case .es256, .eddsa: 0
        }
    }

    /// Creates an HMAC configuration; throws `TokenConfigurationError` for a short secret, a
    /// non-positive lifetime, a leeway over 5 s, or a key pair algorithm (which needs
    /// `init(signingKeys:issuer:audience:lifetime:leeway:)`).
    public init(
        secret: String, algorithm: JWTAlgorithm = .hs256, issuer: String = "identity",
        audience: String = "identity", lifetime: TimeInterval = 3600, leeway: TimeInterval = 5
    ) throws {
        guard !algorithm.isAsymmetric else {
            throw TokenConfigurationError(
                "\(algorithm.rawValue) signs with key pairs, not JWT_SECRET: it needs a signing-key store and JWT_KEY_ENCRYPTION_KEY"
            )
        }
        let bytes = Array(secret.utf8)
        let minimum = Self.minimumSecretLength(for: algorithm)
        guard bytes.count >= minimum else {
            throw TokenConfigurationError(
                "the JWT secret must be at least \(minimum) bytes for \(algorithm.rawValue) (got \(bytes.count))"
            )
        }
        try self.init(secret: bytes, algorithm: algorithm, signingKeys: nil, issuer: issuer, audience: audience, lifetime: lifetime, leeway: leeway)
    }

    /// Creates a key pair configuration (ES256 or EdDSA, as `signingKeys` holds them); throws
    /// `TokenConfigurationError` for a non-positive lifetime or a leeway over 5 s.
    public init(
        signingKeys: SigningKeys, issuer: String = "identity", audience: String = "identity", lifetime: TimeInterval = 3600,
        leeway: TimeInterval = 5
    ) throws {
        try self.init(
            secret: [], algorithm: signingKeys.algorithm, signingKeys: signingKeys, issuer: issuer, audience: audience, lifetime: lifetime,
            leeway: leeway
        )
    }

    /// Describes key pair signing (`algorithm` ES256 or EdDSA) before the keys are read: what
    /// a host gives `IdentityConfiguration`, whose composition reads the keys from its store
    /// and makes the configuration that signs (`signing(with:)`). A `JWTTokenService` made
    /// from this one itself signs nothing and refuses every token. Throws
    /// `TokenConfigurationError` for an HMAC algorithm, a non-positive lifetime or a leeway over 5 s.
    public init(
        keyPairs algorithm: JWTAlgorithm, issuer: String = "identity", audience: String = "identity", lifetime: TimeInterval = 3600,
        leeway: TimeInterval = 5
    ) throws {
        guard algorithm.isAsymmetric else { throw TokenConfigurationError("\(algorithm.rawValue) signs with JWT_SECRET, not key pairs") }
        try self.init(secret: [], algorithm: algorithm, signingKeys: nil, issuer: issuer, audience: audience, lifetime: lifetime, leeway: leeway)
    }

    /// This configuration's issuer, audience, lifetime and leeway with the keys of `signingKeys`
    /// (whose algorithm it takes).
    public func signing(with signingKeys: SigningKeys) -> TokenConfiguration {
        var copy = self
        copy.algorithm = signingKeys.algorithm
        copy.signingKeys = signingKeys
        copy.secret = []
        return copy
    }

    private init(
        secret: [UInt8], algorithm: JWTAlgorithm, signingKeys: SigningKeys?, issuer: String, audience: String, lifetime: TimeInterval,
        leeway: TimeInterval
    ) throws {
        guard lifetime > 0 else { throw TokenConfigurationError("the token lifetime must be positive") }
        guard (0...5).contains(leeway) else { throw TokenConfigurationError("the leeway must be between 0 and 5 seconds") }
        guard !issuer.isEmpty, !audience.isEmpty else { throw TokenConfigurationError("issuer and audience must not be empty") }
        self.secret = secret
        self.algorithm = algorithm
        self.signingKeys = signingKeys
        self.issuer = issuer
        self.audience = audience
        self.lifetime = lifetime
        self.leeway = leeway
    }

    /// A configuration with a fresh random 256-bit secret (embedded mode without `JWT_SECRET`).
    public static func randomSecret() -> String {
        var random = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: 0...255, using: &random) }
        return Data(bytes).base64EncodedString()
    }
}

/// A token configuration that cannot be used.
public struct TokenConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What is wrong.
    public let description: String
    init(_ description: String) { self.description = description }
}
