public import IdentityPorts
import IdentityDomain
import Foundation
import Testing

/// The behaviour every store of contract §11 must show: account tokens (`AccountTokenStore`),
/// the mail outbox (`MailOutbox`) and the `AccountWrites` that `UserRepository` commits with an
/// account's row.
///
/// ```swift
/// @Test func conforms() async throws {
///     try await AccountMailConformance { let store = try await MyStore.fresh(); return (store, store, store) }.run()
/// }
/// ```
///
/// Every call of the factory must return empty stores that share one transaction scope: the
/// token store and the outbox see what the account store committed. When the account store is
/// also an `EventOutbox`, the suite checks that the events given with the writes commit with
/// them (and only then), so it must hold no event either. It checks:
///
/// - `User.emailVerified` is stored and read back by `insert`, `update`, `user(id:)` and
///   `user(email:)`;
/// - `insert` and `update` commit `writes` (a token's digest, its mail) with the row, and a
///   refused write (taken email, stale version, missing account, a token that cannot be used)
///   commits none of them, nor its events;
/// - a token is used once: a second use, a wrong purpose, an expired token (`expiresAt <= now`)
///   or an unknown digest fail with `IdentityError.invalidToken`, and nothing commits;
/// - `invalidate` deletes the account's tokens of those purposes only, before `issue` applies;
/// - deleting an account deletes its tokens and the unsent mail that carries one of them
///   (notices without a token still go out);
/// - `record(_:for:events:limit:)` writes everything or, beyond its `MailLimit` (counted over
///   every mail of that kind and recipient committed since the window's start, delivered or
///   given up included), nothing;
/// - `claimDueMail` hands out due mail oldest first, each to one claimer until its lease ends
///   (also to 8 concurrent claimers of 50 mails), never a delivered or given-up mail, a failed
///   one again at its `retryAt` with `failedAttempts` counting the failures;
/// - `mailStatus` counts pending and given-up mail and dates the oldest pending.
///
/// Failures are recorded as Swift Testing issues, so `run()` must be called from inside a test.
public struct AccountMailConformance: Sendable {
    /// Makes fresh, empty stores: the account store, the token store and the mail outbox that
    /// its writes go to (usually one object).
    public typealias Factory = @Sendable () async throws
        -> (users: any UserRepository, tokens: any AccountTokenStore, outbox: any MailOutbox)
    let factory: Factory

    /// Creates the suite.
    public init(factory: @escaping Factory) {
        self.factory = factory
    }

    /// Runs every check, each on fresh stores.
    public func run() async throws {
        await Fixture.check("emailVerifiedRoundTrips") { try await emailVerifiedRoundTrips() }
        await Fixture.check("insertCommitsItsTokenAndMailWithTheAccount") { try await insertCommitsItsTokenAndMailWithTheAccount() }
        await Fixture.check("aRefusedInsertWritesNoTokenAndNoMail") { try await aRefusedInsertWritesNoTokenAndNoMail() }
        await Fixture.check("aTokenIsUsedOnce") { try await aTokenIsUsedOnce() }
        await Fixture.check("unusableTokensAreRefusedAndNothingCommits") { try await unusableTokensAreRefusedAndNothingCommits() }
        await Fixture.check("aRefusedUpdateWritesNoTokenAndNoMail") { try await aRefusedUpdateWritesNoTokenAndNoMail() }
        await Fixture.check("invalidationTouchesThoseOfTheAccountOnly") { try await invalidationTouchesThoseOfTheAccountOnly() }
        await Fixture.check("recordCommitsEverythingOrNothing") { try await recordCommitsEverythingOrNothing() }
        await Fixture.check("theMailLimitCountsEveryCommittedMail") { try await theMailLimitCountsEveryCommittedMail() }
        await Fixture.check("deletingAnAccountForgetsItsTokens") { try await deletingAnAccountForgetsItsTokens() }
        await Fixture.check("dueMailIsClaimedOldestFirst") { try await dueMailIsClaimedOldestFirst() }
        await Fixture.check("aClaimHoldsItsMailForTheLease") { try await aClaimHoldsItsMailForTheLease() }
        await Fixture.check("deliveredMailIsNeverClaimedAgain") { try await deliveredMailIsNeverClaimedAgain() }
        await Fixture.check("aFailedMailIsDueAgainAtItsRetry") { try await aFailedMailIsDueAgainAtItsRetry() }
        await Fixture.check("mailGivenUpIsNotClaimedAndCountsAsFailed") { try await mailGivenUpIsNotClaimedAndCountsAsFailed() }
        await Fixture.check("statusCountsPendingAndFailedMail") { try await statusCountsPendingAndFailedMail() }
        await Fixture.check("concurrentClaimersNeverShareAMail") { try await concurrentClaimersNeverShareAMail() }
    }

