public import Foundation
public import IdentityDomain

/// The account fields a command reply carries: the self view, never the hash.
public struct UserRecord: Sendable, Equatable, Codable {
    /// Account id.
    public let id: UserID
    /// Canonical email.
    public let email: String
    /// Display name.
    public let name: String
    /// Registration time.
    public let createdAt: Date
    /// Last change time.
    public let updatedAt: Date
    /// The account's version (`User.version`): what an `ETag` is made of, and what a password
    /// change's cut-off names.
    public let version: Int
    /// Whether the email is verified (contract §11).
    public let emailVerified: Bool

    /// Creates the record from an account.
    public init(_ user: User) {
        self.id = user.id
        self.email = user.email.value
        self.name = user.name.value
        self.createdAt = user.createdAt
        self.updatedAt = user.updatedAt
        self.version = user.version
        self.emailVerified = user.emailVerified
    }

    /// Decodes a record; one from a node that predates `emailVerified` reads as unverified, so
    /// that nodes of two releases can share a broker during an upgrade.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        id = try container.decode(UserID.self, forKey: .id)
        email = try container.decode(String.self, forKey: .email)
        name = try container.decode(String.self, forKey: .name)
        createdAt = try container.decode(Date.self, forKey: .createdAt)
        updatedAt = try container.decode(Date.self, forKey: .updatedAt)
        version = try container.decode(Int.self, forKey: .version)
        emailVerified = try container.decodeIfPresent(Bool.self, forKey: .emailVerified) ?? false
    }
}

/// Registers an account. Carries the PHC string: no plaintext password leaves the HTTP side.
public struct RegisterUser: Sendable, Equatable, Codable {
    /// Canonical email.
    public let email: String
    /// Validated name.
    public let name: String
    /// PHC string of the password.
    public let passwordHash: String

    /// Creates the command.
    public init(email: Email, name: DisplayName, passwordHash: String) {
        self.email = email.value
        self.name = name.value
        self.passwordHash = passwordHash
    }
}

/// Changes some profile fields of an account.
public struct UpdateProfile: Sendable, Equatable, Codable {
    /// Account to change.
    public let userID: UserID
    /// New name, if changing.
    public let name: String?
    /// New canonical email, if changing.
    public let email: String?
    /// PHC string of the new password, if changing.
    public let passwordHash: String?
    /// The version that `current_password` was verified against: the change applies only to it
    /// (otherwise `concurrentUpdate`, and the caller verifies again).
    public let expectedVersion: Int?
    /// The caller's precondition (`If-Match`): the change applies only if the account is at one
    /// of these versions (otherwise `preconditionFailed`); nil for none. Without either
    /// precondition, a concurrent change is not an error: the command is applied to the account
    /// as it then stands.
    public let ifMatchVersions: [Int]?

    /// Creates the command.
    public init(
        userID: UserID, name: DisplayName?, email: Email?, passwordHash: String?, expectedVersion: Int?, ifMatchVersions: [Int]? = nil
    ) {
        self.userID = userID
        self.name = name?.value
        self.email = email?.value
        self.passwordHash = passwordHash
        self.expectedVersion = expectedVersion
        self.ifMatchVersions = ifMatchVersions
    }
}

/// Deletes an account and revokes every token it had.
public struct DeleteAccount: Sendable, Equatable, Codable {
    /// Account to delete.
    public let userID: UserID

    /// Creates the command.
    public init(userID: UserID) {
        self.userID = userID
    }
}

/// Revokes one token (logout).
public struct RevokeToken: Sendable, Equatable, Codable {
    /// Owner of the token.
    public let userID: UserID
    /// The token's `jti`.
    public let jti: String
    /// The token's `exp`: the revocation entry lasts until then.
    public let expiresAt: Date

    /// Creates the command.
    public init(userID: UserID, jti: String, expiresAt: Date) {
        self.userID = userID
        self.jti = jti
        self.expiresAt = expiresAt
    }
}

