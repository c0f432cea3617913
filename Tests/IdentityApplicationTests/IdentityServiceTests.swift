import CryptoAdapter
import Foundation
import IdentityApplication
import IdentityComposition
import IdentityDomain
import IdentityPorts
import IdentityTestSupport
import InMemoryAdapter
import Testing

@Suite("Use cases")
struct IdentityServiceTests {
    let password = "correct horse battery"

    func registered(_ identity: TestIdentity, email: String = "ada@example.com") async throws -> (UserRecord, Principal) {
        let (user, principal, _) = try await registeredWithToken(identity, email: email)
        return (user, principal)
    }

    func registeredWithToken(_ identity: TestIdentity, email: String = "ada@example.com") async throws -> (UserRecord, Principal, String) {
        let user = try await identity.service.register(email: email, password: password, name: "Ada")
        let token = try await identity.service.login(email: email, password: password, client: "127.0.0.1")
        return (user, try await identity.service.authenticator.authenticate(bearer: token.token), token.token)
    }

    @Test("registration stores the canonical email and publishes user.registered, without the hash")
    func register() async throws {
        let identity = try await TestIdentity.make()
        let user = try await identity.service.register(email: " ADA@Example.com ", password: password, name: " Ada ")
        #expect(user.email == "ada@example.com")
        #expect(user.name == "Ada")
        let stored = try #require(await identity.store.user(id: user.id))
        #expect(stored.passwordHash.hasPrefix("$argon2id$"))
        let events = await identity.store.pending(limit: 10).map(\.event.payload)
        #expect(events == [.userRegistered(userID: user.id, email: try Email("ada@example.com"), name: try DisplayName("Ada"))])
    }

