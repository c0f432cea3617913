public import IdentityPorts
public import IdentityDomain
import Foundation

/// Accounts and their outbox in memory. One actor holds both, so a row change and its events
/// commit together, as in a database transaction; a change's revocations are written to
/// `revocations` in the same step, before anything else changes, so a failed revocation write
/// leaves the account as it was.
///
/// The outbox keeps at most `outboxCapacity` unpublished events: in embedded mode nothing
/// relays them, and memory must not grow without bound. `droppedEvents` counts the overflow.
public actor InMemoryUserStore: UserRepository, EventOutbox, AppliedCommandLedger {
    private var users: [UserID: User] = [:]
    private var idsByEmail: [Email: UserID] = [:]
    private var outbox: [OutboxEntry] = []
    private var nextSequence: Int64 = 1
    /// Command message ids applied, newest last; the oldest are forgotten past the limit.
    private var appliedMessages: Set<String> = []
    private var appliedOrder: [String] = []
    private static let appliedMessagesKept = 100_000
    private let outboxCapacity: Int
    /// Unpublished events discarded because the outbox was full.
    public private(set) var droppedEvents = 0
    /// Where the revocations of a password change or a deletion are written.
    public nonisolated let revocations: InMemoryRevocationStore

    /// Creates an empty store whose changes revoke tokens in `revocations`.
    public init(outboxCapacity: Int = 10_000, revocations: InMemoryRevocationStore = InMemoryRevocationStore()) {
        self.outboxCapacity = max(1, outboxCapacity)
        self.revocations = revocations
    }

    /// How many accounts exist.
    public var count: Int { users.count }

    public func user(id: UserID) -> User? {
        users[id]
    }

    public func user(email: Email) -> User? {
        idsByEmail[email].flatMap { users[$0] }
    }

    public func insert(_ user: User, events: [IdentityEvent]) throws {
        let message = try unappliedMessage()
        if idsByEmail[user.email] != nil { throw IdentityError.emailTaken }
        if users[user.id] != nil { throw IdentityError.concurrentUpdate }
        users[user.id] = user
        idsByEmail[user.email] = user.id
        enqueue(events, message: message)
    }

    public func update(_ user: User, expectedVersion: Int, events: [IdentityEvent], revocations: [Revocation]) throws {
        let message = try unappliedMessage()
        guard let stored = users[user.id] else { throw IdentityError.userNotFound }
        guard stored.version == expectedVersion else { throw IdentityError.concurrentUpdate }
        if stored.email != user.email, idsByEmail[user.email] != nil { throw IdentityError.emailTaken }
        try self.revocations.write(revocations)
        if stored.email != user.email {
            idsByEmail[stored.email] = nil
            idsByEmail[user.email] = user.id
        }
        users[user.id] = user
        enqueue(events, message: message)
    }

    public func delete(id: UserID, events: [IdentityEvent], revocations: [Revocation]) throws {
        let message = try unappliedMessage()
        guard users[id] != nil else { throw IdentityError.userNotFound }
        try self.revocations.write(revocations)
        guard let stored = users.removeValue(forKey: id) else { throw IdentityError.userNotFound }
        idsByEmail[stored.email] = nil
        enqueue(events, message: message)
    }

    // MARK: EventOutbox

    public func append(_ events: [IdentityEvent]) throws {
        enqueue(events, message: try unappliedMessage())
    }

    public func pending(limit: Int) -> [OutboxEntry] {
        Array(outbox.prefix(max(0, limit)))
    }

    public func markPublished(_ sequences: [Int64]) {
        let done = Set(sequences)
        outbox.removeAll { done.contains($0.sequence) }
    }

    /// Runs `change` and appends the events it returns to the outbox in one step on this actor,
    /// as a transaction would: no reader of the outbox sees the one without the other, and
    /// events keep the order of their changes. For `InMemorySessionStore`, whose changes are
    /// no command's own: no command message id is recorded.
    func commit<Result: Sendable>(_ change: @Sendable () throws -> (result: Result, events: [IdentityEvent])) throws -> Result {
        let (result, events) = try change()
        enqueue(events, message: nil)
        return result
    }

    public func hasApplied(messageID: String) -> Bool {
        appliedMessages.contains(messageID)
    }

    /// The command message id of this write (see `CommandContext`); throws when it was applied before.
    private func unappliedMessage() throws(CommandAlreadyApplied) -> String? {
        guard let id = CommandContext.messageID else { return nil }
        if appliedMessages.contains(id) { throw CommandAlreadyApplied(messageID: id) }
        return id
    }

    private func enqueue(_ events: [IdentityEvent], message: String?) {
        if let message {
            appliedMessages.insert(message)
            appliedOrder.append(message)
            if appliedOrder.count > Self.appliedMessagesKept { appliedMessages.remove(appliedOrder.removeFirst()) }
        }
        for event in events {
            outbox.append(OutboxEntry(sequence: nextSequence, event: event))
            nextSequence += 1
        }
        let overflow = outbox.count - outboxCapacity
        if overflow > 0 {
            outbox.removeFirst(overflow)
            droppedEvents += overflow
        }
    }
}
