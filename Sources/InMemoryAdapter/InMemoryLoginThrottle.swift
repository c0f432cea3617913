public import IdentityPorts
public import IdentityDomain
public import Foundation
import IdentityAdapterSupport

/// Failed-login counts in memory, over a sliding window, for one process.
public actor InMemoryLoginThrottle: LoginThrottle {
    private var entries: [String: [ThrottleEntry]] = [:]
    private let limits: LoginThrottleConfiguration
    private var lastSweep = Date.distantPast

    /// Creates an empty throttle with `limits`.
    public init(limits: LoginThrottleConfiguration = LoginThrottleConfiguration()) {
        self.limits = limits
    }

    /// How many emails and addresses currently have failures or attempts on record.
    public var trackedKeys: Int { entries.count }

    public func beginAttempt(_ attempt: UUID, email: Email, client: String?, now: Date) -> ThrottleDecision {
        sweepIfDue(now: now)
        let since = now.addingTimeInterval(-limits.window)
        let keys = Self.keys(email: email, client: client)
        for key in keys { entries[key] = entries[key]?.filter { $0.at > since } }
        let decision = limits.decide(
            attempt: attempt, email: entries[keys[0]] ?? [], client: client == nil ? nil : entries[keys[1]] ?? [], now: now
        )
        if decision == .allowed {
            for key in keys { entries[key, default: []].append(ThrottleEntry(at: now, attempt: attempt)) }
        }
        return decision
    }

    public func finishAttempt(_ attempt: UUID, email: Email, client: String?, outcome: AttemptOutcome, now: Date) {
        let keys = Self.keys(email: email, client: client)
        if outcome == .success { entries[keys[0]] = nil }
        for key in keys {
            guard var list = entries[key] else { continue }
            switch outcome {
            case .failure:
                for index in list.indices where list[index].attempt == attempt { list[index] = ThrottleEntry(at: now, attempt: nil) }
            case .success, .abandoned:
                list.removeAll { $0.attempt == attempt }
            }
            entries[key] = list.isEmpty ? nil : list
        }
    }

    public func clearFailures(email: Email, now: Date) {
        let key = Self.keys(email: email, client: nil)[0]
        entries[key] = entries[key]?.filter { $0.attempt != nil }
        if entries[key]?.isEmpty == true { entries[key] = nil }
    }

    public func countMailRequest(client: String, now: Date) -> ThrottleDecision {
        sweepIfDue(now: now)
        let key = "client:" + client
        let since = now.addingTimeInterval(-limits.window)
        let recent = (entries[key] ?? []).filter { $0.at > since }
        let decision = limits.decideMailRequest(client: recent, now: now)
        entries[key] = decision == .allowed ? recent + [ThrottleEntry(at: now, attempt: nil)] : recent
        return decision
    }

    private static func keys(email: Email, client: String?) -> [String] {
        ["email:" + email.value] + (client.map { ["client:" + $0] } ?? [])
    }

    /// Forgets keys whose entries all left the window, at most once a minute.
    private func sweepIfDue(now: Date) {
        guard now.timeIntervalSince(lastSweep) >= 60 else { return }
        lastSweep = now
        let since = now.addingTimeInterval(-limits.window)
        entries = entries.filter { $0.value.contains { $0.at > since } }
    }
}
