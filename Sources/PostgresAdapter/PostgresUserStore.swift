public import IdentityPorts
public import IdentityDomain
public import PostgresNIO
public import Foundation
import Logging
import IdentityAdapterSupport

/// Accounts and the outbox in PostgreSQL. Every write, its events, its revocations and its
/// account tokens and mail (contract §11, `AccountWrites`) commit in one transaction. The store
/// is also the account token store and the mail outbox (`PostgresUserStore+Mail.swift`).
///
/// Takes a `PostgresConnectionPool` or a `PostgresClient` that the host runs (`run()`), so an
/// embedder can share its pool. Published events are deleted from the outbox; until a relay publishes them they stay.
public struct PostgresUserStore: UserRepository, EventOutbox, AppliedCommandLedger, PostgresSourcedStore {
    let session: PostgresSession

    /// Creates the store on `source`; an operation not done within `timeout` fails with
    /// `BackendUnavailable`.
    public init(source: PostgresConnectionSource, timeout: Duration = .seconds(5), logger: Logger = Logger(label: "identity.postgres")) {
        self.session = PostgresSession(source: source, timeout: timeout, logger: logger)
    }

    public func user(id: UserID) async throws -> User? {
        try await fetchUser("SELECT \(unescaped: Self.columns) FROM identity_users WHERE id = \(id.uuid)")
    }

    public func user(email: Email) async throws -> User? {
        try await fetchUser("SELECT \(unescaped: Self.columns) FROM identity_users WHERE email = \(email.value)")
    }

    private static let columns = "id, email, name, password_hash, created_at, updated_at, version, email_verified"

    /// One account by a unique key: a single indexed lookup.
    private func fetchUser(_ query: PostgresQuery) async throws -> User? {
        try await session.run { connection, logger in try await Self.firstUser(connection.query(query, logger: logger)) }
    }

    public func insert(_ user: User, events: [IdentityEvent], writes: AccountWrites) async throws {
        try await session.run { connection, logger in
            try await connection.withTransaction(logger: logger) { connection in
                try await Self.recordCommandMessage(on: connection, logger: logger)
                try await connection.query(
                    """
                    INSERT INTO identity_users (id, email, name, password_hash, created_at, updated_at, version, email_verified)
                    VALUES (\(user.id.uuid), \(user.email.value), \(user.name.value), \(user.passwordHash),
                            \(user.createdAt), \(user.updatedAt), \(user.version), \(user.emailVerified))
                    """,
                    logger: logger
                )
                try await Self.write(writes, for: user.id, on: connection, logger: logger)
                try await Self.append(events, on: connection, logger: logger)
            }
        }
    }

    public func update(
        _ user: User, expectedVersion: Int, events: [IdentityEvent], revocations: [Revocation], writes: AccountWrites
    ) async throws {
        try await session.run { connection, logger in
            try await connection.withTransaction(logger: logger) { connection in
                try await Self.recordCommandMessage(on: connection, logger: logger)
                let rows = try await connection.query(
                    """
                    UPDATE identity_users
                    SET email = \(user.email.value), name = \(user.name.value), password_hash = \(user.passwordHash),
                        updated_at = \(user.updatedAt), version = \(user.version), email_verified = \(user.emailVerified)
                    WHERE id = \(user.id.uuid) AND version = \(expectedVersion)
                    RETURNING id
                    """,
                    logger: logger
                )
                guard try await Self.count(rows) == 1 else {
                    let exists = try await connection.query("SELECT 1 FROM identity_users WHERE id = \(user.id.uuid)", logger: logger)
                    throw try await Self.count(exists) == 0 ? IdentityError.userNotFound : IdentityError.concurrentUpdate
                }
                try await Self.write(writes, for: user.id, on: connection, logger: logger)
                try await PostgresRevocationStore.write(revocations, on: connection, logger: logger)
                try await Self.append(events, on: connection, logger: logger)
            }
        }
    }

    public func delete(id: UserID, events: [IdentityEvent], revocations: [Revocation]) async throws {
        try await session.run { connection, logger in
            try await connection.withTransaction(logger: logger) { connection in
                try await Self.recordCommandMessage(on: connection, logger: logger)
                let rows = try await connection.query("DELETE FROM identity_users WHERE id = \(id.uuid) RETURNING id", logger: logger)
                guard try await Self.count(rows) == 1 else { throw IdentityError.userNotFound }
                try await Self.forgetTokens(of: id, on: connection, logger: logger)
                try await PostgresRevocationStore.write(revocations, on: connection, logger: logger)
                try await Self.append(events, on: connection, logger: logger)
            }
        }
    }

    // MARK: EventOutbox

    public func append(_ events: [IdentityEvent]) async throws {
        guard !events.isEmpty else { return }
        try await session.run { connection, logger in
            try await connection.withTransaction(logger: logger) { connection in
                try await Self.recordCommandMessage(on: connection, logger: logger)
                try await Self.append(events, on: connection, logger: logger)
            }
        }
    }

    public func pending(limit: Int) async throws -> [OutboxEntry] {
        try await session.run { connection, logger in
            try await Self.entries(connection.query(Self.pendingQuery(limit: limit), logger: logger))
        }
    }

    public func markPublished(_ sequences: [Int64]) async throws {
        guard !sequences.isEmpty else { return }
        try await session.run { connection, logger in
            try await connection.query("DELETE FROM identity_outbox WHERE sequence = ANY(\(sequences))", logger: logger)
        }
    }

