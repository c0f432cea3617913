public import IdentityPorts
import IdentityDomain
import Foundation

/// The write side: applies each command to the stores. Shared by the in-process bus and by
/// broker workers, so a command means the same thing wherever it runs.
public struct IdentityCommandHandler: CommandHandler {
    private let users: any UserRepository
    private let outbox: any EventOutbox
    private let revocations: any RevocationStore
    private let clock: any IdentityClock
    private let ids: any IDGenerator
    private let tokens: any TokenService
    private let sessions: (any SessionStore)?
    private let mailing: AccountMailing?

    /// Creates the handler over the given stores. `tokens` says how long revocations must last
    /// (the lifetime and leeway of the tokens they revoke); it signs nothing here. With
    /// `sessions`, a password change and a deletion end every session of the account. With
    /// `mailing`, registrations and email changes owe verification mail, and the commands of
    /// contract §11 work (without it they are refused as `invalidCommand`).
    public init(
        users: any UserRepository, outbox: any EventOutbox, revocations: any RevocationStore, tokens: any TokenService,
        sessions: (any SessionStore)? = nil, mailing: AccountMailing? = nil, clock: any IdentityClock = SystemClock(),
        ids: any IDGenerator = RandomIDGenerator()
    ) {
        self.sessions = sessions
        self.mailing = mailing
        self.users = users
        self.outbox = outbox
        self.revocations = revocations
        self.tokens = tokens
        self.clock = clock
        self.ids = ids
    }

    public func handle(_ envelope: CommandEnvelope) async throws -> CommandReply {
        let reply = try await apply(envelope)
        // A rule can refuse a redelivery before any write sees its id (the version it expected
        // has moved on: its own first delivery moved it). Ask the ledger, if the store keeps one.
        if case .rejected = reply, let id = CommandContext.messageID, let ledger = users as? any AppliedCommandLedger,
           try await ledger.hasApplied(messageID: id)
        {
            return try await replyToApplied(envelope.command)
        }
        return reply
    }

    private func apply(_ envelope: CommandEnvelope) async throws -> CommandReply {
        do {
            switch envelope.command {
            case .registerUser(let command): return try await register(command)
            case .updateProfile(let command): return try await update(command)
            case .deleteAccount(let command): return try await delete(command)
            case .revokeToken(let command): return try await revoke(command)
            case .rehashPassword(let command): return try await rehash(command)
            case .verifyEmail(let command): return try await verifyEmail(command)
            case .resendVerification(let command): return try await resendVerification(command)
            case .requestPasswordReset(let command): return try await requestPasswordReset(command)
            case .confirmPasswordReset(let command): return try await confirmPasswordReset(command)
            }
        } catch is CommandAlreadyApplied {
            // A redelivery of a command that an earlier delivery applied: reply as it did.
            return try await replyToApplied(envelope.command)
        } catch let error as IdentityError {
            switch error {
            case .emailTaken: return .rejected(.emailTaken)
            case .userNotFound: return .rejected(.userNotFound)
            case .concurrentUpdate: return .rejected(.concurrentUpdate)
            case .preconditionFailed: return .rejected(.preconditionFailed)
            case .invalidToken: return .rejected(.invalidToken)
            default: throw error
            }
        } catch is ValidationError {
            // Commands are validated before they are sent; one that is not is refused whole.
            return .rejected(.invalidCommand)
        }
    }

    /// The reply to a command that was applied before: the account as it stands now.
    private func replyToApplied(_ command: IdentityCommand) async throws -> CommandReply {
        switch command {
        case .registerUser(let command):
            guard let email = try? Email(command.email), let user = try await users.user(email: email) else { return .done }
            return .user(UserRecord(user))
        case .updateProfile(let command):
            guard let user = try await users.user(id: command.userID) else { return .rejected(.userNotFound) }
            return .user(UserRecord(user))
        case .verifyEmail, .confirmPasswordReset:
            // The token was used by the first delivery: the change stands.
            return .done
        case .deleteAccount, .revokeToken, .rehashPassword, .resendVerification, .requestPasswordReset:
            return .done
        }
    }

    private func event(_ payload: IdentityEvent.Payload, at date: Date) -> IdentityEvent {
        IdentityEvent(eventID: ids.makeUUID(), occurredAt: date, payload: payload)
    }

