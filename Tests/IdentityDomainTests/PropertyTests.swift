import Foundation
@testable import IdentityDomain
import IdentityTestSupport
import Testing

/// Strings built from the characters that break identity systems: case and compatibility
/// forms, combining marks, invisible and bidi characters, separators, controls, NUL, emoji.
enum Gen {
    static let tricky: [String] = [
        "a", "b", "z", "A", "Z", "0", "9", ".", "-", "_", "+", "@", "@", " ", "\t", "\n", "\r", "\u{0}", "\u{7}", "\u{7F}",
        "\u{85}", "\u{A0}", "\u{A8}", "\u{AD}", "\u{B5}", "\u{DF}", "\u{130}", "\u{131}", "\u{17F}", "\u{1C5}", "\u{301}", "\u{308}",
        "\u{345}", "\u{3A3}", "\u{3C2}", "\u{1E9E}", "\u{200B}", "\u{200D}", "\u{200F}", "\u{2028}", "\u{2029}", "\u{202E}",
        "\u{2126}", "\u{212A}", "\u{212B}", "\u{2160}", "\u{2460}", "\u{3000}", "\u{E000}", "\u{FB01}", "\u{FE0F}", "\u{FEFF}",
        "\u{FF21}", "\u{FF20}", "\u{FF0E}", "\u{13A0}", "\u{AB70}", "\u{10400}", "\u{1F600}", "\u{1F469}\u{200D}\u{1F4BB}",
        "é", "e\u{301}", "ß", "ﬀ", "㎏", "ｆｏｏ", "Ⅻ",
    ]
    static let plain = Array("abcdefghijklmnopqrstuvwxyz0123456789").map(String.init)

    static func string(_ random: inout SeededGenerator, from alphabet: [String], length: ClosedRange<Int>) -> String {
        let count = Int.random(in: length, using: &random)
        return (0..<count).map { _ in alphabet.randomElement(using: &random)! }.joined()
    }

    /// Something shaped like an address, with tricky characters mixed into each part.
    static func emailLike(_ random: inout SeededGenerator) -> String {
        // Mostly plain characters with a few tricky ones, so that many cases are valid and the
        // rest fail in many different ways.
        let alphabet = Int.random(in: 0..<4, using: &random) == 0 ? tricky : Array(repeating: plain, count: 40).flatMap { $0 } + tricky
        let local = string(&random, from: alphabet, length: 0...40) + (Bool.random(using: &random) ? "" : string(&random, from: plain, length: 0...30))
        let domain = string(&random, from: alphabet, length: 0...12) + (Bool.random(using: &random) ? "." : "")
            + string(&random, from: alphabet, length: 0...6)
        let padding = Bool.random(using: &random) ? " " : ""
        return padding + local + "@" + domain + padding
    }
}

@Suite("Value objects, property-based (fixed seed)")
struct PropertyTests {
    static let cases = 3_000

    @Test("every accepted email is canonical: trimmed, NFKC, lower-case, within the rules, and canonicalising it again changes nothing")
    func emailsAreCanonical() {
        var random = SeededGenerator(seed: 0xE4A1_1001)
        var accepted = 0
        for _ in 0..<Self.cases {
            let raw = Gen.emailLike(&random)
            guard let email = try? Email(raw) else { continue }
            accepted += 1
            let value = email.value
            #expect(value == value.trimmingCharacters(in: .whitespacesAndNewlines), "trimmed: \(raw.debugDescription)")
            #expect(value == value.precomposedStringWithCompatibilityMapping, "NFKC: \(raw.debugDescription) → \(value.debugDescription)")
            #expect(value == value.lowercased(), "lower-case: \(raw.debugDescription)")
            #expect((try? Email(value))?.value == value, "idempotent: \(raw.debugDescription) → \(value.debugDescription)")
            let parts = value.split(separator: "@", omittingEmptySubsequences: false)
            #expect(parts.count == 2 && (1...64).contains(parts[0].utf8.count) && value.utf8.count <= 254, "\(value.debugDescription)")
            #expect(parts.count == 2 && parts[1].split(separator: ".", omittingEmptySubsequences: false).count >= 2)
            #expect(!value.unicodeScalars.contains { $0.properties.isWhitespace || $0.properties.generalCategory == .control })
        }
        #expect(accepted > Self.cases / 10, "the generator reaches valid addresses (\(accepted) of \(Self.cases))")
    }

