public import IdentityPorts
public import IdentityDomain
public import Foundation

/// Accounts and their outbox in memory. One actor holds both, so a row change and its events
/// commit together, as in a database transaction; a change's revocations are written to
/// `revocations` in the same step, before anything else changes, so a failed revocation write
/// leaves the account as it was.
///
/// The outbox keeps at most `outboxCapacity` unpublished events: in embedded mode nothing
/// relays them, and memory must not grow without bound. `droppedEvents` counts the overflow.
public actor InMemoryUserStore: UserRepository, EventOutbox, AppliedCommandLedger, AccountTokenStore, MailOutbox {
    private var users: [UserID: User] = [:]
    private var idsByEmail: [Email: UserID] = [:]
    private var outbox: [OutboxEntry] = []
    private var nextSequence: Int64 = 1
    /// Account tokens by digest (contract §11).
    private var tokens: [Data: AccountToken] = [:]
    /// The mail outbox, by mail id.
    private var mails: [UUID: StoredMail] = [:]
    /// When delivered mail was last looked at for forgetting.
    private var lastMailSweep = Date.distantPast
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

    public func insert(_ user: User, events: [IdentityEvent], writes: AccountWrites) throws {
        let message = try unappliedMessage()
        if idsByEmail[user.email] != nil { throw IdentityError.emailTaken }
        if users[user.id] != nil { throw IdentityError.concurrentUpdate }
        try checkUse(writes.use, by: user.id)
        users[user.id] = user
        idsByEmail[user.email] = user.id
        apply(writes, for: user.id)
        enqueue(events, message: message)
    }

    public func update(
        _ user: User, expectedVersion: Int, events: [IdentityEvent], revocations: [Revocation], writes: AccountWrites
    ) throws {
        let message = try unappliedMessage()
        guard let stored = users[user.id] else { throw IdentityError.userNotFound }
        guard stored.version == expectedVersion else { throw IdentityError.concurrentUpdate }
        if stored.email != user.email, idsByEmail[user.email] != nil { throw IdentityError.emailTaken }
        try checkUse(writes.use, by: user.id)
        try self.revocations.write(revocations)
        apply(writes, for: user.id)
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
        tokens = tokens.filter { $0.value.userID != id }
        // Its unsent mail that carries a token would carry a dead one; a notice still goes.
        mails = mails.filter { !($0.value.mail.userID == id && $0.value.mail.sealedToken != nil && $0.value.isPending) }
        enqueue(events, message: message)
    }

    // MARK: AccountTokenStore

    public func accountToken(digest: Data) -> AccountToken? {
        tokens[digest]
    }

    @discardableResult
    public func record(_ writes: AccountWrites, for userID: UserID, events: [IdentityEvent], limit: MailLimit?) throws -> Bool {
        let message = try unappliedMessage()
        if let limit {
            let sent = mails.values.count {
                $0.mail.kind == limit.kind && $0.mail.recipient == limit.recipient && $0.mail.createdAt >= limit.since
            }
            if sent >= limit.max { return false }
        }
        try checkUse(writes.use, by: userID)
        apply(writes, for: userID)
        enqueue(events, message: message)
        return true
    }

    /// Throws `invalidToken` unless `use` names a stored, unexpired token of its purpose and of `userID`.
    private func checkUse(_ use: TokenUse?, by userID: UserID) throws {
        guard let use else { return }
        guard let token = tokens[use.digest], token.purpose == use.purpose, token.userID == userID, token.expiresAt > use.now else {
            throw IdentityError.invalidToken
        }
    }

    /// Applies checked writes: the use, the invalidations, the new tokens, the mail.
    private func apply(_ writes: AccountWrites, for userID: UserID) {
        if let use = writes.use { tokens[use.digest] = nil }
        if !writes.invalidate.isEmpty {
            tokens = tokens.filter { $0.value.userID != userID || !writes.invalidate.contains($0.value.purpose) }
        }
        for token in writes.issue { tokens[token.digest] = token }
        for mail in writes.mail { mails[mail.id] = StoredMail(mail: mail) }
        forgetOldMail(now: writes.mail.map(\.createdAt).max())
    }

    // MARK: MailOutbox

    public func claimDueMail(limit: Int, now: Date, lease: TimeInterval) -> [MailJob] {
        let due = mails.values
            .filter { $0.isPending && $0.dueAt <= now && ($0.claimedUntil.map { $0 <= now } ?? true) }
            .sorted { ($0.mail.createdAt, $0.mail.id.uuidString) < ($1.mail.createdAt, $1.mail.id.uuidString) }
            .prefix(max(0, limit))
        return due.map { stored in
            mails[stored.mail.id]?.claimedUntil = now.addingTimeInterval(lease)
            return MailJob(mail: stored.mail, failedAttempts: stored.failedAttempts)
        }
    }

    public func markMailSent(id: UUID, now: Date) {
        mails[id]?.sentAt = now
        mails[id]?.claimedUntil = nil
    }

    public func markMailFailed(id: UUID, retryAt: Date?, error: String, now: Date) {
        guard var stored = mails[id] else { return }
        stored.failedAttempts += 1
        stored.claimedUntil = nil
        stored.lastError = error
        if let retryAt { stored.dueAt = retryAt } else { stored.failedAt = now }
        mails[id] = stored
    }

    public func mailStatus() -> MailOutboxStatus {
        let pending = mails.values.filter(\.isPending)
        return MailOutboxStatus(
            pending: pending.count, failed: mails.values.count { $0.failedAt != nil }, oldestPendingAt: pending.map(\.mail.createdAt).min()
        )
    }

    /// Delivered mail is kept a day (for `MailLimit` counts), then forgotten: memory stays
    /// bounded. Sweeps at most once a minute: a scan of every kept mail on each write would make
    /// a busy day's registrations quadratic.
    private func forgetOldMail(now: Date?) {
        guard let now, now.timeIntervalSince(lastMailSweep) >= 60 else { return }
        lastMailSweep = now
        let horizon = now.addingTimeInterval(-Self.deliveredMailKept)
        mails = mails.filter { $0.value.isPending || $0.value.mail.createdAt >= horizon }
    }

    private static let deliveredMailKept: TimeInterval = 86_400

    /// A mail with its delivery state.
    private struct StoredMail: Sendable {
        let mail: OutgoingMail
        var failedAttempts = 0
        var dueAt: Date
        var claimedUntil: Date?
        var sentAt: Date?
        var failedAt: Date?
        var lastError: String?

        init(mail: OutgoingMail) {
            self.mail = mail
            self.dueAt = mail.createdAt
        }

        var isPending: Bool { sentAt == nil && failedAt == nil }
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
    /// no command's own: no command message id is recorded. `change` may ask the version of
    /// an account in the same step.
    func commit<Result: Sendable>(
        _ change: @Sendable (_ accountVersion: (UserID) -> Int?) throws -> (result: Result, events: [IdentityEvent])
    ) throws -> Result {
        let (result, events) = try change { self.user(id: $0)?.version }
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
