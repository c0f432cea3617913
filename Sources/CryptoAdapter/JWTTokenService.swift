public import IdentityPorts
public import IdentityDomain
public import Foundation
import JWTKit
import Crypto

/// Signs and verifies JWTs, with every rule of contract §4 and §10: HMAC under the shared
/// secret, or ES256 / EdDSA with the key pairs of `SigningKeys` (`kid` in every header).
///
/// A token in the exact form this service issues is verified by `CompactTokenVerifier`: a few
/// microseconds, no allocation beyond the claims. Every other token goes through jwt-kit.
/// jwt-kit verifies with whatever key it finds, falling back on a default for an unknown
/// `kid`, so the header is checked first: `alg` must be the configured algorithm (`none` and
/// every other one are refused), a `crit` header is refused, a header that carries or points
/// to a key (`jwk`, `jku`, `x5u`, `x5c`) is refused, and with key pairs the `kid` must name a
/// published key, which alone (in a collection of its own) verifies the token. Claims are then
/// checked here, with one precise reason per failure, whichever way they were read.
public struct JWTTokenService: TokenService {
    private enum Keys: Sendable {
        /// HMAC: jwt-kit with the secret, the compact verifier for it, and the signer of the
        /// tokens this service issues.
        case shared(JWTKeyCollection, CompactTokenVerifier, HMACSigner)
        /// Key pairs, read anew as they rotate.
        case pairs(SigningKeys)
        /// A key pair algorithm without keys (`TokenConfiguration(keyPairs:)` not yet given
        /// any): signs nothing, accepts nothing.
        case none
    }

    private let keys: Keys
    private let configuration: TokenConfiguration
    /// `{"iss":…,"aud":…`, the start of every payload this service writes.
    private let claimsPrefix: [UInt8]
    /// The header and claim rules, made once: every verification applies them.
    private let checks: TokenChecks

    /// Creates the service.
    public init(configuration: TokenConfiguration) async {
        self.configuration = configuration
        checks = TokenChecks(configuration)
        claimsPrefix = AccessTokenPayload.prefix(issuer: configuration.issuer, audience: configuration.audience)
        if let signingKeys = configuration.signingKeys {
            keys = .pairs(signingKeys)
            return
        }
        guard !configuration.algorithm.isAsymmetric else {
            keys = .none
            return
        }
        let collection = JWTKeyCollection()
        let digest: DigestAlgorithm =
            switch configuration.algorithm {
            case .hs384: .sha384
            case .hs512: .sha512
            default: .sha256
            }
        await collection.add(hmac: HMACKey(from: configuration.secret), digestAlgorithm: digest)
        keys = .shared(collection, CompactTokenVerifier(configuration: configuration), HMACSigner(configuration: configuration))
    }

    public var lifetime: TimeInterval { configuration.lifetime }

    public var leeway: TimeInterval { configuration.leeway }

    /// The public keys that may verify a live token (contract §10): `{"keys":[]}` with HMAC.
    public func jwks() -> JSONWebKeySet {
        if case .pairs(let signingKeys) = keys { signingKeys.jwks() } else { .empty }
    }

    public var signingAlgorithm: String { configuration.algorithm.rawValue }

    public var issuer: String? { configuration.issuer }

    public func publishedKeys() -> [PublishedSigningKey] {
        jwks().keys.map { PublishedSigningKey(kty: $0.kty, crv: $0.crv, x: $0.x, y: $0.y, kid: $0.kid, alg: $0.alg) }
    }