    @Test("two spellings of one address are one account: case, width and composition do not matter")
    func emailEquivalence() throws {
        var random = SeededGenerator(seed: 0xE4A1_1002)
        for _ in 0..<Self.cases {
            let local = Gen.string(&random, from: Gen.plain, length: 1...20)
            let domain = Gen.string(&random, from: Gen.plain, length: 1...10) + "." + Gen.string(&random, from: Gen.plain, length: 2...5)
            let address = "\(local)@\(domain)"
            let canonical = try Email(address).value
            #expect(try Email(" " + address.uppercased() + "\t").value == canonical)
            let fullwidth = String(String.UnicodeScalarView(address.unicodeScalars.map { scalar in
                scalar.isASCII && scalar.properties.isAlphabetic ? Unicode.Scalar(scalar.value - 0x21 + 0xFF01)! : scalar
            }))
            #expect(try Email(fullwidth).value == canonical, "fullwidth \(fullwidth)")
        }
    }

    @Test("a password is accepted exactly when its NFKC form has 8–128 code points and no NUL, and is never trimmed")
    func passwordRule() {
        var random = SeededGenerator(seed: 0xE4A1_1003)
        for _ in 0..<Self.cases {
            let raw = Gen.string(&random, from: Gen.tricky, length: 0...140)
            let normalized = raw.precomposedStringWithCompatibilityMapping
            let expected = (8...128).contains(normalized.unicodeScalars.count) && !normalized.unicodeScalars.contains("\u{0}")
            let password = try? Password(raw)
            #expect((password != nil) == expected, "\(raw.debugDescription): \(normalized.unicodeScalars.count) code points")
            if let password {
                #expect(password.normalized == normalized, "the NFKC form is what is hashed, untrimmed")
                #expect(!password.description.contains(raw) || raw.isEmpty, "the description never shows the password")
            }
        }
    }

    @Test("an accepted name is trimmed, 1–100 characters, free of control characters, and accepted again as it is")
    func names() {
        var random = SeededGenerator(seed: 0xE4A1_1004)
        for _ in 0..<Self.cases {
            let raw = Gen.string(&random, from: Gen.tricky + Gen.plain, length: 0...110)
            guard let name = try? DisplayName(raw) else {
                let trimmed = raw.trimmingCharacters(in: .whitespacesAndNewlines)
                #expect(trimmed.isEmpty || trimmed.count > 100 || trimmed.unicodeScalars.contains {
                    $0.properties.generalCategory == .control || $0.properties.generalCategory == .lineSeparator
                        || $0.properties.generalCategory == .paragraphSeparator
                }, "refused without a reason: \(raw.debugDescription)")
                continue
            }
            #expect(name.value == name.value.trimmingCharacters(in: .whitespacesAndNewlines))
            #expect((1...100).contains(name.value.count))
            #expect(!name.value.unicodeScalars.contains { $0.properties.generalCategory == .control })
            #expect((try? DisplayName(name.value))?.value == name.value)
        }
    }

    @Test("user ids round-trip through their text in any case; anything else is not an id")
    func userIDs() {
        var random = SeededGenerator(seed: 0xE4A1_1005)
        for _ in 0..<Self.cases {
            var bytes = (0..<16).map { _ in UInt8.random(in: 0...255, using: &random) }
            bytes[6] = bytes[6] & 0x0F | 0x40
            bytes[8] = bytes[8] & 0x3F | 0x80
            let uuid = UUID(uuid: (bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
                                   bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]))
            let id = UserID(uuid)
            #expect(id.description == id.description.lowercased())
            #expect(UserID(id.description) == id && UserID(id.description.uppercased()) == id)
            let mangled = Gen.string(&random, from: Gen.tricky, length: 0...40)
            #expect(UserID(mangled) == nil || UUID(uuidString: mangled) != nil, "\(mangled.debugDescription)")
        }
    }

    @Test("timestamps print as RFC 3339 UTC with milliseconds and parse back to the same millisecond")
    func timestamps() throws {
        var random = SeededGenerator(seed: 0xE4A1_1006)
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        for _ in 0..<Self.cases {
            let date = Date(timeIntervalSince1970: Double.random(in: 0...4_102_444_800, using: &random))
            let text = date.rfc3339
            #expect(text.hasSuffix("Z") && text.count == 24, "\(text)")
            let parsed = try #require(formatter.date(from: text), "\(text)")
            #expect(parsed.epochMilliseconds == date.truncatedToMilliseconds.epochMilliseconds, "\(text)")
            #expect(date.truncatedToMilliseconds.rfc3339 == text, "truncating to the stored precision prints the same")
            #expect(date.truncatedToMilliseconds.truncatedToMilliseconds == date.truncatedToMilliseconds, "truncating twice changes nothing")
            #expect(date.truncatedToMilliseconds.timeIntervalSince(date) <= 0.000_001, "truncation moves forward by a microsecond at most (\(text))")
        }
    }
}
