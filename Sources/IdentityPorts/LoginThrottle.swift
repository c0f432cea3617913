public import Foundation
public import IdentityDomain

/// The outcome of asking the throttle whether a login attempt may proceed.
public enum ThrottleDecision: Sendable, Equatable {
    /// Go ahead; the attempt is counted as a failure until `recordSuccess` says otherwise.
    case allowed
    /// Refuse without checking the password; retry after this many seconds.
    case throttled(retryAfterSeconds: Int)
}

/// Counts failed logins per email and per client address over a sliding window (contract §3).
///
/// Counting is pessimistic: `beginAttempt` counts the attempt as a failure at once, so that
/// parallel guesses cannot slip past the limit while their hashes run; `recordSuccess` undoes it.
public protocol LoginThrottle: Sendable {
    /// Decides whether an attempt for `email` from `client` may proceed, and counts it if so.
    func beginAttempt(email: Email, client: String?, now: Date) async throws -> ThrottleDecision
    /// The attempt succeeded: clears the email's failures and uncounts it for the client.
    func recordSuccess(email: Email, client: String?) async throws
}

/// Limits of login throttling (contract §3).
public struct LoginThrottleLimits: Sendable, Equatable {
    /// Failures for one email within the window before it is throttled.
    public var maxFailuresPerEmail: Int
    /// Failures from one client address within the window before it is throttled.
    public var maxFailuresPerClient: Int
    /// The sliding window, in seconds.
    public var window: TimeInterval

    /// Creates limits; the defaults are the contract's (5 per email, 100 per address, 900 s).
    public init(maxFailuresPerEmail: Int = 5, maxFailuresPerClient: Int = 100, window: TimeInterval = 900) {
        self.maxFailuresPerEmail = maxFailuresPerEmail
        self.maxFailuresPerClient = maxFailuresPerClient
        self.window = window
    }
}

extension LoginThrottleLimits {
    /// Seconds until one more attempt may go ahead for a key with `failures` (those within the
    /// window, oldest first) and `limit`: 0 while fewer than `limit` failures count, else the
    /// time until the oldest counted one leaves the window. Every throttle adapter decides so.
    public func retryAfter(failures: [Date], limit: Int, now: Date) -> TimeInterval {
        guard limit > 0, failures.count >= limit else { return 0 }
        return failures[failures.count - limit].addingTimeInterval(window).timeIntervalSince(now)
    }
}
