public import IdentityPorts
import IdentityDomain
public import Foundation

/// Lifetimes and limits of contract §11.
public struct AccountMailPolicy: Sendable, Equatable {
    /// How long an email-verification token works (`EMAIL_VERIFICATION_TTL_HOURS`, 24 h).
    public var verificationTTL: TimeInterval
    /// How long a password-reset token works (`PASSWORD_RESET_TTL_MINUTES`, 30 min).
    public var resetTTL: TimeInterval
    /// Reset mails per address per hour (3); more requests answer alike and send nothing.
    public var resetMailsPerHour: Int
    /// Verification mails a resend may add per address per hour (5), so that a stolen token
    /// cannot bomb the account's inbox.
    public var verificationMailsPerHour: Int
    /// Whether a login needs a verified email (`REQUIRE_VERIFIED_EMAIL`).
    public var requireVerifiedEmail: Bool

    /// Creates the policy; the defaults are the contract's.
    public init(
        verificationTTL: TimeInterval = 24 * 3600, resetTTL: TimeInterval = 30 * 60, resetMailsPerHour: Int = 3,
        verificationMailsPerHour: Int = 5, requireVerifiedEmail: Bool = false
    ) {
        self.verificationTTL = verificationTTL
        self.resetTTL = resetTTL
        self.resetMailsPerHour = resetMailsPerHour
        self.verificationMailsPerHour = verificationMailsPerHour
        self.requireVerifiedEmail = requireVerifiedEmail
    }
}

/// What the write side needs to owe mail (contract §11): where tokens are kept and how they
/// are made and sealed, and the policy.
public struct AccountMailing: Sendable {
    /// Account tokens, and the writes that change no account row.
    public let tokens: any AccountTokenStore
    /// Makes, digests and seals tokens.
    public let minting: any AccountTokenMinting
    /// Lifetimes and limits.
    public let policy: AccountMailPolicy

    /// Bundles them.
    public init(tokens: any AccountTokenStore, minting: any AccountTokenMinting, policy: AccountMailPolicy = AccountMailPolicy()) {
        self.tokens = tokens
        self.minting = minting
        self.policy = policy
    }

    /// A new token of `purpose` for `user`'s current address, and the mail that carries it.
    func issue(_ purpose: AccountTokenPurpose, for user: User, now: Date, ids: any IDGenerator) throws -> (AccountToken, OutgoingMail) {
        let token = minting.makeToken()
        guard let digest = minting.digest(of: token) else { throw UnusableToken() }
        let ttl = purpose == .passwordReset ? policy.resetTTL : policy.verificationTTL
        let stored = AccountToken(
            digest: digest, purpose: purpose, userID: user.id, email: user.email, createdAt: now, expiresAt: now.addingTimeInterval(ttl)
        )
        let kind: MailKind = purpose == .passwordReset ? .passwordReset : .emailVerification
        let mail = OutgoingMail(
            id: ids.makeUUID(), kind: kind, userID: user.id, recipient: user.email, recipientName: user.name,
            sealedToken: try minting.seal(token), createdAt: now
        )
        return (stored, mail)
    }

    /// The writes that send `user` a fresh verification mail, invalidating older verification tokens.
    func verification(for user: User, now: Date, ids: any IDGenerator) throws -> AccountWrites {
        let (token, mail) = try issue(.emailVerification, for: user, now: now, ids: ids)
        return AccountWrites(invalidate: [.emailVerification], issue: [token], mail: [mail])
    }

    /// The writes of a profile change: a new address gets a verification mail and the old one a
    /// notice; a new address or password invalidates open reset (and verification) tokens.
    func profileChange(from old: User, to new: User, changed: [User.Field], now: Date, ids: any IDGenerator) throws -> AccountWrites {
        var writes = AccountWrites()
        if changed.contains(.password) { writes.invalidate.insert(.passwordReset) }
        if changed.contains(.email) {
            writes = try verification(for: new, now: now, ids: ids)
            writes.invalidate.insert(.passwordReset)
            writes.mail.append(OutgoingMail(
                id: ids.makeUUID(), kind: .emailChanged, userID: old.id, recipient: old.email, recipientName: new.name, sealedToken: nil,
                newEmail: new.email, createdAt: now
            ))
        }
        return writes
    }

