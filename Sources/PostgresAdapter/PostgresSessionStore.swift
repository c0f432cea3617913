public import IdentityPorts
public import IdentityDomain
public import PostgresNIO
public import Foundation
import Logging
import IdentityAdapterSupport

/// Sessions and their refresh-token digests in PostgreSQL (migrations 0006 and 0008), shared by
/// every instance.
///
/// `identity_session_digests` holds every digest a session issued, its current one and the
/// newest replaced ones, keyed by session and generation (migration 0011). A rotation is one statement, a
/// compare-and-swap on the session's row joined to its account's: `UPDATE identity_sessions …
/// FROM identity_users … WHERE id = <the token's session> AND refresh_digest = <presented> AND
/// <open> AND <the account at the expected version> … RETURNING`, which also records the new
/// digest. PostgreSQL checks the condition again on the row as it is once it holds the row's
/// lock: of two refreshes with one token, on one instance or two, the second waits only for
/// the first's statement, then finds the digest replaced and gets the grace (or a reuse). No
/// lock outlives a statement, and no column a rotation changes is indexed, so the row's update
/// stays on its page (HOT) and touches no index. When it rotates nothing, one read says why
/// (the session with its account's version and whether it keeps the digest), and a reuse ends
/// the session with one more conditional `UPDATE`; a digest once replaced never becomes
/// current again, so nothing between the statements can turn a reuse into something else.
///
/// The rotation and `sessionAndAccount(id:)` (the read a refresh does when its token does not
/// say its account) are prepared statements: each connection has PostgreSQL parse and plan
/// them once, not on every refresh. They name their columns, so a migration that adds a
/// column leaves them valid.
///
/// Every change writes its events into `identity_outbox`, the account store's outbox
/// (`PostgresUserStore`, whose relay publishes it), in the change's transaction: an opening
/// with its `session.started`, an end or a reuse with its `session.ended`. A rotation writes
/// none and stays one statement.
public struct PostgresSessionStore: SessionStore {
    private let session: PostgresSession
    private let configuration: SessionConfiguration

    /// Creates the store on `client` with `configuration`; an operation not done within
    /// `timeout` fails with `BackendUnavailable`.
    public init(client: PostgresClient, configuration: SessionConfiguration = SessionConfiguration(),
                timeout: Duration = .seconds(5), logger: Logger = Logger(label: "identity.postgres")) {
        self.init(source: .client(client), configuration: configuration, timeout: timeout, logger: logger)
    }

    /// Creates the store on `pool` (which the host runs) with `configuration`; an operation not
    /// done within `timeout` fails with `BackendUnavailable`.
    public init(pool: PostgresConnectionPool, configuration: SessionConfiguration = SessionConfiguration(),
                timeout: Duration = .seconds(5), logger: Logger = Logger(label: "identity.postgres")) {
        self.init(source: .pool(pool), configuration: configuration, timeout: timeout, logger: logger)
    }

    /// Creates the store on `source` with `configuration`; an operation not done within
    /// `timeout` fails with `BackendUnavailable`.
    public init(source: PostgresConnectionSource, configuration: SessionConfiguration = SessionConfiguration(),
                timeout: Duration = .seconds(5), logger: Logger = Logger(label: "identity.postgres")) {
        self.session = PostgresSession(source: source, timeout: timeout, logger: logger)
        self.configuration = configuration
    }

