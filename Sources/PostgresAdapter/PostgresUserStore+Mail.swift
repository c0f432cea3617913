public import IdentityPorts
public import IdentityDomain
public import Foundation
import Logging
import PostgresNIO

// Contract §11 on PostgreSQL (migration 0009): account tokens (`identity_account_tokens`,
// digests only) and the mail outbox (`identity_mail_outbox`), written with the account's
// changes in their transaction, shared by every instance.
//
// - A token is used by `DELETE … WHERE digest AND purpose AND user_id AND expires_at > now
//   RETURNING`: of two uses at once, the second waits for the first's row lock and then finds
//   no row (`IdentityError.invalidToken`, and the transaction rolls back).
// - A `MailLimit` is counted and the writes made in one transaction that first takes a
//   transaction-scoped advisory lock on the limit's kind and recipient (the two-int4 key space,
//   apart from the throttle's and the relay's bigint keys): concurrent requests for one address,
//   on any instance, are decided one after the other, so the limit is exact.
// - A claim is one statement: `UPDATE … SET claimed_until = now + lease WHERE id IN (SELECT …
//   due … ORDER BY created_at, id LIMIT n FOR UPDATE SKIP LOCKED) RETURNING …`. Concurrent
//   claimers skip each other's rows, and one that reads a row another just claimed re-checks
//   it under the row lock and leaves it.
// - Instants are written exact, as whole milliseconds (`instant:`).
extension PostgresUserStore: AccountTokenStore, MailOutbox {
    public func accountToken(digest: Data) async throws -> AccountToken? {
        try await session.run { connection, logger in
            let rows = try await connection.query(
                "SELECT digest, purpose, user_id, email, created_at, expires_at FROM identity_account_tokens WHERE digest = \(digest)",
                logger: logger
            )
            for try await (digest, purpose, user, email, created, expires) in rows.decode((Data, String, UUID, String, Date, Date).self) {
                guard let purpose = AccountTokenPurpose(rawValue: purpose) else { throw PostgresStoreError(sqlState: nil) }
                return AccountToken(
                    digest: digest, purpose: purpose, userID: UserID(user), email: Email(trustedCanonical: email),
                    createdAt: created.roundedToMilliseconds, expiresAt: expires.roundedToMilliseconds
                )
            }
            return nil
        }
    }

    @discardableResult
    public func record(_ writes: AccountWrites, for userID: UserID, events: [IdentityEvent], limit: MailLimit?) async throws -> Bool {
        try await session.run { connection, logger in
            try await connection.withTransaction(logger: logger) { connection in
                if let limit {
                    let key = limit.kind.rawValue + ":" + limit.recipient.value
                    try await connection.query(
                        "SELECT pg_advisory_xact_lock(\(Self.mailLimitLockClass), hashtext(\(key)))", logger: logger
                    )
                    // Read after the lock: whatever an earlier holder wrote has committed.
                    let counted = try await connection.query(
                        """
                        SELECT count(*) FROM identity_mail_outbox
                        WHERE kind = \(limit.kind.rawValue) AND recipient = \(limit.recipient.value) AND created_at >= \(instant: limit.since)
                        """,
                        logger: logger
                    )
                    var count: Int64 = 0
                    for try await value in counted.decode(Int64.self) { count = value }
                    // Nothing written: a redelivered command is decided again, not refused as applied.
                    guard count < limit.max else { return false }
                }
                try await Self.recordCommandMessage(on: connection, logger: logger)
                try await Self.write(writes, for: userID, on: connection, logger: logger)
                try await Self.append(events, on: connection, logger: logger)
                return true
            }
        }
    }

    // MARK: MailOutbox

    public func claimDueMail(limit: Int, now: Date, lease: TimeInterval) async throws -> [MailJob] {
        guard limit > 0 else { return [] }
        return try await session.run { connection, logger in
            let rows = try await connection.query(
                """
                UPDATE identity_mail_outbox SET claimed_until = \(instant: now.addingTimeInterval(lease))
                WHERE id IN (
                    SELECT id FROM identity_mail_outbox
                    WHERE sent_at IS NULL AND failed_at IS NULL AND next_attempt_at <= \(instant: now)
                      AND (claimed_until IS NULL OR claimed_until <= \(instant: now))
                    ORDER BY created_at, id LIMIT \(limit)
                    FOR UPDATE SKIP LOCKED)
                RETURNING \(unescaped: Self.mailColumns)
                """,
                logger: logger
            )
            var jobs: [MailJob] = []
            for try await (id, kind, user, recipient, name, sealed, newEmail, created, attempts)
                in rows.decode((UUID, String, UUID, String, String, String?, String?, Date, Int).self)
            {
                guard let kind = MailKind(rawValue: kind) else { throw PostgresStoreError(sqlState: nil) }
                let mail = OutgoingMail(
                    id: id, kind: kind, userID: UserID(user), recipient: Email(trustedCanonical: recipient),
                    recipientName: DisplayName(trusted: name), sealedToken: sealed, newEmail: newEmail.map(Email.init(trustedCanonical:)),
                    createdAt: created.roundedToMilliseconds
                )
                jobs.append(MailJob(mail: mail, failedAttempts: attempts))
            }
            // RETURNING keeps no order: put the oldest first again, as the selection did.
            return jobs.sorted {
                ($0.mail.createdAt, $0.mail.id.uuidString.lowercased()) < ($1.mail.createdAt, $1.mail.id.uuidString.lowercased())
            }
        }
    }

    public func markMailSent(id: UUID, now: Date) async throws {
        try await session.run { connection, logger in
            try await connection.query(
                """
                UPDATE identity_mail_outbox SET sent_at = \(instant: now), claimed_until = NULL, sealed_token = NULL
                WHERE id = \(id) AND sent_at IS NULL AND failed_at IS NULL
                """,
                logger: logger
            )
        }
    }

