@_spi(Benchmarks) @testable import CryptoAdapter
import Crypto
import Foundation
import IdentityDomain
import IdentityPorts
import IdentityTestSupport
import Testing

/// The compact path of `JWTTokenService.verify` against the general one (header rules and
/// jwt-kit): it must take the tokens this service issues, and for every token, taken or
/// declined, `verify` must answer exactly what the general path answers.
@Suite("Compact token verification")
struct CompactTokenVerifierTests {
    static let secret = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    let now = Date(timeIntervalSince1970: 1_790_000_000.5)
    let user = UserID(UUID(uuidString: "6F9619FF-8B86-D011-B42D-00C04FC964FF")!)

    func service(_ algorithm: JWTAlgorithm = .hs256) async throws -> JWTTokenService {
        await JWTTokenService(configuration: try TokenConfiguration(secret: Self.secret, algorithm: algorithm))
    }

    /// `header.payload` signed with HMAC under `key`, the texts taken byte for byte.
    static func sign(header: [UInt8], payload: [UInt8], key: String = secret, algorithm: JWTAlgorithm = .hs256) -> String {
        let signingInput = Base64URL.encode(header) + "." + Base64URL.encode(payload)
        let key = SymmetricKey(data: Array(key.utf8))
        let mac: [UInt8] =
            switch algorithm {
            case .hs256: Array(HMAC<SHA256>.authenticationCode(for: Array(signingInput.utf8), using: key))
            case .hs384: Array(HMAC<SHA384>.authenticationCode(for: Array(signingInput.utf8), using: key))
            case .hs512: Array(HMAC<SHA512>.authenticationCode(for: Array(signingInput.utf8), using: key))
            case .es256, .eddsa: []  // key pairs: see SigningKeyTests
            }
        return signingInput + "." + Base64URL.encode(mac)
    }

    static func sign(header: String, payload: String, key: String = secret, algorithm: JWTAlgorithm = .hs256) -> String {
        sign(header: Array(header.utf8), payload: Array(payload.utf8), key: key, algorithm: algorithm)
    }

    /// What a verification came to, comparable.
    enum Answer: Equatable, CustomStringConvertible {
        case verified(VerifiedToken)
        case rejected(TokenRejected)
        case failed(String)

        init(_ body: () async throws -> VerifiedToken) async {
            do { self = .verified(try await body()) } catch let error as TokenRejected { self = .rejected(error) } catch {
                self = .failed("\(error)")
            }
        }

        var description: String {
            switch self {
            case .verified(let token): "verified \(token.jti)"
            case .rejected(let reason): "rejected \(reason)"
            case .failed(let error): "failed \(error)"
            }
        }
    }

    /// Checks that `verify` and the general path agree on `token`; returns whether the compact
    /// path took it.
    @discardableResult
    func expectAgreement(_ service: JWTTokenService, _ token: String, _ comment: @autoclosure () -> String) async -> Bool {
        let fast = await Answer { try await service.verify(token, now: now) }
        let general = await Answer { try await service.verifyGenerally(token, now: now) }
        #expect(fast == general, "\(comment()): compact \(fast), general \(general)")
        if case .declined = service.verifyCompactly(token) { return false }
        return true
    }

    func payload(iat: Double? = nil, jti: String = "j-1", extra: String = "") -> String {
        let iat = iat ?? now.timeIntervalSince1970
        return #"{"aud":"identity","exp":\#(iat + 3600),"iat":\#(iat),"iss":"identity","jti":"\#(jti)","sub":"\#(user)"\#(extra)}"#
    }

