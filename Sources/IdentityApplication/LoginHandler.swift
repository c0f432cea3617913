import IdentityPorts
import IdentityDomain
import Foundation

/// `Login`: checks a password, then opens a session with its first pair of tokens.
///
/// Unknown emails cost the same as wrong passwords (a dummy hash is verified), both are
/// throttled alike, and the outcome is the same `IdentityError.invalidCredentials`.
struct LoginHandler: Sendable {
    let users: any UserRepository
    let hasher: any PasswordHasher
    let sessions: SessionHandler
    let attempts: PasswordAttempts
    let bus: any CommandBus
    let ids: any IDGenerator
    let dummy: DummyHash
    /// Whether the right password of an unverified account is refused (`emailNotVerified`).
    let requireVerifiedEmail: Bool

    func login(email: Email, password: Password, client: String?, userAgent: String?) async throws -> SignIn {
        let (right, user) = try await attempts.run(email: email, client: client) { () async throws -> (right: Bool, value: User?) in
            guard let user = try await users.user(email: email) else {
                _ = try await hasher.verify(password, against: await dummy.value(using: hasher))
                return (false, nil)
            }
            return (try await hasher.verify(password, against: user.passwordHash), user)
        }
        guard right, let user else { throw IdentityError.invalidCredentials }
        if requireVerifiedEmail, !user.emailVerified { throw IdentityError.emailNotVerified }
        if hasher.needsRehash(user.passwordHash) {
            await rehash(user, password: password)
        }
        // The session and its token carry the version read with the hash it was checked against:
        // if the password changes while this login runs, the change's cut-off is above it.
        return try await sessions.open(for: user, client: client, userAgent: userAgent) { current in
            // The same hash (the common case), or a new one the password still matches (a
            // rehash); a new password, or no account, ends the session just opened.
            guard let current else { return false }
            if current.passwordHash == user.passwordHash { return true }
            return try await hasher.verify(password, against: current.passwordHash)
        }
    }

    /// Best effort: a failed rehash leaves the old (still valid) hash and is retried next login.
    private func rehash(_ user: User, password: Password) async {
        guard let newHash = try? await hasher.hash(password) else { return }
        let command = RehashPassword(userID: user.id, previousHash: user.passwordHash, newHash: newHash)
        _ = try? await bus.dispatch(CommandEnvelope(messageID: ids.makeUUID().uuidString.lowercased(), command: .rehashPassword(command)))
    }
}

/// A hash of a random password, made once, verified against when an email is unknown so that
/// the response takes as long as for a known email.
actor DummyHash {
    private var hash: String?

    func value(using hasher: any PasswordHasher) async throws -> String {
        if let hash { return hash }
        var random = SystemRandomNumberGenerator()
        let secret = (0..<4).map { _ in String(random.next() as UInt64, radix: 36) }.joined(separator: "-")
        let made = try await hasher.hash(try Password(secret))
        if hash == nil { hash = made }
        return hash ?? made
    }
}
