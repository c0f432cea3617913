public import IdentityPorts
public import IdentityDomain
public import Foundation
import SQLiteNIO
import IdentityAdapterSupport

/// Accounts and the outbox in SQLite. Every write, its events, and its account tokens and mail
/// (contract §11, `AccountWrites`) commit in one transaction. The store is also the account
/// token store and the mail outbox (`SQLiteUserStore+Mail.swift`).
public struct SQLiteUserStore: UserRepository, EventOutbox, AppliedCommandLedger {
    let database: IdentitySQLiteDatabase

    /// Creates the store on `database`.
    public init(database: IdentitySQLiteDatabase) {
        self.database = database
    }

    public func user(id: UserID) async throws -> User? {
        try await fetch("SELECT \(Self.columns) FROM identity_users WHERE id = ?", [.text(id.description)])
    }

    public func user(email: Email) async throws -> User? {
        try await fetch("SELECT \(Self.columns) FROM identity_users WHERE email = ?", [.text(email.value)])
    }

    private static let columns = "id, email, name, password_hash, created_ms, updated_ms, version, email_verified"

    private func fetch(_ sql: String, _ binds: [SQLiteData]) async throws -> User? {
        try await database.exclusive { connection in
            try await connection.query(sql, binds).first.map(Self.user(from:))
        }
    }

