/// A business rule that refused a request. Match with `==` or in a `switch` on the static members.
public struct IdentityError: Error, Sendable, Hashable, CustomStringConvertible {
    private enum Kind: Hashable, Sendable {
        case emailTaken, userNotFound, invalidCredentials, wrongCurrentPassword, concurrentUpdate
        case currentPasswordRequired, preconditionFailed, sessionNotFound, refreshTokenRefused, refreshTokenReused
        case invalidToken, emailNotVerified
    }

    private let kind: Kind
    private init(_ kind: Kind) { self.kind = kind }

    /// Another account already has this canonical email (409).
    public static let emailTaken = IdentityError(.emailTaken)
    /// No such account (404).
    public static let userNotFound = IdentityError(.userNotFound)
    /// Unknown email or wrong password: deliberately indistinguishable (401).
    public static let invalidCredentials = IdentityError(.invalidCredentials)
    /// `current_password` did not match (403).
    public static let wrongCurrentPassword = IdentityError(.wrongCurrentPassword)
    /// The account changed between reading and writing it (409); retry.
    public static let concurrentUpdate = IdentityError(.concurrentUpdate)
    /// Changing email or password needs `current_password` (422).
    public static let currentPasswordRequired = IdentityError(.currentPasswordRequired)
    /// The account is no longer at the version the caller's precondition (`If-Match`) names (412).
    public static let preconditionFailed = IdentityError(.preconditionFailed)
    /// No open session of the caller has this id (404), whoever else's it may be.
    public static let sessionNotFound = IdentityError(.sessionNotFound)
    /// A refresh token that is unknown, malformed, expired or of an ended session (401): which
    /// of these is never said.
    public static let refreshTokenRefused = IdentityError(.refreshTokenRefused)
    /// A refresh token replayed after its rotation: its whole session has just been ended (401,
    /// `refresh-token-reused`).
    public static let refreshTokenReused = IdentityError(.refreshTokenReused)

    /// An email-verification or password-reset token that is used, expired, unknown, malformed
    /// or of another purpose (400, `invalid-token`): which of these is never said.
    public static let invalidToken = IdentityError(.invalidToken)
    /// The right password for an account whose email is not verified while
    /// `REQUIRE_VERIFIED_EMAIL` is on (403, `email-not-verified`).
    public static let emailNotVerified = IdentityError(.emailNotVerified)

    public var description: String {
        switch kind {
        case .emailTaken: "an account with this email already exists"
        case .userNotFound: "no such user"
        case .invalidCredentials: "invalid email or password"
        case .wrongCurrentPassword: "current_password is wrong"
        case .concurrentUpdate: "the account was changed concurrently; retry"
        case .currentPasswordRequired: "current_password is required to change email or password"
        case .preconditionFailed: "the account has changed since the version If-Match names; nothing was changed"
        case .sessionNotFound: "no such session"
        case .refreshTokenRefused: "the refresh token is not valid"
        case .refreshTokenReused: "the refresh token was already used: the session has been ended"
        case .invalidToken: "the token is not valid (used, expired, unknown or for another purpose)"
        case .emailNotVerified: "the account's email address is not verified yet: open the link we mailed, or ask for a password reset, whose mail verifies it too"
        }
    }
}

/// Too many failed logins: retry after `retryAfterSeconds` (429).
public struct LoginThrottled: Error, Sendable, Equatable, CustomStringConvertible {
    /// Whole seconds until an attempt may be made again (at least 1).
    public let retryAfterSeconds: Int

    /// Creates the error.
    public init(retryAfterSeconds: Int) {
        self.retryAfterSeconds = max(1, retryAfterSeconds)
    }

    public var description: String { "too many failed logins; retry after \(retryAfterSeconds) s" }
}