    /// One relay at a time, across every process on this database: the batch is read, handed
    /// to `publish` and deleted in one transaction that holds a transaction-scoped advisory
    /// lock, so events leave in commit order and a failed publish leaves them in place.
    public func publishPending(limit: Int, through publish: @escaping @Sendable ([OutboxEntry]) async throws -> Void) async throws -> Int {
        try await session.run { connection, logger in
            try await connection.withTransaction(logger: logger) { connection in
                let locked = try await connection.query("SELECT pg_try_advisory_xact_lock(\(Self.relayLock))", logger: logger)
                for try await held in locked.decode(Bool.self) where !held { return 0 }
                let entries = try await Self.entries(connection.query(Self.pendingQuery(limit: limit), logger: logger))
                guard !entries.isEmpty else { return 0 }
                do {
                    try await publish(entries)
                } catch {
                    // The publisher's own error, not a database outage.
                    throw PublisherFailed(error: error)
                }
                let sequences = entries.map(\.sequence)
                try await connection.query("DELETE FROM identity_outbox WHERE sequence = ANY(\(sequences))", logger: logger)
                return entries.count
            }
        }
    }

    public func hasApplied(messageID: String) async throws -> Bool {
        try await session.run { connection, logger in
            let rows = try await connection.query(
                "SELECT 1 FROM identity_processed_messages WHERE message_id = \(messageID)", logger: logger
            )
            return try await Self.count(rows) > 0
        }
    }

    /// Deletes all but the newest `kept` unpublished events; returns how many went. For a
    /// deployment without a broker, where nothing relays the outbox, so that it stays bounded.
    @discardableResult
    public func trimOutbox(keeping kept: Int) async throws -> Int {
        try await session.run { connection, logger in
            let rows = try await connection.query(
                """
                WITH gone AS (DELETE FROM identity_outbox
                              WHERE sequence <= (SELECT max(sequence) FROM identity_outbox) - \(max(0, kept)) RETURNING 1)
                SELECT count(*) FROM gone
                """,
                logger: logger
            )
            for try await count in rows.decode(Int64.self) { return Int(count) }
            return 0
        }
    }

    /// Forgets applied command ids recorded before `cutoff` (a redelivery comes within
    /// minutes; a week is ample); returns how many.
    @discardableResult
    public func purgeAppliedCommands(before cutoff: Date) async throws -> Int {
        try await session.run { connection, logger in
            let rows = try await connection.query(
                "WITH gone AS (DELETE FROM identity_processed_messages WHERE processed_at < \(cutoff) RETURNING 1) SELECT count(*) FROM gone",
                logger: logger
            )
            for try await count in rows.decode(Int64.self) { return Int(count) }
            return 0
        }
    }

    // MARK: helpers

    /// Key of the advisory lock the outbox relay holds (any fixed number unique to this use).
    static let relayLock: Int64 = 0x1D_0B07

    /// Records `CommandContext.messageID`, if set, in the caller's transaction; throws
    /// `CommandAlreadyApplied` when it is there already.
    static func recordCommandMessage(on connection: PostgresConnection, logger: Logger) async throws {
        guard let id = CommandContext.messageID else { return }
        let rows = try await connection.query(
            """
            INSERT INTO identity_processed_messages (message_id, processed_at) VALUES (\(id), now())
            ON CONFLICT (message_id) DO NOTHING RETURNING 1
            """,
            logger: logger
        )
        guard try await count(rows) == 1 else { throw CommandAlreadyApplied(messageID: id) }
    }

    /// The oldest `limit` unpublished events.
    private static func pendingQuery(limit: Int) -> PostgresQuery {
        "SELECT sequence, event_id, type, occurred_at, data::text FROM identity_outbox ORDER BY sequence LIMIT \(max(0, limit))"
    }

    private static func entries(_ rows: PostgresRowSequence) async throws -> [OutboxEntry] {
        var entries: [OutboxEntry] = []
        for try await (sequence, id, type, occurredAt, data) in rows.decode((Int64, UUID, String, Date, String).self) {
            let event = try EventCodec.event(id: id, type: type, occurredAt: occurredAt.roundedToMilliseconds, data: Data(data.utf8))
            entries.append(OutboxEntry(sequence: sequence, event: event))
        }
        return entries
    }

    /// Writes `events` into the outbox on `connection`, in the caller's transaction: the one
    /// outbox-writing statement, shared by the account store and `PostgresSessionStore`.
    static func append(_ events: [IdentityEvent], on connection: PostgresConnection, logger: Logger) async throws {
        for event in events {
            let data = String(decoding: EventCodec.data(of: event), as: UTF8.self)
            try await connection.query(
                """
                INSERT INTO identity_outbox (event_id, user_id, type, occurred_at, data)
                VALUES (\(event.eventID), \(event.userID.uuid), \(event.type), \(event.occurredAt), \(data)::jsonb)
                """,
                logger: logger
            )
        }
    }

    private static func firstUser(_ rows: PostgresRowSequence) async throws -> User? {
        for try await (id, email, name, hash, createdAt, updatedAt, version, verified)
            in rows.decode((UUID, String, String, String, Date, Date, Int, Bool).self)
        {
            return User(
                id: UserID(id), email: Email(trustedCanonical: email), name: DisplayName(trusted: name), passwordHash: hash,
                createdAt: createdAt.roundedToMilliseconds, updatedAt: updatedAt.roundedToMilliseconds, version: version,
                emailVerified: verified
            )
        }
        return nil
    }

    static func count(_ rows: PostgresRowSequence) async throws -> Int {
        var count = 0
        for try await _ in rows { count += 1 }
        return count
    }
}

extension Date {
    /// PostgreSQL keeps microseconds; our instants are whole milliseconds, so round back to them.
    var roundedToMilliseconds: Date {
        Date(timeIntervalSince1970: (timeIntervalSince1970 * 1000).rounded() / 1000)
    }
}
