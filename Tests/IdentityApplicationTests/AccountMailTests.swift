import CryptoAdapter
import Foundation
import IdentityApplication
import IdentityComposition
import IdentityDomain
import IdentityPorts
import IdentityTestSupport
import InMemoryAdapter
import Synchronization
import Testing

/// A mailer that keeps what it is given, or fails as told.
final class RecordingMailer: Mailer, Sendable {
    enum Mode: Sendable { case accept, failTransiently, failPermanently }
    let mode = Mutex(Mode.accept)
    let sent = Mutex([MailMessage]())

    func send(_ message: MailMessage) async throws {
        switch mode.withLock({ $0 }) {
        case .accept: sent.withLock { $0.append(message) }
        case .failTransiently: throw MailDeliveryFailure(isPermanent: false, reason: "421 try later")
        case .failPermanently: throw MailDeliveryFailure(isPermanent: true, reason: "550 no such user")
        }
    }

    var messages: [MailMessage] { sent.withLock { $0 } }
}

/// Renders a mail as its kind and token, so that a test reads the token back.
struct PlainComposer: MailComposer {
    func compose(_ mail: OutgoingMail, token: String?) throws -> MailMessage {
        MailMessage(
            id: mail.id, from: MailAddress(address: "identity@example.com"), to: MailAddress(address: mail.recipient.value, name: mail.recipientName.value),
            subject: mail.kind.rawValue, text: token ?? "notice:\(mail.newEmail?.value ?? "")", html: nil, date: mail.createdAt
        )
    }
}

@Suite("Email verification and password reset in the core (contract §11)")
struct AccountMailTests {
    let password = "correct horse battery"

    struct Rig {
        let identity: TestIdentity
        let mailer: RecordingMailer
        let delivery: MailDelivery
        let minting: AccountTokens

        var service: IdentityService { identity.service }

        /// Delivers what is due; returns the messages sent by this round.
        @discardableResult
        func deliver() async throws -> [MailMessage] {
            let before = mailer.messages.count
            _ = try await delivery.deliverDue()
            return Array(mailer.messages.dropFirst(before))
        }

        /// The token of the newest mail of `kind` to `address` delivered so far.
        func token(_ kind: MailKind, to address: String) async throws -> String {
            try await deliver()
            let message = try #require(mailer.messages.last { $0.subject == kind.rawValue && $0.to.address == address })
            return message.text
        }
    }

    func rig(
        policy: AccountMailPolicy = AccountMailPolicy(), delivery: MailDelivery.Policy = MailDelivery.Policy(),
        limits: LoginThrottleConfiguration = LoginThrottleConfiguration(), minting: AccountTokens = .random()
    ) async throws -> Rig {
        let mailer = RecordingMailer()
        let setup = MailSetup(mailer: mailer, composer: PlainComposer(), minting: minting, policy: policy, delivery: delivery)
        let identity = try await TestIdentity.make(limits: limits, mail: setup)
        let deliverer = MailDelivery(
            outbox: identity.store, mailer: mailer, composer: PlainComposer(), minting: minting, clock: identity.clock, policy: delivery
        )
        return Rig(identity: identity, mailer: mailer, delivery: deliverer, minting: minting)
    }

    func events(_ rig: Rig) async -> [String] {
        await rig.identity.store.pending(limit: 1000).map(\.event.type)
    }

    @Test("registration owes a verification mail; its token verifies the email once, with user.email_verified")
    func verification() async throws {
        let rig = try await rig()
        let user = try await rig.service.register(email: "ada@example.com", password: password, name: "Ada")
        #expect(!user.emailVerified)
        let token = try await rig.token(.emailVerification, to: "ada@example.com")
        #expect(token.count == 43, "256 bits, base64url")
        let verified = try await rig.service.verifyEmail(token: token)
        #expect(verified.emailVerified && verified.version == user.version + 1)
        #expect(await events(rig).contains("user.email_verified"))
        await #expect(throws: IdentityError.invalidToken) { try await rig.service.verifyEmail(token: token) }
    }

