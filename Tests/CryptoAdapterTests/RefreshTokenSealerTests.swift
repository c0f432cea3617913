@testable import CryptoAdapter
import Crypto
import Foundation
import IdentityDomain
import IdentityPorts
import Testing

@Suite("Refresh tokens: opaque, digested, sealed under themselves")
struct RefreshTokenSealerTests {
    let sealer = RefreshTokenSealer()
    let session = SessionID(UUID())
    let user = UserID(UUID())

    func token(version: Int64 = 7) -> String { sealer.makeToken(for: session, userID: user, accountVersion: version) }

    @Test("a token is 96 URL-safe characters naming its session, account and version, with 256 random bits; no two are alike")
    func tokens() throws {
        let tokens = (0..<1_000).map { _ in token() }
        #expect(Set(tokens).count == tokens.count)
        for token in tokens {
            #expect(token.count == 96)
            #expect(token.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") })
            let parts = try #require(sealer.parse(token))
            #expect(parts.sessionID == session && parts.account?.userID == user && parts.account?.version == 7)
        }
        for version in [0, 1, Int64.max, -1] {
            #expect(sealer.parse(token(version: version))?.account?.version == version, "every 64-bit version, as written")
        }
    }

    @Test("a token of the earlier format (65 characters: session and secret) parses, naming no account")
    func sessionOnly() throws {
        let id = withUnsafeBytes(of: session.uuid.uuid) { Array($0) }
        let token = Base64URL.encode(id) + Base64URL.encode((0..<32).map { _ in UInt8.random(in: 0...255) })
        let parts = try #require(sealer.parse(token))
        #expect(token.count == 65 && parts.sessionID == session && parts.account == nil)
        #expect(parts.digest != sealer.parse(self.token())?.digest)
        let sealed = try sealer.seal(Data("pair".utf8), under: token)
        #expect(sealer.open(sealed, with: token) == Data("pair".utf8), "what the grace hands out seals under it as well")
    }

    @Test("the digest is stable for a token, differs between tokens of one session, covers every part, and is not the token's bytes")
    func digests() throws {
        let token = token()
        let digest = try #require(sealer.parse(token)?.digest)
        #expect(digest == sealer.parse(token)?.digest)
        #expect(digest != sealer.parse(self.token())?.digest)
        #expect(digest.bytes.count == 32 && !(RefreshTokenSealer.tokenBytes(token)?.2.starts(with: digest.bytes) ?? true))
        // The same secret with another account or version: another digest.
        var bytes = try #require(RefreshTokenSealer.tokenBytes(token)?.2)
        bytes[39] ^= 1
        #expect(sealer.parse(Base64URL.encode(bytes))?.digest != digest, "the version is covered")
        bytes[39] ^= 1
        bytes[20] ^= 1
        #expect(sealer.parse(Base64URL.encode(bytes))?.digest != digest, "the account is covered")
    }

    static let valid = RefreshTokenSealer().makeToken(for: SessionID(UUID()), userID: UserID(UUID()), accountVersion: 1)
    static let malformedTokens: [String] = {
        let allButLast = String(valid.dropLast())
        var tokens: [String] = ["", "x", allButLast, valid + "A", String(repeating: "A", count: 4_096), String(repeating: "A", count: 64)]
        tokens += [allButLast + "=", allButLast + "+", allButLast + "/", allButLast + "\u{0}"]
        tokens += [String(repeating: "é", count: 96), String(repeating: "é", count: 65), " " + String(valid.dropFirst())]
        // The two unused low bits of each part's last character set: another spelling of an
        // earlier-format token.
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
        let token = token()
        let pair = Data(#"{"access_token":"a.b.c","refresh_token":"next"}"#.utf8)
        let sealed = try sealer.seal(pair, under: token)
        #expect(sealer.open(sealed, with: token) == pair)
        #expect(sealed.range(of: pair) == nil, "the sealed form does not carry the pair in clear")
        #expect(sealer.open(sealed, with: self.token()) == nil)
        var altered = sealed
        altered[altered.count / 2] ^= 1
        #expect(sealer.open(altered, with: token) == nil)
        #expect(sealer.open(sealed.prefix(10), with: token) == nil)
        #expect(try sealer.seal(pair, under: token) != sealed, "a fresh nonce each time")
    }

    @Test("a pair sealed by an earlier build (HKDF-SHA256 of the token) still opens with its token, and with no other")
    func earlierSealing() throws {
        let token = token()
        let bytes = try #require(RefreshTokenSealer.tokenBytes(token)?.2)
        let earlier = try #require(AES.GCM.seal(Data("pair".utf8), using: RefreshTokenSealer.earlierSealingKey(bytes)).combined)
        #expect(sealer.open(earlier, with: token) == Data("pair".utf8))
        #expect(sealer.open(earlier, with: self.token()) == nil)
        #expect(RefreshTokenSealer.sealingKey(bytes) != RefreshTokenSealer.earlierSealingKey(bytes), "the two derivations differ")
    }

    @Test("the digest a store keeps does not open what is sealed: the database alone yields nothing")
    func digestIsNoKey() throws {
        let token = token()
        let sealed = try sealer.seal(Data("pair".utf8), under: token)
        let digest = try #require(sealer.parse(token)?.digest)
        // An attacker with the database has the session, the account, the version, the digest
        // and the sealed pair; spelt as a token of that session, the digest is well formed, and
        // opens nothing.
        let named = try #require(RefreshTokenSealer.tokenBytes(token)?.2.prefix(40))
        let digestAsToken = Base64URL.encode(Array(named) + digest.bytes)
        #expect(sealer.parse(digestAsToken) != nil)
        #expect(sealer.open(sealed, with: digestAsToken) == nil)
    }
}