    /// The stored token `digest` names if it is of `purpose` and unexpired at `now`, else nil.
    func usableToken(_ digest: Data, purpose: AccountTokenPurpose, now: Date) async throws -> AccountToken? {
        guard let token = try await tokens.accountToken(digest: digest), token.purpose == purpose, token.expiresAt > now else { return nil }
        return token
    }
}

/// `AccountTokenMinting` made a token it cannot digest: a bug in the adapter.
struct UnusableToken: Error, CustomStringConvertible {
    var description: String { "the token minting adapter made a token it does not recognise" }
}

/// Delivers what the mail outbox holds (contract §11): rendered by a `MailComposer`, sent by a
/// `Mailer`, retried with exponential backoff until it is accepted or `maxAttempts` attempts
/// failed (or one failed permanently). At least once: a claim lasts `lease`; a process that
/// dies mid-send leaves its mails to be claimed again when the lease ends, so a mail whose
/// send had completed may go out twice, with the same `Message-ID`.
///
/// A mail sent while the outbox cannot be written (the database's link lost between the send
/// and its record) is not sent again: what became of it is kept in memory and written first
/// thing in the next rounds, while its claim still keeps other deliverers off it.
public struct MailDelivery: Sendable {
    /// Retries and batching.
    public struct Policy: Sendable, Equatable {
        /// Attempts before a mail is given up on (`MAIL_MAX_ATTEMPTS`, 10).
        public var maxAttempts: Int
        /// The wait after the first failure; doubled after each further one.
        public var firstRetryDelay: TimeInterval
        /// The longest wait between attempts.
        public var maxRetryDelay: TimeInterval
        /// How long a claim keeps other deliverers off a mail: longer than a send may take.
        public var lease: TimeInterval
        /// Mails claimed per round.
        public var batchSize: Int

        /// Creates the policy: 10 attempts, 30 s doubling to at most an hour, 5-minute claims,
        /// 20 mails a round.
        public init(
            maxAttempts: Int = 10, firstRetryDelay: TimeInterval = 30, maxRetryDelay: TimeInterval = 3600, lease: TimeInterval = 300,
            batchSize: Int = 20
        ) {
            self.maxAttempts = max(1, maxAttempts)
            self.firstRetryDelay = max(0, firstRetryDelay)
            self.maxRetryDelay = max(self.firstRetryDelay, maxRetryDelay)
            self.lease = max(1, lease)
            self.batchSize = max(1, batchSize)
        }

        /// The wait after the `failures`-th failure.
        public func retryDelay(afterFailures failures: Int) -> TimeInterval {
            min(maxRetryDelay, firstRetryDelay * pow(2, Double(max(0, failures - 1))))
        }
    }

    /// What became of one mail in a round.
    public enum Outcome: Sendable, Equatable {
        /// Accepted by the mailer.
        case sent
        /// Failed; tried again at the date.
        case retrying(at: Date, reason: String)
        /// Failed for good.
        case gaveUp(reason: String)
        /// Not sent: the token it carries no longer works (used, replaced by a newer one, voided
        /// by a change, or expired), so the mail could only mislead.
        case dropped(reason: String)
    }

    private let outbox: any MailOutbox
    private let mailer: any Mailer
    private let composer: any MailComposer
    private let minting: any AccountTokenMinting
    private let tokens: (any AccountTokenStore)?
    private let clock: any IdentityClock
    private let owed = OwedMailRecords()
    /// Retries and batching.
    public let policy: Policy

    /// Creates the deliverer. With `tokens`, a mail whose token no longer works is dropped
    /// instead of sent.
    public init(
        outbox: any MailOutbox, mailer: any Mailer, composer: any MailComposer, minting: any AccountTokenMinting,
        tokens: (any AccountTokenStore)? = nil, clock: any IdentityClock = SystemClock(), policy: Policy = Policy()
    ) {
        self.tokens = tokens
        self.outbox = outbox
        self.mailer = mailer
        self.composer = composer
        self.minting = minting
        self.clock = clock
        self.policy = policy
    }

