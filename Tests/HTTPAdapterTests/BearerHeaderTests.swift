@testable import HTTPAdapter
import IdentityPorts
import Testing

@Suite("Authorization: Bearer header")
struct BearerHeaderTests {
    @Test("the token of a Bearer header: the scheme in any case, spaces after it, blanks around the token dropped",
          arguments: [
              ("Bearer abc.def.ghi", "abc.def.ghi"), ("bearer abc", "abc"), ("BEARER abc", "abc"), ("BeArEr abc", "abc"),
              ("Bearer    abc", "abc"), ("  Bearer abc", "abc"), ("Bearer abc \t ", "abc"), ("Bearer \tabc", "abc"),
              ("Bearer ab c", "ab c"),  // one token with a space: the verifier refuses it as malformed
          ])
    func accepted(header: String, token: String) throws {
        #expect(try BearerToken.token(in: header) == token)
    }

    @Test("no Bearer credentials: 401 asking for them", arguments: [
        "", "Basic dXNlcjpwYXNz", "Bearer", "Bearer    ", "Bearerabc", "Bearer\tabc", "Bearër abc", "Bear abc", "Bearers abc",
        "bearer\u{00A0}abc",
    ])
    func refused(header: String) {
        #expect(throws: AuthenticationRequired.self) { try BearerToken.token(in: header) }
    }

    @Test("a Bearer scheme followed only by blanks: a malformed token")
    func blankToken() {
        #expect(throws: TokenRejected.malformed) { try BearerToken.token(in: "Bearer \t ") }
    }
}
