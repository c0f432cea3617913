import IdentityDomain
import IdentityPorts
import Foundation
import JWTKit

/// The header and claim rules of contract §4 and §10, one precise reason per failure: what
/// `JWTTokenService` and `PublicKeyVerifier` both apply, so that a token is judged alike by the
/// service that issued it and by any service that verifies it with the published keys.
struct TokenChecks: Sendable {
    let algorithm: JWTAlgorithm
    let issuer: String
    let audience: String
    let leeway: TimeInterval

    init(algorithm: JWTAlgorithm, issuer: String, audience: String, leeway: TimeInterval) {
        self.algorithm = algorithm
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
    }

    init(_ configuration: TokenConfiguration) {
        self.init(algorithm: configuration.algorithm, issuer: configuration.issuer, audience: configuration.audience, leeway: configuration.leeway)
    }

    /// The claims of `token` as jwt-kit reads them once its signature verifies with
    /// `collection` (the general path, for what the compact one declines); the claims are
    /// checked afterwards like any others.
    static func claims(of token: String, verifiedWith collection: JWTKeyCollection) async throws -> TokenClaims {
        let claims: AccessTokenClaims
        do {
            claims = try await collection.verify(token, as: AccessTokenClaims.self)
        } catch let error as JWTError where error.errorType == .signatureVerificationFailed {
            throw TokenRejected.badSignature
        } catch {
            throw TokenRejected.malformed
        }
        return TokenClaims(iss: claims.iss?.value, aud: claims.aud?.value, sub: claims.sub?.value, iat: claims.iat?.value,
                           exp: claims.exp?.value, nbf: claims.nbf?.value, jti: claims.jti?.value, ver: claims.ver,
                           sid: claims.sid)
    }

    /// The header, checked, and the decoded signature.
    func header(of token: String) throws -> (TokenHeader, [UInt8]) {
        // Canonical unpadded base64url in every part (RFC 7515 §2): one token, one spelling.
        let parts = token.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard parts.count == 3, token.utf8.count <= 8192, let header = Base64URL.decode(parts[0]),
              Base64URL.decode(parts[1]) != nil, let signature = Base64URL.decode(parts[2])
        else { throw TokenRejected.malformed }
        guard let header = try? JSONDecoder().decode(TokenHeader.self, from: Data(header)) else { throw TokenRejected.malformed }
        guard header.alg == algorithm.rawValue else { throw TokenRejected.algorithmNotAllowed }
        guard header.crit == nil, header.typ.map({ $0.uppercased() == "JWT" }) ?? true else {
            throw TokenRejected.malformed
        }
        // A token never brings its own key, nor where to fetch one.
        guard !header.carriesKey else { throw TokenRejected.keyInHeader }
        return (header, signature)
    }

    /// The claims, checked at `now`.
    func claims(_ claims: TokenClaims, now: Date) throws -> VerifiedToken {
        guard let sub = claims.sub, let userID = UserID(sub), let jti = claims.jti,
              !jti.isEmpty, jti.utf8.count <= 128, let iat = claims.iat, let exp = claims.exp
        else { throw TokenRejected.missingClaim }
        guard claims.iss == issuer else { throw TokenRejected.wrongIssuer }
        guard let aud = claims.aud, aud.contains(audience) else { throw TokenRejected.wrongAudience }
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
}
