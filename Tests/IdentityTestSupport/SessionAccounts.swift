public import Foundation
public import IdentityDomain
public import IdentityPorts

extension UserRepository {
    /// Registers an account with `id` at version 1, writing no event: the account a test's
    /// sessions stand on, so that a rotation on version 1 finds it.
    public func registerAccount(_ id: UserID, at now: Date) async throws {
        try await insert(
            User.register(
                id: id, email: try Email("session-\(id)@example.com"), name: try DisplayName("Session"),
                passwordHash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA", at: now
            ),
            events: []
        )
    }
}
