import Foundation
public import IdentityDomain

/// Durable storage of accounts, with the account's events written in the same transaction.
///
/// Every write takes the events it causes: an adapter stores them in its outbox atomically
/// with the row change, so that a committed change is never without its event and vice versa.
public protocol UserRepository: Sendable {
    /// The account with this id, or nil.
    func user(id: UserID) async throws -> User?
    /// The account with this canonical email, or nil.
    func user(email: Email) async throws -> User?
    /// Stores a new account with `writes` (contract §11: its verification token and mail).
    /// Throws `IdentityError.emailTaken` when the canonical email is in use.
    func insert(_ user: User, events: [IdentityEvent], writes: AccountWrites) async throws
    /// Replaces the stored account whose version is `expectedVersion`, and writes
    /// `revocations` to the revocation store and `writes` (account tokens, mail) in the same
    /// transaction: all commit or nothing does.
    ///
    /// Throws `IdentityError.userNotFound` when it is gone, `.concurrentUpdate` when its
    /// version differs, `.emailTaken` when the new email belongs to another account, and
    /// `.invalidToken` when `writes.use` names no usable token.
    func update(
        _ user: User, expectedVersion: Int, events: [IdentityEvent], revocations: [Revocation], writes: AccountWrites
    ) async throws
    /// Deletes the account and writes `revocations` in the same transaction; throws
    /// `IdentityError.userNotFound` when it is gone.
    func delete(id: UserID, events: [IdentityEvent], revocations: [Revocation]) async throws
}

extension UserRepository {
    /// Stores a new account, writing nothing else.
    public func insert(_ user: User, events: [IdentityEvent]) async throws {
        try await insert(user, events: events, writes: .none)
    }

    /// Replaces the stored account with `revocations`, writing no tokens or mail.
    public func update(_ user: User, expectedVersion: Int, events: [IdentityEvent], revocations: [Revocation]) async throws {
        try await update(user, expectedVersion: expectedVersion, events: events, revocations: revocations, writes: .none)
    }

    /// Replaces the stored account, revoking nothing.
    public func update(_ user: User, expectedVersion: Int, events: [IdentityEvent]) async throws {
        try await update(user, expectedVersion: expectedVersion, events: events, revocations: [])
    }

    /// Deletes the account, revoking nothing.
    public func delete(id: UserID, events: [IdentityEvent]) async throws {
        try await delete(id: id, events: events, revocations: [])
    }
}

/// Events waiting to be published, in commit order (the transactional outbox).
public protocol EventOutbox: Sendable {
    /// Appends events not tied to an account row (such as `token.revoked`).
    func append(_ events: [IdentityEvent]) async throws
    /// Up to `limit` unpublished events, oldest first.
    func pending(limit: Int) async throws -> [OutboxEntry]
    /// Marks events as published; they are not returned by `pending` again.
    func markPublished(_ sequences: [Int64]) async throws
    /// Hands up to `limit` pending events, oldest first, to `publish`, and marks them published
    /// once it returns; returns how many. At most one caller at a time gets a batch, also across
    /// processes sharing the store, so that events leave in commit order; a caller that would
    /// have to wait gets 0. The default, for a store of one process, uses `pending` and
    /// `markPublished`.
    func publishPending(limit: Int, through publish: @escaping @Sendable ([OutboxEntry]) async throws -> Void) async throws -> Int
}

extension EventOutbox {
    public func publishPending(limit: Int, through publish: @escaping @Sendable ([OutboxEntry]) async throws -> Void) async throws -> Int {
        let entries = try await pending(limit: limit)
        guard !entries.isEmpty else { return 0 }
        try await publish(entries)
        try await markPublished(entries.map(\.sequence))
        return entries.count
    }
}

/// One stored event with its position in the outbox.
public struct OutboxEntry: Sendable, Equatable {
    /// Commit-order position; increases.
    public let sequence: Int64
    /// The event.
    public let event: IdentityEvent

    /// Creates an entry.
    public init(sequence: Int64, event: IdentityEvent) {
        self.sequence = sequence
        self.event = event
    }
}
