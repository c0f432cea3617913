public import Foundation
public import IdentityPorts
import Crypto
import JWTKit

/// The public keys of a JWKS (RFC 7517), opened and ready to verify: what a service that only
/// verifies our tokens holds, built from `GET /.well-known/jwks.json`.
///
/// Only keys of the pinned algorithm are taken (`EC`/`P-256` for ES256, `OKP`/`Ed25519` for
/// EdDSA), with a `kid`, `use` absent or `sig`, and `alg` absent or the pinned one; any other
/// member of the set is skipped, and counted in `skippedKeys`. At most `maximumKeys` are
/// taken, so a hostile or broken document cannot make the holder open keys without end.
public final class PublicKeySet: Sendable {
    /// The most keys a set takes (our JWKS lists two or three: the signing key, the next one,
    /// one retired).
    public static let maximumKeys = 32

    /// The algorithm every key of the set verifies.
    public let algorithm: JWTAlgorithm
    /// The `kid` of every key held, in the order of the document.
    public let keyIDs: [String]
    /// Members of the document that were not taken (another algorithm, no `kid`, a duplicate
    /// `kid`, a malformed key, past `maximumKeys`).
    public let skippedKeys: Int
    let collections: [String: JWTKeyCollection]
    let compact: CompactTokenVerifier

    private init(algorithm: JWTAlgorithm, keyIDs: [String], skippedKeys: Int, collections: [String: JWTKeyCollection], compact: CompactTokenVerifier) {
        self.algorithm = algorithm
        self.keyIDs = keyIDs
        self.skippedKeys = skippedKeys
        self.collections = collections
        self.compact = compact
    }

    /// A set with no key: every token is refused (`unknown_key`) until keys are known.
    public static func empty(_ algorithm: JWTAlgorithm) -> PublicKeySet {
        PublicKeySet(algorithm: algorithm, keyIDs: [], skippedKeys: 0, collections: [:], compact: CompactTokenVerifier(keys: [], algorithm: algorithm))
    }

    /// The keys of a JWKS document (the JSON `GET /.well-known/jwks.json` answers); throws
    /// `PublicKeySetError` when it is not a JWK Set or `algorithm` is an HMAC one.
    public static func parse(jwks json: Data, algorithm: JWTAlgorithm) async throws -> PublicKeySet {
        guard algorithm.isAsymmetric else { throw PublicKeySetError("\(algorithm.rawValue) verifies with a shared secret: no JWKS publishes it") }
        guard let document = try? JSONSerialization.jsonObject(with: json) as? [String: Any], let members = document["keys"] as? [Any] else {
            throw PublicKeySetError("the document is not a JWK Set (a JSON object with a \"keys\" array)")
        }
        var keyIDs: [String] = []
        var skipped = 0
        var collections: [String: JWTKeyCollection] = [:]
        var compactKeys: [(kid: String, key: CompactTokenVerifier.Key, until: Date?)] = []
        for member in members {
            guard keyIDs.count < maximumKeys, let jwk = member as? [String: Any], let opened = open(jwk, algorithm: algorithm),
                  collections[opened.kid] == nil
            else {
                skipped += 1
                continue
            }
            let collection = JWTKeyCollection()
            switch opened.key {
            case .p256(let key): await collection.add(ecdsa: try ES256PublicKey(backing: key), kid: JWKIdentifier(string: opened.kid))
            case .ed25519(let key): await collection.add(eddsa: EdDSA.PublicKey(backing: key), kid: JWKIdentifier(string: opened.kid))
            case .hmac: continue
            }
            keyIDs.append(opened.kid)
            collections[opened.kid] = collection
            compactKeys.append((opened.kid, opened.key, nil))
        }
        return PublicKeySet(
            algorithm: algorithm, keyIDs: keyIDs, skippedKeys: skipped, collections: collections,
            compact: CompactTokenVerifier(keys: compactKeys, algorithm: algorithm)
        )
    }

    /// The key of one JWK, when it is one of `algorithm` with a `kid`.
    private static func open(_ jwk: [String: Any], algorithm: JWTAlgorithm) -> (kid: String, key: CompactTokenVerifier.Key)? {
        guard let kid = jwk["kid"] as? String, !kid.isEmpty, kid.utf8.count <= 256,
              (jwk["use"] as? String).map({ $0 == "sig" }) ?? (jwk["use"] == nil),
              (jwk["alg"] as? String).map({ $0 == algorithm.rawValue }) ?? (jwk["alg"] == nil),
              // Our header is written with the kid inside quotes, unescaped.
              kid.utf8.allSatisfy({ (0x20...0x7E).contains($0) && $0 != UInt8(ascii: "\"") && $0 != UInt8(ascii: "\\") }),
              let x = (jwk["x"] as? String).flatMap({ Base64URL.decode(Array($0.utf8)) })
        else { return nil }
        switch algorithm {
        case .es256:
            guard jwk["kty"] as? String == "EC", jwk["crv"] as? String == "P-256", x.count == 32,
                  let y = (jwk["y"] as? String).flatMap({ Base64URL.decode(Array($0.utf8)) }), y.count == 32,
                  let key = try? P256.Signing.PublicKey(rawRepresentation: x + y)
            else { return nil }
            return (kid, .p256(key))
        case .eddsa:
            guard jwk["kty"] as? String == "OKP", jwk["crv"] as? String == "Ed25519", x.count == 32,
                  let key = try? Curve25519.Signing.PublicKey(rawRepresentation: x)
            else { return nil }
            return (kid, .ed25519(key))
        default:
            return nil
        }
    }
}

