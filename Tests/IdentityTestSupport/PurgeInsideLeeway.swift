import Foundation
public import IdentityApplication
public import IdentityPorts
public import InMemoryAdapter
import IdentityDomain
import Testing

/// Shows that purging expired revocations at a token's `exp` + 3 s, inside the 5 s leeway in
/// which the token's signature and expiry check still accepts it, drops neither a logout nor a
/// password change's cut-off: the token stays refused (contract §5, "not by a purge").
///
/// Builds the service under test on a `ManualClock` (`makeService`), runs its use cases: a
/// logout, and a password change made with a second token; then moves the clock to `exp` + 3 s,
/// checks that the token service still accepts both tokens as such, purges the revocation store
/// the service writes to, and checks that both are refused as revoked. An entry written to
/// expire at `exp` (too short on purpose) is purged by the same call, so the purge did run.
public struct PurgeInsideLeeway: Sendable {
    /// Builds the service on `clock` (tokens from `TestIdentity.makeTokens()`), and the
    /// revocation store it writes to.
    public typealias MakeService = @Sendable (ManualClock) async throws -> (service: IdentityService, revocations: any RevocationStore)
    private let makeService: MakeService

    /// Prepares the check.
    public init(makeService: @escaping MakeService) {
        self.makeService = makeService
    }

    /// Runs the check, recording failures as Swift Testing issues.
    public func run() async throws {
        let clock = ManualClock(Date())
        let (service, revocations) = try await makeService(clock)
        let tokens = try await TestIdentity.makeTokens()
        let password = "correct horse battery"
        // Two accounts: a cut-off covers every earlier token of its account, the logged-out one
        // included, so the logout must be on an account of its own to be seen on its own.
        func register(_ name: String) async throws -> (UserRecord, String) {
            let email = "\(name.lowercased())-\(UUID().uuidString.prefix(8).lowercased())@example.com"
            return (try await service.register(email: email, password: password, name: name), email)
        }
        let (user, leaving) = try await register("Leaving")
        let loggedOut = try await service.login(email: leaving, password: password, client: nil)
        try await service.logout(try await service.authenticator.authenticate(bearer: loggedOut.token))
        let (_, changing) = try await register("Changing")
        let changedWith = try await service.login(email: changing, password: password, client: nil)
        _ = try await service.updateProfile(
            try await service.authenticator.authenticate(bearer: changedWith.token),
            name: nil, email: nil, password: "a brand new passphrase", currentPassword: password
        )
        let expiry = max(loggedOut.expiresAt, changedWith.expiresAt)
        #expect(tokens.leeway > 3, "exp + 3 s lies inside the leeway")
        try await revocations.revoke(jti: "lapsed-at-exp", userID: user.id, until: expiry)

        clock.set(expiry.addingTimeInterval(3))
        for issued in [loggedOut, changedWith] {
            let verified = try await tokens.verify(issued.token, now: clock.now())
            #expect(verified.jti == issued.jti, "at exp + 3 s the token's own checks still accept it")
        }
        let purged = try await revocations.purgeExpired(now: clock.now())
        #expect(purged == 1, "the purge ran and dropped the entry that lapsed at exp (and nothing else)")
        await #expect(throws: TokenRejected.revoked, "the logged-out token is still refused after the purge") {
            try await service.authenticator.authenticate(bearer: loggedOut.token)
        }
        await #expect(throws: TokenRejected.revoked, "the token from before the password change is still refused after the purge") {
            try await service.authenticator.authenticate(bearer: changedWith.token)
        }
    }
}
