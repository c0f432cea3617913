public import IdentityPorts
public import IdentityDomain
public import Foundation
import SQLiteNIO
import IdentityAdapterSupport

/// Sessions and their refresh-token digests in SQLite (migration 0004).
///
/// A rotation reads the session a token names, with its account's version and whether it
/// keeps the presented digest, and writes what the rule decides in one
/// `BEGIN IMMEDIATE` transaction, on the database's one connection: two refreshes with one
/// token are applied one after the other, and the second finds the token just replaced.
/// Every change writes its events into `identity_outbox`, the account store's outbox
/// (`SQLiteUserStore`, which relays it), in its own transaction.
public struct SQLiteSessionStore: SessionStore {
    private let database: IdentitySQLiteDatabase
    private let configuration: SessionConfiguration

    /// Creates the store on `database` with `configuration`.
    public init(database: IdentitySQLiteDatabase, configuration: SessionConfiguration = SessionConfiguration()) {
        self.database = database
        self.configuration = configuration
    }

    public func open(_ session: Session) async throws {
        let binds = Self.binds(of: session)
        try await database.transaction { connection in
            let replaced = try await connection.query(
                "SELECT 1 FROM identity_session_digests WHERE digest = ?", [Self.blob(session.refreshDigest.bytes)]
            )
            guard replaced.isEmpty else { throw SessionConflict() }
            do {
                _ = try await connection.query(
                    """
                    INSERT INTO identity_sessions (\(Self.columns))
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                    binds
                )
            } catch let error as SQLiteError where error.message.contains("UNIQUE constraint failed: identity_sessions") {
                throw SessionConflict()
            }
            try await SQLiteUserStore.append([session.startedEvent()], on: connection)
        }
    }

    public func rotate(
        session id: SessionID, presented: RefreshDigest, replacement: RefreshDigest, graceBlob: Data, accountVersion: Int64,
        revokingUntil: Date?, now: Date
    ) async throws -> RotationOutcome {
        let configuration = configuration
        return try await database.transaction { connection in
            let found = try await connection.query(
                """
                SELECT \(Self.columns("s")), u.version AS account_version_now,
                    EXISTS (SELECT 1 FROM identity_session_digests d WHERE d.digest = ?2 AND d.session_id = s.id) AS kept
                FROM identity_sessions s LEFT JOIN identity_users u ON u.id = s.user_id WHERE s.id = ?1
                """,
                [.text(id.description), Self.blob(presented.bytes)]
            )
            guard let row = found.first else { return .unknown }
            let session = try Self.session(from: row)
            let rotation = configuration.rotation(
                of: session, presented: presented, isKept: row.column("kept")?.integer == 1,
                accountVersion: row.column("account_version_now")?.integer, replacement: replacement, graceBlob: graceBlob,
                expectedAccountVersion: accountVersion, now: now
            )
            guard let stored = rotation.stored else { return rotation.outcome }
            if case .rotated = rotation.outcome {
                let taken = try await connection.query(
                    "SELECT 1 FROM identity_session_digests WHERE digest = ?", [Self.blob(replacement.bytes)]
                )
                guard taken.isEmpty else { throw SessionConflict() }
                do {
                    _ = try await connection.query(
                        """
                        UPDATE identity_sessions SET refresh_digest = ?, previous_digest = ?, rotated_ms = ?, grace_blob = ?,
                            last_used_ms = ?, generation = ?, account_version = ?
                        WHERE id = ?
                        """,
                        [Self.blob(stored.refreshDigest.bytes), Self.blob(presented.bytes), stored.rotatedAt?.sqliteMilliseconds ?? .null,
                         Self.blob(graceBlob), stored.lastUsedAt.sqliteMilliseconds, .integer(Int(stored.generation)),
                         .integer(Int(stored.accountVersion)), .text(session.id.description)]
                    )
                } catch let error as SQLiteError where error.message.contains("UNIQUE constraint failed: identity_sessions") {
                    throw SessionConflict()
                }
                _ = try await connection.query(
                    "INSERT INTO identity_session_digests (digest, session_id, generation) VALUES (?, ?, ?)",
                    [Self.blob(presented.bytes), .text(session.id.description), .integer(Int(session.generation))]
                )
                // Keep the newest `replacedDigestsKept`: generations up to the one just replaced.
                _ = try await connection.query(
                    "DELETE FROM identity_session_digests WHERE session_id = ? AND generation <= ?",
                    [.text(session.id.description), .integer(Int(session.generation) - configuration.replacedDigestsKept)]
                )
            } else {
                try await Self.markEnded(stored, on: connection)
                if let revokingUntil {
                    try await SQLiteRevocationStore.write([.session(stored.id, userID: stored.userID, until: revokingUntil)], on: connection)
                }
            }
            try await SQLiteUserStore.append(rotation.outcome.events(), on: connection)
            return rotation.outcome
        }
    }

    public func session(id: SessionID) async throws -> Session? {
        try await database.exclusive { connection in
            try await connection.query("SELECT \(Self.columns) FROM identity_sessions WHERE id = ?", [.text(id.description)])
                .first.map(Self.session(from:))
        }
    }

    /// One statement: the session's row joined to its account's (`identity_users`, the account
    /// store's table in the same database), if any.
    public func sessionAndAccount(id: SessionID) async throws -> SessionAndAccount? {
        try await database.exclusive { connection in
            try await connection.query(
                """
                SELECT \(Self.columns("s")), u.version AS account_version_now FROM identity_sessions s
                LEFT JOIN identity_users u ON u.id = s.user_id WHERE s.id = ?
                """,
                [.text(id.description)]
            ).first.map { row in
                SessionAndAccount(session: try Self.session(from: row), accountVersion: row.column("account_version_now")?.integer)
            }
        }
    }

    public func sessions(of userID: UserID, now: Date) async throws -> [Session] {
        let since = configuration.openSince(now: now)
        return try await database.exclusive { connection in
            try await connection.query(
                """
                SELECT \(Self.columns) FROM identity_sessions
                WHERE user_id = ? AND ended_ms IS NULL AND last_used_ms >= ? AND created_ms >= ?
                ORDER BY created_ms DESC, id DESC
                """,
                [.text(userID.description), since.lastUsed.sqliteMilliseconds, since.created.sqliteMilliseconds]
            ).map(Self.session(from:))
        }
    }

    public func end(id: SessionID, userID: UserID, reason: SessionEndReason, now: Date) async throws -> Session? {
        try await endOpen(where: "id = ? AND user_id = ?", [.text(id.description), .text(userID.description)], reason: reason, now: now).first
    }

    public func endAll(userID: UserID, except: SessionID?, reason: SessionEndReason, now: Date) async throws -> [Session] {
        if let except {
            return try await endOpen(where: "user_id = ? AND id <> ?", [.text(userID.description), .text(except.description)], reason: reason, now: now)
        }
        return try await endOpen(where: "user_id = ?", [.text(userID.description)], reason: reason, now: now)
    }

    /// Ends the open sessions that `condition` selects, with their `session.ended` events in the
    /// same transaction; returns them as ended, newest first.
    private func endOpen(where condition: String, _ binds: [SQLiteData], reason: SessionEndReason, now: Date) async throws -> [Session] {
        let since = configuration.openSince(now: now)
        return try await database.transaction { connection in
            let ended = try await connection.query(
                """
                UPDATE identity_sessions SET ended_ms = ?, end_reason = ?
                WHERE \(condition) AND ended_ms IS NULL AND last_used_ms >= ? AND created_ms >= ?
                RETURNING \(Self.columns)
                """,
                [now.truncatedToMilliseconds.sqliteMilliseconds, .text(reason.rawValue)] + binds
                    + [since.lastUsed.sqliteMilliseconds, since.created.sqliteMilliseconds]
            ).map(Self.session(from:)).sorted { ($0.createdAt, $0.id.description) > ($1.createdAt, $1.id.description) }
            try await SQLiteUserStore.append(ended.compactMap { $0.endedEvent() }, on: connection)
            return ended
        }
    }

    @discardableResult
    public func purgeExpired(now: Date) async throws -> Int {
        let since = configuration.openSince(now: now)
        return try await database.transaction { connection in
            let binds = [since.lastUsed.sqliteMilliseconds, since.created.sqliteMilliseconds]
            _ = try await connection.query(
                """
                DELETE FROM identity_session_digests WHERE session_id IN (
                    SELECT id FROM identity_sessions WHERE last_used_ms < ? OR created_ms < ?)
                """,
                binds
            )
            return try await connection.query(
                "DELETE FROM identity_sessions WHERE last_used_ms < ? OR created_ms < ? RETURNING 1", binds
            ).count
        }
    }

    // MARK: rows

    private static let columns = columns(nil)

    private static func columns(_ table: String?) -> String {
        let prefix = table.map { $0 + "." } ?? ""
        return ["id", "user_id", "created_ms", "last_used_ms", "user_agent", "client_address", "account_version", "generation", "refresh_digest",
                "previous_digest", "rotated_ms", "grace_blob", "ended_ms", "end_reason"]
            .map { prefix + $0 }.joined(separator: ", ")
    }

    /// The values of `session`, in the order of `columns`.
    private static func binds(of session: Session) -> [SQLiteData] {
        func text(_ value: String?) -> SQLiteData { value.map(SQLiteData.text) ?? .null }
        func instant(_ value: Date?) -> SQLiteData { value?.sqliteMilliseconds ?? .null }
        func bytes(_ value: Data?) -> SQLiteData { value.map(blob) ?? .null }
        let identity: [SQLiteData] = [.text(session.id.description), .text(session.userID.description)]
        let use: [SQLiteData] = [instant(session.createdAt), instant(session.lastUsedAt), text(session.userAgent), text(session.clientAddress),
                                 .integer(Int(session.accountVersion))]
        let rotation: [SQLiteData] = [.integer(Int(session.generation)), bytes(session.refreshDigest.bytes),
                                      bytes(session.previousDigest?.bytes), instant(session.rotatedAt), bytes(session.graceBlob)]
        let end: [SQLiteData] = [instant(session.endedAt), text(session.endReason?.rawValue)]
        return identity + use + rotation + end
    }

    private static func markEnded(_ session: Session, on connection: SQLiteConnection) async throws {
        _ = try await connection.query(
            "UPDATE identity_sessions SET ended_ms = ?, end_reason = ? WHERE id = ?",
            [session.endedAt?.sqliteMilliseconds ?? .null, session.endReason.map { .text($0.rawValue) } ?? .null,
             .text(session.id.description)]
        )
    }

    private static func blob(_ data: Data) -> SQLiteData {
        data.sqliteData ?? .null
    }

    private static func session(from row: SQLiteRow) throws -> Session {
        func data(_ column: String) -> Data? { row.column(column).flatMap(Data.init(sqliteData:)) }
        func instant(_ column: String) -> Date? { row.column(column)?.integer.map { Date(sqliteMilliseconds: Int($0)) } }
        func text(_ column: String) -> String? { row.column(column)?.string }
        guard let id = text("id").flatMap(SessionID.init), let user = text("user_id").flatMap(UserID.init),
              let created = instant("created_ms"), let lastUsed = instant("last_used_ms"),
              let generation = row.column("generation")?.integer, let accountVersion = row.column("account_version")?.integer,
              let digest = data("refresh_digest").flatMap(RefreshDigest.init)
        else { throw SQLiteStoreError(description: "a session row does not decode") }
        let reason = text("end_reason")
        return Session(
            id: id, userID: user, createdAt: created, lastUsedAt: lastUsed, userAgent: text("user_agent"),
            clientAddress: text("client_address"), accountVersion: Int64(accountVersion), generation: Int64(generation), refreshDigest: digest,
            previousDigest: data("previous_digest").flatMap(RefreshDigest.init), rotatedAt: instant("rotated_ms"),
            graceBlob: data("grace_blob"), endedAt: instant("ended_ms"), endReason: reason.flatMap(SessionEndReason.init(rawValue:))
        )
    }
}