    /// Claims the mails due now and tries each once; returns what became of each, once it is
    /// recorded in the outbox. Throws only when the outbox cannot be read or written; what
    /// became of the mails tried meanwhile is then recorded by a later call, before it claims.
    public func deliverDue() async throws -> [(mail: OutgoingMail, outcome: Outcome)] {
        var recorded = try await recordOwed()
        let claimed = clock.now()
        let jobs = try await outbox.claimDueMail(limit: policy.batchSize, now: claimed, lease: policy.lease)
        var failure: (any Error)?
        for job in jobs {
            let outcome = await attempt(job)
            if failure == nil {
                do {
                    try await record(outcome, of: job.mail.id)
                    recorded.append((job.mail, outcome))
                    continue
                } catch {
                    failure = error
                }
            }
            await owed.keep(OwedMailRecord(mail: job.mail, outcome: outcome, claimEnds: claimed.addingTimeInterval(policy.lease)))
        }
        if let failure { throw failure }
        return recorded
    }

    /// Writes what became of the mails tried while the outbox could not be written, oldest
    /// first; returns them. A retry whose claim has ended meanwhile is forgotten: the mail is
    /// claimed again in its turn, and writing "retry later" now could release another's claim.
    private func recordOwed() async throws -> [(mail: OutgoingMail, outcome: Outcome)] {
        var recorded: [(mail: OutgoingMail, outcome: Outcome)] = []
        while let next = await owed.first {
            if case .retrying = next.outcome, next.claimEnds <= clock.now() {
                await owed.removeFirst()
                continue
            }
            try await record(next.outcome, of: next.mail.id)
            await owed.removeFirst()
            recorded.append((next.mail, next.outcome))
        }
        return recorded
    }

    private func record(_ outcome: Outcome, of id: UUID) async throws {
        switch outcome {
        case .sent: try await outbox.markMailSent(id: id, now: clock.now())
        case .retrying(let at, let reason): try await outbox.markMailFailed(id: id, retryAt: at, error: reason, now: clock.now())
        case .gaveUp(let reason), .dropped(let reason): try await outbox.markMailFailed(id: id, retryAt: nil, error: reason, now: clock.now())
        }
    }

    private func attempt(_ job: MailJob) async -> Outcome {
        var token: String?
        if let sealed = job.mail.sealedToken {
            // Sealed under another key (the key changed): no later attempt can open it.
            guard let opened = minting.open(sealed) else { return .gaveUp(reason: "the mail's token cannot be opened with the current key") }
            token = opened
            if let tokens, let digest = minting.digest(of: opened) {
                do {
                    guard let stored = try await tokens.accountToken(digest: digest), stored.expiresAt > clock.now() else {
                        return .dropped(reason: "its token no longer works (used, replaced, voided by a change, or expired)")
                    }
                } catch {
                    return retry(job, reason: String(describing: error))
                }
            }
        }
        do {
            try await mailer.send(try composer.compose(job.mail, token: token))
            return .sent
        } catch let failure as MailDeliveryFailure where failure.isPermanent {
            return .gaveUp(reason: failure.reason)
        } catch {
            return retry(job, reason: (error as? MailDeliveryFailure)?.reason ?? String(describing: error))
        }
    }

    /// A failed attempt: retried after the backoff, or given up on after the last.
    private func retry(_ job: MailJob, reason: String) -> Outcome {
        let failures = job.failedAttempts + 1
        if failures >= policy.maxAttempts { return .gaveUp(reason: "\(failures) attempts failed; last: \(reason)") }
        return .retrying(at: clock.now().addingTimeInterval(policy.retryDelay(afterFailures: failures)), reason: reason)
    }
}

/// What became of a mail whose record could not be written yet.
struct OwedMailRecord: Sendable {
    let mail: OutgoingMail
    let outcome: MailDelivery.Outcome
    /// When the mail's claim ends.
    let claimEnds: Date
}

/// The records a deliverer owes the outbox, oldest first.
actor OwedMailRecords {
    private var records: [OwedMailRecord] = []

    var first: OwedMailRecord? { records.first }

    func keep(_ record: OwedMailRecord) { records.append(record) }

    func removeFirst() { records.removeFirst() }
}