    // MARK: fixtures

    let now = Fixture.epoch
    static let hour: TimeInterval = 3_600

    /// Fresh stores and the event outbox of the account store, if it is one.
    func makeStores() async throws -> Stores {
        let (users, tokens, outbox) = try await factory()
        let stores = Stores(users: users, tokens: tokens, outbox: outbox, events: (users as? any EventOutbox).map(EventLog.init))
        try await stores.expectEvents([], "fresh stores hold no event")
        #expect(try await outbox.mailStatus() == MailOutboxStatus(pending: 0, failed: 0, oldestPendingAt: nil), "fresh stores hold no mail")
        return stores
    }

    /// A token of `purpose` for `user`, issued at `issued`, lasting `lifetime`.
    static func token(
        _ purpose: AccountTokenPurpose, for user: User, issued: Date = Fixture.epoch, lifetime: TimeInterval = hour
    ) -> AccountToken {
        AccountToken(
            digest: Data((0..<32).map { _ in UInt8.random(in: .min ... .max) }), purpose: purpose, userID: user.id, email: user.email,
            createdAt: issued, expiresAt: issued.addingTimeInterval(lifetime)
        )
    }

    /// A mail of `kind` to `user` committed at `created`, carrying a (sealed) token unless it is a notice.
    static func mail(_ kind: MailKind, to user: User, at created: Date = Fixture.epoch, recipient: Email? = nil) -> OutgoingMail {
        OutgoingMail(
            id: UUID(), kind: kind, userID: user.id, recipient: recipient ?? user.email, recipientName: user.name,
            sealedToken: kind == .emailChanged ? nil : "sealed." + UUID().uuidString,
            newEmail: kind == .emailChanged ? (try? Email("new.\(user.id.description.prefix(8))@example.com")) : nil, createdAt: created
        )
    }

    // MARK: account writes

    func emailVerifiedRoundTrips() async throws {
        let stores = try await makeStores()
        let ada = try Fixture.user("ada")
        var bob = try Fixture.user("bob")
        bob.emailVerified = true
        try await stores.users.insert(ada, events: [], writes: .none)
        try await stores.users.insert(bob, events: [], writes: .none)
        #expect(try await stores.users.user(id: ada.id)?.emailVerified == false, "a new account reads unverified")
        #expect(try await stores.users.user(id: bob.id) == bob, "a verified account reads verified, by id")
        #expect(try await stores.users.user(email: bob.email) == bob, "and by email")
        var verified = ada
        let changed = verified.verifyEmail(at: now.addingTimeInterval(1))
        #expect(changed && verified.emailVerified)
        try await stores.users.update(verified, expectedVersion: ada.version, events: [], revocations: [], writes: .none)
        #expect(try await stores.users.user(id: ada.id) == verified, "an update stores the verification")
        #expect(try await stores.users.user(email: ada.email)?.emailVerified == true)
        var moved = verified
        _ = moved.apply(name: nil, email: try Email("countess@example.com"), passwordHash: nil, at: now.addingTimeInterval(2))
        try await stores.users.update(moved, expectedVersion: verified.version, events: [], revocations: [], writes: .none)
        #expect(try await stores.users.user(email: moved.email) == moved, "an email change stores it unverified again")
        #expect(try await stores.users.user(id: bob.id) == bob, "the other account is untouched")
    }

