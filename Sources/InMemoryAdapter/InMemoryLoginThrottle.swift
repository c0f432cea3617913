public import IdentityPorts
public import IdentityDomain
public import Foundation

/// Failed-login counts in memory, over a sliding window, for one process.
public actor InMemoryLoginThrottle: LoginThrottle {
    private var failuresByEmail: [String: [Date]] = [:]
    private var failuresByClient: [String: [Date]] = [:]
    private let limits: LoginThrottleLimits
    private var lastSweep = Date.distantPast

    /// Creates an empty throttle with `limits`.
    public init(limits: LoginThrottleLimits = LoginThrottleLimits()) {
        self.limits = limits
    }

    /// How many emails and addresses currently have failures on record.
    public var trackedKeys: Int { failuresByEmail.count + failuresByClient.count }

    public func beginAttempt(email: Email, client: String?, now: Date) -> ThrottleDecision {
        sweepIfDue(now: now)
        let since = now.addingTimeInterval(-limits.window)
        let emailFailures = recent(failuresByEmail[email.value], since: since)
        let clientFailures = client.map { recent(failuresByClient[$0], since: since) } ?? []
        let retryAfter = max(
            limits.retryAfter(failures: emailFailures, limit: limits.maxFailuresPerEmail, now: now),
            limits.retryAfter(failures: clientFailures, limit: limits.maxFailuresPerClient, now: now)
        )
        if retryAfter > 0 {
            failuresByEmail[email.value] = emailFailures
            return .throttled(retryAfterSeconds: Int(retryAfter.rounded(.up)))
        }
        failuresByEmail[email.value] = Array((emailFailures + [now]).suffix(limits.maxFailuresPerEmail))
        if let client {
            failuresByClient[client] = Array((clientFailures + [now]).suffix(limits.maxFailuresPerClient))
        }
        return .allowed
    }

    public func recordSuccess(email: Email, client: String?) {
        failuresByEmail[email.value] = nil
        if let client, var failures = failuresByClient[client], !failures.isEmpty {
            failures.removeLast()
            failuresByClient[client] = failures.isEmpty ? nil : failures
        }
    }

    private func recent(_ failures: [Date]?, since: Date) -> [Date] {
        guard let failures else { return [] }
        return failures.filter { $0 > since }
    }

    /// Forgets keys whose failures all left the window, at most once a minute.
    private func sweepIfDue(now: Date) {
        guard now.timeIntervalSince(lastSweep) >= 60 else { return }
        lastSweep = now
        let since = now.addingTimeInterval(-limits.window)
        failuresByEmail = failuresByEmail.filter { $0.value.last.map { $0 > since } ?? false }
        failuresByClient = failuresByClient.filter { $0.value.last.map { $0 > since } ?? false }
    }
}
