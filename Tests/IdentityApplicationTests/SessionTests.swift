import CryptoAdapter
import Foundation
import IdentityApplication
import IdentityComposition
import IdentityDomain
import IdentityPorts
import IdentityTestSupport
@_spi(FaultInjection) import InMemoryAdapter
import Testing

@Suite("Sessions and refresh tokens (contract §9)")
struct SessionTests {
    let password = "correct horse battery"

    /// An account, signed in once from 127.0.0.1.
    func signedIn(_ identity: TestIdentity, email: String = "ada@example.com") async throws -> (UserRecord, SignIn) {
        let user = try await identity.service.register(email: email, password: password, name: "Ada")
        let pair = try await identity.service.login(email: email, password: password, client: "127.0.0.1", userAgent: "tests/1")
        return (user, pair)
    }

    func principal(_ identity: TestIdentity, _ pair: SignIn) async throws -> Principal {
        try await identity.service.authenticator.authenticate(bearer: pair.token)
    }

    func isRefused(_ identity: TestIdentity, access token: String) async -> Bool {
        do {
            _ = try await identity.service.authenticator.authenticate(bearer: token)
            return false
        } catch {
            return error as? TokenRejected == .revoked
        }
    }

    @Test("a login opens a session: its access token carries the sid, and the list shows it, current, with agent and address")
    func login() async throws {
        let identity = try await TestIdentity.make()
        let (user, pair) = try await signedIn(identity)
        let me = try await principal(identity, pair)
        #expect(me.sessionID == pair.sessionID && me.userID == user.id)
        #expect(pair.refreshToken.count == 96)
        #expect(RefreshTokenSealer().parse(pair.refreshToken)?.account.map { [$0.userID.description, "\($0.version)"] } == [user.id.description, "1"],
                "it names the account and the version it was made for")
        let sessions = try await identity.service.sessions(me)
        #expect(sessions.map(\.id) == [pair.sessionID])
        #expect(sessions.first?.isCurrent == true && sessions.first?.userAgent == "tests/1" && sessions.first?.clientAddress == "127.0.0.1")
    }

    @Test("a refresh rotates: a new access token and refresh token; the new one refreshes, and last_used_at moves")
    func rotation() async throws {
        let identity = try await TestIdentity.make()
        let (_, first) = try await signedIn(identity)
        identity.clock.advance(by: 60)
        let second = try await identity.service.refresh(first.refreshToken, client: "127.0.0.1")
        #expect(second.sessionID == first.sessionID)
        #expect(second.refreshToken != first.refreshToken && second.token != first.token)
        #expect(try await principal(identity, second).sessionID == first.sessionID)
        let listed = try #require(try await identity.service.sessions(try await principal(identity, second)).first)
        #expect(listed.lastUsedAt == identity.clock.now().truncatedToMilliseconds)
        identity.clock.advance(by: 60)
        let third = try await identity.service.refresh(second.refreshToken, client: "127.0.0.1")
        #expect(third.refreshToken != second.refreshToken)
    }

    @Test("the token just replaced, within 10 s, gets the current pair again, unchanged")
    func grace() async throws {
        let identity = try await TestIdentity.make()
        let (_, first) = try await signedIn(identity)
        let second = try await identity.service.refresh(first.refreshToken, client: nil)
        identity.clock.advance(by: 9)
        let again = try await identity.service.refresh(first.refreshToken, client: nil)
        #expect(again == second, "the very same pair")
        let third = try await identity.service.refresh(second.refreshToken, client: nil)
        #expect(third.sessionID == first.sessionID, "the session goes on")
    }

    @Test("a replay after the grace interval ends the session: reused, then its refresh and access tokens are refused")
    func reuseLate() async throws {
        let identity = try await TestIdentity.make()
        let (_, first) = try await signedIn(identity)
        let second = try await identity.service.refresh(first.refreshToken, client: nil)
        identity.clock.advance(by: 11)
        await #expect(throws: IdentityError.refreshTokenReused) { try await identity.service.refresh(first.refreshToken, client: nil) }
        await #expect(throws: IdentityError.refreshTokenRefused) { try await identity.service.refresh(second.refreshToken, client: nil) }
        #expect(await isRefused(identity, access: first.token))
        #expect(await isRefused(identity, access: second.token))
        await #expect(throws: IdentityError.self, "an ended session never comes back") {
            try await identity.service.refresh(first.refreshToken, client: nil)
        }
    }

    @Test("a replay of a token older than the one just replaced is a reuse, even within 10 s")
    func reuseOlder() async throws {
        let identity = try await TestIdentity.make()
        let (_, first) = try await signedIn(identity)
        let second = try await identity.service.refresh(first.refreshToken, client: nil)
        _ = try await identity.service.refresh(second.refreshToken, client: nil)
        await #expect(throws: IdentityError.refreshTokenReused) { try await identity.service.refresh(first.refreshToken, client: nil) }
        #expect(await isRefused(identity, access: second.token))
    }

    @Test("a reuse whose revocation cannot be written changes nothing; once it can, the replay ends the session and refuses its access tokens at once")
    func reuseWithoutRevocation() async throws {
        struct Injected: Error {}
        let identity = try await TestIdentity.make()
        let (_, first) = try await signedIn(identity)
        let second = try await identity.service.refresh(first.refreshToken, client: nil)
        let third = try await identity.service.refresh(second.refreshToken, client: nil)
        identity.revocations.failWrites(with: Injected())
        await #expect(throws: Injected.self) { try await identity.service.refresh(first.refreshToken, client: nil) }
        identity.revocations.failWrites(with: nil)
        #expect(await !isRefused(identity, access: third.token), "the end and its revocation are one step: neither was made")
        #expect(identity.sessions.session(id: third.sessionID)?.endReason == nil, "the session is open")
        await #expect(throws: IdentityError.refreshTokenReused) { try await identity.service.refresh(first.refreshToken, client: nil) }
        #expect(await isRefused(identity, access: third.token), "ended and revoked in one step")
        #expect(await isRefused(identity, access: first.token))
        await #expect(throws: IdentityError.refreshTokenRefused) { try await identity.service.refresh(third.refreshToken, client: nil) }
    }

    @Test("twenty simultaneous refreshes with one token: one rotation, and all twenty get the same pair")
    func simultaneous() async throws {
        let identity = try await TestIdentity.make()
        let (_, first) = try await signedIn(identity)
        let pairs = try await withThrowingTaskGroup(of: SignIn.self) { group in
            for _ in 0..<20 { group.addTask { try await identity.service.refresh(first.refreshToken, client: nil) } }
            return try await group.reduce(into: [SignIn]()) { $0.append($1) }
        }
        #expect(Set(pairs.map(\.refreshToken)).count == 1)
        let session = try #require(identity.sessions.session(id: first.sessionID))
        #expect(session.generation == 1, "exactly one rotation")
    }

    @Test("logout ends the session: its refresh token and every access token it issued are refused")
    func logout() async throws {
        let identity = try await TestIdentity.make()
        let (_, first) = try await signedIn(identity)
        let second = try await identity.service.refresh(first.refreshToken, client: nil)
        try await identity.service.logout(try await principal(identity, second))
        #expect(await isRefused(identity, access: first.token), "an earlier access token of the session too")
        await #expect(throws: IdentityError.refreshTokenRefused) { try await identity.service.refresh(second.refreshToken, client: nil) }
        #expect(identity.sessions.session(id: first.sessionID)?.endReason == .logout)
    }

    @Test("a password change ends every session of the account; a session it failed to end is refused all the same")
    func passwordChange() async throws {
        let identity = try await TestIdentity.make()
        let (_, phone) = try await signedIn(identity)
        let laptop = try await identity.service.login(email: "ada@example.com", password: password, client: nil)
        identity.clock.advance(by: 1)
        _ = try await identity.service.updateProfile(
            try await principal(identity, laptop), name: nil, email: nil, password: "a new horse battery", currentPassword: password
        )
        for pair in [phone, laptop] {
            await #expect(throws: IdentityError.refreshTokenRefused) { try await identity.service.refresh(pair.refreshToken, client: nil) }
            #expect(identity.sessions.session(id: pair.sessionID)?.endReason == .passwordChange)
        }
    }

    @Test("a session the write side could not end after a password change is refused at its next refresh")
    func passwordChangeBackstop() async throws {
        let identity = try await TestIdentity.make()
        let (user, pair) = try await signedIn(identity)
        // A change committed by a write side without sessions (as if ending them had failed).
        let handler = IdentityCommandHandler(
            users: identity.store, outbox: identity.store, revocations: identity.revocations, tokens: identity.tokens, clock: identity.clock
        )
        let change = UpdateProfile(
            userID: user.id, name: nil, email: nil, passwordHash: try await identity.hasher.hash(try Password("a new horse battery")),
            expectedVersion: nil
        )
        _ = try await handler.handle(CommandEnvelope(messageID: "m1", command: .updateProfile(change)))
        #expect(identity.sessions.session(id: pair.sessionID)?.isEnded == false, "not ended by the change")
        await #expect(throws: IdentityError.refreshTokenRefused) { try await identity.service.refresh(pair.refreshToken, client: nil) }
        #expect(identity.sessions.session(id: pair.sessionID)?.isEnded == true, "ended by the refused refresh")
    }

    @Test("a login that checked the old password while a password change committed opens no session that lives on")
    func loginRacingPasswordChange() async throws {
        let identity = try await TestIdentity.make()
        let (user, _) = try await signedIn(identity)
        // The store answers the login's read with the account as it was, then the change commits.
        let racing = PasswordChangedAfterRead(base: identity.store, newHash: try await identity.hasher.hash(try Password("a new horse battery")))
        let service = try await TestIdentity.service(
            users: racing, outbox: identity.store, revocations: identity.revocations, clock: identity.clock, sessions: identity.sessions
        )
        await #expect(throws: IdentityError.invalidCredentials) {
            try await service.login(email: "ada@example.com", password: password, client: nil)
        }
        let open = try await identity.service.sessions(Principal(userID: user.id, tokenID: "x", issuedAt: Date(), expiresAt: Date()))
        #expect(open.count == 1, "only the session from before; the racing login's was ended")
        #expect(await identity.store.pending(limit: 20).contains { entry in
            if case .sessionEnded(_, _, .passwordChange) = entry.event.payload { return true }
            return false
        })
    }

    @Test("deleting the account ends every session")
    func deletion() async throws {
        let identity = try await TestIdentity.make()
        let (_, pair) = try await signedIn(identity)
        try await identity.service.deleteAccount(try await principal(identity, pair))
        await #expect(throws: IdentityError.refreshTokenRefused) { try await identity.service.refresh(pair.refreshToken, client: nil) }
        #expect(identity.sessions.session(id: pair.sessionID)?.endReason == .accountDeleted)
    }

    @Test("ending one session by id: the owner's ends; another account's, an unknown and a malformed id are not found and change nothing")
    func endOne() async throws {
        let identity = try await TestIdentity.make()
        let (_, ada) = try await signedIn(identity)
        let adaPhone = try await identity.service.login(email: "ada@example.com", password: password, client: nil)
        let (_, bob) = try await signedIn(identity, email: "bob@example.com")
        let adaPrincipal = try await principal(identity, ada)
        for id in [bob.sessionID.description, UUID().uuidString, "not-a-session", "", String(repeating: "a", count: 10_000)] {
            await #expect(throws: IdentityError.sessionNotFound) { try await identity.service.endSession(adaPrincipal, id: id) }
        }
        #expect(try await identity.service.refresh(bob.refreshToken, client: nil).sessionID == bob.sessionID, "bob's session untouched")
        try await identity.service.endSession(adaPrincipal, id: adaPhone.sessionID.description.uppercased())
        #expect(await isRefused(identity, access: adaPhone.token))
        await #expect(throws: IdentityError.sessionNotFound, "not twice") {
            try await identity.service.endSession(adaPrincipal, id: adaPhone.sessionID.description)
        }
        #expect(try await identity.service.sessions(adaPrincipal).map(\.id) == [ada.sessionID])
    }

    @Test("scope=others keeps the current session; scope=all ends it too")
    func endScopes() async throws {
        let identity = try await TestIdentity.make()
        let (_, current) = try await signedIn(identity)
        var others: [SignIn] = []
        for _ in 0..<3 {
            identity.clock.advance(by: 1)
            others.append(try await identity.service.login(email: "ada@example.com", password: password, client: nil))
        }
        let me = try await principal(identity, current)
        #expect(try await identity.service.sessions(me).map(\.id) == others.reversed().map(\.sessionID) + [current.sessionID], "newest first")
        try await identity.service.endSessions(me, scope: .others)
        #expect(try await identity.service.sessions(me).map(\.id) == [current.sessionID])
        for pair in others { #expect(await isRefused(identity, access: pair.token)) }
        try await identity.service.endSessions(me, scope: .all)
        #expect(await isRefused(identity, access: current.token))
    }

    @Test("garbage, empty, over-long, wrong-encoding, unknown and altered refresh tokens are refused and change nothing")
    func badTokens() async throws {
        let identity = try await TestIdentity.make()
        let (user, pair) = try await signedIn(identity)
        let sealer = RefreshTokenSealer()
        let unknown = sealer.makeToken(for: pair.sessionID, userID: user.id, accountVersion: 1)
        // The session, account and version a token says are no secret: spelt out by someone who
        // saw an access token, with any secret, they name a real session and account.
        let anotherAccount = sealer.makeToken(for: pair.sessionID, userID: UserID(UUID()), accountVersion: 1)
        let anotherVersion = sealer.makeToken(for: pair.sessionID, userID: user.id, accountVersion: 0)
        let sessionOnly = Self.sessionOnlyToken(pair.sessionID)
        let bad = ["", "garbage", String(repeating: "A", count: 100_000), String(repeating: "é", count: 96), String(repeating: "é", count: 65),
                   pair.token, unknown, anotherAccount, anotherVersion, sessionOnly,
                   sealer.makeToken(for: SessionID(UUID()), userID: user.id, accountVersion: 1), pair.refreshToken + "A",
                   String(pair.refreshToken.dropLast())]
        for token in bad {
            await #expect(throws: IdentityError.refreshTokenRefused) { try await identity.service.refresh(token, client: "10.0.0.1") }
        }
        #expect(try await identity.service.refresh(pair.refreshToken, client: nil).sessionID == pair.sessionID, "the session is intact")
    }

    @Test("a token that names a version below a cut-off (forged from an access token's claims) ends nothing; the real one still refreshes")
    func forgedVersionBelowACutOff() async throws {
        let identity = try await TestIdentity.make()
        let (user, old) = try await signedIn(identity)
        identity.clock.advance(by: 1)
        _ = try await identity.service.updateProfile(
            try await principal(identity, old), name: nil, email: nil, password: "another password 456", currentPassword: password
        )
        let pair = try await identity.service.login(email: "ada@example.com", password: "another password 456", client: nil)
        let forged = RefreshTokenSealer().makeToken(for: pair.sessionID, userID: user.id, accountVersion: 1)
        await #expect(throws: IdentityError.refreshTokenRefused) { try await identity.service.refresh(forged, client: "10.0.0.1") }
        #expect(identity.sessions.session(id: pair.sessionID)?.isEnded == false, "the session it names is not ended")
        #expect(try await identity.service.refresh(pair.refreshToken, client: nil).sessionID == pair.sessionID)
    }

    @Test("a refresh token of the earlier format (session and secret only) refreshes once, into one of the current format")
    func sessionOnlyTokens() async throws {
        let identity = try await TestIdentity.make()
        let (user, _) = try await signedIn(identity)
        let id = SessionID(UUID())
        let token = Self.sessionOnlyToken(id)
        let digest = try #require(RefreshTokenSealer().parse(token)?.digest)
        #expect(RefreshTokenSealer().parse(token)?.account == nil)
        try await identity.sessions.open(Session.open(id: id, userID: user.id, refreshDigest: digest, accountVersion: 1, at: identity.clock.now()))
        identity.clock.advance(by: 60)
        let next = try await identity.service.refresh(token, client: nil)
        #expect(next.sessionID == id && next.refreshToken.count == 96)
        #expect(try await principal(identity, next).userID == user.id)
        #expect(try await identity.service.refresh(token, client: nil) == next, "within the grace, the same pair")
        identity.clock.advance(by: 60)
        #expect(try await identity.service.refresh(next.refreshToken, client: nil).sessionID == id, "the new one refreshes")
    }

    @Test("a refresh after the account moved on (a rename) makes the new pair for the version the account has now")
    func accountMovedOn() async throws {
        let identity = try await TestIdentity.make()
        let (user, pair) = try await signedIn(identity)
        identity.clock.advance(by: 1)
        _ = try await identity.service.updateProfile(try await principal(identity, pair), name: "Ada L.", email: nil, password: nil, currentPassword: nil)
        identity.clock.advance(by: 60)
        let next = try await identity.service.refresh(pair.refreshToken, client: nil)
        #expect(try await principal(identity, next).userID == user.id, "its access token works")
        #expect(RefreshTokenSealer().parse(next.refreshToken)?.account?.version == 2 && RefreshTokenSealer().parse(next.refreshToken)?.account?.userID == user.id)
        #expect(identity.sessions.session(id: pair.sessionID)?.accountVersion == 2, "and the session stands on it")
        #expect(try await identity.service.refresh(pair.refreshToken, client: nil) == next, "the grace hands out that pair")
    }

    /// A token of the earlier format: the session's 16 bytes and 32 random ones, each part
    /// base64url on its own (22 and 43 characters).
    static func sessionOnlyToken(_ id: SessionID) -> String {
        func base64url(_ bytes: [UInt8]) -> String {
            Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
                .replacingOccurrences(of: "=", with: "")
        }
        return base64url(withUnsafeBytes(of: id.uuid.uuid) { Array($0) }) + base64url((0..<32).map { _ in UInt8.random(in: 0...255) })
    }

    @Test("failed refreshes count like failed logins for the client address")
    func throttled() async throws {
        let identity = try await TestIdentity.make(limits: LoginThrottleConfiguration(maxFailuresPerEmail: 5, maxFailuresPerClient: 3))
        for _ in 0..<3 {
            await #expect(throws: IdentityError.refreshTokenRefused) { try await identity.service.refresh("garbage", client: "10.0.0.9") }
        }
        await #expect(throws: LoginThrottled.self) { try await identity.service.refresh("garbage", client: "10.0.0.9") }
        await #expect(throws: IdentityError.refreshTokenRefused, "another address is not throttled") {
            try await identity.service.refresh("garbage", client: "10.0.0.10")
        }
    }

    @Test("a session ends 30 days after its last refresh and 90 days after its login, whichever comes first")
    func lifetimes() async throws {
        let identity = try await TestIdentity.make()
        let (_, idle) = try await signedIn(identity)
        identity.clock.advance(by: 30 * 86_400 + 1)
        await #expect(throws: IdentityError.refreshTokenRefused) { try await identity.service.refresh(idle.refreshToken, client: nil) }

        var pair = try await identity.service.login(email: "ada@example.com", password: password, client: nil)
        for _ in 0..<3 {
            identity.clock.advance(by: 29 * 86_400)
            pair = try await identity.service.refresh(pair.refreshToken, client: nil)
        }
        identity.clock.advance(by: 4 * 86_400)
        await #expect(throws: IdentityError.refreshTokenRefused, "past 90 days since the login") {
            try await identity.service.refresh(pair.refreshToken, client: nil)
        }
    }
}

