import Foundation
import IdentityDomain
import Testing

/// Values the suites build accounts and events from.
enum Fixture {
    static let epoch = Date(timeIntervalSince1970: 1_790_000_000.123)

    static func user(_ local: String, name: String = "Ada Lovelace", at date: Date = epoch) throws -> User {
        User.register(
            id: UserID(UUID()), email: try Email("\(local)@example.com"), name: try DisplayName(name),
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