    @Test("registration reports every bad field at once")
    func registerValidation() async throws {
        let identity = try await TestIdentity.make()
        await #expect {
            try await identity.service.register(email: "nope", password: "short", name: "")
        } throws: { error in
            (error as? ValidationError)?.errors.map(\.pointer) == ["/email", "/password", "/name"]
        }
    }

    @Test("a taken canonical email gives emailTaken")
    func duplicate() async throws {
        let identity = try await TestIdentity.make()
        _ = try await identity.service.register(email: "ada@example.com", password: password, name: "Ada")
        await #expect(throws: IdentityError.emailTaken) {
            try await identity.service.register(email: "ADA@EXAMPLE.COM", password: password, name: "Other")
        }
    }

    @Test("concurrent registrations of one email give exactly one account")
    func registrationRace() async throws {
        let identity = try await TestIdentity.make()
        let outcomes = await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<20 {
                group.addTask { (try? await identity.service.register(email: "race@example.com", password: password, name: "R")) != nil }
            }
            return await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        #expect(outcomes.filter { $0 }.count == 1)
        #expect(await identity.store.count == 1)
    }

    @Test("unknown email and wrong password fail alike")
    func loginFailures() async throws {
        let identity = try await TestIdentity.make()
        _ = try await registered(identity)
        await #expect(throws: IdentityError.invalidCredentials) {
            try await identity.service.login(email: "ada@example.com", password: "wrong password", client: nil)
        }
        await #expect(throws: IdentityError.invalidCredentials) {
            try await identity.service.login(email: "nobody@example.com", password: password, client: nil)
        }
    }

    @Test("after the limit of failures an email is throttled, known or not, until the window passes")
    func throttling() async throws {
        let identity = try await TestIdentity.make(limits: LoginThrottleConfiguration(maxFailuresPerEmail: 5, maxFailuresPerClient: 100, window: 900))
        _ = try await registered(identity)
        for email in ["ada@example.com", "ghost@example.com"] {
            for _ in 0..<5 {
                await #expect(throws: IdentityError.invalidCredentials) {
                    try await identity.service.login(email: email, password: "wrong password", client: "10.0.0.1")
                }
            }
            await #expect(throws: LoginThrottled(retryAfterSeconds: 900), "throttled without checking the password") {
                try await identity.service.login(email: email, password: password, client: "10.0.0.1")
            }
        }
        identity.clock.advance(by: 901)
        _ = try await identity.service.login(email: "ada@example.com", password: password, client: "10.0.0.1")
    }

    @Test("wrong current_password checks are throttled with failed logins: a stolen token cannot guess the password")
    func currentPasswordThrottled() async throws {
        let identity = try await TestIdentity.make(limits: LoginThrottleConfiguration(maxFailuresPerEmail: 3, maxFailuresPerClient: 100, window: 900))
        let (_, principal) = try await registered(identity)
        for _ in 0..<2 {
            await #expect(throws: IdentityError.wrongCurrentPassword) {
                try await identity.service.updateProfile(principal, name: nil, email: "new@example.com", password: nil,
                                                         currentPassword: "a wrong guess", client: "10.0.0.9")
            }
        }
        await #expect(throws: IdentityError.invalidCredentials) {
            try await identity.service.login(email: "ada@example.com", password: "another wrong guess", client: "10.0.0.9")
        }
        await #expect(throws: LoginThrottled(retryAfterSeconds: 900), "the right password is not even checked now") {
            try await identity.service.updateProfile(principal, name: nil, email: "new@example.com", password: nil,
                                                     currentPassword: password, client: "10.0.0.9")
        }
        await #expect(throws: LoginThrottled(retryAfterSeconds: 900), "and logins for the email are throttled too") {
            try await identity.service.login(email: "ada@example.com", password: password, client: "10.0.0.9")
        }
        _ = try await identity.service.updateProfile(principal, name: "Renamed", email: nil, password: nil, currentPassword: nil,
                                                     client: "10.0.0.9")
        identity.clock.advance(by: 901)
        let moved = try await identity.service.updateProfile(principal, name: nil, email: "new@example.com", password: nil,
                                                             currentPassword: password, client: "10.0.0.9")
        #expect(moved.email == "new@example.com")
    }

    @Test("a successful login resets the email's failures")
    func successResets() async throws {
        let identity = try await TestIdentity.make(limits: LoginThrottleConfiguration(maxFailuresPerEmail: 2, maxFailuresPerClient: 100, window: 900))
        _ = try await registered(identity)
        let wrong = { try await identity.service.login(email: "ada@example.com", password: "wrong password", client: nil) }
        await #expect(throws: IdentityError.invalidCredentials) { _ = try await wrong() }
        _ = try await identity.service.login(email: "ada@example.com", password: password, client: nil)
        // Without the reset this would be the third failure, over the limit of 2.
        await #expect(throws: IdentityError.invalidCredentials, "one failure since the success") { _ = try await wrong() }
        await #expect(throws: IdentityError.invalidCredentials, "two") { _ = try await wrong() }
        await #expect(throws: LoginThrottled.self, "and then the limit applies") { _ = try await wrong() }
    }

    @Test("a password change revokes earlier tokens, the current one included; a token issued right after works")
    func passwordChangeRevokes() async throws {
        let identity = try await TestIdentity.make()
        let (_, principal, current) = try await registeredWithToken(identity)
        let other = try await identity.service.login(email: "ada@example.com", password: password, client: nil)
        identity.clock.advance(by: 0.001)
        _ = try await identity.service.updateProfile(principal, name: nil, email: nil, password: "a brand new password",
                                                     currentPassword: password)
        for token in [current, other.token] {
            await #expect(throws: TokenRejected.revoked, "tokens issued before the change, the current one included") {
                try await identity.service.authenticator.authenticate(bearer: token)
            }
        }
        // One millisecond after the change, within the same second: the new token works.
        identity.clock.advance(by: 0.001)
        let fresh = try await identity.service.login(email: "ada@example.com", password: "a brand new password", client: nil)
        _ = try await identity.service.authenticator.authenticate(bearer: fresh.token)
        await #expect(throws: IdentityError.invalidCredentials) {
            try await identity.service.login(email: "ada@example.com", password: password, client: nil)
        }
    }

    @Test("changing email or password needs the right current_password; a name alone does not")
    func currentPassword() async throws {
        let identity = try await TestIdentity.make()
        let (_, principal) = try await registered(identity)
        await #expect {
            try await identity.service.updateProfile(principal, name: nil, email: "new@example.com", password: nil, currentPassword: nil)
        } throws: { ($0 as? ValidationError)?.errors.map(\.pointer) == ["/current_password"] }
        await #expect(throws: IdentityError.wrongCurrentPassword) {
            try await identity.service.updateProfile(principal, name: nil, email: "new@example.com", password: nil, currentPassword: "nope nope")
        }
        let renamed = try await identity.service.updateProfile(principal, name: "Countess", email: nil, password: nil, currentPassword: nil)
        #expect(renamed.name == "Countess")
        let moved = try await identity.service.updateProfile(principal, name: nil, email: "NEW@example.com", password: nil, currentPassword: password)
        #expect(moved.email == "new@example.com")
        await #expect {
            try await identity.service.updateProfile(principal, name: nil, email: nil, password: nil, currentPassword: nil)
        } throws: { ($0 as? ValidationError)?.errors.map(\.pointer) == [""] }
    }

    @Test("updated_at moves forward on every change, even on a frozen clock, and user.updated names the fields")
    func updatedAt() async throws {
        let identity = try await TestIdentity.make()
        let (user, principal) = try await registered(identity)
        let first = try await identity.service.updateProfile(principal, name: "B", email: nil, password: nil, currentPassword: nil)
        let second = try await identity.service.updateProfile(principal, name: "C", email: nil, password: nil, currentPassword: nil)
        #expect(user.updatedAt < first.updatedAt && first.updatedAt < second.updatedAt)
        #expect(first.createdAt == user.createdAt)
        let events = await identity.store.pending(limit: 10).map(\.event.payload)
        #expect(events.last == .userUpdated(userID: user.id, changed: [.name]))
    }

    @Test("an email change to a taken email gives emailTaken")
    func emailClash() async throws {
        let identity = try await TestIdentity.make()
        let (_, principal) = try await registered(identity)
        _ = try await identity.service.register(email: "bob@example.com", password: password, name: "Bob")
        await #expect(throws: IdentityError.emailTaken) {
            try await identity.service.updateProfile(principal, name: nil, email: "bob@example.com", password: nil, currentPassword: password)
        }
    }

    @Test("deletion removes the account, revokes its tokens and frees the email")
    func delete() async throws {
        let identity = try await TestIdentity.make()
        let (user, principal) = try await registered(identity)
        let token = try await identity.service.login(email: "ada@example.com", password: password, client: nil)
        try await identity.service.deleteAccount(principal)
        await #expect(throws: TokenRejected.revoked) { try await identity.service.authenticator.authenticate(bearer: token.token) }
        #expect(await identity.store.user(id: user.id) == nil)
        let (again, _) = try await registered(identity)
        #expect(again.id != user.id)
        let events = await identity.store.pending(limit: 10).map(\.event.type)
        #expect(events == [
            "user.registered", "session.started", "session.started", "user.deleted", "session.ended", "session.ended",
            "user.registered", "session.started",
        ], "the deletion ends both sessions of the account, after it")
        let reasons = await identity.store.pending(limit: 10).compactMap { entry -> SessionEndReason? in
            if case .sessionEnded(_, _, let reason) = entry.event.payload { return reason }
            return nil
        }
        #expect(reasons == [.accountDeleted, .accountDeleted])
    }

    @Test("logout revokes exactly that token and publishes token.revoked")
    func logout() async throws {
        let identity = try await TestIdentity.make()
        let (user, principal, token) = try await registeredWithToken(identity)
        let other = try await identity.service.login(email: "ada@example.com", password: password, client: nil)
        try await identity.service.logout(principal)
        await #expect(throws: TokenRejected.revoked) { try await identity.service.authenticator.authenticate(bearer: token) }
        _ = try await identity.service.authenticator.authenticate(bearer: other.token)
        let last = await identity.store.pending(limit: 10).suffix(2).map(\.event.payload)
        let session = try #require(principal.sessionID)
        #expect(last == [
            .tokenRevoked(userID: user.id, jti: principal.tokenID, expiresAt: principal.expiresAt),
            .sessionEnded(userID: user.id, sessionID: session, reason: .logout),
        ], "the token's revocation, then its session's end")
        #expect(identity.revocations.isRevoked(jti: principal.tokenID, userID: user.id, accountVersion: 1))
    }

    @Test("the public view hides email and updated_at from others")
    func views() async throws {
        let identity = try await TestIdentity.make()
        let (ada, adaPrincipal) = try await registered(identity)
        let (bob, _) = try await registered(identity, email: "bob@example.com")
        #expect(try await identity.service.user(id: ada.id, for: adaPrincipal) == .own(ada))
        #expect(try await identity.service.user(id: bob.id, for: adaPrincipal) == .publicProfile(id: bob.id, name: "Ada", createdAt: bob.createdAt))
        await #expect(throws: IdentityError.userNotFound) { try await identity.service.user(id: UserID(UUID()), for: adaPrincipal) }
    }

    @Test("a hash with outdated parameters is replaced on the next successful login, and still verifies")
    func rehash() async throws {
        let old = try await TestIdentity.make(memoryKiB: 64, iterations: 1)
        let user = try await old.service.register(email: "ada@example.com", password: password, name: "Ada")
        let oldHash = try #require(await old.store.user(id: user.id)?.passwordHash)
        // The same store, served by a hasher with stronger parameters.
        let current = Argon2idHasher(parameters: try Argon2Configuration(memoryKiB: 128, iterations: 2))
        let stores = IdentityStores(
            users: old.store, outbox: old.store, revocations: old.revocations, throttle: InMemoryLoginThrottle(), sessions: old.sessions
        )
        let service = try IdentityStack.assemble(stores: stores, hasher: current, tokens: old.tokens, clock: old.clock).service
        _ = try await service.login(email: "ada@example.com", password: password, client: nil)
        let newHash = try #require(await old.store.user(id: user.id)?.passwordHash)
        #expect(newHash != oldHash && newHash.contains("m=128,t=2,p=1"))
        #expect(await old.store.user(id: user.id)?.updatedAt == user.updatedAt, "a rehash is not a profile change")
        _ = try await service.login(email: "ada@example.com", password: password, client: nil)
    }

    static let bcryptOfPassword = "$2b$04$abcdefghijklmnopqrstuuqREtd3VJD2QVZbuFskFSLk6eRIrQoOS"

    @Test("an account imported with a bcrypt hash logs in, and its hash becomes Argon2id")
    func importedBcrypt() async throws {
        let identity = try await TestIdentity.make()
        let imported = try await identity.service.importUser(email: " Legacy@Example.com", name: "Legacy", passwordHash: Self.bcryptOfPassword)
        #expect(imported.email == "legacy@example.com", "the email is canonicalised like a registration's")
        let events = await identity.store.pending(limit: 10).map(\.event.payload)
        #expect(events == [.userRegistered(userID: imported.id, email: try Email("legacy@example.com"), name: try DisplayName("Legacy"))])
        await #expect(throws: IdentityError.invalidCredentials) {
            try await identity.service.login(email: "legacy@example.com", password: "wrong password", client: nil)
        }
        _ = try await identity.service.login(email: "legacy@example.com", password: "correct horse battery", client: nil)
        let stored = try #require(await identity.store.user(id: imported.id)?.passwordHash)
        #expect(stored.hasPrefix("$argon2id$"), "rehashed on the successful login")
        _ = try await identity.service.login(email: "legacy@example.com", password: "correct horse battery", client: nil)
    }

    @Test("an import whose hash claims costs past the caps is refused at password_hash", arguments: [
        "$argon2id$v=19$m=64,t=4294967295,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
        "$argon2id$v=19$m=4294967295,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
        "$argon2id$v=19$m=1048576,t=1,p=4294967295$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
        "$argon2id$v=19$m=1048576,t=8,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
        "$2b$17$abcdefghijklmnopqrstuuqREtd3VJD2QVZbuFskFSLk6eRIrQoOS",
    ])
    func importRefusesAbsurdCosts(hash: String) async throws {
        let identity = try await TestIdentity.make()
        #expect(identity.service.importErrors(email: "a@example.com", name: "A", passwordHash: hash).map(\.pointer) == ["/password_hash"])
        #expect(identity.service.importErrors(
            email: "a@example.com", name: "A", passwordHash: "$argon2id$v=19$m=1048576,t=4,p=16$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"
        ).isEmpty, "at the caps it is accepted")
    }

    @Test("an import with a bad email, name or hash is refused field by field, never echoing the hash; a taken email gives emailTaken")
    func importRefusals() async throws {
        let identity = try await TestIdentity.make()
        let plaintext = "hunter2-plaintext"
        let errors = identity.service.importErrors(email: "nope", name: " ", passwordHash: plaintext)
        #expect(errors.map(\.pointer) == ["/email", "/name", "/password_hash"])
        #expect(!errors.description.contains(plaintext))
        await #expect(throws: ValidationError.self) {
            try await identity.service.importUser(email: "a@example.com", name: "A", passwordHash: "$2b$31$" + String(repeating: "a", count: 53))
        }
        #expect(await identity.store.user(email: try Email("a@example.com")) == nil, "nothing is stored")
        #expect(identity.service.importErrors(email: "a@example.com", name: "A", passwordHash: Self.bcryptOfPassword).isEmpty)
        _ = try await identity.service.register(email: "taken@example.com", password: password, name: "Taken")
        await #expect(throws: IdentityError.emailTaken) {
            try await identity.service.importUser(email: "TAKEN@example.com", name: "T", passwordHash: Self.bcryptOfPassword)
        }
    }

    @Test("a change verified against one version is refused if the account changed meanwhile")
    func optimisticConcurrency() async throws {
        let identity = try await TestIdentity.make()
        let (user, _) = try await registered(identity)
        let handler = IdentityCommandHandler(users: identity.store, outbox: identity.store, revocations: identity.revocations, tokens: identity.tokens, clock: identity.clock)
        let stale = UpdateProfile(userID: user.id, name: nil, email: try Email("x@example.com"), passwordHash: nil, expectedVersion: 0)
        #expect(try await handler.handle(CommandEnvelope(messageID: "1", command: .updateProfile(stale))) == .rejected(.concurrentUpdate))
        let bad = RegisterUser(email: try Email("y@example.com"), name: try DisplayName("Y"), passwordHash: "plaintext")
        #expect(try await handler.handle(CommandEnvelope(messageID: "2", command: .registerUser(bad))) == .rejected(.invalidCommand),
                "a command without a PHC string is refused")
    }
}

