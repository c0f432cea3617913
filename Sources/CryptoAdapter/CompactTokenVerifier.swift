import Crypto
import Foundation

/// The common case of token verification, without jwt-kit, JSONDecoder or an actor hop: a
/// token in exactly the form this service issues.
///
/// It takes a token only when nothing about it is unusual: a header that is byte for byte one
/// this service writes (with HMAC `{"alg":…,"typ":"JWT"}` in either key order; with a key
/// pair `{"alg":…,"kid":…,"typ":"JWT"}` for a key still published), a payload of the seven registered claims, `ver` and `sid` with plain values (strings
/// of printable ASCII without escapes, non-negative decimal numbers, an `aud` string or array
/// of strings; no whitespace, no duplicate key), and canonical unpadded base64url throughout.
/// Anything else is **declined**, not refused: `JWTTokenService` then verifies it the general
/// way, so the answer for every token is the one jwt-kit and the header rules give. Within
/// what it takes, both ways read the same claims and check the same signature, so they agree; the
/// differential test in JWTTokenServiceTests holds them to it.
struct CompactTokenVerifier: Sendable {
    enum Outcome {
        /// The signature holds; the claims still have to be checked.
        case signed(TokenClaims)
        /// Well-formed, but the signature does not match (or is not canonical: a truncated or
        /// high-S ECDSA signature).
        case badSignature
        /// Not in the compact form: verify it the general way.
        case declined
    }

    /// What checks a signature.
    enum Key: Sendable {
        case hmac(SymmetricKey, JWTAlgorithm)
        case p256(P256.Signing.PublicKey)
        case ed25519(Curve25519.Signing.PublicKey)
    }

    /// A header this verifier takes (base64url, byte for byte), the key it names, and until
    /// when that key may verify (a retired key's `publishedUntil`).
    struct Entry: Sendable {
        let header: [UInt8]
        let key: Key
        let until: Date?
    }

    private let entries: [Entry]

    /// The HMAC form: `{"alg":…,"typ":"JWT"}` in either key order, under the shared secret.
    init(configuration: TokenConfiguration) {
        let alg = configuration.algorithm.rawValue
        let key = Key.hmac(SymmetricKey(data: configuration.secret), configuration.algorithm)
        entries = [#"{"alg":"\#(alg)","typ":"JWT"}"#, #"{"typ":"JWT","alg":"\#(alg)"}"#].map {
            Entry(header: Array(Base64URL.encode(Array($0.utf8)).utf8), key: key, until: nil)
        }
    }

    /// The key pair form: the one header this service writes for each key (`header(algorithm:kid:)`).
    init(keys: [(kid: String, key: Key, until: Date?)], algorithm: JWTAlgorithm) {
        entries = keys.map { Entry(header: Array(Base64URL.encode(Array(Self.header(algorithm: algorithm, kid: $0.kid).utf8)).utf8), key: $0.key, until: $0.until) }
    }

    /// The header of a token signed with a key pair: `alg`, `kid`, `typ`, in that order.
    static func header(algorithm: JWTAlgorithm, kid: String) -> String {
        #"{"alg":"\#(algorithm.rawValue)","kid":"\#(kid)","typ":"JWT"}"#
    }

    func verify(_ token: String, now: Date) -> Outcome {
        var token = token
        return token.withUTF8 { verify(bytes: $0, now: now) }
    }