    @Test("the tokens this service issues take the compact path, under every algorithm and either header order",
          arguments: JWTAlgorithm.hmac)
    func issuedTokens(algorithm: JWTAlgorithm) async throws {
        let service = try await service(algorithm)
        let issued = try await service.issue(for: user, accountVersion: 3, issuedAt: now)
        guard case .signed(let claims) = service.verifyCompactly(issued.token) else {
            Issue.record("an issued token is declined: \(issued.token)")
            return
        }
        #expect(claims.sub == user.description && claims.jti == issued.jti && claims.aud == ["identity"])
        #expect(claims.iat == issued.issuedAt && claims.exp == issued.expiresAt, "the times, in whole seconds")
        #expect(claims.ver == 3, "and the account version")
        #expect(try await service.verify(issued.token, now: now) == service.verifyGenerally(issued.token, now: now))

        let payload = payload()
        for header in [#"{"alg":"\#(algorithm.rawValue)","typ":"JWT"}"#, #"{"typ":"JWT","alg":"\#(algorithm.rawValue)"}"#] {
            let token = Self.sign(header: header, payload: payload, algorithm: algorithm)
            #expect(await expectAgreement(service, token, header), "taken: \(header)")
            #expect(try await service.verify(token, now: now).userID == user)
        }
    }