    func insertCommitsItsTokenAndMailWithTheAccount() async throws {
        let stores = try await makeStores()
        let ada = try Fixture.user("ada")
        let token = Self.token(.emailVerification, for: ada, lifetime: 24 * Self.hour)
        let mail = Self.mail(.emailVerification, to: ada)
        let registered = Fixture.event(.userRegistered(userID: ada.id, email: ada.email, name: ada.name))
        try await stores.users.insert(ada, events: [registered], writes: AccountWrites(issue: [token], mail: [mail]))
        #expect(try await stores.users.user(id: ada.id) == ada)
        #expect(try await stores.tokens.accountToken(digest: token.digest) == token, "the token is stored with the account, as given")
        #expect(try await stores.outbox.mailStatus() == MailOutboxStatus(pending: 1, failed: 0, oldestPendingAt: mail.createdAt))
        try await stores.expectEvents([WrittenEvent(registered.payload, at: registered.occurredAt)], "the event commits with them")
        let jobs = try await stores.outbox.claimDueMail(limit: 10, now: now.addingTimeInterval(1), lease: 60)
        #expect(jobs == [MailJob(mail: mail, failedAttempts: 0)], "the mail is due at once and reads back as given")
        #expect(try await stores.tokens.accountToken(digest: Self.token(.emailVerification, for: ada).digest) == nil, "an unknown digest finds nothing")
    }

