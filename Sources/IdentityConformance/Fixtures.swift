public import Foundation
public import IdentityDomain
public import IdentityPorts
import Testing

/// Values the suites build accounts and events from.
enum Fixture {
    static let epoch = Date(timeIntervalSince1970: 1_790_000_000.123)

    static func user(_ local: String, name: String = "Ada Lovelace", id: UserID = UserID(UUID()), at date: Date = epoch) throws -> User {
        User.register(
            id: id, email: try Email("\(local)@example.com"), name: try DisplayName(name),
            passwordHash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA", at: date
        )
    }

    static func event(_ payload: IdentityEvent.Payload, at date: Date = epoch) -> IdentityEvent {
        IdentityEvent(eventID: UUID(), occurredAt: date, payload: payload)
    }

    /// Runs one check of a suite: a check that throws is recorded as an issue naming it, and the
    /// suite goes on with the next, so one run reports every rule an adapter breaks.
    static func check(_ name: String, _ body: () async throws -> Void) async {
        do {
            try await body()
        } catch {
            Issue.record(error, "\(name) threw")
        }
    }
}

extension UserRepository {
    /// Registers an account with `id` at version 1, writing no event: the account a session
    /// store's sessions stand on in a test, so that a rotation on version 1 finds it.
    /// `SessionStoreConformance` registers one for the user of every session it opens.
    public func registerAccount(_ id: UserID, at now: Date) async throws {
        try await insert(Fixture.user("session-\(id)", name: "Session", id: id, at: now), events: [])
    }
}