    @Test("malformed, unknown, expired and wrong-purpose tokens are invalid-token, and change nothing")
    func badTokens() async throws {
        let rig = try await rig()
        _ = try await rig.service.register(email: "ada@example.com", password: password, name: "Ada")
        let verification = try await rig.token(.emailVerification, to: "ada@example.com")
        try await rig.service.requestPasswordReset(email: "ada@example.com", client: nil)
        #expect(await eventually { (try? await rig.deliver().count) == 1 })
        let reset = try await rig.token(.passwordReset, to: "ada@example.com")
        for bad in ["", "short", String(repeating: "A", count: 43), String(repeating: "é", count: 43), verification + "A", reset] {
            await #expect(throws: IdentityError.invalidToken) { try await rig.service.verifyEmail(token: bad) }
        }
        await #expect(throws: IdentityError.invalidToken) { try await rig.service.confirmPasswordReset(token: verification, password: "another good one") }
        rig.identity.clock.advance(by: 24 * 3600)
        await #expect(throws: IdentityError.invalidToken) { try await rig.service.verifyEmail(token: verification) }
        let me = try #require(await rig.identity.store.user(email: try Email("ada@example.com")))
        #expect(!me.emailVerified && me.version == 1)
    }

    @Test("an email change unverifies, mails the new address a token and the old one a notice, and voids open tokens")
    func emailChange() async throws {
        let rig = try await rig()
        let user = try await rig.service.register(email: "ada@example.com", password: password, name: "Ada")
        let first = try await rig.token(.emailVerification, to: "ada@example.com")
        _ = try await rig.service.verifyEmail(token: first)
        try await rig.service.requestPasswordReset(email: "ada@example.com", client: nil)
        #expect(await eventually { (try? await rig.deliver().count) == 1 })
        let reset = try await rig.token(.passwordReset, to: "ada@example.com")
        let pair = try await rig.service.login(email: "ada@example.com", password: password, client: nil)
        let principal = try await rig.service.authenticator.authenticate(bearer: pair.token)
        let changed = try await rig.service.updateProfile(principal, name: nil, email: "ada@new.example", password: nil, currentPassword: password)
        #expect(!changed.emailVerified && changed.id == user.id)
        let sent = try await rig.deliver()
        #expect(Set(sent.map(\.to.address)) == ["ada@new.example", "ada@example.com"])
        #expect(sent.first { $0.to.address == "ada@example.com" }?.text == "notice:ada@new.example")
        await #expect(throws: IdentityError.invalidToken) { try await rig.service.confirmPasswordReset(token: reset, password: "another good one") }
        let second = try await rig.token(.emailVerification, to: "ada@new.example")
        #expect(try await rig.service.verifyEmail(token: second).emailVerified)
    }