    func aRefusedInsertWritesNoTokenAndNoMail() async throws {
        let stores = try await makeStores()
        let ada = try Fixture.user("ada")
        try await stores.users.insert(ada, events: [], writes: .none)
        let twin = try Fixture.user("ada")
        let token = Self.token(.emailVerification, for: twin)
        await #expect(throws: IdentityError.emailTaken) {
            try await stores.users.insert(
                twin, events: [Fixture.event(.userRegistered(userID: twin.id, email: twin.email, name: twin.name))],
                writes: AccountWrites(issue: [token], mail: [Self.mail(.emailVerification, to: twin)])
            )
        }
        try await stores.expectNothingWritten(token: token, "a refused registration")
    }

    func aTokenIsUsedOnce() async throws {
        let stores = try await makeStores()
        var ada = try Fixture.user("ada")
        let token = Self.token(.passwordReset, for: ada)
        try await stores.users.insert(ada, events: [], writes: AccountWrites(issue: [token]))
        let use = TokenUse(digest: token.digest, purpose: .passwordReset, now: now.addingTimeInterval(60))
        let before = ada
        _ = ada.apply(name: nil, email: nil, passwordHash: "$argon2id$new", at: now.addingTimeInterval(60))
        let reset = Fixture.event(.passwordReset(userID: ada.id), at: now.addingTimeInterval(60))
        try await stores.users.update(ada, expectedVersion: before.version, events: [reset], revocations: [], writes: AccountWrites(use: use))
        #expect(try await stores.users.user(id: ada.id) == ada, "the write that uses the token commits")
        #expect(try await stores.tokens.accountToken(digest: token.digest) == nil, "the used token is gone")
        try await stores.expectEvents([WrittenEvent(reset.payload, at: reset.occurredAt)], "with its event")
        var again = ada
        _ = again.apply(name: nil, email: nil, passwordHash: "$argon2id$again", at: now.addingTimeInterval(61))
        await #expect(throws: IdentityError.invalidToken, "a second use is refused") {
            try await stores.users.update(
                again, expectedVersion: ada.version, events: [Fixture.event(.passwordReset(userID: ada.id))], revocations: [],
                writes: AccountWrites(use: use, mail: [Self.mail(.emailChanged, to: ada)])
            )
        }
        #expect(try await stores.users.user(id: ada.id) == ada, "the refused write leaves the account as it was")
        try await stores.expectEvents([], "and writes no event")
        #expect(try await stores.outbox.mailStatus().pending == 0, "nor mail")
    }

    func unusableTokensAreRefusedAndNothingCommits() async throws {
        let stores = try await makeStores()
        let ada = try Fixture.user("ada")
        let reset = Self.token(.passwordReset, for: ada)
        let verification = Self.token(.emailVerification, for: ada)
        try await stores.users.insert(ada, events: [], writes: AccountWrites(issue: [reset, verification]))
        let cases: [(TokenUse, Comment)] = [
            (TokenUse(digest: verification.digest, purpose: .passwordReset, now: now), "a token of another purpose"),
            (TokenUse(digest: reset.digest, purpose: .passwordReset, now: reset.expiresAt), "a token at its expiry"),
            (TokenUse(digest: reset.digest, purpose: .passwordReset, now: reset.expiresAt.addingTimeInterval(60)), "an expired token"),
            (TokenUse(digest: Self.token(.passwordReset, for: ada).digest, purpose: .passwordReset, now: now), "an unknown token"),
        ]
        for (use, comment) in cases {
            var changed = ada
            _ = changed.apply(name: nil, email: nil, passwordHash: "$argon2id$new", at: now.addingTimeInterval(1))
            let issued = Self.token(.passwordReset, for: ada)
            await #expect(throws: IdentityError.invalidToken, "\(comment) is refused") {
                try await stores.users.update(
                    changed, expectedVersion: ada.version, events: [Fixture.event(.passwordReset(userID: ada.id))], revocations: [],
                    writes: AccountWrites(use: use, invalidate: [.emailVerification], issue: [issued], mail: [Self.mail(.passwordReset, to: ada)])
                )
            }
            #expect(try await stores.users.user(id: ada.id) == ada, "\(comment): the account is unchanged")
            #expect(try await stores.tokens.accountToken(digest: issued.digest) == nil, "\(comment): no token is issued")
            #expect(try await stores.tokens.accountToken(digest: verification.digest) == verification, "\(comment): none invalidated")
            #expect(try await stores.tokens.accountToken(digest: reset.digest) == reset, "\(comment): none used up")
            #expect(try await stores.outbox.mailStatus().pending == 0, "\(comment): no mail")
            try await stores.expectEvents([], "\(comment): no event")
        }
        let bob = try Fixture.user("bob")
        try await stores.users.insert(bob, events: [], writes: .none)
        var renamed = bob
        _ = renamed.apply(name: nil, email: nil, passwordHash: "$argon2id$new", at: now.addingTimeInterval(1))
        await #expect(throws: IdentityError.invalidToken, "another account's token is refused (tokens are bound to their account)") {
            try await stores.users.update(renamed, expectedVersion: bob.version, events: [], revocations: [],
                                          writes: AccountWrites(use: TokenUse(digest: reset.digest, purpose: .passwordReset, now: now)))
        }
        #expect(try await stores.users.user(id: bob.id) == bob, "the other account is unchanged")
        #expect(try await stores.tokens.accountToken(digest: reset.digest) == reset, "and the token stays usable by its own")
        await #expect(throws: IdentityError.invalidToken, "also in a record for another account") {
            try await stores.tokens.record(AccountWrites(use: TokenUse(digest: reset.digest, purpose: .passwordReset, now: now)),
                                           for: bob.id, events: [], limit: nil)
        }
        #expect(try await stores.tokens.accountToken(digest: reset.digest) == reset)
        var verified = ada
        _ = verified.verifyEmail(at: verification.expiresAt.addingTimeInterval(-0.001))
        try await stores.users.update(
            verified, expectedVersion: ada.version, events: [], revocations: [],
            writes: AccountWrites(use: TokenUse(digest: verification.digest, purpose: .emailVerification,
                                                now: verification.expiresAt.addingTimeInterval(-0.001)))
        )
        #expect(try await stores.users.user(id: ada.id)?.emailVerified == true, "a token a millisecond before its expiry works")
    }

    func aRefusedUpdateWritesNoTokenAndNoMail() async throws {
        let stores = try await makeStores()
        var ada = try Fixture.user("ada")
        let bob = try Fixture.user("bob")
        let reset = Self.token(.passwordReset, for: ada)
        try await stores.users.insert(ada, events: [], writes: AccountWrites(issue: [reset]))
        try await stores.users.insert(bob, events: [], writes: .none)
        let stored = ada
        _ = ada.apply(name: try DisplayName("Countess"), email: nil, passwordHash: nil, at: now.addingTimeInterval(1))
        try await stores.users.update(ada, expectedVersion: stored.version, events: [], revocations: [], writes: .none)

        func writes() -> (AccountWrites, AccountToken) {
            let issued = Self.token(.emailVerification, for: ada)
            return (AccountWrites(use: TokenUse(digest: reset.digest, purpose: .passwordReset, now: now), invalidate: [.passwordReset],
                                  issue: [issued], mail: [Self.mail(.emailVerification, to: ada), Self.mail(.emailChanged, to: ada)]), issued)
        }
        var stale = stored
        _ = stale.apply(name: try DisplayName("Stale"), email: nil, passwordHash: nil, at: now.addingTimeInterval(2))
        let (staleWrites, staleToken) = writes()
        await #expect(throws: IdentityError.concurrentUpdate, "a stale version is refused") {
            try await stores.users.update(stale, expectedVersion: stored.version, events: [Fixture.event(.userUpdated(userID: ada.id, changed: [.name]))],
                                          revocations: [], writes: staleWrites)
        }
        try await stores.expectNothingWritten(token: staleToken, "a write refused for its version")
        #expect(try await stores.tokens.accountToken(digest: reset.digest) == reset, "the token it would have used stays usable")

        var clash = ada
        _ = clash.apply(name: nil, email: bob.email, passwordHash: nil, at: now.addingTimeInterval(2))
        let (clashWrites, clashToken) = writes()
        await #expect(throws: IdentityError.emailTaken, "another account's email is refused") {
            try await stores.users.update(clash, expectedVersion: ada.version, events: [], revocations: [], writes: clashWrites)
        }
        try await stores.expectNothingWritten(token: clashToken, "a write refused for its email")
        #expect(try await stores.tokens.accountToken(digest: reset.digest) == reset)

        let ghost = try Fixture.user("ghost")
        var (ghostWrites, ghostToken) = writes()
        ghostWrites.use = nil
        await #expect(throws: IdentityError.userNotFound, "a missing account is reported") {
            try await stores.users.update(ghost, expectedVersion: 1, events: [], revocations: [], writes: ghostWrites)
        }
        try await stores.expectNothingWritten(token: ghostToken, "a write to a missing account")
        #expect(try await stores.tokens.accountToken(digest: reset.digest) == reset)
        #expect(try await stores.users.user(id: ada.id) == ada, "the account is as the last committed write left it")
    }

    func invalidationTouchesThoseOfTheAccountOnly() async throws {
        let stores = try await makeStores()
        var ada = try Fixture.user("ada")
        let bob = try Fixture.user("bob")
        let (reset1, reset2) = (Self.token(.passwordReset, for: ada), Self.token(.passwordReset, for: ada, issued: now.addingTimeInterval(1)))
        let verification = Self.token(.emailVerification, for: ada)
        let bobs = Self.token(.passwordReset, for: bob)
        try await stores.users.insert(ada, events: [], writes: AccountWrites(issue: [reset1, verification]))
        try await stores.users.insert(bob, events: [], writes: AccountWrites(issue: [bobs]))
        try await stores.tokens.record(AccountWrites(issue: [reset2]), for: ada.id, events: [], limit: nil)
        let newest = Self.token(.passwordReset, for: ada, issued: now.addingTimeInterval(2))
        #expect(try await stores.tokens.record(AccountWrites(invalidate: [.passwordReset], issue: [newest]), for: ada.id, events: [], limit: nil))
        #expect(try await stores.tokens.accountToken(digest: reset1.digest) == nil, "a newer reset invalidates the older ones")
        #expect(try await stores.tokens.accountToken(digest: reset2.digest) == nil)
        #expect(try await stores.tokens.accountToken(digest: newest.digest) == newest, "invalidation comes before issuing")
        #expect(try await stores.tokens.accountToken(digest: verification.digest) == verification, "tokens of other purposes stay")
        #expect(try await stores.tokens.accountToken(digest: bobs.digest) == bobs, "other accounts' tokens stay")

        let before = ada
        _ = ada.apply(name: nil, email: nil, passwordHash: "$argon2id$new", at: now.addingTimeInterval(3))
        try await stores.users.update(ada, expectedVersion: before.version, events: [], revocations: [],
                                      writes: AccountWrites(invalidate: Set(AccountTokenPurpose.allCases)))
        #expect(try await stores.tokens.accountToken(digest: newest.digest) == nil, "an update invalidates in its transaction")
        #expect(try await stores.tokens.accountToken(digest: verification.digest) == nil)
        #expect(try await stores.tokens.accountToken(digest: bobs.digest) == bobs, "still only the account's own")
    }

    func recordCommitsEverythingOrNothing() async throws {
        let stores = try await makeStores()
        let ada = try Fixture.user("ada")
        let verification = Self.token(.emailVerification, for: ada)
        try await stores.users.insert(ada, events: [], writes: AccountWrites(issue: [verification]))
        let resend = Self.token(.emailVerification, for: ada, issued: now.addingTimeInterval(1))
        let mail = Self.mail(.emailVerification, to: ada, at: now.addingTimeInterval(1))
        let event = Fixture.event(.tokenRevoked(userID: ada.id, jti: "record", expiresAt: now), at: now.addingTimeInterval(1))
        #expect(try await stores.tokens.record(
            AccountWrites(invalidate: [.emailVerification], issue: [resend], mail: [mail]), for: ada.id, events: [event], limit: nil
        ), "a write without a limit is written")
        #expect(try await stores.tokens.accountToken(digest: resend.digest) == resend)
        #expect(try await stores.tokens.accountToken(digest: verification.digest) == nil)
        #expect(try await stores.outbox.mailStatus() == MailOutboxStatus(pending: 1, failed: 0, oldestPendingAt: mail.createdAt))
        try await stores.expectEvents([WrittenEvent(event.payload, at: event.occurredAt)], "its events commit with it")

        let refused = Self.token(.emailVerification, for: ada)
        await #expect(throws: IdentityError.invalidToken, "a record that uses an unusable token is refused") {
            try await stores.tokens.record(
                AccountWrites(use: TokenUse(digest: verification.digest, purpose: .emailVerification, now: now), invalidate: [.emailVerification],
                              issue: [refused], mail: [Self.mail(.emailVerification, to: ada)]),
                for: ada.id, events: [Fixture.event(.emailVerified(userID: ada.id))], limit: nil
            )
        }
        #expect(try await stores.tokens.accountToken(digest: refused.digest) == nil, "and writes nothing: no token")
        #expect(try await stores.tokens.accountToken(digest: resend.digest) == resend, "no invalidation")
        #expect(try await stores.outbox.mailStatus().pending == 1, "no mail")
        try await stores.expectEvents([], "no event")
        #expect(try await stores.tokens.record(
            AccountWrites(use: TokenUse(digest: resend.digest, purpose: .emailVerification, now: now.addingTimeInterval(2))),
            for: ada.id, events: [], limit: nil
        ), "a usable token is used by a record")
        #expect(try await stores.tokens.accountToken(digest: resend.digest) == nil)
    }

    func theMailLimitCountsEveryCommittedMail() async throws {
        let stores = try await makeStores()
        let ada = try Fixture.user("ada")
        let bob = try Fixture.user("bob")
        try await stores.users.insert(ada, events: [], writes: .none)
        try await stores.users.insert(bob, events: [], writes: .none)
        let windowStart = now.addingTimeInterval(10)
        // A mail before the window counts for nothing.
        #expect(try await stores.tokens.record(AccountWrites(mail: [Self.mail(.passwordReset, to: ada, at: now)]), for: ada.id, events: [], limit: nil))
        func request(_ user: User, _ kind: MailKind = .passwordReset, at offset: TimeInterval) async throws -> (Bool, AccountToken) {
            let time = windowStart.addingTimeInterval(offset)
            let token = Self.token(.passwordReset, for: user, issued: time)
            let written = try await stores.tokens.record(
                AccountWrites(invalidate: [.passwordReset], issue: [token], mail: [Self.mail(kind, to: user, at: time)]), for: user.id,
                events: [Fixture.event(.tokenRevoked(userID: user.id, jti: "limit-\(offset)", expiresAt: time), at: time)],
                limit: MailLimit(kind: .passwordReset, recipient: user.email, max: 3, since: windowStart)
            )
            return (written, token)
        }
        #expect(try await request(ada, at: 1).0, "the first in the window is written")
        // The first delivered and the second given up on: they count all the same.
        let first = try await stores.outbox.claimDueMail(limit: 10, now: windowStart.addingTimeInterval(1.5), lease: 60)
        #expect(first.count == 2)
        for job in first where job.mail.createdAt == windowStart.addingTimeInterval(1) {
            try await stores.outbox.markMailSent(id: job.mail.id, now: windowStart.addingTimeInterval(1.5))
        }
        #expect(try await request(ada, at: 2).0, "the second")
        let second = try await stores.outbox.claimDueMail(limit: 10, now: windowStart.addingTimeInterval(90), lease: 60)
        for job in second where job.mail.createdAt == windowStart.addingTimeInterval(2) {
            try await stores.outbox.markMailFailed(id: job.mail.id, retryAt: nil, error: "550 no such user", now: windowStart.addingTimeInterval(90))
        }
        #expect(try await request(ada, .emailVerification, at: 3).0, "a mail of another kind is not counted")
        #expect(try await request(bob, at: 4).0, "nor one to another recipient")
        #expect(try await request(ada, at: 5).0, "the third")
        try await stores.forgetEvents()
        let status = try await stores.outbox.mailStatus()
        let (fourth, refusedToken) = try await request(ada, at: 6)
        #expect(!fourth, "the fourth in the window, delivered and failed mails counted, is not written")
        #expect(try await stores.tokens.accountToken(digest: refusedToken.digest) == nil, "its token is not stored")
        #expect(try await stores.outbox.mailStatus() == status, "nor its mail")
        try await stores.expectEvents([], "nor its event")
        let (later, laterToken) = try await request(ada, at: 7)
        #expect(!later, "nor any other in the window")
        #expect(try await stores.tokens.accountToken(digest: laterToken.digest) == nil)
        let nextWindow = windowStart.addingTimeInterval(1.5)
        let token = Self.token(.passwordReset, for: ada, issued: windowStart.addingTimeInterval(8))
        #expect(try await stores.tokens.record(
            AccountWrites(issue: [token], mail: [Self.mail(.passwordReset, to: ada, at: windowStart.addingTimeInterval(8))]), for: ada.id, events: [],
            limit: MailLimit(kind: .passwordReset, recipient: ada.email, max: 3, since: nextWindow)
        ), "once the window has moved past the first, one more is written")
        #expect(try await stores.tokens.accountToken(digest: token.digest) == token)
    }

    func deletingAnAccountForgetsItsTokens() async throws {
        let stores = try await makeStores()
        let ada = try Fixture.user("ada")
        let bob = try Fixture.user("bob")
        let tokens = [Self.token(.emailVerification, for: ada), Self.token(.passwordReset, for: ada)]
        let bobs = Self.token(.passwordReset, for: bob)
        let notice = Self.mail(.emailChanged, to: ada, recipient: try Email("old.ada@example.com"))
        try await stores.users.insert(ada, events: [], writes: AccountWrites(issue: tokens, mail: [Self.mail(.emailVerification, to: ada), notice]))
        try await stores.users.insert(bob, events: [], writes: AccountWrites(issue: [bobs], mail: [Self.mail(.passwordReset, to: bob)]))
        try await stores.users.delete(id: ada.id, events: [], revocations: [])
        for token in tokens {
            #expect(try await stores.tokens.accountToken(digest: token.digest) == nil, "a deleted account's tokens are gone")
        }
        #expect(try await stores.tokens.accountToken(digest: bobs.digest) == bobs, "another account's stay")
        let jobs = try await stores.outbox.claimDueMail(limit: 10, now: now.addingTimeInterval(1), lease: 60)
        #expect(Set(jobs.map(\.mail.kind)) == [.emailChanged, .passwordReset], "its mail carrying a token no longer goes out; a notice does")
        #expect(jobs.filter { $0.mail.userID == ada.id }.map(\.mail) == [notice])
    }
}

