public import Foundation
public import IdentityPorts

extension LoginThrottleConfiguration {
    /// Seconds until one more attempt may go ahead for a key with `failures` (those within the
    /// window, oldest first) and `limit`: 0 while fewer than `limit` failures count, else the
    /// time until the oldest counted one leaves the window. Every throttle adapter decides so.
    public func retryAfter(failures: [Date], limit: Int, now: Date) -> TimeInterval {
        guard limit > 0, failures.count >= limit else { return 0 }
        return failures[failures.count - limit].addingTimeInterval(window).timeIntervalSince(now)
    }
}

/// One entry of a throttle key's record: a failure, or an attempt still in flight.
public struct ThrottleEntry: Sendable, Equatable {
    /// When the failure happened, or the attempt began.
    public var at: Date
    /// The attempt in flight; nil for a failure.
    public var attempt: UUID?

    /// Creates an entry.
    public init(at: Date, attempt: UUID?) {
        self.at = at
        self.attempt = attempt
    }
}

extension LoginThrottleConfiguration {
    /// Whether an entry counts as a failure at `now`: a failure, or an attempt whose lease lapsed.
    public func countsAsFailure(_ entry: ThrottleEntry, now: Date) -> Bool {
        entry.attempt == nil || entry.at.addingTimeInterval(attemptLease) <= now
    }

    /// The rule every throttle adapter applies to `attempt`, given the entries within the window
    /// of the email's key and of the client address's key (nil without an address): throttled
    /// while the email has `maxFailuresPerEmail` failures or the address `maxFailuresPerClient`
    /// failures and attempts in flight; busy while another attempt for the email is in flight;
    /// otherwise allowed.
    public func decide(attempt: UUID, email: [ThrottleEntry], client: [ThrottleEntry]?, now: Date) -> ThrottleDecision {
        let emailFailures = email.filter { countsAsFailure($0, now: now) }.map(\.at).sorted()
        let clientCounted = (client ?? []).map(\.at).sorted()
        let wait = max(
            retryAfter(failures: emailFailures, limit: maxFailuresPerEmail, now: now),
            retryAfter(failures: clientCounted, limit: maxFailuresPerClient, now: now)
        )
        if wait > 0 { return .throttled(retryAfterSeconds: max(1, Int(wait.rounded(.up)))) }
        if email.contains(where: { !countsAsFailure($0, now: now) && $0.attempt != attempt }) { return .busy }
        return .allowed
    }

    /// The rule for a request that sends mail (contract §11), given the entries of the client
    /// address's key within the window: throttled while they reach `maxFailuresPerClient`;
    /// otherwise allowed (and the adapter counts it as a failure of the address).
    public func decideMailRequest(client: [ThrottleEntry], now: Date) -> ThrottleDecision {
        let wait = retryAfter(failures: client.map(\.at).sorted(), limit: maxFailuresPerClient, now: now)
        return wait > 0 ? .throttled(retryAfterSeconds: max(1, Int(wait.rounded(.up)))) : .allowed
    }
}