    public func issue(for userID: UserID, accountVersion: Int64, sessionID: SessionID?, issuedAt instant: Date) async throws -> IssuedToken {
        // NumericDate without a fraction: every JWT library reads it.
        let issuedAt = Date(timeIntervalSince1970: instant.timeIntervalSince1970.rounded(.down))
        let expiresAt = issuedAt.addingTimeInterval(configuration.lifetime.rounded(.down))
        let jti = Self.randomTokenID()
        // Header and payload are written here, not by jwt-kit (its JSONEncoder and its actor
        // were a visible share of a refresh's CPU), in exactly the form the compact path takes.
        let payload = Base64URL.encode(AccessTokenPayload.bytes(
            prefix: claimsPrefix, subject: userID.description, issuedAt: Int64(issuedAt.timeIntervalSince1970),
            expiresAt: Int64(expiresAt.timeIntervalSince1970), jti: jti, accountVersion: accountVersion, sessionID: sessionID?.description
        ))
        let token: String
        switch keys {
        case .shared(_, _, let signer):
            let input = signer.encodedHeader + "." + payload
            token = input + "." + Base64URL.encode(signer.sign(input))
        case .none:
            throw SigningKeyError.noActiveKey(algorithm: configuration.algorithm.rawValue)
        case .pairs(let signingKeys):
            // The key is chosen by the instant itself: `iat` is rounded down, perhaps to before
            // the signing key's activation.
            let (kid, key) = try await signingKeys.signer(at: instant)
            let header = Base64URL.encode(Array(CompactTokenVerifier.header(algorithm: configuration.algorithm, kid: kid).utf8))
            let input = header + "." + payload
            token = input + "." + Base64URL.encode(try key.sign(Array(input.utf8)))
        }
        return IssuedToken(token: token, jti: jti, issuedAt: issuedAt, expiresAt: expiresAt)
    }

    nonisolated(nonsending) public func verify(_ token: String, now: Date) async throws -> VerifiedToken {
        let compact =
            switch keys {
            case .shared(_, let compact, _): compact
            case .pairs(let signingKeys): signingKeys.current.compact
            case .none: throw TokenRejected.unknownKey
            }
        switch compact.verify(token, now: now) {
        case .signed(let claims): return try check(claims, now: now)
        case .badSignature: throw TokenRejected.badSignature
        case .declined: return try check(try await verifyInGeneral(token, now: now), now: now)
        }
    }

    /// The header rules, then jwt-kit: for every token `CompactTokenVerifier` declines.
    func verifyInGeneral(_ token: String, now: Date) async throws -> TokenClaims {
        let (header, signature) = try checks.header(of: token)
        let collection: JWTKeyCollection
        switch keys {
        case .shared(let shared, _, _):
            collection = shared
        case .pairs(let signingKeys):
            guard let kid = header.kid, let key = await signingKeys.verificationKey(kid: kid) else { throw TokenRejected.unknownKey }
            // A retired key verifies until its publication ends, and not a moment longer.
            guard key.record.state != .retired || (key.record.publishedUntil.map { now <= $0 } ?? true) else {
                throw TokenRejected.unknownKey
            }
            // What jwt-kit would take but we never write: a truncated or a high-S signature.
            if configuration.algorithm == .es256, !ECDSASignatureForm.isCanonical(signature) { throw TokenRejected.badSignature }
            collection = key.collection
        case .none:
            throw TokenRejected.unknownKey
        }
        return try await TokenChecks.claims(of: token, verifiedWith: collection)
    }

    /// `verify` without the compact path: the reference the compact path is tested and
    /// benchmarked against.
    @_spi(Benchmarks) public func verifyGenerally(_ token: String, now: Date) async throws -> VerifiedToken {
        try check(try await verifyInGeneral(token, now: now), now: now)
    }

    /// What `CompactTokenVerifier` alone makes of `token` (a key pair's publication taken as unexpired).
    func verifyCompactly(_ token: String) -> CompactTokenVerifier.Outcome {
        switch keys {
        case .shared(_, let compact, _): compact.verify(token, now: .distantPast)
        case .pairs(let signingKeys): signingKeys.current.compact.verify(token, now: .distantPast)
        case .none: .declined
        }
    }

    private func check(_ claims: TokenClaims, now: Date) throws -> VerifiedToken {
        try checks.claims(claims, now: now)
    }