    @Test("a wrong key or a changed payload under the old signature is badSignature on both paths")
    func signatures() async throws {
        let service = try await service()
        let header = #"{"alg":"HS256","typ":"JWT"}"#
        let forged = Self.sign(header: header, payload: payload(), key: "another-secret-another-secret-0000")
        #expect(await expectAgreement(service, forged, "wrong key"))
        #expect(await Answer { try await service.verify(forged, now: now) } == .rejected(.badSignature))
        let good = Self.sign(header: header, payload: payload()).split(separator: ".")
        let other = Self.sign(header: header, payload: payload(extra: #","nbf":1"#)).split(separator: ".")
        let swapped = "\(good[0]).\(other[1]).\(good[2])"
        #expect(await expectAgreement(service, swapped, "payload swapped"))
        #expect(await Answer { try await service.verify(swapped, now: now) } == .rejected(.badSignature))
    }

    /// Headers and payloads at the edge of the compact form, each signed with the right key.
    static let headers = [
        #"{"alg":"HS256","typ":"JWT"}"#, #"{"typ":"JWT","alg":"HS256"}"#, #"{"alg":"HS256"}"#, #"{ "alg":"HS256","typ":"JWT"}"#,
        #"{"alg":"HS256","typ":"jwt"}"#, #"{"alg":"HS256","typ":"JWT","kid":"1"}"#, #"{"alg":"HS256","typ":"JWT","crit":["exp"]}"#,
        #"{"alg":"HS512","typ":"JWT"}"#, #"{"alg":"none","typ":"JWT"}"#, #"{"alg":"HS256","alg":"HS256","typ":"JWT"}"#,
    ]

    func payloads() -> [(String, String)] {
        let t = now.timeIntervalSince1970
        let sub = user.description
        return [
            ("the common form", payload()),
            ("aud as an array", #"{"aud":["other","identity"],"exp":\#(t + 60),"iat":\#(t),"iss":"identity","jti":"j","sub":"\#(sub)"}"#),
            ("aud as an empty array", #"{"aud":[],"exp":\#(t + 60),"iat":\#(t),"iss":"identity","jti":"j","sub":"\#(sub)"}"#),
            ("aud holding a number", #"{"aud":[1],"exp":\#(t + 60),"iat":\#(t),"iss":"identity","jti":"j","sub":"\#(sub)"}"#),
            ("nbf in the future", payload(extra: #","nbf":\#(t + 60)"#)),
            ("nbf in the past", payload(extra: #","nbf":\#(t - 60)"#)),
            ("whitespace", #"{ "aud" : "identity", "exp":\#(t + 60),"iat":\#(t),"iss":"identity","jti":"j","sub":"\#(sub)" }"#),
            ("an escaped character", #"{"aud":"identity","exp":\#(t + 60),"iat":\#(t),"iss":"identity","jti":"j\u0031","sub":"\#(sub)"}"#),
            ("an escaped quote", #"{"aud":"identity","exp":\#(t + 60),"iat":\#(t),"iss":"identity","jti":"j\"","sub":"\#(sub)"}"#),
            ("non-ASCII text", #"{"aud":"identity","exp":\#(t + 60),"iat":\#(t),"iss":"identité","jti":"j","sub":"\#(sub)"}"#),
            ("a duplicate key", #"{"aud":"identity","exp":\#(t + 60),"iat":\#(t),"iss":"identity","jti":"j","jti":"k","sub":"\#(sub)"}"#),
            ("an exponent", #"{"aud":"identity","exp":1.79e9,"iat":\#(t),"iss":"identity","jti":"j","sub":"\#(sub)"}"#),
            ("a negative time", #"{"aud":"identity","exp":\#(t + 60),"iat":-1,"iss":"identity","jti":"j","sub":"\#(sub)"}"#),
            ("a leading zero", #"{"aud":"identity","exp":\#(t + 60),"iat":01790000000,"iss":"identity","jti":"j","sub":"\#(sub)"}"#),
            ("sixteen digits", #"{"aud":"identity","exp":\#(t + 60),"iat":1790000000000000,"iss":"identity","jti":"j","sub":"\#(sub)"}"#),
            ("seven decimals", #"{"aud":"identity","exp":\#(t + 60),"iat":1790000000.1234567,"iss":"identity","jti":"j","sub":"\#(sub)"}"#),
            ("a time as a string", #"{"aud":"identity","exp":"\#(t + 60)","iat":\#(t),"iss":"identity","jti":"j","sub":"\#(sub)"}"#),
            ("a null claim", #"{"aud":"identity","exp":\#(t + 60),"iat":\#(t),"iss":null,"jti":"j","sub":"\#(sub)"}"#),
            ("a boolean claim", #"{"aud":"identity","exp":\#(t + 60),"iat":\#(t),"iss":true,"jti":"j","sub":"\#(sub)"}"#),
            ("an extra claim", payload(extra: #","role":"admin""#)),
            ("a nested object", payload(extra: #","x":{"a":1}"#)),
            ("no sub", #"{"aud":"identity","exp":\#(t + 60),"iat":\#(t),"iss":"identity","jti":"j"}"#),
            ("a sub that is no id", #"{"aud":"identity","exp":\#(t + 60),"iat":\#(t),"iss":"identity","jti":"j","sub":"admin"}"#),
            ("an empty jti", #"{"aud":"identity","exp":\#(t + 60),"iat":\#(t),"iss":"identity","jti":"","sub":"\#(sub)"}"#),
            ("a jti of 129 bytes", #"{"aud":"identity","exp":\#(t + 60),"iat":\#(t),"iss":"identity","jti":"\#(String(repeating: "j", count: 129))","sub":"\#(sub)"}"#),
            ("expired", #"{"aud":"identity","exp":\#(t - 6),"iat":\#(t - 60),"iss":"identity","jti":"j","sub":"\#(sub)"}"#),
            ("the wrong issuer", #"{"aud":"identity","exp":\#(t + 60),"iat":\#(t),"iss":"other","jti":"j","sub":"\#(sub)"}"#),
            ("an empty object", "{}"),
            ("an array", "[]"),
            ("trailing bytes", payload() + " "),
            ("two objects", payload() + "{}"),
            ("not JSON", "identity"),
            ("empty", ""),
        ]
    }

    @Test("edge headers and payloads: the compact path takes what it should and agrees with the general one on all")
    func edges() async throws {
        let service = try await service()
        var taken: Set<String> = []
        for header in Self.headers {
            for (name, payload) in payloads() {
                let token = Self.sign(header: header, payload: payload)
                if await expectAgreement(service, token, "\(header) with \(name)") { taken.insert("\(header) \(name)") }
            }
        }
        let compactHeader = #"{"alg":"HS256","typ":"JWT"}"#
        for name in ["the common form", "aud as an array", "aud as an empty array", "nbf in the future", "nbf in the past",
                     "no sub", "a sub that is no id", "an empty jti", "a jti of 129 bytes", "expired", "the wrong issuer", "an empty object"] {
            #expect(taken.contains("\(compactHeader) \(name)"), "the compact path takes \(name)")
        }
        #expect(taken.allSatisfy { $0.hasPrefix(compactHeader) || $0.hasPrefix(#"{"typ":"JWT","alg":"HS256"}"#) },
                "only the two headers this service writes: \(taken.filter { !$0.hasPrefix(compactHeader) })")
    }

    @Test("base64url that is padded, non-canonical or not base64url at all is declined and refused as malformed")
    func encodings() async throws {
        let service = try await service()
        // A token with a "-" or "_" in it, to spell with standard base64's "+" and "/".
        let token = (0...).lazy.map { Self.sign(header: #"{"alg":"HS256","typ":"JWT"}"#, payload: payload(jti: "j-\($0)")) }
            .first { $0.contains("-") || $0.contains("_") }!
        let parts = token.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        // The signature's last character carries 2 spare bits (43 characters for 32 bytes).
        let last = parts[2].last!
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        let spare = alphabet[alphabet.firstIndex(of: last)! ^ 1]
        let variants = [
            ("padded signature", "\(parts[0]).\(parts[1]).\(parts[2])="),
            ("spare bits set in the signature", "\(parts[0]).\(parts[1]).\(parts[2].dropLast())\(spare)"),
            ("standard base64 characters", token.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")),
            ("a signature one character short", "\(parts[0]).\(parts[1]).\(parts[2].dropLast())"),
            ("four parts", "\(token).\(parts[2])"),
            ("two parts", "\(parts[0]).\(parts[1])"),
            ("a space", "\(parts[0]).\(parts[1]) .\(parts[2])"),
            ("over 8192 bytes", "\(parts[0]).\(parts[1])\(String(repeating: "A", count: 8192)).\(parts[2])"),
        ]
        #expect(try await service.verify(token, now: now).userID == user)
        for (name, variant) in variants {
            #expect(await !expectAgreement(service, variant, name), "declined: \(name)")
            #expect(await Answer { try await service.verify(variant, now: now) } == .rejected(.malformed), "\(name) is malformed")
        }
        let unsigned = "\(parts[0]).\(parts[1])."
        #expect(await expectAgreement(service, unsigned, "an empty signature"), "the compact path reads it: an HMAC of no bytes")
        #expect(await Answer { try await service.verify(unsigned, now: now) } == .rejected(.badSignature))
    }

    @Test("3,000 mutated payloads, each signed with the right key: the compact path never answers differently")
    func mutations() async throws {
        let service = try await service()
        var random = SeededGenerator(seed: 0x1D_E471_7E57)
        let header = Array(#"{"alg":"HS256","typ":"JWT"}"#.utf8)
        let seeds = payloads().map { Array($0.1.utf8) }.filter { !$0.isEmpty }
        let pieces = Array(#"{}[]",:.0123456789eE+-\ atrunl"#.utf8) + [0x00, 0x1F, 0x7F, 0xC3, 0xA9, 0xFF]
        var taken = 0
        for round in 0..<3000 {
            var bytes = seeds[Int.random(in: 0..<seeds.count, using: &random)]
            for _ in 0..<Int.random(in: 1...3, using: &random) {
                let at = Int.random(in: 0..<bytes.count, using: &random)
                switch Int.random(in: 0..<3, using: &random) {
                case 0: bytes[at] = pieces.randomElement(using: &random)!
                case 1: bytes.insert(pieces.randomElement(using: &random)!, at: at)
                default: if bytes.count > 1 { bytes.remove(at: at) }
                }
            }
            let token = Self.sign(header: header, payload: bytes)
            if await expectAgreement(service, token, "round \(round): \(String(decoding: bytes, as: UTF8.self))") { taken += 1 }
        }
        #expect(taken > 100, "the compact path took \(taken) of them, so the comparison covered it")
    }
}
