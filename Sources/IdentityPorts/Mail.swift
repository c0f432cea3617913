public import Foundation
public import IdentityDomain

// Contract §11: mail that a change owes somebody is committed with the change (the mail
// outbox) and delivered later, by a background round, through a `Mailer`.

/// Which mail of contract §11 a pending mail is.
public enum MailKind: String, Sendable, Codable, CaseIterable {
    /// The link that proves an address: sent on registration, on an email change (to the new
    /// address) and on request.
    case emailVerification = "email_verification"
    /// The link that sets a new password.
    case passwordReset = "password_reset"
    /// The notice to the old address that the account's email changed.
    case emailChanged = "email_changed"
}

/// A mail the service owes somebody: what it says, not yet how. Templates render it when it
/// is delivered (`MailComposer`), so a pending mail is small and carries no markup.
public struct OutgoingMail: Sendable, Equatable {
    /// Unique; also the mail's `Message-ID`, so a retried delivery is recognisably the same mail.
    public let id: UUID
    /// What kind of mail.
    public let kind: MailKind
    /// The account it is about.
    public let userID: UserID
    /// The recipient.
    public let recipient: Email
    /// The recipient's display name.
    public let recipientName: DisplayName
    /// The account token the mail carries, sealed (`AccountTokenMinting.seal`): a copy of the
    /// store alone never yields it. Nil for a notice.
    public let sealedToken: String?
    /// For `emailChanged`: the account's new address.
    public let newEmail: Email?
    /// When the change that owes it committed (millisecond precision).
    public let createdAt: Date

    /// Creates a pending mail.
    public init(
        id: UUID, kind: MailKind, userID: UserID, recipient: Email, recipientName: DisplayName, sealedToken: String?,
        newEmail: Email? = nil, createdAt: Date
    ) {
        self.id = id
        self.kind = kind
        self.userID = userID
        self.recipient = recipient
        self.recipientName = recipientName
        self.sealedToken = sealedToken
        self.newEmail = newEmail
        self.createdAt = createdAt.truncatedToMilliseconds
    }
}

/// A mailbox: an address with an optional display name.
public struct MailAddress: Sendable, Equatable {
    /// The address (`local@domain`).
    public let address: String
    /// The display name, if any; a mailer encodes it (RFC 2047) and never lets it break a header.
    public let name: String?

    /// Creates a mailbox.
    public init(address: String, name: String? = nil) {
        self.address = address
        self.name = name
    }
}

/// A rendered mail, ready for a `Mailer`.
public struct MailMessage: Sendable, Equatable {
    /// Unique per mail, stable across retries: the `Message-ID` is made of it.
    public let id: UUID
    /// The sender.
    public let from: MailAddress
    /// The recipient.
    public let to: MailAddress
    /// The subject (may hold any Unicode; a mailer encodes it).
    public let subject: String
    /// The plain-text body.
    public let text: String
    /// The HTML body, if any: with it a mailer sends `multipart/alternative`.
    public let html: String?
    /// The `Date` header.
    public let date: Date

    /// Creates a message.
    public init(id: UUID, from: MailAddress, to: MailAddress, subject: String, text: String, html: String?, date: Date) {
        self.id = id
        self.from = from
        self.to = to
        self.subject = subject
        self.text = text
        self.html = html
        self.date = date
    }
}

/// Delivers rendered mail (SMTP, a folder of files, ...).
///
/// `send` returns once the mail is accepted (an SMTP server said 250 to the data). It throws
/// `MailDeliveryFailure` saying whether a retry can help; any other error counts as transient.
/// It must not block a caller's event loop, and must give up within its own timeouts.
public protocol Mailer: Sendable {
    /// Delivers `message`, or throws.
    func send(_ message: MailMessage) async throws
}

