import Foundation
import IdentityDomain
import Testing

@Suite("Email")
struct EmailTests {
    @Test("is trimmed, NFKC-normalised and lower-cased", arguments: [
        ("  Foo@Example.COM \n", "foo@example.com"),
        ("\u{212A}elvin@example.com", "kelvin@example.com"),  // KELVIN SIGN → K → k
        ("ｆｕｌｌ＠ｅｘａｍｐｌｅ．ｃｏｍ", "full@example.com"),  // fullwidth letters, at sign and dot
        ("ÅSA@EXAMPLE.SE", "åsa@example.se"),
        ("A\u{030A}sa@example.se", "åsa@example.se"),  // decomposed Å composes under NFKC
    ])
    func canonicalForm(raw: String, canonical: String) throws {
        #expect(try Email(raw).value == canonical)
    }

    @Test("differently written forms of one address are equal")
    func equality() throws {
        #expect(try Email("Foo@Example.com") == Email("foo@example.com"))
        #expect(try Email("\u{212A}@example.com") == Email("k@example.com"))
    }

    @Test("refuses addresses that break a rule", arguments: [
        ("", "must not be empty"),
        ("   ", "must not be empty"),
        ("no-at-sign.example.com", "must contain exactly one @"),
        ("two@@example.com", "must contain exactly one @"),
        ("a@b@example.com", "must contain exactly one @"),
        ("@example.com", "must have a local part before the @"),
        ("user@localhost", "domain must contain a dot"),
        ("user@", "domain must contain a dot"),
        ("user@example..com", "domain must not have an empty label"),
        ("user@.example.com", "domain must not have an empty label"),
        ("user@example.com.", "domain must not have an empty label"),
        ("us er@example.com", "must not contain whitespace or control characters"),
        ("user\u{0}@example.com", "must not contain whitespace or control characters"),
        ("user\u{7}@example.com", "must not contain whitespace or control characters"),
        ("us\u{200B}er@example.com", "must not contain whitespace or control characters"),
        ("user@exa\u{00A0}mple.com", "must not contain whitespace or control characters"),
    ])
    func invalid(raw: String, reason: String) {
        #expect(throws: ValidationError(field: "email", reason)) { try Email(raw) }
    }

    @Test("a local part of 64 bytes passes and 65 fails")
    func localPartLength() throws {
        let ok = String(repeating: "a", count: 64) + "@example.com"
        #expect(try Email(ok).value == ok)
        #expect(throws: ValidationError(field: "email", "local part must be at most 64 bytes")) {
            try Email(String(repeating: "a", count: 65) + "@example.com")
        }
        // Counted in UTF-8 bytes: 32 two-byte letters are 64 bytes, 33 are 66.
        #expect(try Email(String(repeating: "é", count: 32) + "@example.com").value.hasPrefix("é"))
        #expect(throws: ValidationError.self) { try Email(String(repeating: "é", count: 33) + "@example.com") }
    }

    @Test("an address of 254 bytes passes and 255 fails")
    func totalLength() throws {
        let label = String(repeating: "d", count: 60)
        let domain254 = [label, label, label, String(repeating: "d", count: 65)].joined(separator: ".") + ".com"
        let ok = "a@" + domain254
        #expect(ok.utf8.count == 254)
        #expect(try Email(ok).value == ok)
        #expect(throws: ValidationError(field: "email", "must be at most 254 bytes")) { try Email("ab@" + domain254) }
    }

    @Test("a validation error names the field it was asked for")
    func fieldName() {
        #expect(throws: ValidationError(field: "username", "must contain exactly one @")) {
            try Email("nope", field: "username")
        }
    }
}
