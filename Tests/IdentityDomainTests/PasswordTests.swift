import Foundation
import IdentityDomain
import Testing

@Suite("Password")
struct PasswordTests {
    @Test("8 to 128 code points are accepted")
    func bounds() throws {
        _ = try Password(String(repeating: "x", count: 8))
        _ = try Password(String(repeating: "x", count: 128))
        #expect(throws: ValidationError(field: "password", "must be at least 8 characters")) {
            try Password(String(repeating: "x", count: 7))
        }
        #expect(throws: ValidationError(field: "password", "must be at most 128 characters")) {
            try Password(String(repeating: "x", count: 129))
        }
    }

    @Test("length counts code points of the NFKC form, not bytes")
    func codePoints() throws {
        // Eight 4-byte emoji are 32 bytes but 8 code points.
        _ = try Password(String(repeating: "🔑", count: 8))
        // 128 CJK characters (384 bytes) pass.
        _ = try Password(String(repeating: "鍵", count: 128))
        // U+FB01 (ﬁ ligature) becomes "fi" under NFKC: 4 ligatures are 8 code points.
        #expect(try Password(String(repeating: "\u{FB01}", count: 4)).normalized == "fifififi")
        // 65 ligatures become 130 code points: too long, though only 65 were typed.
        #expect(throws: ValidationError.self) { try Password(String(repeating: "\u{FB01}", count: 65)) }
    }

    @Test("is never trimmed")
    func notTrimmed() throws {
        #expect(try Password("  spaced out  ").normalized == "  spaced out  ")
        // Spaces count: "  short " is 8 code points and passes; trimmed it would be 5 and fail.
        #expect(try Password("  short ").normalized.count == 8)
    }

    @Test("composed and decomposed forms normalise alike")
    func nfkc() throws {
        #expect(try Password("caf\u{E9}-latte").normalized == Password("cafe\u{301}-latte").normalized)
    }

    @Test("refuses NUL characters")
    func nul() {
        #expect(throws: ValidationError(field: "password", "must not contain NUL characters")) {
            try Password("abcd\u{0}efgh")
        }
    }

    @Test("a login candidate may be shorter than the registration minimum, never empty or over 128")
    func candidate() throws {
        _ = try Password(candidate: "abc")
        #expect(throws: ValidationError(field: "password", "must not be empty")) { try Password(candidate: "") }
        #expect(throws: ValidationError.self) { try Password(candidate: String(repeating: "x", count: 129)) }
    }

    @Test("never shows itself in descriptions")
    func redacted() throws {
        let password = try Password("hunter2hunter2")
        #expect(!"\(password)".contains("hunter2"))
        #expect(!String(reflecting: password).contains("hunter2"))
    }
}