/// A mailer could not deliver a mail.
public struct MailDeliveryFailure: Error, Sendable, Equatable, CustomStringConvertible {
    /// Whether a later attempt cannot succeed (an SMTP 5xx for the recipient, say): the mail
    /// is then not retried.
    public let isPermanent: Bool
    /// What went wrong, for the log (no credentials, no message content).
    public let reason: String

    /// Creates the failure.
    public init(isPermanent: Bool, reason: String) {
        self.isPermanent = isPermanent
        self.reason = reason
    }

    public var description: String {
        "mail delivery failed (\(isPermanent ? "permanent" : "will retry")): \(reason)"
    }
}

/// Renders a pending mail (templates).
public protocol MailComposer: Sendable {
    /// The message for `mail`, whose token (if any) is `token`, in clear.
    func compose(_ mail: OutgoingMail, token: String?) throws -> MailMessage
}

/// A pending mail as the delivery round sees it.
public struct MailJob: Sendable, Equatable {
    /// The mail.
    public let mail: OutgoingMail
    /// How many attempts failed before this one.
    public let failedAttempts: Int

    /// Creates a job.
    public init(mail: OutgoingMail, failedAttempts: Int) {
        self.mail = mail
        self.failedAttempts = failedAttempts
    }
}

/// How many mails wait, and how many were given up on (for metrics and the operator).
public struct MailOutboxStatus: Sendable, Equatable {
    /// Mails not delivered yet that will be tried again.
    public let pending: Int
    /// Mails given up on (permanent failure, or `MAIL_MAX_ATTEMPTS` failed attempts).
    public let failed: Int
    /// When the oldest pending mail was committed, if any.
    public let oldestPendingAt: Date?

    /// Creates the status.
    public init(pending: Int, failed: Int, oldestPendingAt: Date?) {
        self.pending = pending
        self.failed = failed
        self.oldestPendingAt = oldestPendingAt
    }
}

/// Pending mail, as the delivery rounds use it. Mail is written with the change that owes it
/// (`UserRepository` and `AccountTokenStore` take `AccountWrites`).
public protocol MailOutbox: Sendable {
    /// Claims up to `limit` mails due at `now` (oldest first) for `lease` seconds: until then,
    /// no other claim returns them, also across processes sharing the store. A claimer that
    /// dies mid-send leaves its mails to be claimed again when the lease ends.
    func claimDueMail(limit: Int, now: Date, lease: TimeInterval) async throws -> [MailJob]
    /// The mail was delivered; it is never claimed again.
    func markMailSent(id: UUID, now: Date) async throws
    /// An attempt failed: the mail is due again at `retryAt`, or given up on when that is nil.
    /// `error` (short, no secrets) is kept for the operator.
    func markMailFailed(id: UUID, retryAt: Date?, error: String, now: Date) async throws
    /// Counts of pending and given-up mails.
    func mailStatus() async throws -> MailOutboxStatus
}

/// What an account token is for: a token of one purpose never serves another.
public enum AccountTokenPurpose: String, Sendable, Codable, CaseIterable {
    /// Proves an address (`POST /auth/verify-email`).
    case emailVerification = "email_verification"
    /// Sets a new password (`POST /auth/password-reset/confirm`).
    case passwordReset = "password_reset"
}

/// A one-time token of contract §11 as stored: its digest, never the token.
public struct AccountToken: Sendable, Equatable {
    /// SHA-256 of the token (32 bytes).
    public let digest: Data
    /// What it is for.
    public let purpose: AccountTokenPurpose
    /// The account it belongs to.
    public let userID: UserID
    /// The address it was sent to: a verification proves this address only.
    public let email: Email
    /// When it was issued (millisecond precision).
    public let createdAt: Date
    /// When it stops working (millisecond precision).
    public let expiresAt: Date

    /// Creates a stored token.
    public init(digest: Data, purpose: AccountTokenPurpose, userID: UserID, email: Email, createdAt: Date, expiresAt: Date) {
        self.digest = digest
        self.purpose = purpose
        self.userID = userID
        self.email = email
        self.createdAt = createdAt.truncatedToMilliseconds
        self.expiresAt = expiresAt.truncatedToMilliseconds
    }
}