    @Test("a reset: unknown emails send nothing, 3 mails per hour, a newer token voids older, and the reset revokes every session")
    func reset() async throws {
        let rig = try await rig()
        _ = try await rig.service.register(email: "ada@example.com", password: password, name: "Ada")
        try await rig.deliver()
        try await rig.service.requestPasswordReset(email: "nobody@example.com", client: nil)
        // One after the other (a request is handed on without waiting), a second apart.
        for count in 1...3 {
            try await rig.service.requestPasswordReset(email: "ada@example.com", client: nil)
            #expect(await eventually {
                _ = try? await rig.deliver()
                return rig.mailer.messages.filter { $0.subject == MailKind.passwordReset.rawValue }.count == count
            })
            rig.identity.clock.advance(by: 1)
        }
        // The fourth within the hour, applied here and now by a write side on the same store: done, and nothing owed.
        let handler = IdentityCommandHandler(
            users: rig.identity.store, outbox: rig.identity.store, revocations: rig.identity.revocations, tokens: rig.identity.tokens,
            mailing: AccountMailing(tokens: rig.identity.store, minting: rig.minting), clock: rig.identity.clock
        )
        let fourth = CommandEnvelope(messageID: "fourth", command: .requestPasswordReset(RequestPasswordReset(email: try Email("ada@example.com"))))
        #expect(try await handler.handle(fourth) == .done)
        _ = try await rig.deliver()
        #expect(rig.mailer.messages.filter { $0.subject == MailKind.passwordReset.rawValue }.count == 3)
        // The fourth request (and the unknown email) leave nothing pending.
        #expect(await rig.identity.store.mailStatus().pending == 0)
        let resets = rig.mailer.messages.filter { $0.subject == MailKind.passwordReset.rawValue }.map(\.text)
        #expect(rig.mailer.messages.allSatisfy { $0.to.address != "nobody@example.com" })
        let pair = try await rig.service.login(email: "ada@example.com", password: password, client: nil)
        // Only the newest token works.
        for older in resets.dropLast() {
            await #expect(throws: IdentityError.invalidToken) { try await rig.service.confirmPasswordReset(token: older, password: "another good one") }
        }
        await #expect(throws: ValidationError.self) { try await rig.service.confirmPasswordReset(token: resets[2], password: "short") }
        try await rig.service.confirmPasswordReset(token: resets[2], password: "another good one")
        await #expect(throws: TokenRejected.self) { try await rig.service.authenticator.authenticate(bearer: pair.token) }
        await #expect(throws: IdentityError.refreshTokenRefused) { try await rig.service.refresh(pair.refreshToken, client: nil) }
        await #expect(throws: IdentityError.invalidCredentials) { try await rig.service.login(email: "ada@example.com", password: password, client: nil) }
        _ = try await rig.service.login(email: "ada@example.com", password: "another good one", client: nil)
        await #expect(throws: IdentityError.invalidToken) { try await rig.service.confirmPasswordReset(token: resets[2], password: "a third good one") }
        #expect(await events(rig).contains("user.password_reset"))
        let me = try #require(await rig.identity.store.user(email: try Email("ada@example.com")))
        #expect(me.emailVerified, "the reset mail reached its owner")
    }

    @Test("a reset ends the email's login lockout")
    func resetEndsLockout() async throws {
        let rig = try await rig(limits: LoginThrottleConfiguration(maxFailuresPerEmail: 2))
        _ = try await rig.service.register(email: "ada@example.com", password: password, name: "Ada")
        for _ in 1...2 {
            await #expect(throws: IdentityError.invalidCredentials) { try await rig.service.login(email: "ada@example.com", password: "wrong one", client: nil) }
        }
        await #expect(throws: LoginThrottled.self) { try await rig.service.login(email: "ada@example.com", password: password, client: nil) }
        try await rig.service.requestPasswordReset(email: "ada@example.com", client: nil)
        #expect(await eventually { (try? await rig.deliver().contains { $0.subject == MailKind.passwordReset.rawValue }) == true })
        let token = try await rig.token(.passwordReset, to: "ada@example.com")
        try await rig.service.confirmPasswordReset(token: token, password: "another good one")
        _ = try await rig.service.login(email: "ada@example.com", password: "another good one", client: nil)
    }

    @Test("reset and resend requests count toward the client address ceiling")
    func clientCeiling() async throws {
        let rig = try await rig(limits: LoginThrottleConfiguration(maxFailuresPerClient: 2))
        try await rig.service.requestPasswordReset(email: "a@example.com", client: "192.0.2.1")
        try await rig.service.requestPasswordReset(email: "b@example.com", client: "192.0.2.1")
        await #expect(throws: LoginThrottled.self) { try await rig.service.requestPasswordReset(email: "c@example.com", client: "192.0.2.1") }
        try await rig.service.requestPasswordReset(email: "c@example.com", client: "192.0.2.2")
        await #expect(throws: ValidationError.self) { try await rig.service.requestPasswordReset(email: "not an email", client: "192.0.2.3") }
    }

    @Test("a resend sends nothing to a verified address, and voids the older token of an unverified one")
    func resend() async throws {
        let rig = try await rig()
        _ = try await rig.service.register(email: "ada@example.com", password: password, name: "Ada")
        let first = try await rig.token(.emailVerification, to: "ada@example.com")
        let pair = try await rig.service.login(email: "ada@example.com", password: password, client: nil)
        let principal = try await rig.service.authenticator.authenticate(bearer: pair.token)
        try await rig.service.resendVerification(principal, client: nil)
        let second = try await rig.token(.emailVerification, to: "ada@example.com")
        #expect(second != first)
        await #expect(throws: IdentityError.invalidToken) { try await rig.service.verifyEmail(token: first) }
        _ = try await rig.service.verifyEmail(token: second)
        try await rig.service.resendVerification(principal, client: nil)
        #expect(try await rig.deliver().isEmpty)
    }

    @Test("REQUIRE_VERIFIED_EMAIL: the right password of an unverified account is email-not-verified; a wrong one stays invalid")
    func requireVerified() async throws {
        let rig = try await rig(policy: AccountMailPolicy(requireVerifiedEmail: true))
        _ = try await rig.service.register(email: "ada@example.com", password: password, name: "Ada")
        await #expect(throws: IdentityError.emailNotVerified) { try await rig.service.login(email: "ada@example.com", password: password, client: nil) }
        await #expect(throws: IdentityError.invalidCredentials) { try await rig.service.login(email: "ada@example.com", password: "wrong one", client: nil) }
        _ = try await rig.service.verifyEmail(token: try await rig.token(.emailVerification, to: "ada@example.com"))
        _ = try await rig.service.login(email: "ada@example.com", password: password, client: nil)
    }

    @Test("delivery retries with doubling backoff, gives up after the last attempt or a permanent failure")
    func retries() async throws {
        let rig = try await rig(delivery: MailDelivery.Policy(maxAttempts: 3, firstRetryDelay: 10, maxRetryDelay: 15))
        rig.mailer.mode.withLock { $0 = .failTransiently }
        _ = try await rig.service.register(email: "ada@example.com", password: password, name: "Ada")
        var outcomes = try await rig.delivery.deliverDue()
        #expect(outcomes.map(\.outcome) == [.retrying(at: rig.identity.clock.now().addingTimeInterval(10), reason: "421 try later")])
        #expect(try await rig.delivery.deliverDue().isEmpty, "not due before the backoff")
        rig.identity.clock.advance(by: 10)
        outcomes = try await rig.delivery.deliverDue()
        #expect(outcomes.map(\.outcome) == [.retrying(at: rig.identity.clock.now().addingTimeInterval(15), reason: "421 try later")], "capped")
        rig.identity.clock.advance(by: 15)
        outcomes = try await rig.delivery.deliverDue()
        guard case .gaveUp = outcomes.first?.outcome else { Issue.record("the third failure gives up: \(outcomes)"); return }
        #expect(await rig.identity.store.mailStatus() == MailOutboxStatus(pending: 0, failed: 1, oldestPendingAt: nil))

        rig.mailer.mode.withLock { $0 = .failPermanently }
        _ = try await rig.service.register(email: "bob@example.com", password: password, name: "Bob")
        guard case .gaveUp(let reason) = try await rig.delivery.deliverDue().first?.outcome else { Issue.record("a 550 is final"); return }
        #expect(reason == "550 no such user")
        rig.mailer.mode.withLock { $0 = .accept }
        _ = try await rig.service.register(email: "cy@example.com", password: password, name: "Cy")
        #expect(try await rig.deliver().map(\.to.address) == ["cy@example.com"], "given-up mail is not tried again")
    }

    @Test("a mail sent while the outbox cannot be written is recorded once it can, not sent again; an owed retry whose claim ended is left to the next claim")
    func recordsOwedWhileOutboxIsDown() async throws {
        let rig = try await rig(delivery: MailDelivery.Policy(firstRetryDelay: 10, lease: 60))
        let outbox = FailingWritesOutbox(rig.identity.store)
        let delivery = MailDelivery(outbox: outbox, mailer: rig.mailer, composer: PlainComposer(), minting: rig.minting, clock: rig.identity.clock, policy: rig.delivery.policy)
        for name in ["ada", "bob"] { _ = try await rig.service.register(email: "\(name)@example.com", password: password, name: name) }

        outbox.mode.withLock { $0 = .marksFail }
        await #expect(throws: OutboxWriteFailure.self) { try await delivery.deliverDue() }
        #expect(rig.mailer.messages.map(\.to.address).sorted() == ["ada@example.com", "bob@example.com"], "both sent (the mailer is up)")
        outbox.mode.withLock { $0 = .allFail }
        await #expect(throws: OutboxWriteFailure.self, "still down") { try await delivery.deliverDue() }
        outbox.mode.withLock { $0 = .working }
        #expect(await rig.identity.store.mailStatus().pending == 2, "nothing recorded while down")
        rig.identity.clock.advance(by: 30)
        let recorded = try await delivery.deliverDue()
        #expect(recorded.map(\.mail.recipient.value).sorted() == ["ada@example.com", "bob@example.com"] && recorded.allSatisfy { $0.outcome == .sent })
        #expect(await rig.identity.store.mailStatus() == MailOutboxStatus(pending: 0, failed: 0, oldestPendingAt: nil))
        rig.identity.clock.advance(by: 120)
        #expect(try await delivery.deliverDue().isEmpty && rig.mailer.messages.count == 2, "each went out once, even after the claims ended")

        // A failed send whose record is owed past its claim: forgotten, the mail claimed again.
        rig.mailer.mode.withLock { $0 = .failTransiently }
        _ = try await rig.service.register(email: "cy@example.com", password: password, name: "Cy")
        outbox.mode.withLock { $0 = .marksFail }
        await #expect(throws: OutboxWriteFailure.self) { try await delivery.deliverDue() }
        outbox.mode.withLock { $0 = .working }
        rig.identity.clock.advance(by: 61)
        rig.mailer.mode.withLock { $0 = .accept }
        let again = try await delivery.deliverDue()
        #expect(again.map(\.outcome) == [.sent] && rig.mailer.messages.last?.to.address == "cy@example.com", "\(again)")
    }

    @Test("a mail sealed under another key is given up on at once, saying why")
    func otherKey() async throws {
        let rig = try await rig()
        _ = try await rig.service.register(email: "ada@example.com", password: password, name: "Ada")
        let other = MailDelivery(
            outbox: rig.identity.store, mailer: rig.mailer, composer: PlainComposer(), minting: AccountTokens.random(), clock: rig.identity.clock
        )
        guard case .gaveUp(let reason) = try await other.deliverDue().first?.outcome else { Issue.record("not opened, not retried"); return }
        #expect(reason.contains("cannot be opened"))
        #expect(rig.mailer.messages.isEmpty)
    }

    @Test("sealed tokens open only under their secret; digests ignore nothing; a short secret is refused")
    func minting() throws {
        let tokens = try AccountTokens(secret: String(repeating: "k", count: 32))
        let token = tokens.makeToken()
        let sealed = try tokens.seal(token)
        #expect(!sealed.contains(token) && tokens.open(sealed) == token)
        #expect(try AccountTokens(secret: String(repeating: "j", count: 32)).open(sealed) == nil)
        #expect(tokens.open(String(sealed.dropLast()) + (sealed.hasSuffix("A") ? "B" : "A")) == nil)
        #expect(tokens.digest(of: token)?.count == 32 && tokens.digest(of: token) != tokens.digest(of: tokens.makeToken()))
        #expect(throws: AccountTokenSecretTooShort.self) { try AccountTokens(secret: "short") }
    }

    @Test("a mail whose token no longer works is dropped, not sent: an older reset mail after a newer one")
    func obsoleteMailDropped() async throws {
        let rig = try await rig()
        _ = try await rig.service.register(email: "ada@example.com", password: password, name: "Ada")
        try await rig.deliver()
        let handler = IdentityCommandHandler(
            users: rig.identity.store, outbox: rig.identity.store, revocations: rig.identity.revocations, tokens: rig.identity.tokens,
            mailing: AccountMailing(tokens: rig.identity.store, minting: rig.minting), clock: rig.identity.clock
        )
        for index in 1...2 {
            let request = RequestPasswordReset(email: try Email("ada@example.com"))
            #expect(try await handler.handle(CommandEnvelope(messageID: "reset-\(index)", command: .requestPasswordReset(request))) == .done)
            rig.identity.clock.advance(by: 1)
        }
        let checking = MailDelivery(
            outbox: rig.identity.store, mailer: rig.mailer, composer: PlainComposer(), minting: rig.minting, tokens: rig.identity.store,
            clock: rig.identity.clock
        )
        let outcomes = try await checking.deliverDue().map(\.outcome)
        guard outcomes.count == 2, case .dropped = outcomes[0], outcomes[1] == .sent else {
            Issue.record("the older reset mail is dropped, the newer sent: \(outcomes)")
            return
        }
        let sent = try #require(rig.mailer.messages.last)
        try await rig.service.confirmPasswordReset(token: sent.text, password: "another good one")
        #expect(await rig.identity.store.mailStatus() == MailOutboxStatus(pending: 0, failed: 1, oldestPendingAt: nil))
    }
}