    public func open(_ opened: Session) async throws {
        try await session.run { connection, logger in
            try await connection.withTransaction(logger: logger) { connection in
                // A taken id breaks the primary key: SessionConflict, and the transaction rolls
                // back.
                try await connection.query(
                    """
                    WITH opened AS (
                        INSERT INTO identity_sessions (\(unescaped: Self.columns))
                        VALUES (\(opened.id.uuid), \(opened.userID.uuid), \(opened.createdAt), \(opened.lastUsedAt), \(opened.userAgent),
                            \(opened.clientAddress), \(opened.accountVersion), \(opened.generation), \(opened.refreshDigest.bytes),
                            \(opened.previousDigest?.bytes), \(opened.rotatedAt), \(opened.graceBlob), \(opened.endedAt),
                            \(opened.endReason?.rawValue))
                        RETURNING id, refresh_digest, generation
                    )
                    INSERT INTO identity_session_digests (digest, session_id, generation)
                    SELECT refresh_digest, id, generation FROM opened
                    """,
                    logger: logger
                )
                try await PostgresUserStore.append([opened.startedEvent()], on: connection, logger: logger)
            }
        }
    }

    public func rotate(
        session id: SessionID, presented: RefreshDigest, replacement: RefreshDigest, graceBlob: Data, accountVersion: Int64,
        revokingUntil: Date?, now: Date
    ) async throws -> RotationOutcome {
        let configuration = configuration
        let since = configuration.openSince(now: now)
        let at = now.truncatedToMilliseconds
        let kept = Int64(configuration.replacedDigestsKept)
        return try await session.run { connection, logger in
            // The compare-and-swap, which also checks the account's version: one statement on
            // the session's row (found by its primary key), if the digest is still its current
            // one (checked again on the row as it is once its lock is had). SET reads the row
            // as it was, RETURNING gives it as written. No column it changes is indexed: a HOT
            // update. The new digest is recorded as issued.
            let rotated = try await Self.prepared(
                RotateStatement(
                    id: id.uuid, presented: presented.bytes, replacement: replacement.bytes, at: at, graceBlob: graceBlob,
                    accountVersion: accountVersion, since: since
                ),
                on: connection, logger: logger
            )
            for try await session in rotated { return .rotated(session) }

            // Not rotated: what the rule says of the session as it is now (the presented digest
            // is not current, the session not open, or its account moved on). A kept digest is
            // one of the newest `kept` replaced ones, whatever the lazy trim left.
            let rows = try await connection.query(
                """
                SELECT \(unescaped: Self.columns("s")), u.version,
                    EXISTS (SELECT 1 FROM identity_session_digests d WHERE d.digest = \(presented.bytes) AND d.session_id = s.id
                            AND d.generation >= s.generation - \(kept))
                FROM identity_sessions s LEFT JOIN identity_users u ON u.id = s.user_id WHERE s.id = \(id.uuid)
                """,
                logger: logger
            )
            var found: (Session, Int?, Bool)?
            for try await row in rows {
                let cells = row.makeRandomAccess()
                found = (try Self.session(from: cells), try cells[Self.columnCount].decode(Int?.self),
                         try cells[Self.columnCount + 1].decode(Bool.self))
            }
            guard let (session, version, isKept) = found else { return .unknown }
            let rotation = configuration.rotation(
                of: session, presented: presented, isKept: isKept, accountVersion: version, replacement: replacement,
                graceBlob: graceBlob, expectedAccountVersion: accountVersion, now: now
            )
            // The grace, an account that moved on, or nothing; `.rotated` here means the
            // session became open or current between the two statements, which a digest once
            // replaced never does: asked again by the caller as a moved account would be.
            switch rotation.outcome {
            case .reused: break
            case .rotated: return .accountChanged(version: version)
            default: return rotation.outcome
            }
            return try await connection.withTransaction(logger: logger) { connection in
                let ended = try await Self.first(connection.query(
                    """
                    UPDATE identity_sessions SET ended_at = \(at), end_reason = \(SessionEndReason.reuse.rawValue)
                    WHERE id = \(session.id.uuid) AND ended_at IS NULL
                        AND last_used_at >= \(since.lastUsed) AND created_at >= \(since.created)
                    RETURNING \(unescaped: Self.columns)
                    """,
                    logger: logger
                ))
                // Nothing returned: it ended (or lapsed) meanwhile, and a session ends once.
                guard let ended else { return RotationOutcome.unknown }
                let outcome = RotationOutcome.reused(ended)
                try await PostgresUserStore.append(outcome.events(), on: connection, logger: logger)
                if let revokingUntil {
                    try await PostgresRevocationStore.write(
                        [.session(ended.id, userID: ended.userID, until: revokingUntil)], on: connection, logger: logger
                    )
                }
                return outcome
            }
        }
    }