/// The token a write uses up: it must be stored, of `purpose`, and unexpired at `now`, and it
/// is deleted in the write's transaction; otherwise the write fails with
/// `IdentityError.invalidToken` and nothing commits.
public struct TokenUse: Sendable, Equatable {
    /// The token's digest.
    public let digest: Data
    /// The purpose it must have.
    public let purpose: AccountTokenPurpose
    /// The time it must not have expired at.
    public let now: Date

    /// Creates the use.
    public init(digest: Data, purpose: AccountTokenPurpose, now: Date) {
        self.digest = digest
        self.purpose = purpose
        self.now = now
    }
}

/// At most `max` mails of `kind` to `recipient` committed since `since`: a write that would
/// go beyond writes nothing (contract §11: 3 reset mails per email per hour).
public struct MailLimit: Sendable, Equatable {
    /// The kind counted.
    public let kind: MailKind
    /// The address counted.
    public let recipient: Email
    /// How many may be committed in the window.
    public let max: Int
    /// The window's start.
    public let since: Date

    /// Creates the limit.
    public init(kind: MailKind, recipient: Email, max: Int, since: Date) {
        self.kind = kind
        self.recipient = recipient
        self.max = max
        self.since = since
    }
}

/// What an account write does besides its row, in the same transaction (contract §11): tokens
/// used up, invalidated and issued, and mail owed. Applied in that order.
public struct AccountWrites: Sendable, Equatable {
    /// The token used up, if any.
    public var use: TokenUse?
    /// Every stored token of the account with one of these purposes is deleted (a newer reset
    /// invalidates older ones; a password or email change invalidates open ones).
    public var invalidate: Set<AccountTokenPurpose>
    /// Tokens stored (as digests).
    public var issue: [AccountToken]
    /// Mail committed to the outbox.
    public var mail: [OutgoingMail]

    /// Creates the writes.
    public init(use: TokenUse? = nil, invalidate: Set<AccountTokenPurpose> = [], issue: [AccountToken] = [], mail: [OutgoingMail] = []) {
        self.use = use
        self.invalidate = invalidate
        self.issue = issue
        self.mail = mail
    }

    /// No writes.
    public static let none = AccountWrites()

    /// Whether there is nothing to write.
    public var isEmpty: Bool { use == nil && invalidate.isEmpty && issue.isEmpty && mail.isEmpty }
}

/// Account tokens, and the writes of §11 that change no account row (a resend, a reset request).
public protocol AccountTokenStore: Sendable {
    /// The stored token with this digest, or nil (used, invalidated or never issued). An
    /// expired token may still be returned; callers check `expiresAt`.
    func accountToken(digest: Data) async throws -> AccountToken?
    /// Writes `writes` for the account `userID` (invalidations apply to its tokens) with
    /// `events`, in one transaction. With `limit`, counts the outbox's mail of the limit's
    /// kind and recipient committed since its start first, and writes nothing when `max` are
    /// there already; returns whether it wrote.
    @discardableResult
    func record(_ writes: AccountWrites, for userID: UserID, events: [IdentityEvent], limit: MailLimit?) async throws -> Bool
}

/// Makes and recognises account tokens (contract §11), and seals them for the mail outbox.
public protocol AccountTokenMinting: Sendable {
    /// A new token: at least 256 random bits, URL-safe, no padding.
    func makeToken() -> String
    /// The digest a store keeps for `token`, or nil when `token` cannot be one of ours
    /// (wrong length or alphabet): such a token is refused without a lookup.
    func digest(of token: String) -> Data?
    /// `token` sealed under a key the store does not hold (for the mail outbox).
    func seal(_ token: String) throws -> String
    /// What `seal` made, opened; nil when it was sealed under another key or altered.
    func open(_ sealed: String) -> String?
}
