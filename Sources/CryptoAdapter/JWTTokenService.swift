public import IdentityPorts
public import IdentityDomain
public import Foundation
import JWTKit

/// The HMAC algorithms a token may be signed with (`JWT_ALGORITHM`).
public enum JWTAlgorithm: String, Sendable, CaseIterable {
    case hs256 = "HS256"
    case hs384 = "HS384"
    case hs512 = "HS512"
}

/// How tokens are signed and which claims they must carry.
public struct TokenConfiguration: Sendable {
    /// The HMAC key: the UTF-8 bytes of `JWT_SECRET` as given.
    public let secret: [UInt8]
    /// The one algorithm accepted; a token whose header names another is refused.
    public let algorithm: JWTAlgorithm
    /// `iss` written and required.
    public let issuer: String
    /// `aud` written and required.
    public let audience: String
    /// Lifetime of a token: `exp = iat + lifetime`.
    public let lifetime: TimeInterval
    /// Clock leeway for `exp`, `iat` and `nbf` (at most 5 s).
    public let leeway: TimeInterval

    /// The shortest secret accepted for `algorithm`, in bytes: 32, or the digest size when
    /// larger (RFC 7518 §3.2: 48 for HS384, 64 for HS512).
    public static func minimumSecretLength(for algorithm: JWTAlgorithm) -> Int {
        switch algorithm {
        case .hs256: 32
        case .hs384: 48
        case .hs512: 64
        }
    }