    /// 128 random bits, base64url: unguessable and unique.
    static func randomTokenID() -> String {
        var random = SystemRandomNumberGenerator()
        let words = [random.next() as UInt64, random.next() as UInt64]
        return Base64URL.encode(words.withUnsafeBytes { Array($0) })
    }
}

/// The HMAC signature of the tokens this service issues under the shared secret, with the
/// header it writes: `{"alg":…,"typ":"JWT"}`, one of the two the compact path takes.
struct HMACSigner: Sendable {
    let encodedHeader: String
    private let key: SymmetricKey
    private let algorithm: JWTAlgorithm

    init(configuration: TokenConfiguration) {
        algorithm = configuration.algorithm
        key = SymmetricKey(data: configuration.secret)
        encodedHeader = Base64URL.encode(Array(#"{"alg":"\#(configuration.algorithm.rawValue)","typ":"JWT"}"#.utf8))
    }

    /// The MAC of `input`'s UTF-8 bytes.
    func sign(_ input: String) -> [UInt8] {
        switch algorithm {
        case .hs384: Array(HMAC<SHA384>.authenticationCode(for: Data(input.utf8), using: key))
        case .hs512: Array(HMAC<SHA512>.authenticationCode(for: Data(input.utf8), using: key))
        default: Array(HMAC<SHA256>.authenticationCode(for: Data(input.utf8), using: key))
        }
    }
}

/// The JSON payload of an access token, written by hand: `iss`, `aud` (one string), `sub`,
/// `iat` and `exp` (whole seconds), `jti`, `ver`, then `sid` if any. Issuer and audience are
/// escaped once by `JSONEncoder`; the other strings are ours (UUIDs and base64url) and need no
/// escaping.
enum AccessTokenPayload {
    /// `{"iss":…,"aud":…`.
    static func prefix(issuer: String, audience: String) -> [UInt8] {
        let encoder = JSONEncoder()
        let iss = (try? encoder.encode(issuer)).map(Array.init) ?? Array("\"\"".utf8)
        let aud = (try? encoder.encode(audience)).map(Array.init) ?? Array("\"\"".utf8)
        return Array(#"{"iss":"#.utf8) + iss + Array(#","aud":"#.utf8) + aud
    }

    static func bytes(
        prefix: [UInt8], subject: String, issuedAt: Int64, expiresAt: Int64, jti: String, accountVersion: Int64, sessionID: String?
    ) -> [UInt8] {
        var bytes = prefix
        bytes.reserveCapacity(prefix.count + 200)
        func string(_ key: String, _ value: String) {
            bytes.append(contentsOf: #","\#(key)":""#.utf8)
            bytes.append(contentsOf: value.utf8)
            bytes.append(UInt8(ascii: "\""))
        }
        func number(_ key: String, _ value: Int64) {
            bytes.append(contentsOf: #","\#(key)":"#.utf8)
            bytes.append(contentsOf: String(value).utf8)
        }
        string("sub", subject)
        number("iat", issuedAt)
        number("exp", expiresAt)
        string("jti", jti)
        number("ver", accountVersion)
        if let sessionID { string("sid", sessionID) }
        bytes.append(UInt8(ascii: "}"))
        return bytes
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
    var kid: String?
    /// Whether it has a member that carries or points to a key (`jwk`, `jku`, `x5u`, `x5c`),
    /// whatever its value (`null` included).
    var carriesKey: Bool

    private struct Name: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(_ name: String) { stringValue = name }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: Name.self)
        alg = try container.decodeIfPresent(String.self, forKey: Name("alg"))
        typ = try container.decodeIfPresent(String.self, forKey: Name("typ"))
        crit = try container.decodeIfPresent([String].self, forKey: Name("crit"))
        kid = try container.decodeIfPresent(String.self, forKey: Name("kid"))
        carriesKey = container.allKeys.contains { ["jwk", "jku", "x5u", "x5c"].contains($0.stringValue) }
    }
}