    private func verify(bytes: UnsafeBufferPointer<UInt8>, now: Date) -> Outcome {
        guard bytes.count <= 8192, let firstDot = bytes.firstIndex(of: UInt8(ascii: ".")) else { return .declined }
        guard let secondDot = bytes[(firstDot + 1)...].firstIndex(of: UInt8(ascii: ".")),
              !bytes[(secondDot + 1)...].contains(UInt8(ascii: "."))
        else { return .declined }
        let header = UnsafeBufferPointer(rebasing: bytes[..<firstDot])
        // A key past its publication is left to the general path, which refuses it by name.
        guard let entry = entries.first(where: { $0.header.elementsEqual(header) }), entry.until.map({ now <= $0 }) ?? true,
              let claims = Base64URL.withDecoded(bytes[(firstDot + 1)..<secondDot], { $0.flatMap(CompactClaimsParser.parse) })
        else { return .declined }
        let signed = UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: bytes[..<secondDot]))
        let valid = Base64URL.withDecoded(bytes[(secondDot + 1)...]) { signature -> Bool? in
            guard let signature else { return nil }
            return Self.isValid(signature, signing: signed, with: entry.key)
        }
        guard let valid else { return .declined }
        return valid ? .signed(claims) : .badSignature
    }

    static func isValid(_ signature: UnsafeBufferPointer<UInt8>, signing signed: UnsafeRawBufferPointer, with key: Key) -> Bool {
        switch key {
        case .hmac(let key, .hs384): HMAC<SHA384>.isValidAuthenticationCode(signature, authenticating: signed, using: key)
        case .hmac(let key, .hs512): HMAC<SHA512>.isValidAuthenticationCode(signature, authenticating: signed, using: key)
        case .hmac(let key, _): HMAC<SHA256>.isValidAuthenticationCode(signature, authenticating: signed, using: key)
        case .p256(let key):
            // r ‖ s, 32 bytes each, s in the lower half: the one spelling of a signature.
            if ECDSASignatureForm.isCanonical(signature), let parsed = try? P256.Signing.ECDSASignature(rawRepresentation: signature) {
                key.isValidSignature(parsed, for: signed)
            } else {
                false
            }
        case .ed25519(let key): signature.count == 64 && key.isValidSignature(UnsafeRawBufferPointer(signature), for: signed)
        }
    }
}

/// The canonical form of an ES256 signature (RFC 7518 §3.4: `r ‖ s`, 64 bytes), with `s` at
/// most half the group order ("low S"). A signature and its twin `(r, n − s)` both verify
/// mathematically; we write only the low one and refuse the high one, so one token has one
/// spelling, as with canonical base64url.
enum ECDSASignatureForm {
    /// The order n of P-256, big-endian.
    static let order: [UInt8] = hex("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551")
    /// ⌊n / 2⌋, big-endian.
    static let halfOrder: [UInt8] = hex("7FFFFFFF800000007FFFFFFFFFFFFFFFDE737D56D38BCF4279DCE5617E3192A8")

    private static func hex(_ text: String) -> [UInt8] {
        stride(from: 0, to: text.count, by: 2).map { offset in
            let start = text.index(text.startIndex, offsetBy: offset)
            return UInt8(text[start..<text.index(start, offsetBy: 2)], radix: 16) ?? 0
        }
    }

    /// Whether `signature` is 64 bytes with `s ≤ ⌊n / 2⌋`.
    static func isCanonical(_ signature: some Collection<UInt8>) -> Bool {
        guard signature.count == 64 else { return false }
        for (byte, limit) in zip(signature.dropFirst(32), halfOrder) where byte != limit {
            return byte < limit
        }
        return true
    }

    /// `signature` with `s` replaced by `n − s` when it is high: the same signature, canonical.
    static func canonical(_ signature: [UInt8]) -> [UInt8] {
        guard signature.count == 64, !isCanonical(signature) else { return signature }
        return Array(signature.prefix(32)) + subtractFromOrder(Array(signature.suffix(32)))
    }

    /// `n − s` for a 32-byte big-endian `s` below `n`.
    static func subtractFromOrder(_ s: [UInt8]) -> [UInt8] {
        var result = [UInt8](repeating: 0, count: 32)
        var borrow = 0
        for index in (0..<32).reversed() {
            let difference = Int(order[index]) - Int(s[index]) - borrow
            result[index] = UInt8((difference + 256) % 256)
            borrow = difference < 0 ? 1 : 0
        }
        return result
    }
}