@Suite("Concurrent changes of one account")
struct ConcurrentChangeTests {
    let password = "correct horse battery"

    @Test("renames that race are all applied (each re-read and re-applied), never refused; a stale precondition is")
    func racingRenames() async throws {
        let identity = try await TestIdentity.make()
        let user = try await identity.service.register(email: "ada@example.com", password: password, name: "Ada")
        let token = try await identity.service.login(email: "ada@example.com", password: password, client: nil)
        let principal = try await identity.service.authenticator.authenticate(bearer: token.token)
        let results = try await withThrowingTaskGroup(of: UserRecord.self) { group in
            for index in 0..<30 {
                group.addTask { try await identity.service.updateProfile(principal, name: "N\(index)", email: nil, password: nil, currentPassword: nil) }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(results.count == 30)
        #expect(await identity.store.user(id: user.id)?.version == 31, "each change applied exactly once")
        await #expect(throws: IdentityError.preconditionFailed) {
            try await identity.service.updateProfile(principal, name: "Late", email: nil, password: nil, currentPassword: nil, ifMatch: [1])
        }
        #expect(await identity.store.user(id: user.id)?.name.value != "Late", "and a refused change changes nothing")
        let current = try #require(await identity.store.user(id: user.id)?.version)
        #expect(try await identity.service.updateProfile(principal, name: "Now", email: nil, password: nil, currentPassword: nil, ifMatch: [current]).name == "Now")
    }

    @Test("a password change that races renames is applied too, and still revokes the tokens before it")
    func passwordChangeAmongRenames() async throws {
        let identity = try await TestIdentity.make()
        _ = try await identity.service.register(email: "ada@example.com", password: password, name: "Ada")
        let token = try await identity.service.login(email: "ada@example.com", password: password, client: nil)
        let principal = try await identity.service.authenticator.authenticate(bearer: token.token)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<10 {
                group.addTask { _ = try await identity.service.updateProfile(principal, name: "N\(index)", email: nil, password: nil, currentPassword: nil) }
            }
            group.addTask {
                _ = try await identity.service.updateProfile(
                    principal, name: nil, email: nil, password: "a brand new passphrase", currentPassword: password
                )
            }
            try await group.waitForAll()
        }
        await #expect(throws: TokenRejected.revoked) { try await identity.service.authenticator.authenticate(bearer: token.token) }
        let fresh = try await identity.service.login(email: "ada@example.com", password: "a brand new passphrase", client: nil)
        _ = try await identity.service.authenticator.authenticate(bearer: fresh.token)
    }
}

