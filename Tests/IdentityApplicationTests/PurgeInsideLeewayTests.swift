import IdentityTestSupport
import Testing

@Suite("Purge inside the leeway")
struct PurgeInsideLeewayTests {
    @Test("a purge at exp + 3 s (inside the leeway) keeps a logout and a password change's cut-off: both tokens stay refused")
    func inMemory() async throws {
        try await PurgeInsideLeeway { clock in
            let identity = try await TestIdentity.make(clock: clock)
            return (identity.service, identity.revocations)
        }.run()
    }
}