    private func register(_ command: RegisterUser) async throws -> CommandReply {
        let email = try Email(command.email)
        let name = try DisplayName(command.name)
        guard command.passwordHash.hasPrefix("$") else { return .rejected(.invalidCommand) }
        let user = User.register(
            id: UserID(ids.makeUUID()), email: email, name: name, passwordHash: command.passwordHash, at: clock.now()
        )
        let registered = event(.userRegistered(userID: user.id, email: email, name: name), at: user.createdAt)
        let writes = try mailing?.verification(for: user, now: user.createdAt, ids: ids) ?? .none
        try await users.insert(user, events: [registered], writes: writes)
        return .user(UserRecord(user))
    }

    /// How often a change without precondition is re-applied to a fresh read when another
    /// change committed in between (each retry means another writer won a race).
    static let updateAttempts = 32

    private func update(_ command: UpdateProfile) async throws -> CommandReply {
        let name = try command.name.map { name throws(ValidationError) in try DisplayName(name) }
        let email = try command.email.map { email throws(ValidationError) in try Email(email) }
        if let hash = command.passwordHash, !hash.hasPrefix("$") { return .rejected(.invalidCommand) }
        for attempt in 1...Self.updateAttempts {
            guard var user = try await users.user(id: command.userID) else { return .rejected(.userNotFound) }
            if let versions = command.ifMatchVersions, !versions.contains(user.version) { return .rejected(.preconditionFailed) }
            if let expected = command.expectedVersion, expected != user.version { return .rejected(.concurrentUpdate) }
            let version = user.version
            let before = user
            let changed = user.apply(name: name, email: email, passwordHash: command.passwordHash, at: clock.now())
            guard !changed.isEmpty else { return .user(UserRecord(user)) }
            let updated = event(.userUpdated(userID: user.id, changed: changed), at: user.updatedAt)
            // A new password revokes every token that carries an older account version, the
            // caller's own included, in the same transaction as the change; a token issued from
            // now on carries the new version and works, whatever the clocks say.
            let revocations: [Revocation] =
                changed.contains(.password)
                ? [.account(userID: user.id, belowVersion: Int64(user.version), until: tokens.cutoffExpiry(madeAt: clock.now()))]
                : []
            let writes = try mailing?.profileChange(from: before, to: user, changed: changed, now: clock.now(), ids: ids) ?? .none
            do {
                try await users.update(user, expectedVersion: version, events: [updated], revocations: revocations, writes: writes)
                if changed.contains(.password) { await endSessions(of: user.id, reason: .passwordChange) }
                return .user(UserRecord(user))
            } catch let error as IdentityError where error == .concurrentUpdate && attempt < Self.updateAttempts {
                // Another change committed between the read and the write: apply this one to the
                // account as it now stands (each field: the last writer wins).
                continue
            }
        }
        return .rejected(.concurrentUpdate)
    }

    private func delete(_ command: DeleteAccount) async throws -> CommandReply {
        // Every token of the account, whatever its version, in the same transaction as the delete.
        let everything = Revocation.account(
            userID: command.userID, belowVersion: Revocation.everyVersion, until: tokens.cutoffExpiry(madeAt: clock.now())
        )
        try await users.delete(
            id: command.userID, events: [event(.userDeleted(userID: command.userID), at: clock.now())], revocations: [everything]
        )
        await endSessions(of: command.userID, reason: .accountDeleted)
        return .done
    }

    /// Ends every session of an account whose password changed or which was deleted. Best
    /// effort after the change has committed: should it fail, the change's cut-off still
    /// covers the sessions' tokens, and a refresh refuses a session whose account version is
    /// below it (`SessionHandler.refresh`).
    private func endSessions(of userID: UserID, reason: SessionEndReason) async {
        _ = try? await sessions?.endAll(userID: userID, except: nil, reason: reason, now: clock.now())
    }

    private func revoke(_ command: RevokeToken) async throws -> CommandReply {
        try await revocations.revoke(
            jti: command.jti, userID: command.userID, until: tokens.revocationExpiry(ofTokenExpiringAt: command.expiresAt)
        )
        let revoked = event(
            .tokenRevoked(userID: command.userID, jti: command.jti, expiresAt: command.expiresAt), at: clock.now()
        )
        try await outbox.append([revoked])
        return .done
    }

    private func rehash(_ command: RehashPassword) async throws -> CommandReply {
        guard var user = try await users.user(id: command.userID) else { return .rejected(.userNotFound) }
        // Only replace the hash that was verified: a password changed meanwhile wins.
        guard user.passwordHash == command.previousHash, command.newHash.hasPrefix("$") else { return .done }
        let version = user.version
        user.passwordHash = command.newHash
        user.version += 1
        try await users.update(user, expectedVersion: version, events: [])
        return .done
    }

    // MARK: contract §11

