public import IdentityPorts
public import IdentityDomain
public import Foundation
import SQLiteNIO

// Contract §11 in SQLite (migration 0006): account tokens (`identity_account_tokens`, digests
// only) and the mail outbox (`identity_mail_outbox`), written with the account's changes in
// their transaction. One connection serves the process, one unit of work at a time, so a claim
// and a limit's count are exact without further locking.
extension SQLiteUserStore: AccountTokenStore, MailOutbox {
    public func accountToken(digest: Data) async throws -> AccountToken? {
        try await database.exclusive { connection in
            try await connection.query(
                "SELECT digest, purpose, user_id, email, created_ms, expires_ms FROM identity_account_tokens WHERE digest = ?",
                [Self.blob(digest)]
            ).first.map(Self.token(from:))
        }
    }

    @discardableResult
    public func record(_ writes: AccountWrites, for userID: UserID, events: [IdentityEvent], limit: MailLimit?) async throws -> Bool {
        try await database.transaction { connection in
            if let limit {
                let counted = try await connection.query(
                    "SELECT count(*) AS n FROM identity_mail_outbox WHERE kind = ? AND recipient = ? AND created_ms >= ?",
                    [.text(limit.kind.rawValue), .text(limit.recipient.value), limit.since.sqliteMilliseconds]
                )
                // Nothing written: a redelivered command is decided again, not refused as applied.
                guard (counted.first?.column("n")?.integer ?? 0) < limit.max else { return false }
            }
            try await Self.recordCommandMessage(on: connection)
            try await Self.write(writes, for: userID, on: connection)
            try await Self.append(events, on: connection)
            return true
        }
    }

    // MARK: MailOutbox

    public func claimDueMail(limit: Int, now: Date, lease: TimeInterval) async throws -> [MailJob] {
        guard limit > 0 else { return [] }
        return try await database.exclusive { connection in
            let rows = try await connection.query(
                """
                UPDATE identity_mail_outbox SET claimed_until_ms = ?1
                WHERE id IN (SELECT id FROM identity_mail_outbox
                             WHERE sent_ms IS NULL AND failed_ms IS NULL AND next_attempt_ms <= ?2
                               AND (claimed_until_ms IS NULL OR claimed_until_ms <= ?2)
                             ORDER BY created_ms, id LIMIT ?3)
                RETURNING \(Self.mailColumns)
                """,
                [now.addingTimeInterval(lease).sqliteMilliseconds, now.sqliteMilliseconds, .integer(limit)]
            )
            // RETURNING keeps no order: put the oldest first again, as the selection did.
            return try rows.map { (try Self.job(from: $0), $0.column("id")?.string ?? "") }
                .sorted { ($0.0.mail.createdAt, $0.1) < ($1.0.mail.createdAt, $1.1) }
                .map(\.0)
        }
    }

    public func markMailSent(id: UUID, now: Date) async throws {
        try await database.exclusive { connection in
            _ = try await connection.query(
                """
                UPDATE identity_mail_outbox SET sent_ms = ?, claimed_until_ms = NULL, sealed_token = NULL
                WHERE id = ? AND sent_ms IS NULL AND failed_ms IS NULL
                """,
                [now.sqliteMilliseconds, .text(Self.text(id))]
            )
        }
    }

    public func markMailFailed(id: UUID, retryAt: Date?, error: String, now: Date) async throws {
        let reason = SQLiteData.text(String(error.prefix(Self.errorLength)))
        try await database.exclusive { connection in
            if let retryAt {
                _ = try await connection.query(
                    """
                    UPDATE identity_mail_outbox SET attempts = attempts + 1, next_attempt_ms = ?, claimed_until_ms = NULL, last_error = ?
                    WHERE id = ? AND sent_ms IS NULL AND failed_ms IS NULL
                    """,
                    [retryAt.sqliteMilliseconds, reason, .text(Self.text(id))]
                )
            } else {
                _ = try await connection.query(
                    """
                    UPDATE identity_mail_outbox SET attempts = attempts + 1, failed_ms = ?, claimed_until_ms = NULL, last_error = ?,
                        sealed_token = NULL
                    WHERE id = ? AND sent_ms IS NULL AND failed_ms IS NULL
                    """,
                    [now.sqliteMilliseconds, reason, .text(Self.text(id))]
                )
            }
        }
    }

    public func mailStatus() async throws -> MailOutboxStatus {
        try await database.exclusive { connection in
            let row = try await connection.query(
                """
                SELECT (SELECT count(*) FROM identity_mail_outbox WHERE sent_ms IS NULL AND failed_ms IS NULL) AS pending,
                       (SELECT min(created_ms) FROM identity_mail_outbox WHERE sent_ms IS NULL AND failed_ms IS NULL) AS oldest,
                       (SELECT count(*) FROM identity_mail_outbox WHERE failed_ms IS NOT NULL) AS failed
                """
            ).first
            return MailOutboxStatus(
                pending: row?.column("pending")?.integer ?? 0, failed: row?.column("failed")?.integer ?? 0,
                oldestPendingAt: row?.column("oldest")?.integer.map { Date(sqliteMilliseconds: $0) }
            )
        }
    }

