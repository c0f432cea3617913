@testable import CryptoAdapter
import Foundation
import IdentityDomain
import IdentityPorts
import IdentityTestSupport
import InMemoryAdapter
import Testing

/// Another ecosystem's verifier, PyJWT with cryptography, reads our ES256 and EdDSA tokens
/// with nothing but our JWKS: what a standard JWT middleware does after discovery.
@Suite("PyJWT verifies our key-pair tokens with our JWKS")
struct PyJWTInteropTests {
    static let python = ProcessInfo.processInfo.environment["IDENTITY_TEST_PYJWT_PYTHON"]
    static let available = python.map { FileManager.default.isExecutableFile(atPath: $0) } ?? false

    static let script = #"""
        import json, sys, jwt
        jwks = json.load(open(sys.argv[1]))
        token = open(sys.argv[2]).read().strip()
        kid = jwt.get_unverified_header(token)["kid"]
        key = jwt.PyJWK.from_dict(next(k for k in jwks["keys"] if k["kid"] == kid)).key
        claims = jwt.decode(token, key, algorithms=[sys.argv[3]], audience="identity", issuer="identity",
                            options={"require": ["exp", "iat", "sub", "jti", "iss", "aud"]})
        assert claims["sub"] == sys.argv[4], claims
        # A single changed byte of the payload must not verify.
        head, body, sig = token.split(".")
        body = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1]
        try:
            jwt.decode(".".join([head, body, sig]), key, algorithms=[sys.argv[3]], audience="identity", issuer="identity")
            sys.exit("a tampered token verified")
        except jwt.InvalidTokenError:
            pass
        """#

    @Test("an ES256 and an EdDSA token verify in PyJWT with the key the JWKS lists, and a tampered one does not",
          .enabled(if: available, "IDENTITY_TEST_PYJWT_PYTHON (a Python with PyJWT and cryptography) is unset: run scripts/test"),
          arguments: JWTAlgorithm.asymmetric)
    func pyjwt(algorithm: JWTAlgorithm) async throws {
        let python = try #require(Self.python)
        let instance = try await KeyPairInstance.make(algorithm, clock: ManualClock(Date()))
        let user = UserID(UUID())
        let token = try await instance.service.issue(for: user, accountVersion: 1, issuedAt: instance.clock.now()).token
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("pyjwt-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let (scriptFile, jwksFile, tokenFile, output) = (directory.appendingPathComponent("verify.py"), directory.appendingPathComponent("jwks.json"),
                                                         directory.appendingPathComponent("token"), directory.appendingPathComponent("output"))
        try Data(Self.script.utf8).write(to: scriptFile)
        try instance.service.jwks().json().write(to: jwksFile)
        try Data(token.utf8).write(to: tokenFile)
        let status = try await runShell(
            "'\(python)' '\(scriptFile.path)' '\(jwksFile.path)' '\(tokenFile.path)' \(algorithm.rawValue) \(user) > '\(output.path)' 2>&1"
        )
        let printed = (try? String(contentsOf: output, encoding: .utf8)) ?? ""
        #expect(status == 0, "PyJWT: \(printed)")
    }
}
