@testable import CryptoAdapter
import Foundation
import IdentityDomain
import IdentityPorts
import Testing

@Suite("Refresh tokens: opaque, digested, sealed under themselves")
struct RefreshTokenSealerTests {
    let sealer = RefreshTokenSealer()
    let session = SessionID(UUID())

    @Test("a token is 65 URL-safe characters naming its session, with 256 random bits; no two are alike")
    func tokens() throws {
        let tokens = (0..<1_000).map { _ in sealer.makeToken(for: session) }
        #expect(Set(tokens).count == tokens.count)
        for token in tokens {
            #expect(token.count == 65)
            #expect(token.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") })
            #expect(sealer.parse(token)?.sessionID == session)
        }
    }

    @Test("the digest is stable for a token, differs between tokens of one session, and is not the token's bytes")
    func digests() throws {
        let token = sealer.makeToken(for: session)
        let digest = try #require(sealer.parse(token)?.digest)
        #expect(digest == sealer.parse(token)?.digest)
        #expect(digest != sealer.parse(sealer.makeToken(for: session))?.digest)
        #expect(digest.bytes.count == 32 && !(RefreshTokenSealer.tokenBytes(token)?.1.starts(with: digest.bytes) ?? true))
    }

    static let valid = RefreshTokenSealer().makeToken(for: SessionID(UUID()))
    static let malformedTokens: [String] = {
        let allButLast = String(valid.dropLast())
        var tokens: [String] = ["", "x", allButLast, valid + "A", String(repeating: "A", count: 4_096)]
        tokens += [allButLast + "=", allButLast + "+", allButLast + "/", allButLast + "\u{0}"]
        tokens += [String(repeating: "é", count: 65), " " + String(valid.dropFirst())]
        // The two unused low bits of each part's last character set: another spelling of a token.
        tokens.append(String(repeating: "A", count: 21) + "B" + String(repeating: "A", count: 43))
        tokens.append(String(repeating: "A", count: 64) + "B")
        return tokens
    }()

    @Test("garbage, empty, over-long, wrong-alphabet, padded and non-canonical tokens do not parse", arguments: malformedTokens)
    func malformed(_ token: String) {
        #expect(sealer.parse(token) == nil)
        #expect(sealer.open(Data(repeating: 0, count: 60), with: token) == nil)
        #expect(throws: RefreshTokenSealingError.self) { try sealer.seal(Data("pair".utf8), under: token) }
    }

    @Test("what is sealed under a token opens with that token only, and not once altered")
    func sealing() throws {
        let token = sealer.makeToken(for: session)
        let pair = Data(#"{"access_token":"a.b.c","refresh_token":"next"}"#.utf8)
        let sealed = try sealer.seal(pair, under: token)
        #expect(sealer.open(sealed, with: token) == pair)
        #expect(sealed.range(of: pair) == nil, "the sealed form does not carry the pair in clear")
        #expect(sealer.open(sealed, with: sealer.makeToken(for: session)) == nil)
        var altered = sealed
        altered[altered.count / 2] ^= 1
        #expect(sealer.open(altered, with: token) == nil)
        #expect(sealer.open(sealed.prefix(10), with: token) == nil)
        #expect(try sealer.seal(pair, under: token) != sealed, "a fresh nonce each time")
    }

    @Test("the digest a store keeps does not open what is sealed: the database alone yields nothing")
    func digestIsNoKey() throws {
        let token = sealer.makeToken(for: session)
        let sealed = try sealer.seal(Data("pair".utf8), under: token)
        let digest = try #require(sealer.parse(token)?.digest)
        // An attacker with the database has the session id, the digest and the sealed pair;
        // spelt as a token of that session, the digest is well formed, and opens nothing.
        let idPart = String(token.prefix(22))
        let digestAsToken = idPart + digest.bytes.base64EncodedString().replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
        #expect(sealer.parse(digestAsToken) != nil)
        #expect(sealer.open(sealed, with: digestAsToken) == nil)
    }
}
