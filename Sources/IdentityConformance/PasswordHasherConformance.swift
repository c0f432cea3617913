public import IdentityPorts
import IdentityDomain
import Testing

/// The behaviour every `PasswordHasher` must show.
///
/// ```swift
/// @Test func conforms() async throws {
///     try await PasswordHasherConformance(hasher: MyHasher()).run()
/// }
/// ```
public struct PasswordHasherConformance: Sendable {
    private let hasher: any PasswordHasher

    /// Creates the suite for `hasher`.
    public init(hasher: any PasswordHasher) {
        self.hasher = hasher
    }

    /// Runs every check.
    public func run() async throws {
        let password = try Password("correct horse battery staple")
        let hash = try await hasher.hash(password)
        #expect(hash.hasPrefix("$"), "the hash is a PHC string")
        #expect(!hash.contains("correct horse"), "the hash does not contain the password")
        #expect(try await hasher.verify(password, against: hash), "the password verifies against its hash")
        #expect(try await !hasher.verify(try Password("correct horse battery stapler"), against: hash),
                "another password does not verify")
        #expect(try await hasher.hash(password) != hash, "two hashes of one password differ (salted)")
        #expect(!hasher.needsRehash(hash), "a fresh hash needs no rehash")
        #expect(hasher.needsRehash("$unknown$scheme"), "a foreign hash needs a rehash")
        #expect(hasher.recognizes(hash), "the hasher recognizes its own hashes")
        for garbage in ["", "$", "not a hash", "$argon2id$v=19$m=abc$x$y", "$argon2id$v=19$m=8,t=1,p=1$$", "$unknown$scheme"] {
            #expect(try await !hasher.verify(password, against: garbage), "a malformed hash verifies as false, without throwing")
            #expect(!hasher.recognizes(garbage), "a malformed or foreign hash is not recognized: \(garbage)")
        }
        // NFKC: the composed and decomposed forms of a password are the same password.
        let composed = try Password("caf\u{E9}-au-lait")
        let decomposed = try Password("cafe\u{301}-au-lait")
        #expect(try await hasher.verify(decomposed, against: try await hasher.hash(composed)),
                "canonically equivalent passwords verify against each other")
        // Long passwords are never truncated (no 72-byte cut as in bcrypt).
        let long = String(repeating: "a", count: 100)
        let longHash = try await hasher.hash(try Password(long))
        #expect(try await !hasher.verify(try Password(long + "b"), against: longHash), "the 101st character counts")
    }
}