    public func session(id: SessionID) async throws -> Session? {
        try await session.run { connection, logger in
            try await Self.first(connection.query(
                "SELECT \(unescaped: Self.columns) FROM identity_sessions WHERE id = \(id.uuid)", logger: logger
            ))
        }
    }

    /// One statement: the session's row joined to its account's (`identity_users`, the account
    /// store's table in the same database), if any.
    public func sessionAndAccount(id: SessionID) async throws -> SessionAndAccount? {
        try await session.run { connection, logger in
            for try await found in try await Self.prepared(SessionAndAccountStatement(id: id.uuid), on: connection, logger: logger) {
                return found
            }
            return nil
        }
    }

    public func sessions(of userID: UserID, now: Date) async throws -> [Session] {
        let since = configuration.openSince(now: now)
        return try await session.run { connection, logger in
            try await Self.all(connection.query(
                """
                SELECT \(unescaped: Self.columns) FROM identity_sessions
                WHERE user_id = \(userID.uuid) AND ended_at IS NULL AND last_used_at >= \(since.lastUsed) AND created_at >= \(since.created)
                ORDER BY created_at DESC, id DESC
                """,
                logger: logger
            ))
        }
    }

    public func end(id: SessionID, userID: UserID, reason: SessionEndReason, now: Date) async throws -> Session? {
        let since = configuration.openSince(now: now)
        let at = now.truncatedToMilliseconds
        return try await session.run { connection, logger in
            try await connection.withTransaction(logger: logger) { connection in
                let ended = try await Self.first(connection.query(
                    """
                    UPDATE identity_sessions SET ended_at = \(at), end_reason = \(reason.rawValue)
                    WHERE id = \(id.uuid) AND user_id = \(userID.uuid)
                        AND ended_at IS NULL AND last_used_at >= \(since.lastUsed) AND created_at >= \(since.created)
                    RETURNING \(unescaped: Self.columns)
                    """,
                    logger: logger
                ))
                try await PostgresUserStore.append(ended.flatMap { $0.endedEvent() }.map { [$0] } ?? [], on: connection, logger: logger)
                return ended
            }
        }
    }

    public func endAll(userID: UserID, except: SessionID?, reason: SessionEndReason, now: Date) async throws -> [Session] {
        let since = configuration.openSince(now: now)
        let at = now.truncatedToMilliseconds
        return try await session.run { connection, logger in
            try await connection.withTransaction(logger: logger) { connection in
                let ended = try await Self.all(connection.query(
                    """
                    UPDATE identity_sessions SET ended_at = \(at), end_reason = \(reason.rawValue)
                    WHERE user_id = \(userID.uuid) AND id IS DISTINCT FROM \(except?.uuid)
                        AND ended_at IS NULL AND last_used_at >= \(since.lastUsed) AND created_at >= \(since.created)
                    RETURNING \(unescaped: Self.columns)
                    """,
                    logger: logger
                )).sorted { ($0.createdAt, $0.id.description) > ($1.createdAt, $1.id.description) }
                try await PostgresUserStore.append(ended.compactMap { $0.endedEvent() }, on: connection, logger: logger)
                return ended
            }
        }
    }

