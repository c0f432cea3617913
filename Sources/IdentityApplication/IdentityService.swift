public import IdentityPorts
public import IdentityDomain
import Foundation

/// The driven adapters the use cases run on.
public struct IdentityDependencies: Sendable {
    /// Account storage (read side of queries, write side of commands).
    public var users: any UserRepository
    /// Outbox for events not tied to an account row.
    public var outbox: any EventOutbox
    /// Revoked tokens and per-user cut-offs.
    public var revocations: any RevocationStore
    /// Password hashing.
    public var hasher: any PasswordHasher
    /// Token signing and verification.
    public var tokens: any TokenService
    /// Failed-login counting.
    public var throttle: any LoginThrottle
    /// Sessions and their refresh-token digests.
    public var sessions: any SessionStore
    /// Makes, reads and seals refresh tokens.
    public var refreshTokens: any RefreshTokenSealing
    /// Session lifetimes and the grace interval (the session store's own).
    public var sessionConfiguration: SessionConfiguration
    /// Carries commands to the write side.
    public var bus: any CommandBus
    /// Wall clock.
    public var clock: any IdentityClock
    /// Identifier source.
    public var ids: any IDGenerator
    /// Email verification and password reset (contract §11); nil to offer neither.
    public var mailing: AccountMailing?

    /// Bundles the adapters.
    public init(
        users: any UserRepository, outbox: any EventOutbox, revocations: any RevocationStore,
        hasher: any PasswordHasher, tokens: any TokenService, throttle: any LoginThrottle, sessions: any SessionStore,
        refreshTokens: any RefreshTokenSealing, sessionConfiguration: SessionConfiguration = SessionConfiguration(),
        bus: any CommandBus, clock: any IdentityClock = SystemClock(), ids: any IDGenerator = RandomIDGenerator(),
        mailing: AccountMailing? = nil
    ) {
        self.mailing = mailing
        self.users = users
        self.outbox = outbox
        self.revocations = revocations
        self.hasher = hasher
        self.tokens = tokens
        self.throttle = throttle
        self.sessions = sessions
        self.refreshTokens = refreshTokens
        self.sessionConfiguration = sessionConfiguration
        self.bus = bus
        self.clock = clock
        self.ids = ids
    }
}

/// What the users and auth contexts offer a driving adapter (HTTP, a CLI, a host app): the use
/// cases.
///
/// Each takes raw strings, checks them through its input type (`RegistrationInput`,
/// `ProfileChangeInput`, `LoginInput`, `AccountImportInput`: every bad field at once in a
/// `ValidationError`), and then sends a command, with passwords already hashed, through the
/// `CommandBus`, or runs a query on the stores.
public struct IdentityService: Sendable {
    private let deps: IdentityDependencies
    private let login: LoginHandler
    private let attempts: PasswordAttempts
    private let sessions: SessionHandler
    /// Verifies bearer tokens.
    public let authenticator: Authenticator

    /// Creates the service.
    public init(_ deps: IdentityDependencies) {
        self.deps = deps
        let attempts = PasswordAttempts(throttle: deps.throttle, clock: deps.clock, ids: deps.ids)
        self.attempts = attempts
        let sessions = SessionHandler(
            users: deps.users, sessions: deps.sessions, revocations: deps.revocations, tokens: deps.tokens,
            refreshTokens: deps.refreshTokens, configuration: deps.sessionConfiguration, throttle: deps.throttle, clock: deps.clock,
            ids: deps.ids
        )
        self.sessions = sessions
        self.login = LoginHandler(
            users: deps.users, hasher: deps.hasher, sessions: sessions, attempts: attempts, bus: deps.bus, ids: deps.ids,
            dummy: DummyHash(), requireVerifiedEmail: deps.mailing?.policy.requireVerifiedEmail ?? false
        )
        self.authenticator = Authenticator(tokens: deps.tokens, revocations: deps.revocations, clock: deps.clock)
    }

    /// The JWS algorithm tokens are signed with (`HS256`, `ES256`, `EdDSA`, ...), for discovery.
    public var tokenSigningAlgorithm: String { deps.tokens.signingAlgorithm }

    /// The `iss` of the tokens, for discovery; nil when the token service does not say.
    public var tokenIssuer: String? { deps.tokens.issuer }

    /// The public keys that may verify a live token now (`GET /.well-known/jwks.json`); none
    /// when tokens are signed with a shared secret.
    public func publishedSigningKeys() -> [PublishedSigningKey] { deps.tokens.publishedKeys() }

    /// Does the one-off work that must not land on a first request (the dummy hash).
    public func warmUp() async throws {
        _ = try await login.dummy.value(using: deps.hasher)
    }

    // MARK: commands