/// A store where another writer wins the first `races` read-then-write races: just before each
/// of those updates, it renames the account itself, so the update finds a newer version.
actor RacingUserStore: UserRepository {
    let base: InMemoryUserStore
    private var races: Int

    init(base: InMemoryUserStore, races: Int) {
        self.base = base
        self.races = races
    }

    func user(id: UserID) async throws -> User? { await base.user(id: id) }
    func user(email: Email) async throws -> User? { await base.user(email: email) }
    func insert(_ user: User, events: [IdentityEvent], writes: AccountWrites) async throws {
        try await base.insert(user, events: events, writes: writes)
    }
    func delete(id: UserID, events: [IdentityEvent], revocations: [Revocation]) async throws {
        try await base.delete(id: id, events: events, revocations: revocations)
    }

    func update(
        _ user: User, expectedVersion: Int, events: [IdentityEvent], revocations: [Revocation], writes: AccountWrites
    ) async throws {
        if races > 0, var winner = await base.user(id: user.id) {
            races -= 1
            let version = winner.version
            _ = winner.apply(name: try DisplayName("Winner v\(version + 1)"), email: nil, passwordHash: nil, at: Date())
            try await base.update(winner, expectedVersion: version, events: [])
        }
        try await base.update(user, expectedVersion: expectedVersion, events: events, revocations: revocations, writes: writes)
    }
}

