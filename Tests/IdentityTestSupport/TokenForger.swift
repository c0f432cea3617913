public import Foundation
public import JWTKit

/// Arbitrary claims, to forge tokens the service must refuse. Every field may be left out.
public struct ForgedClaims: JWTPayload, Equatable {
    public var iss: String?
    public var aud: [String]?
    public var sub: String?
    public var iat: Double?
    public var exp: Double?
    public var nbf: Double?
    public var jti: String?

    /// Claims that pass every check of a service with issuer and audience `identity`, for `sub`
    /// at `now`, valid for an hour.
    public static func valid(sub: String, now: Date) -> ForgedClaims {
        ForgedClaims(iss: "identity", aud: ["identity"], sub: sub, iat: now.timeIntervalSince1970,
                     exp: now.timeIntervalSince1970 + 3600, nbf: nil, jti: "forged-\(UUID().uuidString)")
    }

    public func verify(using algorithm: some JWTAlgorithm) async throws {}
}

/// Signs whatever a test asks for, the way an attacker would.
public enum TokenForger {
    /// The HMAC digests a forged token may be signed with.
    public enum Digest: Sendable {
        case sha256, sha384, sha512
    }

    /// `claims` signed with HMAC-`digest` under `key`, with `alg` written in the header
    /// whatever the real algorithm is.
    public static func sign(_ claims: ForgedClaims, key: String, digest: Digest = .sha256, alg: String = "HS256") async throws -> String {
        let keys = JWTKeyCollection()
        let algorithm: DigestAlgorithm =
            switch digest {
            case .sha256: .sha256
            case .sha384: .sha384
            case .sha512: .sha512
            }
        await keys.add(hmac: HMACKey(from: key), digestAlgorithm: algorithm)
        return try await keys.sign(claims, header: ["alg": .string(alg), "typ": "JWT"])
    }

    /// A token with `header` and `payload` (JSON texts) and an empty signature, as `alg: none` has.
    public static func unsigned(header: String, payload: String) -> String {
        "\(base64URL(header)).\(base64URL(payload))."
    }

    /// The claims of `valid` as JSON, for hand-built tokens.
    public static func json(_ claims: ForgedClaims) throws -> String {
        String(decoding: try JSONEncoder().encode(claims), as: UTF8.self)
    }

    /// Base64url without padding (RFC 7515 §2).
    public static func base64URL(_ text: String) -> String {
        Data(text.utf8).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    /// An RSA public key, as a service signing RS256 would publish it: the key of the classic
    /// HS256/RS256 confusion attack, which signs HMAC with these public bytes.
    public static let rsaPublicKeyPEM = """
        -----BEGIN PUBLIC KEY-----
        MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAu1SU1LfVLPHCozMxH2Mo
        4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u
        +qKhbwKfBstIs+bMY2Zkp18gnTxKLxoS2tFczGkPLPgizskuemMghRniWaoLcyeh
        kd3qqGElvW/VDL5AaWTg0nLVkjRo9z+40RQzuVaE8AkAFmxZzow3x+VJYKdjykkJ
        0iT9wCS0DRTXu269V264Vf/3jvredZiKRkgwlL9xNAwxXFg0x/XFw005UWVRIkdg
        cKWTjpBP2dPwVZ4WWC+9aGVd+Gyn1o0CLelf4rEjGoXbAAEgAqeGUxrcIlbjXfbc
        mwIDAQAB
        -----END PUBLIC KEY-----
        """
}