/// The failure `FailingWritesOutbox` injects.
struct OutboxWriteFailure: Error, CustomStringConvertible {
    var description: String { "injected: the outbox cannot be written" }
}

/// An outbox whose records (`marksFail`) or every call (`allFail`) fail as told: a database
/// out of reach.
final class FailingWritesOutbox: MailOutbox, Sendable {
    enum Mode: Sendable { case working, marksFail, allFail }
    let base: any MailOutbox
    let mode = Mutex(Mode.working)

    init(_ base: any MailOutbox) { self.base = base }

    private func check(mark: Bool) throws {
        switch mode.withLock({ $0 }) {
        case .working: return
        case .marksFail: if mark { throw OutboxWriteFailure() }
        case .allFail: throw OutboxWriteFailure()
        }
    }

    func claimDueMail(limit: Int, now: Date, lease: TimeInterval) async throws -> [MailJob] {
        try check(mark: false)
        return try await base.claimDueMail(limit: limit, now: now, lease: lease)
    }

    func markMailSent(id: UUID, now: Date) async throws {
        try check(mark: true)
        try await base.markMailSent(id: id, now: now)
    }

    func markMailFailed(id: UUID, retryAt: Date?, error: String, now: Date) async throws {
        try check(mark: true)
        try await base.markMailFailed(id: id, retryAt: retryAt, error: error, now: now)
    }

    func mailStatus() async throws -> MailOutboxStatus {
        try check(mark: false)
        return try await base.mailStatus()
    }
}
