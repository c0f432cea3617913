import Foundation
import IdentityApplication
import IdentityDomain
import IdentityPorts
import InMemoryAdapter
import IdentityTestSupport
import Synchronization
import Testing

@Suite("Redelivered commands and the outbox relay")
struct RedeliveryAndRelayTests {
    let store = InMemoryUserStore()

    func deliver(_ envelope: CommandEnvelope) async throws -> CommandReply {
        let handler = IdentityCommandHandler(
            users: store, outbox: store, revocations: store.revocations, tokens: try await TestIdentity.makeTokens()
        )
        return try await CommandContext.$messageID.withValue(envelope.messageID) { try await handler.handle(envelope) }
    }

    @Test("a command delivered twice is applied once, and the second delivery gets the same account back")
    func redelivery() async throws {
        let register = CommandEnvelope(messageID: "r-1", command: .registerUser(RegisterUser(
            email: try Email("twice@example.com"), name: try DisplayName("Twice"), passwordHash: "$argon2id$stub")))
        let first = try await deliver(register)
        let second = try await deliver(register)
        guard case .user(let record) = first else { Issue.record("expected an account, got \(first)"); return }
        #expect(second == first, "not emailTaken: the redelivery answers as the first delivery did")
        #expect(await store.count == 1)
        #expect(await store.hasApplied(messageID: "r-1"))

        let rename = CommandEnvelope(messageID: "u-1", command: .updateProfile(UpdateProfile(
            userID: record.id, name: try DisplayName("Once"), email: nil, passwordHash: nil, expectedVersion: 1)))
        let renamed = try await deliver(rename)
        #expect(try await deliver(rename) == renamed, "not concurrentUpdate: the same reply")
        let logout = CommandEnvelope(messageID: "t-1", command: .revokeToken(RevokeToken(userID: record.id, jti: "j", expiresAt: Date())))
        #expect(try await deliver(logout) == .done)
        #expect(try await deliver(logout) == .done)
        let changedAgain = CommandEnvelope(messageID: "u-2", command: .updateProfile(UpdateProfile(
            userID: record.id, name: try DisplayName("Again"), email: nil, passwordHash: nil, expectedVersion: 1)))
        #expect(try await deliver(changedAgain) == .rejected(.concurrentUpdate), "a stale version that was never applied is refused")
        let types = await store.pending(limit: 10).map(\.event.type)
        #expect(types == ["user.registered", "user.updated", "token.revoked"], "one event per command")

        let delete = CommandEnvelope(messageID: "d-1", command: .deleteAccount(DeleteAccount(userID: record.id)))
        #expect(try await deliver(delete) == .done)
        #expect(try await deliver(delete) == .done, "not userNotFound")
        #expect(try await deliver(rename) == .rejected(.userNotFound), "a replayed update of a deleted account says so")
    }

    @Test("the relay publishes everything in commit order, keeps what a failed publish did not take, and drains in batches")
    func relay() async throws {
        let user = UserID(UUID())
        let events = (0..<7).map {
            IdentityEvent(eventID: UUID(), occurredAt: Date(), payload: .tokenRevoked(userID: user, jti: "\($0)", expiresAt: Date()))
        }
        try await store.append(events)
        let publisher = RecordingPublisher()
        publisher.failing.withLock { $0 = true }
        await #expect(throws: BackendUnavailable.self) { try await OutboxRelay(outbox: store, publisher: publisher, batchSize: 3).drain() }
        #expect(await store.pending(limit: 10).count == 7, "nothing is lost when the publisher fails")
        publisher.failing.withLock { $0 = false }
        #expect(try await OutboxRelay(outbox: store, publisher: publisher, batchSize: 3).drain() == 7)
        #expect(publisher.batches.withLock { $0 } == [3, 3, 1])
        #expect(publisher.published.withLock { $0 } == events)
        #expect(try await OutboxRelay(outbox: store, publisher: publisher).drain() == 0)
    }
}

final class RecordingPublisher: EventPublisher {
    let failing = Mutex(false)
    let published = Mutex<[IdentityEvent]>([])
    let batches = Mutex<[Int]>([])

    func publish(_ events: [IdentityEvent]) async throws {
        if failing.withLock({ $0 }) { throw BackendUnavailable(backend: "rabbitmq") }
        published.withLock { $0 += events }
        batches.withLock { $0.append(events.count) }
    }
}
