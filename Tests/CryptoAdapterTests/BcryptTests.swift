@testable import CryptoAdapter
import IdentityDomain
import NIOPosix
import Testing

@Suite("Imported bcrypt hashes")
struct BcryptTests {
    let hasher = Argon2idHasher(parameters: try! Argon2Configuration(memoryKiB: 64, iterations: 1))

    @Test("the canonical crypt_blowfish vector verifies, and a near miss does not")
    func canonicalVector() async throws {
        let hash = "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW"
        #expect(try await hasher.verify(try Password(candidate: "U*U"), against: hash))
        #expect(try await !hasher.verify(try Password(candidate: "U*V"), against: hash))
    }

    @Test("$2b$ and $2y$ hashes (from Python or PHP systems) verify", arguments: [
        "$2b$04$abcdefghijklmnopqrstuuqREtd3VJD2QVZbuFskFSLk6eRIrQoOS",
        "$2y$04$abcdefghijklmnopqrstuuqREtd3VJD2QVZbuFskFSLk6eRIrQoOS",
    ])
    func variants(hash: String) async throws {
        #expect(try await hasher.verify(try Password("correct horse battery"), against: hash))
        #expect(try await !hasher.verify(try Password("correct horse battery!"), against: hash))
        #expect(hasher.needsRehash(hash), "an imported hash is always replaced by Argon2id")
        #expect(hasher.recognizes(hash), "an importer accepts it")
    }

    @Test("malformed or too costly bcrypt strings verify as false", arguments: [
        "$2b$04$abcdefghijklmnopqrstuuqREtd3VJD2QVZbuFskFSLk6eRIrQoO",     // one short
        "$2x$04$abcdefghijklmnopqrstuuqREtd3VJD2QVZbuFskFSLk6eRIrQoOS",    // unknown variant
        "$2b$31$abcdefghijklmnopqrstuuqREtd3VJD2QVZbuFskFSLk6eRIrQoOS",    // cost 31 would stall a thread
        "$2b$04$abcdefghijklmnopqrstuuqREtd3VJD2QVZbuFskFSLk6eRIrQo!S",    // bad alphabet
        "$2b$17$abcdefghijklmnopqrstuuqREtd3VJD2QVZbuFskFSLk6eRIrQoOS",    // cost 17: one above the cap
        "$2y$99$abcdefghijklmnopqrstuuqREtd3VJD2QVZbuFskFSLk6eRIrQoOS",    // cost 99
        "$2b$03$abcdefghijklmnopqrstuuqREtd3VJD2QVZbuFskFSLk6eRIrQoOS",    // cost 3: below bcrypt's minimum
        "$2b$+5$abcdefghijklmnopqrstuuqREtd3VJD2QVZbuFskFSLk6eRIrQoOS",    // a signed cost
        "$2b$ 5$abcdefghijklmnopqrstuuqREtd3VJD2QVZbuFskFSLk6eRIrQoOS",    // a space in the cost
    ])
    func malformed(hash: String) async throws {
        #expect(try await !hasher.verify(try Password("correct horse battery"), against: hash))
        #expect(!hasher.recognizes(hash), "an importer refuses it")
        // A pool that never started fails any job handed to it: verify answers without one.
        let unpooled = Argon2idHasher(parameters: try Argon2Configuration(memoryKiB: 64, iterations: 1), pool: NIOThreadPool(numberOfThreads: 1))
        #expect(try await !unpooled.verify(try Password("correct horse battery"), against: hash), "refused before crypt")
    }

    @Test("cost 16, the cap, is still recognized")
    func atTheCap() {
        #expect(hasher.recognizes("$2b$16$abcdefghijklmnopqrstuuqREtd3VJD2QVZbuFskFSLk6eRIrQoOS"))
        #expect(BcryptVerifier.maximumCost == 16)
    }

    @Test("comparison takes every byte into account")
    func constantTime() {
        #expect(BcryptVerifier.constantTimeEquals(Array("abc".utf8), Array("abc".utf8)))
        #expect(!BcryptVerifier.constantTimeEquals(Array("abc".utf8), Array("abd".utf8)))
        #expect(!BcryptVerifier.constantTimeEquals(Array("abc".utf8), Array("ab".utf8)))
    }
}