    /// Creates a configuration; throws `TokenConfigurationError` for a short secret, a
    /// non-positive lifetime or a leeway over 5 s.
    public init(
        secret: String, algorithm: JWTAlgorithm = .hs256, issuer: String = "identity",
        audience: String = "identity", lifetime: TimeInterval = 3600, leeway: TimeInterval = 5
    ) throws {
        let bytes = Array(secret.utf8)
        let minimum = Self.minimumSecretLength(for: algorithm)
        guard bytes.count >= minimum else {
            throw TokenConfigurationError(
                "the JWT secret must be at least \(minimum) bytes for \(algorithm.rawValue) (got \(bytes.count))"
            )
        }
        guard lifetime > 0 else { throw TokenConfigurationError("the token lifetime must be positive") }
        guard (0...5).contains(leeway) else { throw TokenConfigurationError("the leeway must be between 0 and 5 seconds") }
        guard !issuer.isEmpty, !audience.isEmpty else { throw TokenConfigurationError("issuer and audience must not be empty") }
        self.secret = bytes
        self.algorithm = algorithm
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

/// Signs and verifies HMAC JWTs, with every rule of contract §4.
///
/// A token in the exact form this service issues is verified by `CompactTokenVerifier`: a few
/// microseconds, no allocation beyond the claims. Every other token goes through jwt-kit.
/// jwt-kit verifies with the configured key whatever the header says, so the header is
/// checked first: `alg` must be the configured algorithm (`none` and every other one are
/// refused), and a `crit` header is refused. Claims are then checked here, with one precise
/// reason per failure, whichever way they were read.
public struct JWTTokenService: TokenService {
    private let keys: JWTKeyCollection
    private let configuration: TokenConfiguration
    private let compact: CompactTokenVerifier

    /// Creates the service.
    public init(configuration: TokenConfiguration) async {
        let keys = JWTKeyCollection()
        let digest: DigestAlgorithm =
            switch configuration.algorithm {
            case .hs256: .sha256
            case .hs384: .sha384
            case .hs512: .sha512
            }
        await keys.add(hmac: HMACKey(from: configuration.secret), digestAlgorithm: digest)
        self.keys = keys
        self.configuration = configuration
        self.compact = CompactTokenVerifier(configuration: configuration)
    }

    public var lifetime: TimeInterval { configuration.lifetime }

    public var leeway: TimeInterval { configuration.leeway }

    public func issue(for userID: UserID, accountVersion: Int64, sessionID: SessionID?, issuedAt: Date) async throws -> IssuedToken {
        // NumericDate without a fraction: every JWT library reads it.
        let issuedAt = Date(timeIntervalSince1970: issuedAt.timeIntervalSince1970.rounded(.down))
        let expiresAt = issuedAt.addingTimeInterval(configuration.lifetime.rounded(.down))
        let jti = Self.randomTokenID()
        let payload = AccessTokenClaims(
            iss: IssuerClaim(value: configuration.issuer), aud: AudienceClaim(value: [configuration.audience]),
            sub: SubjectClaim(value: userID.description), iat: IssuedAtClaim(value: issuedAt),
            exp: ExpirationClaim(value: expiresAt), nbf: nil, jti: IDClaim(value: jti), ver: accountVersion,
            sid: sessionID?.description
        )
        let header: JWTHeader = ["alg": .string(configuration.algorithm.rawValue), "typ": "JWT"]
        let token = try await keys.sign(payload, header: header)
        return IssuedToken(token: token, jti: jti, issuedAt: issuedAt, expiresAt: expiresAt)
    }

    nonisolated(nonsending) public func verify(_ token: String, now: Date) async throws -> VerifiedToken {
        switch compact.verify(token) {
        case .signed(let claims): return try check(claims, now: now)
        case .badSignature: throw TokenRejected.badSignature
        case .declined: return try check(try await verifyInGeneral(token), now: now)
        }
    }

    /// The header rules, then jwt-kit: for every token `CompactTokenVerifier` declines.
    func verifyInGeneral(_ token: String) async throws -> TokenClaims {
        try checkHeader(of: token)
        let claims: AccessTokenClaims
        do {
            claims = try await keys.verify(token, as: AccessTokenClaims.self)
        } catch let error as JWTError where error.errorType == .signatureVerificationFailed {
            throw TokenRejected.badSignature
        } catch {
            throw TokenRejected.malformed
        }
        return TokenClaims(iss: claims.iss?.value, aud: claims.aud?.value, sub: claims.sub?.value, iat: claims.iat?.value,
                           exp: claims.exp?.value, nbf: claims.nbf?.value, jti: claims.jti?.value, ver: claims.ver,
                           sid: claims.sid)
    }

    /// `verify` without the compact path: the reference the compact path is tested and
    /// benchmarked against.
    @_spi(Benchmarks) public func verifyGenerally(_ token: String, now: Date) async throws -> VerifiedToken {
        try check(try await verifyInGeneral(token), now: now)
    }

    /// What `CompactTokenVerifier` alone makes of `token`.
    func verifyCompactly(_ token: String) -> CompactTokenVerifier.Outcome {
        compact.verify(token)
    }

    private func checkHeader(of token: String) throws {
        // Canonical unpadded base64url in every part (RFC 7515 §2): one token, one spelling.
        let parts = token.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard parts.count == 3, token.utf8.count <= 8192, let header = Base64URL.decode(parts[0]),
              Base64URL.decode(parts[1]) != nil, Base64URL.decode(parts[2]) != nil
        else { throw TokenRejected.malformed }
        guard let header = try? JSONDecoder().decode(TokenHeader.self, from: Data(header)) else { throw TokenRejected.malformed }
        guard header.alg == configuration.algorithm.rawValue else { throw TokenRejected.algorithmNotAllowed }
        guard header.crit == nil, header.typ.map({ $0.uppercased() == "JWT" }) ?? true else {
            throw TokenRejected.malformed
        }
    }

    private func check(_ claims: TokenClaims, now: Date) throws -> VerifiedToken {
        guard let sub = claims.sub, let userID = UserID(sub), let jti = claims.jti,
              !jti.isEmpty, jti.utf8.count <= 128, let iat = claims.iat, let exp = claims.exp
        else { throw TokenRejected.missingClaim }
        guard claims.iss == configuration.issuer else { throw TokenRejected.wrongIssuer }
        guard let aud = claims.aud, aud.contains(configuration.audience) else { throw TokenRejected.wrongAudience }
        let leeway = configuration.leeway
        guard now.timeIntervalSince(exp) <= leeway else { throw TokenRejected.expired }
        guard iat.timeIntervalSince(now) <= leeway else { throw TokenRejected.notYetValid }
        if let nbf = claims.nbf, nbf.timeIntervalSince(now) > leeway { throw TokenRejected.notYetValid }
        // A token without `ver` (issued before versions were carried) counts as version 0:
        // every cut-off revokes it.
        guard (claims.ver ?? 0) >= 0 else { throw TokenRejected.missingClaim }
        var sessionID: SessionID?
        if let sid = claims.sid {
            guard let parsed = SessionID(sid) else { throw TokenRejected.missingClaim }
            sessionID = parsed
        }
        return VerifiedToken(
            userID: userID, jti: jti, issuedAt: iat, expiresAt: exp, accountVersion: claims.ver ?? 0, sessionID: sessionID
        )
    }

    /// 128 random bits, base64url: unguessable and unique.
    static func randomTokenID() -> String {
        var random = SystemRandomNumberGenerator()
        let words = [random.next() as UInt64, random.next() as UInt64]
        return Base64URL.encode(words.withUnsafeBytes { Array($0) })
    }
}

/// The claims of an access token; every one optional so that a missing claim gets its own reason.
struct AccessTokenClaims: JWTPayload {
    var iss: IssuerClaim?
    var aud: AudienceClaim?
    var sub: SubjectClaim?
    var iat: IssuedAtClaim?
    var exp: ExpirationClaim?
    var nbf: NotBeforeClaim?
    var jti: IDClaim?
    /// The account's version when the token was issued (our own claim).
    var ver: Int64?
    /// The session the token belongs to (contract §9).
    var sid: String?

    /// Claims are checked by `JWTTokenService` itself, with the injected clock.
    func verify(using algorithm: some JWTKit.JWTAlgorithm) async throws {}
}

/// The header fields that decide whether a token is even considered.
struct TokenHeader: Decodable {
    var alg: String?
    var typ: String?
    var crit: [String]?
}