    /// Registers an account (`POST /users`).
    public func register(email: String, password: String, name: String) async throws -> UserRecord {
        let input = try RegistrationInput(email: email, password: password, name: name)
        let hash = try await deps.hasher.hash(input.password)
        return try await record(from: send(.registerUser(RegisterUser(email: input.email, name: input.name, passwordHash: hash))))
    }

    /// Registers an account migrated from another system with the password hash it had there
    /// (`DemoServer import-users`). The hash must be one the hasher recognizes (Argon2id PHC, or an
    /// imported bcrypt hash); it is replaced by a current one on the account's next successful login.
    public func importUser(email: String, name: String, passwordHash: String) async throws -> UserRecord {
        let input = try AccountImportInput(email: email, name: name, passwordHash: passwordHash, recognizes: deps.hasher.recognizes)
        return try await record(from: send(.registerUser(RegisterUser(email: input.email, name: input.name, passwordHash: passwordHash))))
    }

    /// The rules an imported account's fields break, without side effects. Never echoes the hash.
    public func importErrors(email: String?, name: String?, passwordHash: String?) -> [FieldError] {
        AccountImportInput.errors(email: email, name: name, passwordHash: passwordHash, recognizes: deps.hasher.recognizes)
    }

    /// Changes the caller's profile (`PUT /users/me`). `currentPassword` is required when the
    /// email or password changes; its checks count against the same throttle as logins (for the
    /// account's email and `client`), so a stolen token cannot be used to guess the password.
    ///
    /// `ifMatch` is the caller's precondition (the versions of `If-Match`): the change applies
    /// only to an account at one of them, else `IdentityError.preconditionFailed`. Without it, a
    /// change that races another is applied after it, never refused for the race.
    public func updateProfile(
        _ principal: Principal, name: String?, email: String?, password: String?, currentPassword: String?, client: String? = nil,
        ifMatch: [Int]? = nil
    ) async throws -> UserRecord {
        let input = try ProfileChangeInput(name: name, email: email, password: password, currentPassword: currentPassword)
        let (newName, newEmail, newPassword, current) = (input.name, input.email, input.password, input.currentPassword)
        // A sensitive change applies to the version its current password was checked against;
        // when another change commits in between, the check is made again on the new version.
        // The check comes before the new password's hash: a wrong one costs a single hash.
        let sensitive = newEmail != nil || newPassword != nil
        var expectedVersion: Int?
        if sensitive, let current { expectedVersion = try await verifyCurrentPassword(current, of: principal, client: client) }
        let hash = try await newPassword.asyncMap { try await deps.hasher.hash($0) }
        for attempt in 1...Self.sensitiveAttempts {
            if attempt > 1, let current { expectedVersion = try await verifyCurrentPassword(current, of: principal, client: client) }
            let command = UpdateProfile(
                userID: principal.userID, name: newName, email: newEmail, passwordHash: hash, expectedVersion: expectedVersion,
                ifMatchVersions: ifMatch
            )
            let reply = try await send(.updateProfile(command))
            if case .rejected(.concurrentUpdate) = reply, expectedVersion != nil, attempt < Self.sensitiveAttempts { continue }
            let updated = try record(from: reply)
            if hash != nil {
                // The change committed with its cut-off wherever it ran; honour it here at once.
                await noteCommitted(.account(userID: principal.userID, belowVersion: Int64(updated.version), until: cutoffExpiry))
            }
            return updated
        }
        throw IdentityError.concurrentUpdate
    }

    private static let sensitiveAttempts = 5

    /// Checks `current` against the account's hash, counted by the login throttle; returns the
    /// version it was checked against.
    private func verifyCurrentPassword(_ current: Password, of principal: Principal, client: String?) async throws -> Int {
        guard let user = try await deps.users.user(id: principal.userID) else { throw TokenRejected.unknownUser }
        let (right, version) = try await attempts.run(email: user.email, client: client) {
            (try await deps.hasher.verify(current, against: user.passwordHash), user.version)
        }
        guard right else { throw IdentityError.wrongCurrentPassword }
        return version
    }

    /// Deletes the caller's account and revokes all its tokens (`DELETE /users/me`).
    public func deleteAccount(_ principal: Principal) async throws {
        try await expectDone(send(.deleteAccount(DeleteAccount(userID: principal.userID))))
        await noteCommitted(.account(userID: principal.userID, belowVersion: Revocation.everyVersion, until: cutoffExpiry))
    }

