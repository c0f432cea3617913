import Foundation
public import IdentityPorts
import IdentityDomain
import IdentityConformance
import Testing

/// Shows that a session store writes its events in the transaction of the change: while the
/// outbox refuses every write, no opening, end or reuse is made (each fails, and the sessions
/// are as they were), a rotation (which writes no event) still works; once the outbox takes
/// writes again, the same changes are made with their events.
///
/// `refuseOutboxWrites(true)` makes every insert into the outbox the store writes to fail
/// (a trigger that raises, say), `refuseOutboxWrites(false)` undoes it. Not for the in-memory
/// store, whose outbox cannot fail.
public struct SessionEventsCommitWithTheirChange: Sendable {
    private let store: any SessionStore
    private let outbox: any EventOutbox & UserRepository
    private let refuseOutboxWrites: @Sendable (Bool) async throws -> Void

    /// Creates the check on an empty `store` and its empty `outbox` (the account store whose
    /// outbox it writes to, where the check registers the sessions' account).
    public init(store: any SessionStore, outbox: any EventOutbox & UserRepository, refuseOutboxWrites: @escaping @Sendable (Bool) async throws -> Void) {
        self.store = store
        self.outbox = outbox
        self.refuseOutboxWrites = refuseOutboxWrites
    }

    /// Runs the check.
    public func run() async throws {
        let user = UserID(UUID())
        let now = Date(timeIntervalSince1970: 1_790_000_000.123)
        try await outbox.registerAccount(user, at: now)
        func open(at time: Date) -> Session {
            Session.open(id: SessionID(UUID()), userID: user, refreshDigest: .random(), accountVersion: 1, at: time)
        }
        let (first, second) = (open(at: now), open(at: now.addingTimeInterval(1)))
        try await store.open(first)
        try await store.open(second)
        #expect(try await types() == ["session.started", "session.started"])

        try await refuseOutboxWrites(true)
        let refused = open(at: now.addingTimeInterval(2))
        await #expect(throws: (any Error).self, "an opening whose event cannot be written fails") { try await store.open(refused) }
        #expect(try await store.session(id: refused.id) == nil, "and stores no session")
        let rotated = try await rotate(first, first.refreshDigest, at: now.addingTimeInterval(3))
        guard case .rotated(let current) = rotated else {
            Issue.record("a rotation writes no event, so it works while the outbox refuses writes: \(rotated)")
            return
        }
        let later = now.addingTimeInterval(60)
        await #expect(throws: (any Error).self, "an end whose event cannot be written fails") {
            _ = try await store.end(id: second.id, userID: user, reason: .logout, now: later)
        }
        await #expect(throws: (any Error).self, "so does an end of all") {
            _ = try await store.endAll(userID: user, except: nil, reason: .passwordChange, now: later)
        }
        await #expect(throws: (any Error).self, "and a reuse") { _ = try await rotate(first, first.refreshDigest, at: later) }
        #expect(try await store.sessions(of: user, now: later) == [second, current], "no session ended without its event")
        #expect(try await types().isEmpty, "and no event was written")

        try await refuseOutboxWrites(false)
        #expect(try await rotate(first, first.refreshDigest, at: later) == .reused(current.ended(.reuse, at: later)), "the reuse, once it can be written")
        #expect(try await store.end(id: second.id, userID: user, reason: .logout, now: later) == second.ended(.logout, at: later))
        #expect(try await types() == ["session.ended", "session.ended"], "each with its event")
    }

    private func rotate(_ session: Session, _ presented: RefreshDigest, at time: Date) async throws -> RotationOutcome {
        try await store.rotate(
            session: session.id, presented: presented, replacement: .random(), graceBlob: Data([1]), accountVersion: 1, now: time
        )
    }

    /// The types of the events written since the last call.
    private func types() async throws -> [String] {
        let entries = try await outbox.pending(limit: 100)
        try await outbox.markPublished(entries.map(\.sequence))
        return entries.map(\.event.type)
    }
}