    public func insert(_ user: User, events: [IdentityEvent], writes: AccountWrites) async throws {
        try await database.transaction { connection in
            try await Self.recordCommandMessage(on: connection)
            do {
                _ = try await connection.query(
                    """
                    INSERT INTO identity_users (id, email, name, password_hash, created_ms, updated_ms, version, email_verified)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                    [.text(user.id.description), .text(user.email.value), .text(user.name.value), .text(user.passwordHash),
                     user.createdAt.sqliteMilliseconds, user.updatedAt.sqliteMilliseconds, .integer(user.version),
                     .integer(user.emailVerified ? 1 : 0)]
                )
            } catch let error as SQLiteError where error.message.contains("UNIQUE constraint failed") {
                throw error.message.contains("identity_users.email") ? IdentityError.emailTaken : IdentityError.concurrentUpdate
            }
            try await Self.write(writes, for: user.id, on: connection)
            try await Self.append(events, on: connection)
        }
    }

    public func update(
        _ user: User, expectedVersion: Int, events: [IdentityEvent], revocations: [Revocation], writes: AccountWrites
    ) async throws {
        try await database.transaction { connection in
            try await Self.recordCommandMessage(on: connection)
            let existing = try await connection.query(
                "SELECT version FROM identity_users WHERE id = ?", [.text(user.id.description)]
            )
            guard let version = existing.first?.column("version")?.integer else { throw IdentityError.userNotFound }
            guard version == expectedVersion else { throw IdentityError.concurrentUpdate }
            do {
                _ = try await connection.query(
                    """
                    UPDATE identity_users SET email = ?, name = ?, password_hash = ?, updated_ms = ?, version = ?, email_verified = ?
                    WHERE id = ? AND version = ?
                    """,
                    [.text(user.email.value), .text(user.name.value), .text(user.passwordHash), user.updatedAt.sqliteMilliseconds,
                     .integer(user.version), .integer(user.emailVerified ? 1 : 0), .text(user.id.description), .integer(expectedVersion)]
                )
            } catch let error as SQLiteError where error.message.contains("UNIQUE constraint failed: identity_users.email") {
                throw IdentityError.emailTaken
            }
            try await Self.write(writes, for: user.id, on: connection)
            try await SQLiteRevocationStore.write(revocations, on: connection)
            try await Self.append(events, on: connection)
        }
    }

    public func delete(id: UserID, events: [IdentityEvent], revocations: [Revocation]) async throws {
        try await database.transaction { connection in
            try await Self.recordCommandMessage(on: connection)
            let gone = try await connection.query("DELETE FROM identity_users WHERE id = ? RETURNING id", [.text(id.description)])
            guard !gone.isEmpty else { throw IdentityError.userNotFound }
            try await Self.forgetTokens(of: id, on: connection)
            try await SQLiteRevocationStore.write(revocations, on: connection)
            try await Self.append(events, on: connection)
        }
    }

    // MARK: EventOutbox

    public func append(_ events: [IdentityEvent]) async throws {
        guard !events.isEmpty else { return }
        try await database.transaction { connection in
            try await Self.recordCommandMessage(on: connection)
            try await Self.append(events, on: connection)
        }
    }

    public func pending(limit: Int) async throws -> [OutboxEntry] {
        try await database.exclusive { connection in
            let rows = try await connection.query(
                "SELECT sequence, event_id, type, occurred_ms, data FROM identity_outbox ORDER BY sequence LIMIT ?",
                [.integer(max(0, limit))]
            )
            return try rows.map { row in
                guard let sequence = row.column("sequence")?.integer, let id = row.column("event_id")?.string.flatMap(UUID.init),
                      let type = row.column("type")?.string, let occurred = row.column("occurred_ms")?.integer,
                      let data = row.column("data")?.string
                else { throw SQLiteStoreError(description: "an outbox row does not decode") }
                let event = try EventCodec.event(id: id, type: type, occurredAt: Date(sqliteMilliseconds: occurred), data: Data(data.utf8))
                return OutboxEntry(sequence: Int64(sequence), event: event)
            }
        }
    }

    public func markPublished(_ sequences: [Int64]) async throws {
        guard !sequences.isEmpty else { return }
        try await database.exclusive { connection in
            let marks = Array(repeating: "?", count: sequences.count).joined(separator: ", ")
            _ = try await connection.query("DELETE FROM identity_outbox WHERE sequence IN (\(marks))", sequences.map { .integer(Int($0)) })
        }
    }

    /// Deletes all but the newest `kept` unpublished events; returns how many went. For a
    /// store that nothing relays (embedded mode has no broker), so that the outbox stays bounded.
    @discardableResult
    public func trimOutbox(keeping kept: Int) async throws -> Int {
        try await database.exclusive { connection in
            try await connection.query(
                """
                DELETE FROM identity_outbox WHERE sequence <= (SELECT max(sequence) FROM identity_outbox) - ? RETURNING 1
                """,
                [.integer(max(0, kept))]
            ).count
        }
    }

    public func hasApplied(messageID: String) async throws -> Bool {
        try await database.exclusive { connection in
            try await !connection.query("SELECT 1 FROM identity_processed_messages WHERE message_id = ?", [.text(messageID)]).isEmpty
        }
    }

    // MARK: helpers

    /// Records `CommandContext.messageID`, if set, in the caller's transaction; throws
    /// `CommandAlreadyApplied` when it is there already.
    static func recordCommandMessage(on connection: SQLiteConnection) async throws {
        guard let id = CommandContext.messageID else { return }
        let inserted = try await connection.query(
            "INSERT INTO identity_processed_messages (message_id, processed_ms) VALUES (?, ?) ON CONFLICT DO NOTHING RETURNING 1",
            [.text(id), Date().sqliteMilliseconds]
        )
        guard !inserted.isEmpty else { throw CommandAlreadyApplied(messageID: id) }
    }

    /// Writes `events` into the outbox on `connection`, in the caller's transaction: the one
    /// outbox-writing statement, shared by the account store and `SQLiteSessionStore`.
    static func append(_ events: [IdentityEvent], on connection: SQLiteConnection) async throws {
        for event in events {
            _ = try await connection.query(
                "INSERT INTO identity_outbox (event_id, user_id, type, occurred_ms, data) VALUES (?, ?, ?, ?, ?)",
                [.text(event.eventID.uuidString.lowercased()), .text(event.userID.description), .text(event.type),
                 event.occurredAt.sqliteMilliseconds, .text(String(decoding: EventCodec.data(of: event), as: UTF8.self))]
            )
        }
    }

    private static func user(from row: SQLiteRow) throws -> User {
        guard let id = row.column("id")?.string.flatMap(UserID.init), let email = row.column("email")?.string,
              let name = row.column("name")?.string, let hash = row.column("password_hash")?.string,
              let created = row.column("created_ms")?.integer, let updated = row.column("updated_ms")?.integer,
              let version = row.column("version")?.integer, let verified = row.column("email_verified")?.integer
        else { throw SQLiteStoreError(description: "an account row does not decode") }
        return User(
            id: id, email: Email(trustedCanonical: email), name: DisplayName(trusted: name), passwordHash: hash,
            createdAt: Date(sqliteMilliseconds: created), updatedAt: Date(sqliteMilliseconds: updated), version: version,
            emailVerified: verified != 0
        )
    }
}

/// Revoked tokens and per-account cut-offs in SQLite. A revocation is durable when `revoke` returns.
public struct SQLiteRevocationStore: RevocationSnapshotting {
    private let database: IdentitySQLiteDatabase

    /// Creates the store on `database`.
    public init(database: IdentitySQLiteDatabase) {
        self.database = database
    }

    public func revoke(jti: String, userID: UserID, until: Date) async throws {
        try await database.exclusive { connection in
            try await Self.write([.token(jti: jti, userID: userID, until: until)], on: connection)
        }
    }

    public func revokeAll(userID: UserID, belowVersion: Int64, until: Date) async throws {
        try await database.exclusive { connection in
            try await Self.write([.account(userID: userID, belowVersion: belowVersion, until: until)], on: connection)
        }
    }

    /// Writes `revocations` on `connection`, in the caller's transaction if it has one. Entries
    /// only add up: the later expiry and the higher version win.
    static func write(_ revocations: [Revocation], on connection: SQLiteConnection) async throws {
        for revocation in revocations {
            switch revocation {
            case .token(let jti, let userID, let until):
                _ = try await connection.query(
                    """
                    INSERT INTO identity_revoked_tokens (jti, user_id, expires_ms) VALUES (?, ?, ?)
                    ON CONFLICT (jti) DO UPDATE SET expires_ms = max(expires_ms, excluded.expires_ms)
                    """,
                    [.text(jti), .text(userID.description), until.sqliteMilliseconds]
                )
            case .account(let userID, let version, let until):
                _ = try await connection.query(
                    """
                    INSERT INTO identity_account_cutoffs (user_id, below_version, expires_ms) VALUES (?, ?, ?)
                    ON CONFLICT (user_id) DO UPDATE SET
                        below_version = max(below_version, excluded.below_version), expires_ms = max(expires_ms, excluded.expires_ms)
                    """,
                    [.text(userID.description), .integer(Int(version)), until.sqliteMilliseconds]
                )
            }
        }
    }

    public func isRevoked(jti: String, userID: UserID, accountVersion: Int64) async throws -> Bool {
        try await database.exclusive { connection in
            let rows = try await connection.query(
                """
                SELECT EXISTS (SELECT 1 FROM identity_revoked_tokens WHERE jti = ?)
                    OR EXISTS (SELECT 1 FROM identity_account_cutoffs WHERE user_id = ? AND below_version > ?) AS revoked
                """,
                [.text(jti), .text(userID.description), .integer(Int(accountVersion))]
            )
            return rows.first?.column("revoked")?.integer == 1
        }
    }

    @discardableResult
    public func purgeExpired(now: Date) async throws -> Int {
        try await database.transaction { connection in
            let tokens = try await connection.query(
                "DELETE FROM identity_revoked_tokens WHERE expires_ms < ? RETURNING 1", [now.sqliteMilliseconds])
            let cutoffs = try await connection.query(
                "DELETE FROM identity_account_cutoffs WHERE expires_ms < ? RETURNING 1", [now.sqliteMilliseconds])
            return tokens.count + cutoffs.count
        }
    }

    public func snapshot(now: Date) async throws -> RevocationSnapshot {
        try await database.exclusive { connection in
            var snapshot = RevocationSnapshot()
            for row in try await connection.query(
                "SELECT jti, user_id, expires_ms FROM identity_revoked_tokens WHERE expires_ms >= ?", [now.sqliteMilliseconds])
            {
                guard let jti = row.column("jti")?.string, let user = row.column("user_id")?.string.flatMap(UserID.init),
                      let expires = row.column("expires_ms")?.integer else { continue }
                snapshot.tokens.append(.init(jti: jti, userID: user, expiresAt: Date(sqliteMilliseconds: expires)))
            }
            for row in try await connection.query(
                "SELECT user_id, below_version, expires_ms FROM identity_account_cutoffs WHERE expires_ms >= ?", [now.sqliteMilliseconds])
            {
                guard let user = row.column("user_id")?.string.flatMap(UserID.init), let version = row.column("below_version")?.integer,
                      let expires = row.column("expires_ms")?.integer else { continue }
                snapshot.cutoffs.append(.init(userID: user, belowVersion: Int64(version), until: Date(sqliteMilliseconds: expires)))
            }
            return snapshot
        }
    }
}

/// Failed logins in SQLite, counted as `LoginThrottle` says: failures per email, failures and
/// attempts in flight per client address, over a sliding window; an attempt in flight is a row
/// with its id, and holds its email's turn.
public struct SQLiteLoginThrottle: LoginThrottle {
    private let database: IdentitySQLiteDatabase
    private let limits: LoginThrottleConfiguration

    /// Creates the throttle on `database`.
    public init(database: IdentitySQLiteDatabase, limits: LoginThrottleConfiguration = LoginThrottleConfiguration()) {
        self.database = database
        self.limits = limits
    }

    public func beginAttempt(_ attempt: UUID, email: Email, client address: String?, now: Date) async throws -> ThrottleDecision {
        let limits = limits
        let keys = ["email:" + email.value] + (address.map { ["client:" + $0] } ?? [])
        return try await database.transaction { connection in
            let since = now.addingTimeInterval(-limits.window)
            var recorded: [[ThrottleEntry]] = []
            for key in keys { recorded.append(try await Self.entries(of: key, since: since, on: connection)) }
            let decision = limits.decide(attempt: attempt, email: recorded[0], client: address == nil ? nil : recorded[1], now: now)
            guard decision == .allowed else { return decision }
            for (key, limit) in zip(keys, [limits.maxFailuresPerEmail, limits.maxFailuresPerClient]) {
                _ = try await connection.query(
                    "INSERT INTO identity_login_failures (key, failed_ms, attempt) VALUES (?, ?, ?)",
                    [.text(key), now.sqliteMilliseconds, .text(attempt.uuidString)]
                )
                // Keep only the failures the limit can ever need (attempts in flight stay).
                _ = try await connection.query(
                    """
                    DELETE FROM identity_login_failures WHERE key = ?1 AND (failed_ms <= ?2 OR (attempt IS NULL AND rowid NOT IN (
                        SELECT rowid FROM identity_login_failures WHERE key = ?1 AND attempt IS NULL ORDER BY failed_ms DESC LIMIT ?3)))
                    """,
                    [.text(key), since.sqliteMilliseconds, .integer(limit)]
                )
            }
            return decision
        }
    }

    public func finishAttempt(_ attempt: UUID, email: Email, client address: String?, outcome: AttemptOutcome, now: Date) async throws {
        try await database.exclusive { connection in
            switch outcome {
            case .failure:
                _ = try await connection.query(
                    "UPDATE identity_login_failures SET attempt = NULL, failed_ms = ? WHERE attempt = ?",
                    [now.sqliteMilliseconds, .text(attempt.uuidString)]
                )
            case .success:
                _ = try await connection.query(
                    "DELETE FROM identity_login_failures WHERE key = ? OR attempt = ?", [.text("email:" + email.value), .text(attempt.uuidString)]
                )
            case .abandoned:
                _ = try await connection.query("DELETE FROM identity_login_failures WHERE attempt = ?", [.text(attempt.uuidString)])
            }
        }
    }

    public func clearFailures(email: Email, now: Date) async throws {
        try await database.exclusive { connection in
            _ = try await connection.query(
                "DELETE FROM identity_login_failures WHERE key = ? AND attempt IS NULL", [.text("email:" + email.value)]
            )
        }
    }

    public func countMailRequest(client address: String, now: Date) async throws -> ThrottleDecision {
        let limits = limits
        let key = "client:" + address
        return try await database.transaction { connection in
            let entries = try await Self.entries(of: key, since: now.addingTimeInterval(-limits.window), on: connection)
            let decision = limits.decideMailRequest(client: entries, now: now)
            guard decision == .allowed else { return decision }
            _ = try await connection.query(
                "INSERT INTO identity_login_failures (key, failed_ms, attempt) VALUES (?, ?, NULL)", [.text(key), now.sqliteMilliseconds]
            )
            return decision
        }
    }

    /// The failures and attempts in flight of `key` since `since`.
    private static func entries(of key: String, since: Date, on connection: SQLiteConnection) async throws -> [ThrottleEntry] {
        let rows = try await connection.query(
            "SELECT failed_ms, attempt FROM identity_login_failures WHERE key = ? AND failed_ms > ?", [.text(key), since.sqliteMilliseconds]
        )
        return rows.compactMap { row in
            row.column("failed_ms")?.integer.map {
                ThrottleEntry(at: Date(sqliteMilliseconds: $0), attempt: row.column("attempt")?.string.flatMap(UUID.init(uuidString:)))
            }
        }
    }

    /// Deletes failures that left the window; returns how many.
    @discardableResult
    public func purgeExpired(now: Date) async throws -> Int {
        try await database.exclusive { connection in
            try await connection.query(
                "DELETE FROM identity_login_failures WHERE failed_ms <= ? RETURNING 1", [now.addingTimeInterval(-limits.window).sqliteMilliseconds]
            ).count
        }
    }
}
