public import IdentityPorts
import IdentityDomain
import Foundation
import Testing

/// The behaviour every `UserRepository` (with the `EventOutbox` it writes to) must show.
///
/// ```swift
/// @Test func conforms() async throws {
///     try await UserRepositoryConformance { let store = MyStore(); return (store, store) }.run()
/// }
/// ```
/// `makeStore` must return an empty store each time it is called. Failures are recorded as
/// Swift Testing issues, so `run()` must be called from inside a test.
public struct UserRepositoryConformance: Sendable {
    /// Makes a fresh, empty repository and the outbox its writes append to.
    public typealias Factory = @Sendable () async throws -> (users: any UserRepository, outbox: any EventOutbox)
    private let makeStore: Factory

    /// Creates the suite.
    public init(makeStore: @escaping Factory) {
        self.makeStore = makeStore
    }

    /// Runs every check, each on a fresh store.
    public func run() async throws {
        await Fixture.check("insertedAccountsAreFoundByIDAndEmail") { try await insertedAccountsAreFoundByIDAndEmail() }
        await Fixture.check("canonicalEmailIsUnique") { try await canonicalEmailIsUnique() }
        await Fixture.check("updateNeedsTheExpectedVersion") { try await updateNeedsTheExpectedVersion() }
        await Fixture.check("updateMovesTheEmailIndex") { try await updateMovesTheEmailIndex() }
        await Fixture.check("deleteRemovesTheAccountAndFreesTheEmail") { try await deleteRemovesTheAccountAndFreesTheEmail() }
        await Fixture.check("missingAccountsAreReported") { try await missingAccountsAreReported() }
        await Fixture.check("eventsCommitWithTheirChange") { try await eventsCommitWithTheirChange() }
        await Fixture.check("outboxKeepsOrderAndForgetsPublishedEvents") { try await outboxKeepsOrderAndForgetsPublishedEvents() }
        await Fixture.check("commandMessagesAreAppliedOnce") { try await commandMessagesAreAppliedOnce() }
        await Fixture.check("relayHandsOutEventsOnceInOrder") { try await relayHandsOutEventsOnceInOrder() }
    }

    func insertedAccountsAreFoundByIDAndEmail() async throws {
        let (users, _) = try await makeStore()
        let ada = try Fixture.user("ada", name: "Ada Lovelace 👩‍💻")
        try await users.insert(ada, events: [])
        #expect(try await users.user(id: ada.id) == ada, "an inserted account is found by id, unchanged")
        #expect(try await users.user(email: ada.email) == ada, "an inserted account is found by email")
        #expect(try await users.user(id: UserID(UUID())) == nil, "an unknown id finds nothing")
        #expect(try await users.user(email: try Email("nobody@example.com")) == nil, "an unknown email finds nothing")
        // Text that breaks a store which builds its queries from strings.
        let hostile = try Fixture.user(#"o'brien";--%_\"#, name: #"Robert'); DROP TABLE users;--"#)
        try await users.insert(hostile, events: [])
        #expect(try await users.user(email: hostile.email) == hostile, "quotes, comments and LIKE wildcards are data")
        #expect(try await users.user(email: try Email("o'brien\";--%_x@example.com")) == nil, "a wildcard matches only itself")
        #expect(try await users.user(id: ada.id) == ada, "and nothing else was touched")
    }

    func canonicalEmailIsUnique() async throws {
        let (users, _) = try await makeStore()
        try await users.insert(try Fixture.user("ada"), events: [])
        let twin = try Fixture.user("ADA")  // canonicalised to ada@example.com
        await #expect(throws: IdentityError.emailTaken, "a second account with the same canonical email is refused") {
            try await users.insert(twin, events: [])
        }
    }