/// Why a JWKS could not be read.
public struct PublicKeySetError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What is wrong with it.
    public let description: String
    init(_ description: String) { self.description = description }
}

/// Where a `PublicKeyVerifier` finds the published keys: a JWKS fetched and kept current
/// (IdentityVerifier's `JWKSCache`), or a fixed set.
public protocol PublicKeySource: Sendable {
    /// The keys as last read; no I/O.
    var publicKeys: PublicKeySet { get }
    /// Called when a token names `kid` and `publicKeys` has no such key: the source may read
    /// the keys again (rate-limited: made-up kids must not become a fetch each) and returns
    /// the keys it has then.
    func publicKeys(missing kid: String) async -> PublicKeySet
}

/// A fixed set of public keys: a `PublicKeySource` that never reads again.
public struct FixedPublicKeys: PublicKeySource {
    /// The keys.
    public let publicKeys: PublicKeySet

    /// A source that always answers `keys`.
    public init(_ keys: PublicKeySet) {
        self.publicKeys = keys
    }

    /// The same keys: a fixed set has nothing to read again.
    public func publicKeys(missing kid: String) async -> PublicKeySet { publicKeys }
}

/// Verifies our access tokens with the published public keys only, exactly as
/// `JWTTokenService` does: the same compact path for a token in the form we issue, the same
/// header rules otherwise (`alg` pinned, no `crit`, no key in the header, a `kid` that names a
/// published key), the same canonical signatures (low-S, untruncated), and the same claim
/// checks (`iss`, `aud`, `exp`/`iat`/`nbf` with the leeway). It issues nothing.
public struct PublicKeyVerifier: TokenVerifier {
    private let source: any PublicKeySource
    private let checks: TokenChecks

    /// A verifier of tokens from `issuer` for `audience`, signed with `algorithm` (ES256 or
    /// EdDSA) by a key `source` has; throws `TokenConfigurationError` for an HMAC algorithm, a
    /// leeway outside 0…5 s, or an empty issuer or audience.
    public init(source: any PublicKeySource, algorithm: JWTAlgorithm, issuer: String, audience: String, leeway: TimeInterval = 5) throws {
        guard algorithm.isAsymmetric else {
            throw TokenConfigurationError("\(algorithm.rawValue) verifies with the shared secret; a verifier of published keys needs ES256 or EdDSA")
        }
        guard (0...5).contains(leeway) else { throw TokenConfigurationError("the leeway must be between 0 and 5 seconds") }
        guard !issuer.isEmpty, !audience.isEmpty else { throw TokenConfigurationError("issuer and audience must not be empty") }
        self.source = source
        self.checks = TokenChecks(algorithm: algorithm, issuer: issuer, audience: audience, leeway: leeway)
    }

    nonisolated(nonsending) public func verify(_ token: String, now: Date) async throws -> VerifiedToken {
        let keys = source.publicKeys
        if keys.algorithm == checks.algorithm {
            switch keys.compact.verify(token, now: now) {
            case .signed(let claims): return try checks.claims(claims, now: now)
            case .badSignature: throw TokenRejected.badSignature
            case .declined: break
            }
        }
        return try checks.claims(try await verifyInGeneral(token, keys: keys), now: now)
    }

    /// The header rules, then jwt-kit with the one key the `kid` names.
    private func verifyInGeneral(_ token: String, keys: PublicKeySet) async throws -> TokenClaims {
        let (header, signature) = try checks.header(of: token)
        guard let kid = header.kid else { throw TokenRejected.unknownKey }
        var collection = keys.algorithm == checks.algorithm ? keys.collections[kid] : nil
        if collection == nil {
            let reread = await source.publicKeys(missing: kid)
            collection = reread.algorithm == checks.algorithm ? reread.collections[kid] : nil
        }
        guard let collection else { throw TokenRejected.unknownKey }
        // What jwt-kit would take but we never write: a truncated or a high-S signature.
        if checks.algorithm == .es256, !ECDSASignatureForm.isCanonical(signature) { throw TokenRejected.badSignature }
        return try await TokenChecks.claims(of: token, verifiedWith: collection)
    }
}
