public import Foundation

/// A registered account. `passwordHash` is an Argon2id (or imported) PHC string, never a password.
public struct User: Sendable, Equatable {
    /// Stable identifier.
    public let id: UserID
    /// Canonical email, unique across accounts.
    public var email: Email
    /// Display name.
    public var name: DisplayName
    /// PHC string of the password hash.
    public var passwordHash: String
    /// When the account was registered (millisecond precision).
    public let createdAt: Date
    /// When the account last changed (millisecond precision); moves forward on every change.
    public var updatedAt: Date
    /// Optimistic-concurrency version: 1 at registration, +1 on every stored change.
    public var version: Int
    /// Whether the owner of `email` proved it (contract §11); false again after an email change.
    public var emailVerified: Bool

    /// Creates a user from stored fields.
    public init(
        id: UserID, email: Email, name: DisplayName, passwordHash: String,
        createdAt: Date, updatedAt: Date, version: Int, emailVerified: Bool = false
    ) {
        self.id = id
        self.email = email
        self.name = name
        self.passwordHash = passwordHash
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.version = version
        self.emailVerified = emailVerified
    }

    /// Registers a new account at `now`.
    public static func register(id: UserID, email: Email, name: DisplayName, passwordHash: String, at now: Date) -> User {
        let now = now.truncatedToMilliseconds
        return User(id: id, email: email, name: name, passwordHash: passwordHash, createdAt: now, updatedAt: now, version: 1)
    }

    /// The profile fields a change can touch, named as in the API.
    public enum Field: String, Sendable, Codable, CaseIterable {
        case name, email, password
    }

    /// Applies a profile change at `now` and returns the fields that really changed.
    ///
    /// A supplied password always counts as a change (its hash is new). `updatedAt` moves
    /// strictly forward when anything changed, even if the clock did not.
    public mutating func apply(name: DisplayName?, email: Email?, passwordHash: String?, at now: Date) -> [Field] {
        var changed: [Field] = []
        if let name, name != self.name {
            self.name = name
            changed.append(.name)
        }
        if let email, email != self.email {
            self.email = email
            emailVerified = false
            changed.append(.email)
        }
        if let passwordHash {
            self.passwordHash = passwordHash
            changed.append(.password)
        }
        if !changed.isEmpty { touch(at: now) }
        return changed
    }

    /// Marks the email as verified at `now`; returns whether that changed anything.
    public mutating func verifyEmail(at now: Date) -> Bool {
        guard !emailVerified else { return false }
        emailVerified = true
        touch(at: now)
        return true
    }

    /// Moves `updatedAt` strictly forward (even if the clock did not) and the version up by one.
    private mutating func touch(at now: Date) {
        let now = now.truncatedToMilliseconds
        updatedAt = now > updatedAt ? now : updatedAt.addingTimeInterval(0.001)
        version += 1
    }
}
