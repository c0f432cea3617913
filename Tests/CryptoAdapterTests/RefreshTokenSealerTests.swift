@testable import CryptoAdapter
import Foundation
import IdentityDomain
import IdentityPorts
import Testing

@Suite("Refresh tokens: opaque, digested, sealed under themselves")
struct RefreshTokenSealerTests {
    let sealer = RefreshTokenSealer()

    @Test("a token is 43 URL-safe characters for 256 random bits, and no two are alike")
    func tokens() {
        let tokens = (0..<1_000).map { _ in sealer.makeToken() }
        #expect(Set(tokens).count == tokens.count)
        for token in tokens {
            #expect(token.count == 43)
            #expect(token.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") })
            #expect(RefreshTokenSealer.tokenBytes(token)?.count == 32)
        }
    }

    @Test("the digest is stable for a token, differs between tokens, and is not the token's bytes")
    func digests() throws {
        let token = sealer.makeToken()
        let digest = try #require(sealer.digest(of: token))
        #expect(digest == sealer.digest(of: token))
        #expect(digest != sealer.digest(of: sealer.makeToken()))
        #expect(digest.bytes.count == 32 && digest.bytes != RefreshTokenSealer.tokenBytes(token))
    }

    @Test("garbage, empty, over-long, wrong-alphabet, padded and non-canonical tokens have no digest", arguments: [
        "", "x", String(repeating: "A", count: 42), String(repeating: "A", count: 44), String(repeating: "A", count: 4_096),
        String(repeating: "A", count: 42) + "=", String(repeating: "A", count: 42) + "+", String(repeating: "A", count: 42) + "/",
        String(repeating: "é", count: 43), String(repeating: "A", count: 42) + "\u{0}", " " + String(repeating: "A", count: 42),
        // 'B' sets one of the two unused low bits of the last character: another spelling of a token.
        String(repeating: "A", count: 42) + "B",
    ])
    func malformed(_ token: String) {
        #expect(sealer.digest(of: token) == nil)
        #expect(sealer.open(Data(repeating: 0, count: 60), with: token) == nil)
        #expect(throws: RefreshTokenSealingError.self) { try sealer.seal(Data("pair".utf8), under: token) }
    }

    @Test("what is sealed under a token opens with that token only, and not once altered")
    func sealing() throws {
        let token = sealer.makeToken()
        let pair = Data(#"{"access_token":"a.b.c","refresh_token":"next"}"#.utf8)
        let sealed = try sealer.seal(pair, under: token)
        #expect(sealer.open(sealed, with: token) == pair)
        #expect(sealed.range(of: pair) == nil, "the sealed form does not carry the pair in clear")
        #expect(sealer.open(sealed, with: sealer.makeToken()) == nil)
        var altered = sealed
        altered[altered.count / 2] ^= 1
        #expect(sealer.open(altered, with: token) == nil)
        #expect(sealer.open(sealed.prefix(10), with: token) == nil)
        #expect(try sealer.seal(pair, under: token) != sealed, "a fresh nonce each time")
    }

    @Test("the digest a store keeps does not open what is sealed: the database alone yields nothing")
    func digestIsNoKey() throws {
        let token = sealer.makeToken()
        let sealed = try sealer.seal(Data("pair".utf8), under: token)
        let digest = try #require(sealer.digest(of: token))
        // An attacker with the database has the digest and the sealed pair; spelt as a token,
        // the digest is a well-formed token, and still opens nothing.
        let digestAsToken = digest.bytes.base64EncodedString().replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
        #expect(sealer.digest(of: digestAsToken) != nil)
        #expect(sealer.open(sealed, with: digestAsToken) == nil)
    }
}
