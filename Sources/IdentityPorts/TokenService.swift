public import Foundation
public import IdentityDomain

/// A freshly signed access token.
public struct IssuedToken: Sendable, Equatable {
    /// The compact JWT.
    public let token: String
    /// Its unique id (`jti`).
    public let jti: String
    /// When it was issued (`iat`, whole seconds).
    public let issuedAt: Date
    /// When it expires (`exp`).
    public let expiresAt: Date

    /// Creates the value.
    public init(token: String, jti: String, issuedAt: Date, expiresAt: Date) {
        self.token = token
        self.jti = jti
        self.issuedAt = issuedAt
        self.expiresAt = expiresAt
    }

    /// Lifetime in whole seconds, as `expires_in` reports it.
    public var expiresIn: Int { Int((expiresAt.timeIntervalSince(issuedAt)).rounded()) }
}

/// The verified claims of a token whose signature, algorithm, issuer, audience and times hold.
public struct VerifiedToken: Sendable, Equatable {
    /// `sub`
    public let userID: UserID
    /// `jti`
    public let jti: String
    /// `iat`
    public let issuedAt: Date
    /// `exp`
    public let expiresAt: Date
    /// `ver`: the account's version when the token was issued (0 when the token has none).
    public let accountVersion: Int64
    /// `sid`: the session the token belongs to (nil for a token issued outside a session).
    public let sessionID: SessionID?

    /// Creates the value.
    public init(userID: UserID, jti: String, issuedAt: Date, expiresAt: Date, accountVersion: Int64, sessionID: SessionID? = nil) {
        self.userID = userID
        self.jti = jti
        self.issuedAt = issuedAt
        self.expiresAt = expiresAt
        self.accountVersion = accountVersion
        self.sessionID = sessionID
    }
}

/// Why a token was refused. Every case is a 401; the reason is for logs and tests only.
public struct TokenRejected: Error, Sendable, Hashable, CustomStringConvertible {
    /// A short machine-readable reason, such as `expired` or `bad_signature`.
    public let reason: String

    /// Creates a rejection with `reason`.
    public init(_ reason: String) {
        self.reason = reason
    }

    public var description: String { "token rejected: \(reason)" }

    /// Not three base64url parts, or undecodable.
    public static let malformed = TokenRejected("malformed")
    /// `alg` other than the configured one (including `none`).
    public static let algorithmNotAllowed = TokenRejected("algorithm_not_allowed")
    /// The signature does not verify (or is not in its one canonical form).
    public static let badSignature = TokenRejected("bad_signature")
    /// The header's `kid` names no key that is published (or it has none where one is required).
    public static let unknownKey = TokenRejected("unknown_key")
    /// The header carries or points to a key (`jwk`, `jku`, `x5u`, `x5c`): never followed.
    public static let keyInHeader = TokenRejected("key_in_header")
    /// `exp` has passed (beyond the leeway).
    public static let expired = TokenRejected("expired")
    /// `iat` or `nbf` lies in the future (beyond the leeway).
    public static let notYetValid = TokenRejected("not_yet_valid")
    /// `iss` is not ours.
    public static let wrongIssuer = TokenRejected("wrong_issuer")
    /// `aud` does not include ours.
    public static let wrongAudience = TokenRejected("wrong_audience")
    /// A required claim (`sub`, `jti`, `iat`, `exp`, ...) is missing or malformed.
    public static let missingClaim = TokenRejected("missing_claim")
    /// Revoked by logout, a password change or deletion.
    public static let revoked = TokenRejected("revoked")
    /// The account no longer exists.
    public static let unknownUser = TokenRejected("unknown_user")
}

/// Verifies access tokens: what a service needs that only checks tokens issued elsewhere
/// (with the published public keys, say) and issues none. `TokenService` refines it.
public protocol TokenVerifier: Sendable {
    /// Verifies signature, algorithm and claims at `now`; throws `TokenRejected`.
    ///
    /// Runs on the caller's executor (`nonisolated(nonsending)`): every authenticated request
    /// pays for it, and a few microseconds of CPU are not worth a hop to another thread.
    nonisolated(nonsending) func verify(_ token: String, now: Date) async throws -> VerifiedToken
}

/// Issues and verifies access tokens.
///
/// The token service is the one place that knows how long tokens live and how much clock
/// leeway verification grants, so revocations are sized from it (`revocationExpiry(ofTokenExpiringAt:)`,
/// `cutoffExpiry(madeAt:)`) and cannot be configured apart from the tokens they revoke.
public protocol TokenService: TokenVerifier {
    /// How long a token lives: `exp - iat`.
    var lifetime: TimeInterval { get }
    /// How far past `exp` (and before `iat`/`nbf`) a token is still accepted.
    var leeway: TimeInterval { get }
    /// Signs a token for `userID`, whose account is at `accountVersion`, in session `sessionID`
    /// (its `sid`, if any), issued at `issuedAt` (truncated to whole seconds: `iat`, `exp` and
    /// `nbf` are integers).
    func issue(for userID: UserID, accountVersion: Int64, sessionID: SessionID?, issuedAt: Date) async throws -> IssuedToken
    /// Verifies signature, algorithm and claims at `now`; throws `TokenRejected`.
    ///
    /// Runs on the caller's executor (`nonisolated(nonsending)`): every authenticated request
    /// pays for it, and a few microseconds of CPU are not worth a hop to another thread.
    nonisolated(nonsending) func verify(_ token: String, now: Date) async throws -> VerifiedToken
    /// The JWS algorithm tokens are signed with (`HS256`, `ES256`, `EdDSA`, ...): what discovery
    /// announces as `id_token_signing_alg_values_supported`.
    var signingAlgorithm: String { get }
    /// The `iss` its tokens carry, which discovery announces as `issuer`; nil when it does not say.
    var issuer: String? { get }
    /// The public keys that may verify a live token now (contract §10), oldest first; none
    /// when tokens are signed with a shared secret.
    func publishedKeys() -> [PublishedSigningKey]
}

extension TokenService {
    /// `HS256`: a service that does not say signs with the embedded default.
    public var signingAlgorithm: String { "HS256" }

    /// Nil: discovery then names the service's own base URL.
    public var issuer: String? { nil }

    /// None: a shared secret is never published.
    public func publishedKeys() -> [PublishedSigningKey] { [] }

    /// A token outside any session (no `sid`).
    public func issue(for userID: UserID, accountVersion: Int64, issuedAt: Date) async throws -> IssuedToken {
        try await issue(for: userID, accountVersion: accountVersion, sessionID: nil, issuedAt: issuedAt)
    }

    /// Until when the revocation of a token expiring at `exp` must be kept: past `exp` plus the
    /// leeway by one more leeway, so that an instance whose clock runs up to a leeway ahead
    /// never purges it while another instance still accepts the token.
    public func revocationExpiry(ofTokenExpiringAt exp: Date) -> Date {
        exp.addingTimeInterval(2 * leeway)
    }

    /// Until when a cut-off made at `now` (by this instance's clock) must be kept: it must
    /// outlive every token issued before it, by any instance, whose clock may differ from this
    /// one's by up to the leeway.
    public func cutoffExpiry(madeAt now: Date) -> Date {
        now.addingTimeInterval(lifetime + 3 * leeway)
    }
}