/// The claims of contract §4 as read from a token, whichever way it was parsed.
struct TokenClaims: Equatable {
    var iss: String?
    var aud: [String]?
    var sub: String?
    var iat: Date?
    var exp: Date?
    var nbf: Date?
    var jti: String?
    var ver: Int64?
    var sid: String?
}

/// Canonical, unpadded base64url (RFC 7515 §2, RFC 4648 §5).
enum Base64URL {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)

    private static let values: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (index, character) in alphabet.enumerated() { table[Int(character)] = UInt8(index) }
        return table
    }()

    static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count * 4 + 2) / 3)
        var index = 0
        while index + 3 <= bytes.count {
            let n = UInt32(bytes[index]) << 16 | UInt32(bytes[index + 1]) << 8 | UInt32(bytes[index + 2])
            out += [alphabet[Int(n >> 18)], alphabet[Int(n >> 12 & 63)], alphabet[Int(n >> 6 & 63)], alphabet[Int(n & 63)]]
            index += 3
        }
        switch bytes.count - index {
        case 1:
            let n = UInt32(bytes[index]) << 16
            out += [alphabet[Int(n >> 18)], alphabet[Int(n >> 12 & 63)]]
        case 2:
            let n = UInt32(bytes[index]) << 16 | UInt32(bytes[index + 1]) << 8
            out += [alphabet[Int(n >> 18)], alphabet[Int(n >> 12 & 63)], alphabet[Int(n >> 6 & 63)]]
        default:
            break
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The bytes of `text`, or nil unless it is canonical: only alphabet characters, no
    /// padding, a length that is not 1 mod 4, and zero bits where the last character has
    /// more than the data needs.
    static func decode(_ text: some Collection<UInt8>) -> [UInt8]? {
        withDecoded(text) { $0.map(Array.init) }
    }

    /// Calls `body` with the bytes of `text` (nil unless canonical) in a temporary buffer: on
    /// the stack for the sizes a token has, so decoding allocates nothing.
    static func withDecoded<R>(_ text: some Collection<UInt8>, _ body: (UnsafeBufferPointer<UInt8>?) -> R) -> R {
        guard text.count % 4 != 1 else { return body(nil) }
        return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: text.count * 3 / 4 + 1) { buffer in
            var count = 0
            var accumulator: UInt32 = 0
            var bits = 0
            for character in text {
                let value = values[Int(character)]
                guard value != 0xFF else { return body(nil) }
                accumulator = accumulator << 6 | UInt32(value)
                bits += 6
                if bits >= 8 {
                    bits -= 8
                    buffer[count] = UInt8(truncatingIfNeeded: accumulator >> UInt32(bits))
                    count += 1
                    accumulator &= (1 << UInt32(bits)) - 1
                }
            }
            guard accumulator == 0 else { return body(nil) }
            return body(UnsafeBufferPointer(rebasing: buffer[..<count]))
        }
    }
}

/// Reads the compact form of a payload (see `CompactTokenVerifier`); nil for anything else.
enum CompactClaimsParser {
    private enum Value {
        case string(String)
        case number(Double)
        case strings([String])
    }

    /// The claims read, as bits of a mask (to refuse a duplicate without a set of strings).
    private static let keys: [(name: String, bit: UInt16)] = ["iss", "aud", "sub", "iat", "exp", "nbf", "jti", "ver", "sid"].enumerated()
        .map { ($0.element, UInt16(1) << UInt16($0.offset)) }

