import Crypto
import CryptoAdapter
import Foundation
import Testing

@Suite("PublicKeySet: the keys of a fetched JWKS")
struct PublicKeySetTests {
    static func ecKey(kid: String, alg: String? = "ES256", use: String? = "sig") -> String {
        let raw = P256.Signing.PrivateKey().publicKey.rawRepresentation
        var members = [#""kty":"EC""#, #""crv":"P-256""#, #""x":"\#(base64url(Array(raw.prefix(32))))""#, #""y":"\#(base64url(Array(raw.suffix(32))))""#]
        if !kid.isEmpty { members.append(#""kid":"\#(kid)""#) }
        if let alg { members.append(#""alg":"\#(alg)""#) }
        if let use { members.append(#""use":"\#(use)""#) }
        return "{" + members.joined(separator: ",") + "}"
    }

    static func edKey(kid: String) -> String {
        #"{"kty":"OKP","crv":"Ed25519","x":"\#(base64url(Array(Curve25519.Signing.PrivateKey().publicKey.rawRepresentation)))","kid":"\#(kid)","alg":"EdDSA","use":"sig"}"#
    }

    @Test("only keys of the pinned algorithm with a kid, use sig, alg absent or ours are taken; the rest are counted as skipped")
    func skipping() async throws {
        let members = [
            Self.ecKey(kid: "a"), Self.ecKey(kid: "b", alg: nil, use: nil), Self.edKey(kid: "ed"), Self.ecKey(kid: ""),
            Self.ecKey(kid: "enc", use: "enc"), Self.ecKey(kid: "rs", alg: "RS256"), Self.ecKey(kid: "a"),
            #"{"kty":"EC","crv":"P-256","x":"AAAA","y":"AAAA","kid":"short"}"#, #""not an object""#,
        ]
        let set = try await PublicKeySet.parse(jwks: Data(#"{"keys":[\#(members.joined(separator: ","))]}"#.utf8), algorithm: .es256)
        #expect(set.keyIDs == ["a", "b"])
        #expect(set.skippedKeys == 7)
        let ed = try await PublicKeySet.parse(jwks: Data(#"{"keys":[\#(members.joined(separator: ","))]}"#.utf8), algorithm: .eddsa)
        #expect(ed.keyIDs == ["ed"])
    }

    @Test("at most maximumKeys are taken; a document that is not a JWK Set, or an HMAC algorithm, is an error")
    func bounds() async throws {
        let many = (0..<40).map { Self.ecKey(kid: "k\($0)") }.joined(separator: ",")
        let set = try await PublicKeySet.parse(jwks: Data(#"{"keys":[\#(many)]}"#.utf8), algorithm: .es256)
        #expect(set.keyIDs.count == PublicKeySet.maximumKeys)
        #expect(set.skippedKeys == 40 - PublicKeySet.maximumKeys)
        await #expect(throws: PublicKeySetError.self) { try await PublicKeySet.parse(jwks: Data("[]".utf8), algorithm: .es256) }
        await #expect(throws: PublicKeySetError.self) { try await PublicKeySet.parse(jwks: Data(#"{"keys":{}}"#.utf8), algorithm: .es256) }
        await #expect(throws: PublicKeySetError.self) { try await PublicKeySet.parse(jwks: Data(#"{"keys":[]}"#.utf8), algorithm: .hs256) }
    }
}