    /// Also trims every session's kept digests to the newest `replacedDigestsKept` replaced
    /// ones (the rotation does not: see `RotateStatement`; meanwhile a lookup counts only
    /// those), looking only at sessions rotated more often than that.
    @discardableResult
    public func purgeExpired(now: Date) async throws -> Int {
        let since = configuration.openSince(now: now)
        let kept = Int64(configuration.replacedDigestsKept)
        return try await session.run { connection, logger in
            try await connection.withTransaction(logger: logger) { connection in
                let rows = try await connection.query(
                    """
                    WITH gone AS (
                        DELETE FROM identity_sessions WHERE last_used_at < \(since.lastUsed) OR created_at < \(since.created) RETURNING id
                    ), digests AS (
                        DELETE FROM identity_session_digests d USING gone g WHERE d.session_id = g.id
                    )
                    SELECT count(*) FROM gone
                    """,
                    logger: logger
                )
                var purged = 0
                for try await count in rows.decode(Int64.self) { purged = Int(count) }
                try await connection.query(
                    """
                    DELETE FROM identity_session_digests d USING identity_sessions s
                    WHERE s.generation > \(kept) AND d.session_id = s.id AND d.generation < s.generation - \(kept)
                    """,
                    logger: logger
                )
                return purged
            }
        }
    }

    // MARK: prepared statements

    /// Runs `statement`, prepared on `connection` the first time. A refusal by the server
    /// closes the connection (the pool opens another): postgres-nio keeps a failed preparation
    /// for the connection's life, and PostgreSQL refuses a prepared plan whose result a
    /// migration changed, so the connection would fail every later refresh.
    private static func prepared<Statement: PostgresPreparedStatement>(
        _ statement: Statement, on connection: PostgresConnection, logger: Logger
    ) async throws -> AsyncThrowingMapSequence<PostgresRowSequence, Statement.Row> {
        do {
            return try await connection.execute(statement, logger: logger)
        } catch let error as PSQLError where error.code == .server {
            try? await connection.close()
            throw error
        }
    }

    /// `rotate`'s compare-and-swap, run on every refresh, prepared once per connection:
    /// PostgreSQL then neither parses nor plans it again (most of its CPU per refresh).
    /// `$1` the session, `$2` the presented digest, `$3` the replacement, `$4` the time, `$5`
    /// the grace blob, `$6` the account's version, `$7`/`$8` the idle and absolute limits.
    /// Trimming the kept digests is `purgeExpired`'s: a delete in this statement cost more
    /// than the rest of it (it left a dead index entry at the head of the session's range for
    /// every later trim to walk over until a vacuum, and a plan that scanned the table was one
    /// statistics change away). See `rotate` for what each part does.
    private struct RotateStatement: PostgresPreparedStatement {
        static let name = "identity_session_rotate_v2"
        static let sql = """
            WITH rotated AS (
                UPDATE identity_sessions s SET refresh_digest = $3, previous_digest = s.refresh_digest,
                    rotated_at = $4, grace_blob = $5, last_used_at = $4, generation = s.generation + 1, account_version = $6
                FROM identity_users u
                WHERE s.id = $1 AND s.refresh_digest = $2 AND s.ended_at IS NULL AND s.last_used_at >= $7 AND s.created_at >= $8
                    AND u.id = s.user_id AND u.version = $6
                RETURNING s.id, s.user_id, s.created_at, s.user_agent, s.client_address, s.generation
            ), issued AS (
                INSERT INTO identity_session_digests (digest, session_id, generation)
                SELECT $3, id, generation FROM rotated
            )
            SELECT user_id, created_at, user_agent, client_address, generation FROM rotated
            """

        let id: UUID
        let presented: Data
        let replacement: Data
        let at: Date
        let graceBlob: Data
        let accountVersion: Int64
        let since: (lastUsed: Date, created: Date)

        func makeBindings() throws -> PostgresBindings {
            var bindings = PostgresBindings(capacity: 8)
            bindings.append(id)
            try bindings.append(presented)
            try bindings.append(replacement)
            bindings.append(at)
            try bindings.append(graceBlob)
            bindings.append(accountVersion)
            bindings.append(since.lastUsed)
            bindings.append(since.created)
            return bindings
        }