    func updateNeedsTheExpectedVersion() async throws {
        let (users, _) = try await makeStore()
        var ada = try Fixture.user("ada")
        try await users.insert(ada, events: [])
        _ = ada.apply(name: try DisplayName("Countess"), email: nil, passwordHash: nil, at: Fixture.epoch.addingTimeInterval(1))
        try await users.update(ada, expectedVersion: 1, events: [])
        #expect(try await users.user(id: ada.id) == ada, "an update with the stored version is applied")
        var stale = ada
        _ = stale.apply(name: try DisplayName("Stale"), email: nil, passwordHash: nil, at: Fixture.epoch.addingTimeInterval(2))
        await #expect(throws: IdentityError.concurrentUpdate, "an update with an old version is refused") {
            try await users.update(stale, expectedVersion: 1, events: [])
        }
        #expect(try await users.user(id: ada.id)?.name.value == "Countess", "a refused update changes nothing")
    }

    func updateMovesTheEmailIndex() async throws {
        let (users, _) = try await makeStore()
        var ada = try Fixture.user("ada")
        let bob = try Fixture.user("bob")
        try await users.insert(ada, events: [])
        try await users.insert(bob, events: [])
        var clash = ada
        _ = clash.apply(name: nil, email: bob.email, passwordHash: nil, at: Fixture.epoch.addingTimeInterval(1))
        await #expect(throws: IdentityError.emailTaken, "changing to another account's email is refused") {
            try await users.update(clash, expectedVersion: 1, events: [])
        }
        let newEmail = try Email("countess@example.com")
        _ = ada.apply(name: nil, email: newEmail, passwordHash: nil, at: Fixture.epoch.addingTimeInterval(1))
        try await users.update(ada, expectedVersion: 1, events: [])
        #expect(try await users.user(email: newEmail)?.id == ada.id, "the new email finds the account")
        #expect(try await users.user(email: try Email("ada@example.com")) == nil, "the old email is free")
        try await users.insert(try Fixture.user("ada"), events: [])
    }

    func deleteRemovesTheAccountAndFreesTheEmail() async throws {
        let (users, _) = try await makeStore()
        let ada = try Fixture.user("ada")
        try await users.insert(ada, events: [])
        try await users.delete(id: ada.id, events: [])
        #expect(try await users.user(id: ada.id) == nil, "a deleted account is gone by id")
        #expect(try await users.user(email: ada.email) == nil, "a deleted account is gone by email")
        let again = try Fixture.user("ada")
        try await users.insert(again, events: [])
        #expect(try await users.user(email: again.email)?.id == again.id, "the email can register again")
    }

    func missingAccountsAreReported() async throws {
        let (users, _) = try await makeStore()
        let ghost = try Fixture.user("ghost")
        await #expect(throws: IdentityError.userNotFound, "updating a missing account is refused") {
            try await users.update(ghost, expectedVersion: 1, events: [])
        }
        await #expect(throws: IdentityError.userNotFound, "deleting a missing account is refused") {
            try await users.delete(id: ghost.id, events: [])
        }
    }

    func eventsCommitWithTheirChange() async throws {
        let (users, outbox) = try await makeStore()
        let ada = try Fixture.user("ada")
        let registered = Fixture.event(.userRegistered(userID: ada.id, email: ada.email, name: ada.name))
        try await users.insert(ada, events: [registered])
        let twin = try Fixture.user("ada")
        let refused = Fixture.event(.userRegistered(userID: twin.id, email: twin.email, name: twin.name))
        _ = try? await users.insert(twin, events: [refused])
        let deleted = Fixture.event(.userDeleted(userID: ada.id))
        try await users.delete(id: ada.id, events: [deleted])
        _ = try? await users.delete(id: ada.id, events: [Fixture.event(.userDeleted(userID: ada.id))])
        let pending = try await outbox.pending(limit: 100).map(\.event)
        #expect(pending == [registered, deleted], "committed writes store their events; refused writes store none")
    }

    func outboxKeepsOrderAndForgetsPublishedEvents() async throws {
        let (_, outbox) = try await makeStore()
        let id = UserID(UUID())
        let events = (0..<5).map { Fixture.event(.tokenRevoked(userID: id, jti: "jti-\($0)", expiresAt: Fixture.epoch)) }
        for event in events { try await outbox.append([event]) }
        let pending = try await outbox.pending(limit: 3)
        #expect(pending.map(\.event) == Array(events.prefix(3)), "pending returns the oldest events first, up to the limit")
        #expect(pending.map(\.sequence) == pending.map(\.sequence).sorted(), "sequences increase in commit order")
        try await outbox.markPublished(pending.map(\.sequence))
        #expect(try await outbox.pending(limit: 10).map(\.event) == Array(events.suffix(2)), "published events are not returned again")
    }

    func commandMessagesAreAppliedOnce() async throws {
        let (users, outbox) = try await makeStore()
        let ada = try Fixture.user("ada")
        let registered = Fixture.event(.userRegistered(userID: ada.id, email: ada.email, name: ada.name))
        try await CommandContext.$messageID.withValue("message-1") {
            try await users.insert(ada, events: [registered])
        }
        let again = try Fixture.user("ada.again")
        await #expect(throws: CommandAlreadyApplied(messageID: "message-1"), "a redelivered command writes nothing") {
            try await CommandContext.$messageID.withValue("message-1") {
                try await users.insert(again, events: [Fixture.event(.userDeleted(userID: again.id))])
            }
        }
        #expect(try await users.user(id: again.id) == nil, "the refused write left no row")
        if let ledger = users as? any AppliedCommandLedger {
            #expect(try await ledger.hasApplied(messageID: "message-1"), "the ledger knows the applied id")
            #expect(try await !ledger.hasApplied(messageID: "message-0"))
        }
        var renamed = ada
        renamed.name = try DisplayName("Ada L.")
        renamed.version += 1
        await #expect(throws: CommandAlreadyApplied(messageID: "message-1"), "every kind of write checks the id") {
            try await CommandContext.$messageID.withValue("message-1") {
                try await users.update(renamed, expectedVersion: ada.version, events: [])
            }
        }
        // A write refused for a business reason does not consume its id: the retry applies.
        let twin = try Fixture.user("ada")
        _ = try? await CommandContext.$messageID.withValue("message-2") {
            try await users.insert(twin, events: [])
        }
        if let ledger = users as? any AppliedCommandLedger {
            #expect(try await !ledger.hasApplied(messageID: "message-2"), "a refused write records nothing")
        }
        try await CommandContext.$messageID.withValue("message-2") {
            try await users.update(renamed, expectedVersion: ada.version, events: [])
        }
        #expect(try await users.user(id: ada.id)?.name == renamed.name)
        let revoked = Fixture.event(.tokenRevoked(userID: ada.id, jti: "j", expiresAt: Fixture.epoch))
        try await CommandContext.$messageID.withValue("message-3") { try await outbox.append([revoked]) }
        await #expect(throws: CommandAlreadyApplied(messageID: "message-3"), "an appended event is recorded once") {
            try await CommandContext.$messageID.withValue("message-3") { try await outbox.append([revoked]) }
        }
        try await users.delete(id: ada.id, events: [])
        #expect(try await outbox.pending(limit: 10).map(\.event) == [registered, revoked], "no write was doubled")
    }

    func relayHandsOutEventsOnceInOrder() async throws {
        let (_, outbox) = try await makeStore()
        let id = UserID(UUID())
        let events = (0..<3).map { Fixture.event(.tokenRevoked(userID: id, jti: "relay-\($0)", expiresAt: Fixture.epoch)) }
        try await outbox.append(events)
        struct PublishFailed: Error {}
        await #expect(throws: PublishFailed.self) {
            _ = try await outbox.publishPending(limit: 2) { _ in throw PublishFailed() }
        }
        let published = Published()
        #expect(try await outbox.publishPending(limit: 2) { await published.add($0.map(\.event)) } == 2)
        #expect(try await outbox.publishPending(limit: 2) { await published.add($0.map(\.event)) } == 1)
        #expect(try await outbox.publishPending(limit: 2) { await published.add($0.map(\.event)) } == 0)
        #expect(await published.events == events, "a failed publish keeps its batch; then each event goes out once, in order")
        #expect(try await outbox.pending(limit: 10).isEmpty)
    }
}

private actor Published {
    var events: [IdentityEvent] = []
    func add(_ batch: [IdentityEvent]) { events += batch }
}