/// Replaces a password hash made with outdated parameters, after a successful login.
/// Not a profile change: `updated_at` stays, no event, no token is revoked.
public struct RehashPassword: Sendable, Equatable, Codable {
    /// Account whose hash is replaced.
    public let userID: UserID
    /// The hash that was verified: the replacement applies only while it is still stored.
    public let previousHash: String
    /// The new PHC string.
    public let newHash: String

    /// Creates the command.
    public init(userID: UserID, previousHash: String, newHash: String) {
        self.userID = userID
        self.previousHash = previousHash
        self.newHash = newHash
    }
}

/// Proves an address with an email-verification token (contract §11).
public struct VerifyEmail: Sendable, Equatable, Codable {
    /// The token's digest (`AccountTokenMinting.digest`): the token itself never crosses the bus.
    public let tokenDigest: Data

    /// Creates the command.
    public init(tokenDigest: Data) {
        self.tokenDigest = tokenDigest
    }
}

/// Sends the account's address a new verification mail (nothing when it is verified).
public struct ResendVerification: Sendable, Equatable, Codable {
    /// The account.
    public let userID: UserID

    /// Creates the command.
    public init(userID: UserID) {
        self.userID = userID
    }
}

/// Sends a reset mail when an account has this email; does nothing otherwise (contract §11).
public struct RequestPasswordReset: Sendable, Equatable, Codable {
    /// Canonical email as the caller gave it.
    public let email: String

    /// Creates the command.
    public init(email: Email) {
        self.email = email.value
    }
}

/// Sets a new password with a reset token, ending every session of the account.
public struct ConfirmPasswordReset: Sendable, Equatable, Codable {
    /// The token's digest.
    public let tokenDigest: Data
    /// PHC string of the new password.
    public let passwordHash: String

    /// Creates the command.
    public init(tokenDigest: Data, passwordHash: String) {
        self.tokenDigest = tokenDigest
        self.passwordHash = passwordHash
    }
}

/// Every command the write side accepts.
public enum IdentityCommand: Sendable, Equatable, Codable {
    case registerUser(RegisterUser)
    case updateProfile(UpdateProfile)
    case deleteAccount(DeleteAccount)
    case revokeToken(RevokeToken)
    case rehashPassword(RehashPassword)
    case verifyEmail(VerifyEmail)
    case resendVerification(ResendVerification)
    case requestPasswordReset(RequestPasswordReset)
    case confirmPasswordReset(ConfirmPasswordReset)

    /// The command's name, as used in logs and message headers.
    public var name: String {
        switch self {
        case .registerUser: "RegisterUser"
        case .updateProfile: "UpdateProfile"
        case .deleteAccount: "DeleteAccount"
        case .revokeToken: "RevokeToken"
        case .rehashPassword: "RehashPassword"
        case .verifyEmail: "VerifyEmail"
        case .resendVerification: "ResendVerification"
        case .requestPasswordReset: "RequestPasswordReset"
        case .confirmPasswordReset: "ConfirmPasswordReset"
        }
    }
}

/// A command with the id that makes its redelivery idempotent.
public struct CommandEnvelope: Sendable, Equatable, Codable {
    /// Unique per command; a worker applies a given id once.
    public let messageID: String
    /// The command.
    public let command: IdentityCommand

    /// Creates an envelope.
    public init(messageID: String, command: IdentityCommand) {
        self.messageID = messageID
        self.command = command
    }
}

/// The business outcome of a command, as a worker replies it.
public enum CommandReply: Sendable, Equatable, Codable {
    /// Done; the account as it now stands.
    case user(UserRecord)
    /// Done; nothing to return.
    case done
    /// Refused by a business rule.
    case rejected(CommandRejection)
}

/// Why the write side refused a command; maps back onto `IdentityError`.
public enum CommandRejection: String, Sendable, Equatable, Codable {
    case emailTaken = "email_taken"
    case userNotFound = "user_not_found"
    case concurrentUpdate = "concurrent_update"
    case invalidCommand = "invalid_command"
    /// The account is not at any version the command's precondition names.
    case preconditionFailed = "precondition_failed"
    /// The account token is used, expired, unknown or of another purpose.
    case invalidToken = "invalid_token"
}