    /// How often a token's change is re-applied to a fresh read when another change committed in between.
    private static let tokenAttempts = 8

    private func verifyEmail(_ command: VerifyEmail) async throws -> CommandReply {
        guard let mailing else { return .rejected(.invalidCommand) }
        return try await withToken(command.tokenDigest, .emailVerification, of: mailing) { user, use, now in
            var user = user
            let version = user.version
            if user.verifyEmail(at: now) {
                let verified = event(.emailVerified(userID: user.id), at: user.updatedAt)
                try await users.update(user, expectedVersion: version, events: [verified], revocations: [], writes: AccountWrites(use: use))
            } else {
                try await mailing.tokens.record(AccountWrites(use: use), for: user.id, events: [], limit: nil)
            }
            return .user(UserRecord(user))
        }
    }

    /// Runs `change` on the account that owns the usable token `digest` of `purpose` (with the
    /// token's use, for the change's transaction), again on a fresh read when another change
    /// committed in between; `invalidToken` when no such token is stored, it has expired, or
    /// the account's email is no longer the one it was sent to.
    private func withToken(
        _ digest: Data, _ purpose: AccountTokenPurpose, of mailing: AccountMailing,
        _ change: (_ user: User, _ use: TokenUse, _ now: Date) async throws -> CommandReply
    ) async throws -> CommandReply {
        for _ in 1...Self.tokenAttempts {
            let now = clock.now()
            guard let token = try await mailing.usableToken(digest, purpose: purpose, now: now),
                  let user = try await users.user(id: token.userID), user.email == token.email
            else { return .rejected(.invalidToken) }
            do {
                return try await change(user, TokenUse(digest: digest, purpose: purpose, now: now), now)
            } catch let error as IdentityError where error == .concurrentUpdate {
                continue
            }
        }
        return .rejected(.concurrentUpdate)
    }

    private func resendVerification(_ command: ResendVerification) async throws -> CommandReply {
        guard let mailing else { return .rejected(.invalidCommand) }
        guard let user = try await users.user(id: command.userID) else { return .rejected(.userNotFound) }
        guard !user.emailVerified else { return .done }
        let now = clock.now()
        let limit = MailLimit(
            kind: .emailVerification, recipient: user.email, max: mailing.policy.verificationMailsPerHour, since: now.addingTimeInterval(-3600)
        )
        try await mailing.tokens.record(try mailing.verification(for: user, now: now, ids: ids), for: user.id, events: [], limit: limit)
        return .done
    }

    private func requestPasswordReset(_ command: RequestPasswordReset) async throws -> CommandReply {
        guard let mailing else { return .rejected(.invalidCommand) }
        // Unknown addresses end here, and the reply is the same: the caller learns nothing.
        guard let email = try? Email(command.email), let user = try await users.user(email: email) else { return .done }
        let now = clock.now()
        let (token, mail) = try mailing.issue(.passwordReset, for: user, now: now, ids: ids)
        let limit = MailLimit(kind: .passwordReset, recipient: user.email, max: mailing.policy.resetMailsPerHour, since: now.addingTimeInterval(-3600))
        // A newer reset token invalidates older ones.
        let writes = AccountWrites(invalidate: [.passwordReset], issue: [token], mail: [mail])
        try await mailing.tokens.record(writes, for: user.id, events: [], limit: limit)
        return .done
    }

    private func confirmPasswordReset(_ command: ConfirmPasswordReset) async throws -> CommandReply {
        guard let mailing else { return .rejected(.invalidCommand) }
        guard command.passwordHash.hasPrefix("$") else { return .rejected(.invalidCommand) }
        return try await withToken(command.tokenDigest, .passwordReset, of: mailing) { user, use, now in
            var user = user
            let version = user.version
            _ = user.apply(name: nil, email: nil, passwordHash: command.passwordHash, at: now)
            // The mail reached its owner: the address is proven too.
            var events = [event(.passwordReset(userID: user.id), at: user.updatedAt)]
            if !user.emailVerified { events.append(event(.emailVerified(userID: user.id), at: user.updatedAt)) }
            user.emailVerified = true
            // Every token of an older version is refused, and every session ends, with the change.
            let cutoff = Revocation.account(userID: user.id, belowVersion: Int64(user.version), until: tokens.cutoffExpiry(madeAt: now))
            try await users.update(
                user, expectedVersion: version, events: events, revocations: [cutoff],
                writes: AccountWrites(use: use, invalidate: [.passwordReset])
            )
            await endSessions(of: user.id, reason: .passwordChange)
            return .user(UserRecord(user))
        }
    }
}
