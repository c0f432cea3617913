import IdentityConformance
import InMemoryAdapter
import Testing

@Suite("In-memory signing keys")
struct InMemorySigningKeyStoreTests {
    @Test("InMemorySigningKeyStore is a SigningKeyStore")
    func conformance() async throws {
        try await SigningKeyStoreConformance { InMemorySigningKeyStore() }.run()
    }
}