    /// Deletes mail delivered or given up on that was committed before `cutoff` (keep at least
    /// the longest `MailLimit` window, an hour, so that limits still count it); returns how many.
    @discardableResult
    public func purgeFinishedMail(before cutoff: Date) async throws -> Int {
        try await database.exclusive { connection in
            try await connection.query(
                "DELETE FROM identity_mail_outbox WHERE (sent_ms IS NOT NULL OR failed_ms IS NOT NULL) AND created_ms < ? RETURNING 1",
                [cutoff.sqliteMilliseconds]
            ).count
        }
    }

    // MARK: in a write's transaction

    /// The longest `last_error` kept.
    private static let errorLength = 500

    /// Applies `writes` of the account `userID` on `connection`, in the caller's transaction, in
    /// the order the port gives: the token used (`IdentityError.invalidToken`, which rolls the
    /// transaction back, when it is not there, of another purpose or account, or expired),
    /// invalidations, tokens issued, mail.
    static func write(_ writes: AccountWrites, for userID: UserID, on connection: SQLiteConnection) async throws {
        if let use = writes.use {
            let used = try await connection.query(
                "DELETE FROM identity_account_tokens WHERE digest = ? AND purpose = ? AND user_id = ? AND expires_ms > ? RETURNING 1",
                [blob(use.digest), .text(use.purpose.rawValue), .text(userID.description), use.now.sqliteMilliseconds]
            )
            guard !used.isEmpty else { throw IdentityError.invalidToken }
        }
        if !writes.invalidate.isEmpty {
            let purposes = writes.invalidate.map(\.rawValue).sorted()
            let marks = Array(repeating: "?", count: purposes.count).joined(separator: ", ")
            _ = try await connection.query(
                "DELETE FROM identity_account_tokens WHERE user_id = ? AND purpose IN (\(marks))",
                [.text(userID.description)] + purposes.map(SQLiteData.text)
            )
        }
        for token in writes.issue {
            _ = try await connection.query(
                "INSERT INTO identity_account_tokens (digest, purpose, user_id, email, created_ms, expires_ms) VALUES (?, ?, ?, ?, ?, ?)",
                [blob(token.digest), .text(token.purpose.rawValue), .text(token.userID.description), .text(token.email.value),
                 token.createdAt.sqliteMilliseconds, token.expiresAt.sqliteMilliseconds]
            )
        }
        for mail in writes.mail {
            _ = try await connection.query(
                """
                INSERT INTO identity_mail_outbox (\(mailColumns), next_attempt_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?)
                """,
                [.text(text(mail.id)), .text(mail.kind.rawValue), .text(mail.userID.description), .text(mail.recipient.value),
                 .text(mail.recipientName.value), mail.sealedToken.map(SQLiteData.text) ?? .null,
                 mail.newEmail.map { .text($0.value) } ?? .null, mail.createdAt.sqliteMilliseconds, mail.createdAt.sqliteMilliseconds]
            )
        }
    }

    /// Deletes the account's tokens, and its unsent mail that carries one (the link would no
    /// longer work), in the caller's transaction: for a deletion. Notices still go out, and
    /// mail already sent stays for the limits.
    static func forgetTokens(of userID: UserID, on connection: SQLiteConnection) async throws {
        _ = try await connection.query("DELETE FROM identity_account_tokens WHERE user_id = ?", [.text(userID.description)])
        _ = try await connection.query(
            "DELETE FROM identity_mail_outbox WHERE user_id = ? AND sealed_token IS NOT NULL AND sent_ms IS NULL AND failed_ms IS NULL",
            [.text(userID.description)]
        )
    }

    // MARK: rows

    private static let mailColumns =
        "id, kind, user_id, recipient, recipient_name, sealed_token, new_email, created_ms, attempts"

    private static func text(_ id: UUID) -> String { id.uuidString.lowercased() }

    private static func blob(_ data: Data) -> SQLiteData { data.sqliteData ?? .null }

    private static func token(from row: SQLiteRow) throws -> AccountToken {
        guard let digest = row.column("digest").flatMap(Data.init(sqliteData:)),
              let purpose = row.column("purpose")?.string.flatMap(AccountTokenPurpose.init(rawValue:)),
              let user = row.column("user_id")?.string.flatMap(UserID.init), let email = row.column("email")?.string,
              let created = row.column("created_ms")?.integer, let expires = row.column("expires_ms")?.integer
        else { throw SQLiteStoreError(description: "an account token row does not decode") }
        return AccountToken(
            digest: digest, purpose: purpose, userID: user, email: Email(trustedCanonical: email),
            createdAt: Date(sqliteMilliseconds: created), expiresAt: Date(sqliteMilliseconds: expires)
        )
    }

    private static func job(from row: SQLiteRow) throws -> MailJob {
        guard let id = row.column("id")?.string.flatMap(UUID.init(uuidString:)),
              let kind = row.column("kind")?.string.flatMap(MailKind.init(rawValue:)),
              let user = row.column("user_id")?.string.flatMap(UserID.init), let recipient = row.column("recipient")?.string,
              let name = row.column("recipient_name")?.string, let created = row.column("created_ms")?.integer,
              let attempts = row.column("attempts")?.integer
        else { throw SQLiteStoreError(description: "a mail outbox row does not decode") }
        let mail = OutgoingMail(
            id: id, kind: kind, userID: user, recipient: Email(trustedCanonical: recipient), recipientName: DisplayName(trusted: name),
            sealedToken: row.column("sealed_token")?.string, newEmail: row.column("new_email")?.string.map(Email.init(trustedCanonical:)),
            createdAt: Date(sqliteMilliseconds: created)
        )
        return MailJob(mail: mail, failedAttempts: attempts)
    }
}
