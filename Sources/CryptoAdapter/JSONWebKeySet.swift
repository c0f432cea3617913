public import Foundation
import Crypto

/// A public key as an RFC 7517 JWK: `kty`, `crv`, `x` (and `y` for P-256), with `kid`, `alg`
/// and `use: "sig"`.
public struct JSONWebKey: Sendable, Equatable, Encodable {
    /// `EC` (P-256) or `OKP` (Ed25519).
    public let kty: String
    /// `P-256` or `Ed25519`.
    public let crv: String
    /// The x coordinate (P-256) or the key (Ed25519), base64url.
    public let x: String
    /// The y coordinate (P-256 only), base64url.
    public let y: String?
    /// The key's id: the `kid` of the tokens it signs.
    public let kid: String
    /// `ES256` or `EdDSA`.
    public let alg: String
    /// Always `sig`.
    public let use: String

    /// The JWK of `publicKey` (as `SigningKeyRecord.publicKey` holds it) for `algorithm`.
    init(algorithm: JWTAlgorithm, kid: String, publicKey: Data) {
        let bytes = Array(publicKey)
        if algorithm == .es256 {
            (kty, crv, x, y) = ("EC", "P-256", Base64URL.encode(Array(bytes.prefix(32))), Base64URL.encode(Array(bytes.dropFirst(32))))
        } else {
            (kty, crv, x, y) = ("OKP", "Ed25519", Base64URL.encode(bytes), nil)
        }
        self.kid = kid
        alg = algorithm.rawValue
        use = "sig"
    }

    /// The RFC 7638 thumbprint, base64url of the SHA-256 of the required members in
    /// lexicographic order: the `kid` we give a key, so that anyone can check it.
    var thumbprint: String {
        let canonical =
            if let y { #"{"crv":"\#(crv)","kty":"\#(kty)","x":"\#(x)","y":"\#(y)"}"# } else { #"{"crv":"\#(crv)","kty":"\#(kty)","x":"\#(x)"}"# }
        return Base64URL.encode(Array(SHA256.hash(data: Array(canonical.utf8))))
    }
}

/// An RFC 7517 JWK Set: what `GET /.well-known/jwks.json` answers (contract §10).
public struct JSONWebKeySet: Sendable, Equatable, Encodable {
    /// The public keys that may verify a live token; none with an HMAC algorithm.
    public let keys: [JSONWebKey]

    /// The set of `keys`.
    public init(keys: [JSONWebKey]) {
        self.keys = keys
    }

    /// `{"keys":[]}`: what an HMAC service publishes.
    public static let empty = JSONWebKeySet(keys: [])

    /// The set as JSON, keys sorted, no whitespace.
    public func json() -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Encoding strings and one optional cannot fail.
        return (try? encoder.encode(self)) ?? Data(#"{"keys":[]}"#.utf8)
    }
}