@Suite("Lost races are retried")
struct LostRaceTests {
    @Test("a change without precondition that loses races is re-applied to the account as it then stands; with If-Match it is 412")
    func retried() async throws {
        let base = InMemoryUserStore()
        let racing = RacingUserStore(base: base, races: 3)
        let handler = IdentityCommandHandler(users: racing, outbox: base, revocations: base.revocations, tokens: try await TestIdentity.makeTokens())
        let ada = User.register(id: UserID(UUID()), email: try Email("ada@example.com"), name: try DisplayName("Ada"), passwordHash: "$x", at: Date())
        try await base.insert(ada, events: [])
        let change = UpdateProfile(userID: ada.id, name: nil, email: try Email("countess@example.com"), passwordHash: nil, expectedVersion: nil)
        let reply = try await handler.handle(CommandEnvelope(messageID: "m1", command: .updateProfile(change)))
        guard case .user(let record) = reply else { Issue.record("refused: \(reply)"); return }
        #expect(record.email == "countess@example.com" && record.name == "Winner v4" && record.version == 5,
                "three lost races, then applied on top of the winners' renames")
        let guarded = UpdateProfile(
            userID: ada.id, name: try DisplayName("Guarded"), email: nil, passwordHash: nil, expectedVersion: nil, ifMatchVersions: [5]
        )
        let racingAgain = RacingUserStore(base: base, races: 1)
        let strict = IdentityCommandHandler(users: racingAgain, outbox: base, revocations: base.revocations, tokens: try await TestIdentity.makeTokens())
        #expect(try await strict.handle(CommandEnvelope(messageID: "m2", command: .updateProfile(guarded))) == .rejected(.preconditionFailed),
                "a change whose precondition a race broke is refused, not re-applied")
        #expect(await base.user(id: ada.id)?.name.value == "Winner v6", "the race's winner stands")
    }
}