/// The stores a check works on, with what it reads back.
struct Stores {
    let users: any UserRepository
    let tokens: any AccountTokenStore
    let outbox: any MailOutbox
    /// The account store's event outbox, when it is one.
    let events: EventLog?

    /// Requires the events written since the last look to be `expected` (when the account
    /// store is an outbox).
    func expectEvents(_ expected: [WrittenEvent], _ comment: Comment, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        guard let events else { return }
        try await events.expect(expected, comment, sourceLocation: sourceLocation)
    }

    /// Marks the events written so far as read, whatever they are (another check's business).
    func forgetEvents() async throws {
        guard let events else { return }
        let entries = try await events.outbox.pending(limit: 10_000)
        try await events.outbox.markPublished(entries.map(\.sequence))
    }

    /// Requires that a refused write left no trace: not `token`, no mail, no event.
    func expectNothingWritten(token: AccountToken, _ comment: Comment, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        #expect(try await tokens.accountToken(digest: token.digest) == nil, "\(comment): no token is stored", sourceLocation: sourceLocation)
        #expect(try await outbox.mailStatus() == MailOutboxStatus(pending: 0, failed: 0, oldestPendingAt: nil),
                "\(comment): no mail is committed", sourceLocation: sourceLocation)
        #expect(try await outbox.claimDueMail(limit: 10, now: Fixture.epoch.addingTimeInterval(86_400), lease: 1).isEmpty,
                "\(comment): none is due", sourceLocation: sourceLocation)
        try await expectEvents([], "\(comment): no event is written", sourceLocation: sourceLocation)
    }
}