/// A user store where a password change commits between a login's read by email and any later
/// read: the race a login can lose to a password change.
actor PasswordChangedAfterRead: UserRepository {
    let base: InMemoryUserStore
    let newHash: String
    private var changed = false

    init(base: InMemoryUserStore, newHash: String) {
        self.base = base
        self.newHash = newHash
    }

    func user(email: Email) async throws -> User? {
        let user = await base.user(email: email)
        if let user, !changed {
            changed = true
            var next = user
            _ = next.apply(name: nil, email: nil, passwordHash: newHash, at: Date())
            try await base.update(next, expectedVersion: user.version, events: [])
        }
        return user
    }

    func user(id: UserID) async throws -> User? { await base.user(id: id) }
    func insert(_ user: User, events: [IdentityEvent], writes: AccountWrites) async throws {
        try await base.insert(user, events: events, writes: writes)
    }
    func update(
        _ user: User, expectedVersion: Int, events: [IdentityEvent], revocations: [Revocation], writes: AccountWrites
    ) async throws {
        try await base.update(user, expectedVersion: expectedVersion, events: events, revocations: revocations, writes: writes)
    }
    func delete(id: UserID, events: [IdentityEvent], revocations: [Revocation]) async throws {
        try await base.delete(id: id, events: events, revocations: revocations)
    }
}
