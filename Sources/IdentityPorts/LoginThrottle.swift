public import Foundation
public import IdentityDomain

/// The outcome of asking the throttle whether a login attempt may proceed.
public enum ThrottleDecision: Sendable, Equatable {
    /// Go ahead: the attempt holds its email's turn until it is finished (or its lease lapses).
    case allowed
    /// Refuse without checking the password; retry after this many seconds.
    case throttled(retryAfterSeconds: Int)
    /// Another attempt for this email is being checked right now, on this instance or another:
    /// wait for it to finish and ask again (never refuse an attempt for being simultaneous).
    case busy
}

/// How an allowed attempt ended.
public enum AttemptOutcome: Sendable, Equatable {
    /// The password was right: the email's failures are cleared.
    case success
    /// The password was wrong: one failure for the email and for the client address.
    case failure
    /// The check never finished (overload, a backend error): nothing is counted.
    case abandoned
}

/// Counts failed logins per email and per client address over a sliding window (contract §3).
///
/// Only failures count against an email, and its attempts are checked one after another: while
/// one is in flight (`beginAttempt` answered `.allowed` and `finishAttempt` has not been
/// called), another for the same email gets `.busy` and waits. So parallel correct logins all
/// succeed, and parallel guesses gain nothing: each sees every failure before it. A client
/// address counts its failures and its attempts in flight, so spraying many emails in parallel
/// from one address stays under its ceiling. An attempt whose process died before finishing
/// counts as a failure once `LoginThrottleConfiguration.attemptLease` has passed, and no longer holds
/// its email's turn.
public protocol LoginThrottle: Sendable {
    /// Decides whether `attempt` (an id unique to it) for `email` from `client` may be checked now.
    func beginAttempt(_ attempt: UUID, email: Email, client: String?, now: Date) async throws -> ThrottleDecision
    /// Finishes an allowed attempt with its outcome, at `now`.
    func finishAttempt(_ attempt: UUID, email: Email, client: String?, outcome: AttemptOutcome, now: Date) async throws
    /// Forgets the failures counted against `email` (a password reset ends its lockout,
    /// contract §11); an attempt in flight keeps its turn.
    func clearFailures(email: Email, now: Date) async throws
    /// Counts a request that sends mail (a reset or a resend, contract §11) against `client`'s
    /// ceiling, like a failure: `.throttled` when the ceiling is reached (the request is then not
    /// counted), `.allowed` otherwise.
    func countMailRequest(client: String, now: Date) async throws -> ThrottleDecision
}

/// Limits of login throttling (contract §3).
public struct LoginThrottleConfiguration: Sendable, Equatable {
    /// Failures for one email within the window before it is throttled.
    public var maxFailuresPerEmail: Int
    /// Failures from one client address within the window before it is throttled.
    public var maxFailuresPerClient: Int
    /// The sliding window, in seconds.
    public var window: TimeInterval
    /// How long an unfinished attempt holds its email's turn; past it, it counts as a failure.
    public var attemptLease: TimeInterval

    /// Creates limits; the defaults are the contract's (5 per email, 100 per address, 900 s), and
    /// a lease of 30 s (a password check takes well under a second).
    public init(maxFailuresPerEmail: Int = 5, maxFailuresPerClient: Int = 100, window: TimeInterval = 900, attemptLease: TimeInterval = 30) {
        self.maxFailuresPerEmail = maxFailuresPerEmail
        self.maxFailuresPerClient = maxFailuresPerClient
        self.window = window
        self.attemptLease = attemptLease
    }
}
