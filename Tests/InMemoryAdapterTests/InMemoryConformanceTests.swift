import Foundation
import IdentityApplication
import IdentityConformance
import IdentityDomain
import IdentityPorts
@_spi(FaultInjection) import InMemoryAdapter
import Testing

@Suite("In-memory adapters pass the conformance suites")
struct InMemoryConformanceTests {
    @Test("InMemoryUserStore is a UserRepository and EventOutbox")
    func userStore() async throws {
        try await UserRepositoryConformance { let store = InMemoryUserStore(); return (store, store) }.run()
    }

    @Test("InMemoryUserStore keeps account tokens and the mail outbox (contract §11)")
    func accountMail() async throws {
        try await AccountMailConformance { let store = InMemoryUserStore(); return (store, store, store) }.run()
    }

    @Test("InMemoryRevocationStore is a RevocationStore")
    func revocationStore() async throws {
        try await RevocationStoreConformance { InMemoryRevocationStore(clock: ManualClock()) }.run()
    }

    @Test("InMemoryUserStore writes a change's revocations with the change, or neither")
    func changeRevocations() async throws {
        try await ChangeRevocationConformance(
            makeStores: { let store = InMemoryUserStore(); return (store, store.revocations) },
            makeStoresFailingRevocations: {
                let store = InMemoryUserStore()
                store.revocations.failWrites(with: InjectedFault())
                return (store, store.revocations)
            }
        ).run()
    }

    @Test("InMemoryLoginThrottle is a LoginThrottle")
    func throttle() async throws {
        try await LoginThrottleConformance { limits in InMemoryLoginThrottle(limits: limits) }.run()
    }

    @Test("InMemorySessionStore is a SessionStore")
    func sessionStore() async throws {
        try await SessionStoreConformance { configuration in
            let users = InMemoryUserStore()
            return (InMemorySessionStore(outbox: users, configuration: configuration), users)
        }.run()
    }

    @Test("InProcessCommandBus is a CommandBus")
    func bus() async throws {
        try await CommandBusConformance { handler in InProcessCommandBus(handler: handler) }.run()
    }
}

@Suite("In-memory adapters stay bounded")
struct InMemoryBoundsTests {
    @Test("the outbox keeps at most its capacity and counts what it dropped")
    func outboxCapacity() async throws {
        let store = InMemoryUserStore(outboxCapacity: 3)
        let user = UserID(UUID())
        let events = (0..<5).map {
            IdentityEvent(eventID: UUID(), occurredAt: Date(), payload: .tokenRevoked(userID: user, jti: "\($0)", expiresAt: Date()))
        }
        try await store.append(events)
        #expect(await store.pending(limit: 10).map(\.event) == Array(events.suffix(3)))
        #expect(await store.droppedEvents == 2)
    }

    @Test("revocation entries are purged by themselves once they expire")
    func automaticPurge() async throws {
        let clock = ManualClock()
        let store = InMemoryRevocationStore(clock: clock)
        let user = UserID(UUID())
        try store.revoke(jti: "old", userID: user, until: clock.now().addingTimeInterval(30))
        #expect(store.count == 1)
        clock.advance(by: 120)
        try store.revoke(jti: "new", userID: user, until: clock.now().addingTimeInterval(30))
        #expect(store.count == 1, "the expired entry went when the next write found a purge due")
    }

    @Test("sessions past their lifetime are purged by themselves when a session opens, at most once a minute")
    func sessionPurgeAsItGoes() async throws {
        let store = InMemorySessionStore(outbox: InMemoryUserStore(), configuration: SessionConfiguration(idleLifetime: 3600, absoluteLifetime: 7200))
        let user = UserID(UUID())
        let start = Date()
        for _ in 0..<10 {
            try await store.open(Session.open(id: SessionID(UUID()), userID: user, refreshDigest: .random(), accountVersion: 1, at: start))
        }
        #expect(store.count == 10)
        try await store.open(Session.open(id: SessionID(UUID()), userID: user, refreshDigest: .random(), accountVersion: 1, at: start.addingTimeInterval(30)))
        #expect(store.count == 11, "nothing has lapsed")
        try await store.open(Session.open(id: SessionID(UUID()), userID: user, refreshDigest: .random(), accountVersion: 1, at: start.addingTimeInterval(3601)))
        #expect(store.count == 2, "the ten idle for more than an hour went when the next session opened")
    }

    @Test("throttle keys whose failures left the window are forgotten")
    func throttleSweep() async throws {
        let throttle = InMemoryLoginThrottle(limits: LoginThrottleConfiguration(window: 60))
        let start = Date()
        for index in 0..<50 {
            _ = await throttle.beginAttempt(UUID(), email: try Email("u\(index)@example.com"), client: "c\(index)", now: start)
        }
        #expect(await throttle.trackedKeys == 100)
        _ = await throttle.beginAttempt(UUID(), email: try Email("late@example.com"), client: nil, now: start.addingTimeInterval(3600))
        #expect(await throttle.trackedKeys == 1)
    }
}

/// The failure a test makes a write throw.
struct InjectedFault: Error, CustomStringConvertible {
    var description: String { "injected fault" }
}