        /// The session as written: what the statement set, and the columns it returned (only
        /// those it did not set, so that the grace blob and the digests do not travel back).
        func decodeRow(_ row: PostgresRow) throws -> Session {
            let cells = row.makeRandomAccess()
            guard let replaced = RefreshDigest(presented), let current = RefreshDigest(replacement) else {
                throw PostgresStoreError(sqlState: nil)
            }
            return Session(
                id: SessionID(id), userID: UserID(try cells[0].decode(UUID.self)),
                createdAt: try cells[1].decode(Date.self).roundedToMilliseconds, lastUsedAt: at, userAgent: try cells[2].decode(String?.self),
                clientAddress: try cells[3].decode(String?.self), accountVersion: accountVersion, generation: try cells[4].decode(Int64.self),
                refreshDigest: current, previousDigest: replaced, rotatedAt: at, graceBlob: graceBlob, endedAt: nil, endReason: nil
            )
        }
    }

    /// `sessionAndAccount`'s read, run on every refresh, prepared once per connection.
    private struct SessionAndAccountStatement: PostgresPreparedStatement {
        static let name = "identity_session_and_account_v1"
        static let sql = """
            SELECT \(PostgresSessionStore.columns("s")), u.version FROM identity_sessions s
            LEFT JOIN identity_users u ON u.id = s.user_id WHERE s.id = $1
            """

        let id: UUID

        func makeBindings() -> PostgresBindings {
            var bindings = PostgresBindings(capacity: 1)
            bindings.append(id)
            return bindings
        }

        func decodeRow(_ row: PostgresRow) throws -> SessionAndAccount {
            let cells = row.makeRandomAccess()
            return SessionAndAccount(
                session: try PostgresSessionStore.session(from: cells),
                accountVersion: try cells[PostgresSessionStore.columnCount].decode(Int?.self)
            )
        }
    }

    // MARK: rows

    private static let columns = columns(nil)

    private static func columns(_ table: String?) -> String {
        let prefix = table.map { $0 + "." } ?? ""
        return ["id", "user_id", "created_at", "last_used_at", "user_agent", "client_address", "account_version", "generation", "refresh_digest",
                "previous_digest", "rotated_at", "grace_blob", "ended_at", "end_reason"]
            .map { prefix + $0 }.joined(separator: ", ")
    }

    private static func first(_ rows: PostgresRowSequence) async throws -> Session? {
        try await all(rows).first
    }

    private static func all(_ rows: PostgresRowSequence) async throws -> [Session] {
        var sessions: [Session] = []
        for try await row in rows { sessions.append(try session(from: row.makeRandomAccess())) }
        return sessions
    }

    /// How many columns `columns` names.
    private static let columnCount = 14

    /// The session in the first `columnCount` columns of `row`, in the order of `columns`.
    private static func session(from cells: PostgresRandomAccessRow) throws -> Session {
        guard let digest = RefreshDigest(try cells[8].decode(Data.self)) else { throw PostgresStoreError(sqlState: nil) }
        return Session(
            id: SessionID(try cells[0].decode(UUID.self)), userID: UserID(try cells[1].decode(UUID.self)),
            createdAt: try cells[2].decode(Date.self).roundedToMilliseconds, lastUsedAt: try cells[3].decode(Date.self).roundedToMilliseconds,
            userAgent: try cells[4].decode(String?.self), clientAddress: try cells[5].decode(String?.self),
            accountVersion: try cells[6].decode(Int64.self), generation: try cells[7].decode(Int64.self), refreshDigest: digest,
            previousDigest: try cells[9].decode(Data?.self).flatMap(RefreshDigest.init),
            rotatedAt: try cells[10].decode(Date?.self)?.roundedToMilliseconds, graceBlob: try cells[11].decode(Data?.self),
            endedAt: try cells[12].decode(Date?.self)?.roundedToMilliseconds,
            endReason: try cells[13].decode(String?.self).flatMap(SessionEndReason.init(rawValue:))
        )
    }
}
