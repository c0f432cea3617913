import Foundation

/// A public key that verifies tokens, as `GET /.well-known/jwks.json` publishes it: the
/// members of an RFC 7517 JWK (RFC 7518 §6.2 for P-256, RFC 8037 for Ed25519), already
/// base64url-encoded, so that a driving adapter writes it out without knowing any cryptography.
public struct PublishedSigningKey: Sendable, Hashable {
    /// `EC` (P-256) or `OKP` (Ed25519).
    public let kty: String
    /// `P-256` or `Ed25519`.
    public let crv: String
    /// The x coordinate (P-256) or the key (Ed25519), base64url.
    public let x: String
    /// The y coordinate, base64url; P-256 only.
    public let y: String?
    /// The key's id: the `kid` of the tokens it signs.
    public let kid: String
    /// The JWS algorithm (`ES256`, `EdDSA`).
    public let alg: String

    /// Creates the value.
    public init(kty: String, crv: String, x: String, y: String?, kid: String, alg: String) {
        self.kty = kty
        self.crv = crv
        self.x = x
        self.y = y
        self.kid = kid
        self.alg = alg
    }
}