    static func parse(_ bytes: UnsafeBufferPointer<UInt8>) -> TokenClaims? {
        var reader = Reader(bytes: bytes)
        var claims = TokenClaims()
        var seen: UInt16 = 0
        guard reader.take(UInt8(ascii: "{")) else { return nil }
        if reader.take(UInt8(ascii: "}")) { return reader.atEnd ? claims : nil }
        repeat {
            guard let range = reader.plainString(),
                  let key = keys.first(where: { $0.name.utf8.elementsEqual(bytes[range]) }), seen & key.bit == 0,
                  reader.take(UInt8(ascii: ":")), let value = reader.value()
            else { return nil }
            seen |= key.bit
            switch (key.name, value) {
            case ("iss", .string(let text)): claims.iss = text
            case ("sub", .string(let text)): claims.sub = text
            case ("jti", .string(let text)): claims.jti = text
            case ("sid", .string(let text)): claims.sid = text
            case ("aud", .string(let text)): claims.aud = [text]
            case ("aud", .strings(let texts)): claims.aud = texts
            // As JSONDecoder's `.secondsSince1970`, which jwt-kit decodes dates with.
            case ("iat", .number(let seconds)): claims.iat = Date(timeIntervalSince1970: seconds)
            case ("exp", .number(let seconds)): claims.exp = Date(timeIntervalSince1970: seconds)
            case ("nbf", .number(let seconds)): claims.nbf = Date(timeIntervalSince1970: seconds)
            // An integer, as Int64 decodes it; anything else is left to the general path.
            case ("ver", .number(let version)):
                guard version.rounded() == version, let integer = Int64(exactly: version) else { return nil }
                claims.ver = integer
            default: return nil
            }
        } while reader.take(UInt8(ascii: ","))
        return reader.take(UInt8(ascii: "}")) && reader.atEnd ? claims : nil
    }

    private struct Reader {
        let bytes: UnsafeBufferPointer<UInt8>
        var index = 0

        var atEnd: Bool { index == bytes.count }

        mutating func take(_ byte: UInt8) -> Bool {
            guard index < bytes.count, bytes[index] == byte else { return false }
            index += 1
            return true
        }

        mutating func value() -> Value? {
            guard index < bytes.count else { return nil }
            switch bytes[index] {
            case UInt8(ascii: "\""):
                return string().map(Value.string)
            case UInt8(ascii: "["):
                index += 1
                var texts: [String] = []
                if take(UInt8(ascii: "]")) { return .strings(texts) }
                repeat {
                    guard let text = string() else { return nil }
                    texts.append(text)
                } while take(UInt8(ascii: ","))
                return take(UInt8(ascii: "]")) ? .strings(texts) : nil
            default:
                return number().map(Value.number)
            }
        }

        /// A string of printable ASCII other than `"` and `\`.
        mutating func string() -> String? {
            plainString().map { String(decoding: bytes[$0], as: UTF8.self) }
        }

        /// Where the text of such a string lies, without making a `String` of it.
        mutating func plainString() -> Range<Int>? {
            guard take(UInt8(ascii: "\"")) else { return nil }
            let start = index
            while index < bytes.count, bytes[index] != UInt8(ascii: "\"") {
                guard (0x20...0x7E).contains(bytes[index]), bytes[index] != UInt8(ascii: "\\") else { return nil }
                index += 1
            }
            guard index < bytes.count else { return nil }
            defer { index += 1 }
            return start..<index
        }

        /// `0` or an integer without a leading zero, of at most 15 digits, with at most 6
        /// decimals: the shape of a timestamp. Parsed as JSONDecoder parses it (both round
        /// correctly to the nearest `Double`).
        mutating func number() -> Double? {
            let start = index
            var integerDigits = 0
            while index < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) {
                index += 1
                integerDigits += 1
            }
            guard (1...15).contains(integerDigits), integerDigits == 1 || bytes[start] != UInt8(ascii: "0") else { return nil }
            if take(UInt8(ascii: ".")) {
                var decimals = 0
                while index < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) {
                    index += 1
                    decimals += 1
                }
                guard (1...6).contains(decimals) else { return nil }
            }
            return Double(String(decoding: bytes[start..<index], as: UTF8.self))
        }
    }
}