    /// Revokes the caller's token and ends its session (`POST /auth/logout`): the session's
    /// refresh token and every access token it issued are refused from then on. Returns once
    /// the revocations are durable.
    public func logout(_ principal: Principal) async throws {
        let command = RevokeToken(userID: principal.userID, jti: principal.tokenID, expiresAt: principal.expiresAt)
        try await expectDone(send(.revokeToken(command)))
        let until = deps.tokens.revocationExpiry(ofTokenExpiringAt: principal.expiresAt)
        await noteCommitted(.token(jti: principal.tokenID, userID: principal.userID, until: until))
        if let session = principal.sessionID {
            do {
                try await sessions.end(session, of: principal.userID, reason: .logout)
            } catch let error as IdentityError where error == .sessionNotFound {
                // Ended already (another logout, a reuse, a password change): nothing more to do.
            }
        }
    }

    /// Renews a session with its refresh token (`POST /auth/refresh`): a new access token and a
    /// new refresh token. Within 10 s of a rotation the token it replaced gets the same pair
    /// again; any other replay ends the session (`IdentityError.refreshTokenReused`). Anything
    /// else that is not a current refresh token is `IdentityError.refreshTokenRefused`, counted
    /// like a failed login for `client`.
    public func refresh(_ refreshToken: String, client: String?) async throws -> SignIn {
        try await sessions.refresh(refreshToken, client: client)
    }

    /// The caller's open sessions, newest first (`GET /sessions`).
    public func sessions(_ principal: Principal) async throws -> [SessionRecord] {
        try await sessions.list(principal)
    }

    /// Ends one of the caller's sessions (`DELETE /sessions/{id}`); `IdentityError.sessionNotFound`
    /// for a malformed id, another account's session or one that is not open.
    public func endSession(_ principal: Principal, id: String) async throws {
        guard let id = SessionID(id) else { throw IdentityError.sessionNotFound }
        try await sessions.end(id, of: principal.userID, reason: .revoked)
    }

    /// Ends the caller's other sessions, or all of them (`DELETE /sessions?scope=`).
    public func endSessions(_ principal: Principal, scope: SessionScope) async throws {
        let except = scope == .others ? principal.sessionID : nil
        try await sessions.endAll(of: principal.userID, except: except, reason: .revoked)
    }

    // MARK: email verification and password reset (contract §11)

    /// Proves the caller's address with a verification token (`POST /auth/verify-email`);
    /// `IdentityError.invalidToken` for a token that is malformed, unknown, used, expired or of
    /// another purpose.
    public func verifyEmail(token: String) async throws -> UserRecord {
        let mailing = try offered()
        guard let digest = mailing.minting.digest(of: token),
              let usable = try await mailing.usableToken(digest, purpose: .emailVerification, now: deps.clock.now())
        else { throw IdentityError.invalidToken }
        let reply = try await send(.verifyEmail(VerifyEmail(tokenDigest: digest)))
        // `.done`: a redelivery of a verification its first delivery applied (the worker died
        // before replying); the change stands: the account as it is now.
        if case .done = reply, let user = try await deps.users.user(id: usable.userID) { return UserRecord(user) }
        return try record(from: reply)
    }

    /// Sends the caller's address a new verification mail (`POST /auth/verify-email/resend`);
    /// nothing when it is verified. Counts toward `client`'s ceiling (`LoginThrottled`).
    public func resendVerification(_ principal: Principal, client: String?) async throws {
        try offered()
        try await countMailRequest(client: client)
        try await expectDone(send(.resendVerification(ResendVerification(userID: principal.userID))))
    }

    /// Asks for a reset mail to `email` (`POST /auth/password-reset`). Whether an account has
    /// the address or not, the call does the same work and returns as soon as the request is
    /// handed to the write side, which looks the address up and owes the mail (at most
    /// `resetMailsPerHour` per address): the caller learns nothing, not even from the time.
    /// Counts toward `client`'s ceiling (`LoginThrottled`); a malformed email is a `ValidationError`.
    public func requestPasswordReset(email: String, client: String?) async throws {
        try offered()
        let email = try Email(email)
        try await countMailRequest(client: client)
        let envelope = CommandEnvelope(
            messageID: deps.ids.makeUUID().uuidString.lowercased(), command: .requestPasswordReset(RequestPasswordReset(email: email))
        )
        // Posted, not dispatched: the reply would tell by its timing whether the account
        // exists. A bus that cannot take it (the broker down) throws: 503, not a 202 for
        // nothing.
        try await deps.bus.post(envelope)
    }

