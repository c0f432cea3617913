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

    /// Creates a user from stored fields.
    public init(
        id: UserID, email: Email, name: DisplayName, passwordHash: String,
        createdAt: Date, updatedAt: Date, version: Int
    ) {
        self.id = id
        self.email = email
        self.name = name
        self.passwordHash = passwordHash
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.version = version
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
            changed.append(.email)
        }
        if let passwordHash {
            self.passwordHash = passwordHash
            changed.append(.password)
        }
        if !changed.isEmpty {
            let now = now.truncatedToMilliseconds
            updatedAt = now > updatedAt ? now : updatedAt.addingTimeInterval(0.001)
            version += 1
        }
        return changed
    }
}