    public func markMailFailed(id: UUID, retryAt: Date?, error: String, now: Date) async throws {
        let reason = String(error.prefix(Self.errorLength))
        try await session.run { connection, logger in
            if let retryAt {
                try await connection.query(
                    """
                    UPDATE identity_mail_outbox
                    SET attempts = attempts + 1, next_attempt_at = \(instant: retryAt), claimed_until = NULL, last_error = \(reason)
                    WHERE id = \(id) AND sent_at IS NULL AND failed_at IS NULL
                    """,
                    logger: logger
                )
            } else {
                try await connection.query(
                    """
                    UPDATE identity_mail_outbox
                    SET attempts = attempts + 1, failed_at = \(instant: now), claimed_until = NULL, last_error = \(reason), sealed_token = NULL
                    WHERE id = \(id) AND sent_at IS NULL AND failed_at IS NULL
                    """,
                    logger: logger
                )
            }
        }
    }

    public func mailStatus() async throws -> MailOutboxStatus {
        try await session.run { connection, logger in
            let rows = try await connection.query(
                """
                SELECT (SELECT count(*) FROM identity_mail_outbox WHERE sent_at IS NULL AND failed_at IS NULL),
                       (SELECT count(*) FROM identity_mail_outbox WHERE failed_at IS NOT NULL),
                       (SELECT min(created_at) FROM identity_mail_outbox WHERE sent_at IS NULL AND failed_at IS NULL)
                """,
                logger: logger
            )
            for try await (pending, failed, oldest) in rows.decode((Int64, Int64, Date?).self) {
                return MailOutboxStatus(pending: Int(pending), failed: Int(failed), oldestPendingAt: oldest?.roundedToMilliseconds)
            }
            return MailOutboxStatus(pending: 0, failed: 0, oldestPendingAt: nil)
        }
    }

    /// Deletes mail delivered or given up on that was committed before `cutoff` (keep at least
    /// the longest `MailLimit` window, an hour, so that limits still count it); returns how many.
    @discardableResult
    public func purgeFinishedMail(before cutoff: Date) async throws -> Int {
        try await session.run { connection, logger in
            let rows = try await connection.query(
                """
                WITH gone AS (DELETE FROM identity_mail_outbox
                              WHERE (sent_at IS NOT NULL OR failed_at IS NOT NULL) AND created_at < \(instant: cutoff) RETURNING 1)
                SELECT count(*) FROM gone
                """,
                logger: logger
            )
            for try await count in rows.decode(Int64.self) { return Int(count) }
            return 0
        }
    }

    // MARK: in a write's transaction

    /// The first key of the advisory locks a `MailLimit` takes (two int4 keys: "MA").
    static let mailLimitLockClass: Int32 = 0x4D41

    /// The longest `last_error` kept.
    private static let errorLength = 500

    private static let mailColumns = "id, kind, user_id, recipient, recipient_name, sealed_token, new_email, created_at, attempts"

    /// Applies `writes` of the account `userID` on `connection`, in the caller's transaction, in
    /// the order the port gives: the token used (`IdentityError.invalidToken`, which rolls the
    /// transaction back, when it is not there, of another purpose or account, or expired),
    /// invalidations, tokens issued, mail.
    static func write(_ writes: AccountWrites, for userID: UserID, on connection: PostgresConnection, logger: Logger) async throws {
        if let use = writes.use {
            let used = try await connection.query(
                """
                DELETE FROM identity_account_tokens
                WHERE digest = \(use.digest) AND purpose = \(use.purpose.rawValue) AND user_id = \(userID.uuid) AND expires_at > \(instant: use.now)
                RETURNING user_id
                """,
                logger: logger
            )
            guard try await count(used) == 1 else { throw IdentityError.invalidToken }
        }
        if !writes.invalidate.isEmpty {
            let purposes = writes.invalidate.map(\.rawValue).sorted()
            try await connection.query(
                "DELETE FROM identity_account_tokens WHERE user_id = \(userID.uuid) AND purpose = ANY(\(purposes))", logger: logger
            )
        }
        for token in writes.issue {
            try await connection.query(
                """
                INSERT INTO identity_account_tokens (digest, purpose, user_id, email, created_at, expires_at)
                VALUES (\(token.digest), \(token.purpose.rawValue), \(token.userID.uuid), \(token.email.value),
                        \(instant: token.createdAt), \(instant: token.expiresAt))
                """,
                logger: logger
            )
        }
        for mail in writes.mail {
            try await connection.query(
                """
                INSERT INTO identity_mail_outbox (\(unescaped: mailColumns), next_attempt_at)
                VALUES (\(mail.id), \(mail.kind.rawValue), \(mail.userID.uuid), \(mail.recipient.value), \(mail.recipientName.value),
                        \(mail.sealedToken), \(mail.newEmail?.value), \(instant: mail.createdAt), 0, \(instant: mail.createdAt))
                """,
                logger: logger
            )
        }
    }

    /// Deletes the account's tokens, and its unsent mail that carries one (the link would no
    /// longer work), in the caller's transaction: for a deletion. Notices still go out, and
    /// mail already sent stays for the limits.
    static func forgetTokens(of userID: UserID, on connection: PostgresConnection, logger: Logger) async throws {
        try await connection.query("DELETE FROM identity_account_tokens WHERE user_id = \(userID.uuid)", logger: logger)
        try await connection.query(
            """
            DELETE FROM identity_mail_outbox
            WHERE user_id = \(userID.uuid) AND sealed_token IS NOT NULL AND sent_at IS NULL AND failed_at IS NULL
            """,
            logger: logger
        )
    }
}