    /// Sets a new password with a reset token (`POST /auth/password-reset/confirm`): every
    /// session and token of the account is revoked with the change, and the email's login
    /// lockout ends. The token is checked before the password is hashed, so a bad token costs
    /// no hash; `IdentityError.invalidToken` for it, `ValidationError` for a password that
    /// breaks the rules of §2.
    public func confirmPasswordReset(token: String, password: String) async throws {
        let mailing = try offered()
        let password = try Password(password)
        guard let digest = mailing.minting.digest(of: token),
              try await mailing.usableToken(digest, purpose: .passwordReset, now: deps.clock.now()) != nil
        else { throw IdentityError.invalidToken }
        let hash = try await deps.hasher.hash(password)
        let reply = try await send(.confirmPasswordReset(ConfirmPasswordReset(tokenDigest: digest, passwordHash: hash)))
        // `.done`: a redelivery of a reset its first delivery applied (the worker died before
        // replying); the change stands, and its cut-off reaches this instance by announcement.
        if case .done = reply { return }
        let updated = try record(from: reply)
        await noteCommitted(.account(userID: updated.id, belowVersion: Int64(updated.version), until: cutoffExpiry))
        if let email = try? Email(updated.email) { try? await deps.throttle.clearFailures(email: email, now: deps.clock.now()) }
    }

    /// The mail setup, or `MailNotOffered` when the service was built without it.
    @discardableResult
    private func offered() throws -> AccountMailing {
        guard let mailing = deps.mailing else { throw MailNotOffered() }
        return mailing
    }

    private func countMailRequest(client: String?) async throws {
        guard let client else { return }
        if case .throttled(let seconds) = try await deps.throttle.countMailRequest(client: client, now: deps.clock.now()) {
            throw LoginThrottled(retryAfterSeconds: seconds)
        }
    }

    // MARK: queries

    /// Checks a password, opens a session and issues its first pair (`POST /auth/login`).
    /// `emailField` names the email field in validation errors (`username` in the OAuth2 form);
    /// `userAgent` is kept with the session, for the caller's list of sessions.
    public func login(
        email: String, password: String, client: String?, userAgent: String? = nil, emailField: String = "email"
    ) async throws -> SignIn {
        let input = try LoginInput(email: email, password: password, emailField: emailField)
        return try await login.login(email: input.email, password: input.password, client: client, userAgent: userAgent)
    }

    /// The caller's own account (`GET /users/me`).
    public func me(_ principal: Principal) async throws -> UserRecord {
        guard let user = try await deps.users.user(id: principal.userID) else { throw TokenRejected.unknownUser }
        return UserRecord(user)
    }

    /// An account as the caller may see it (`GET /users/{id}`).
    public func user(id: UserID, for principal: Principal) async throws -> UserView {
        guard let user = try await deps.users.user(id: id) else { throw IdentityError.userNotFound }
        if user.id == principal.userID { return .own(UserRecord(user)) }
        return .publicProfile(id: user.id, name: user.name.value, createdAt: user.createdAt)
    }

    // MARK: plumbing

    /// A revocation the write side has committed (its reply says so), taken in by this
    /// instance's revocation store before any announcement reaches it.
    private func noteCommitted(_ revocation: Revocation) async {
        await deps.revocations.committed([revocation])
    }

    private var cutoffExpiry: Date { deps.tokens.cutoffExpiry(madeAt: deps.clock.now()) }

    private func send(_ command: IdentityCommand) async throws -> CommandReply {
        try await deps.bus.dispatch(CommandEnvelope(messageID: deps.ids.makeUUID().uuidString.lowercased(), command: command))
    }

    private func record(from reply: CommandReply) throws -> UserRecord {
        switch reply {
        case .user(let record): return record
        case .done: throw UnexpectedReply(reply: reply)
        case .rejected(let rejection): throw Self.error(for: rejection)
        }
    }

    private func expectDone(_ reply: CommandReply) throws {
        switch reply {
        case .done: return
        case .user: throw UnexpectedReply(reply: reply)
        case .rejected(let rejection): throw Self.error(for: rejection)
        }
    }

    private static func error(for rejection: CommandRejection) -> any Error {
        switch rejection {
        case .emailTaken: IdentityError.emailTaken
        // The caller's own account vanished under a valid token: the token no longer counts.
        case .userNotFound: TokenRejected.unknownUser
        case .concurrentUpdate: IdentityError.concurrentUpdate
        case .preconditionFailed: IdentityError.preconditionFailed
        case .invalidToken: IdentityError.invalidToken
        case .invalidCommand: UnexpectedReply(reply: .rejected(rejection))
        }
    }
}

/// Email verification and password reset were asked of a service built without mail (404).
public struct MailNotOffered: Error, CustomStringConvertible {
    public var description: String { "email verification and password reset are not offered by this service" }
}

/// The write side answered something the command cannot produce: a bug or a version mismatch.
public struct UnexpectedReply: Error, CustomStringConvertible {
    let reply: CommandReply
    public var description: String { "unexpected command reply: \(reply)" }
}

extension Optional {
    fileprivate func asyncMap<T>(_ transform: (Wrapped) async throws -> T) async rethrows -> T? {
        guard let self else { return nil }
        return try await transform(self)
    }
}
