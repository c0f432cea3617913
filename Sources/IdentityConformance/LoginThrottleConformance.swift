public import IdentityPorts
import IdentityDomain
import Foundation
import Testing

/// The behaviour every `LoginThrottle` must show (contract §3): only failures count, attempts
/// on one email take turns, an unfinished attempt lapses into a failure.
///
/// ```swift
/// @Test func conforms() async throws {
///     try await LoginThrottleConformance { limits in MyThrottle(limits: limits) }.run()
/// }
/// ```
public struct LoginThrottleConformance: Sendable {
    /// Makes a fresh throttle with `limits`.
    public typealias Factory = @Sendable (_ limits: LoginThrottleConfiguration) async throws -> any LoginThrottle
    private let makeThrottle: Factory

    /// Creates the suite.
    public init(makeThrottle: @escaping Factory) {
        self.makeThrottle = makeThrottle
    }

    /// Runs every check, each on a fresh throttle.
    public func run() async throws {
        await Fixture.check("emailIsThrottledAfterTheLimitUntilTheWindowPasses") { try await emailIsThrottledAfterTheLimitUntilTheWindowPasses() }
        await Fixture.check("onlyFailuresCount") { try await onlyFailuresCount() }
        await Fixture.check("attemptsOnOneEmailTakeTurns") { try await attemptsOnOneEmailTakeTurns() }
        await Fixture.check("anUnfinishedAttemptLapsesIntoAFailure") { try await anUnfinishedAttemptLapsesIntoAFailure() }
        await Fixture.check("successResetsTheEmail") { try await successResetsTheEmail() }
        await Fixture.check("clientAddressHasItsOwnCeiling") { try await clientAddressHasItsOwnCeiling() }
        await Fixture.check("clearingFailuresEndsALockout") { try await clearingFailuresEndsALockout() }
        await Fixture.check("mailRequestsCountTowardTheClientCeiling") { try await mailRequestsCountTowardTheClientCeiling() }
    }

    private let now = Fixture.epoch

    /// Begins an attempt and finishes it with `outcome`; returns the decision.
    @discardableResult
    private func attempt(
        _ throttle: any LoginThrottle, _ email: Email, client: String?, at time: Date, outcome: AttemptOutcome
    ) async throws -> ThrottleDecision {
        let id = UUID()
        let decision = try await throttle.beginAttempt(id, email: email, client: client, now: time)
        if decision == .allowed { try await throttle.finishAttempt(id, email: email, client: client, outcome: outcome, now: time) }
        return decision
    }

    func emailIsThrottledAfterTheLimitUntilTheWindowPasses() async throws {
        let throttle = try await makeThrottle(LoginThrottleConfiguration(maxFailuresPerEmail: 3, maxFailuresPerClient: 100, window: 60))
        let email = try Email("victim@example.com")
        for index in 0..<3 {
            #expect(try await attempt(throttle, email, client: "10.0.0.\(index)", at: now.addingTimeInterval(Double(index)), outcome: .failure)
                    == .allowed, "attempts up to the limit go ahead")
        }
        #expect(try await throttle.beginAttempt(UUID(), email: email, client: "10.0.0.9", now: now.addingTimeInterval(10))
                == .throttled(retryAfterSeconds: 50), "the next one waits until the oldest failure leaves the window")
        #expect(try await attempt(throttle, try Email("other@example.com"), client: nil, at: now.addingTimeInterval(10), outcome: .failure)
                == .allowed, "other emails are unaffected")
        #expect(try await attempt(throttle, email, client: nil, at: now.addingTimeInterval(61), outcome: .failure) == .allowed,
                "once the oldest failure leaves the window an attempt goes ahead")
    }

    func onlyFailuresCount() async throws {
        let throttle = try await makeThrottle(LoginThrottleConfiguration(maxFailuresPerEmail: 2, maxFailuresPerClient: 3, window: 60))
        let email = try Email("busy@example.com")
        for index in 0..<10 {
            #expect(try await attempt(throttle, email, client: "c", at: now.addingTimeInterval(Double(index)), outcome: .success) == .allowed,
                    "successes never count, for the email or the address")
        }
        try await attempt(throttle, email, client: "c", at: now.addingTimeInterval(11), outcome: .failure)
        for index in 0..<5 {
            #expect(try await attempt(throttle, email, client: "c", at: now.addingTimeInterval(12 + Double(index)), outcome: .abandoned)
                    == .allowed, "an abandoned attempt (overload, a backend error) counts for nothing")
        }
        #expect(try await attempt(throttle, email, client: "c", at: now.addingTimeInterval(20), outcome: .failure) == .allowed)
        guard case .throttled = try await throttle.beginAttempt(UUID(), email: email, client: "c", now: now.addingTimeInterval(21)) else {
            Issue.record("two failures reach the email's limit of 2")
            return
        }
    }

    func attemptsOnOneEmailTakeTurns() async throws {
        let throttle = try await makeThrottle(LoginThrottleConfiguration(maxFailuresPerEmail: 5, maxFailuresPerClient: 100, window: 60))
        let email = try Email("turns@example.com")
        let (first, second) = (UUID(), UUID())
        #expect(try await throttle.beginAttempt(first, email: email, client: "a", now: now) == .allowed)
        #expect(try await throttle.beginAttempt(second, email: email, client: "b", now: now) == .busy,
                "while one attempt is checked, another for the same email waits (it is not refused)")
        #expect(try await throttle.beginAttempt(UUID(), email: try Email("else@example.com"), client: "b", now: now) == .allowed,
                "another email goes ahead")
        try await throttle.finishAttempt(first, email: email, client: "a", outcome: .failure, now: now)
        #expect(try await throttle.beginAttempt(second, email: email, client: "b", now: now) == .allowed, "then it is its turn")
        try await throttle.finishAttempt(second, email: email, client: "b", outcome: .success, now: now)
        #expect(try await attempt(throttle, email, client: "b", at: now, outcome: .success) == .allowed, "and the turn is free again")
    }

    func anUnfinishedAttemptLapsesIntoAFailure() async throws {
        let limits = LoginThrottleConfiguration(maxFailuresPerEmail: 2, maxFailuresPerClient: 100, window: 600, attemptLease: 30)
        let throttle = try await makeThrottle(limits)
        let email = try Email("crash@example.com")
        #expect(try await throttle.beginAttempt(UUID(), email: email, client: nil, now: now) == .allowed)  // never finished
        #expect(try await throttle.beginAttempt(UUID(), email: email, client: nil, now: now.addingTimeInterval(29)) == .busy)
        #expect(try await attempt(throttle, email, client: nil, at: now.addingTimeInterval(31), outcome: .failure) == .allowed,
                "past its lease it holds the turn no longer")
        guard case .throttled = try await throttle.beginAttempt(UUID(), email: email, client: nil, now: now.addingTimeInterval(32)) else {
            Issue.record("and it counts as a failure (two with the one after it: the limit)")
            return
        }
    }

    func successResetsTheEmail() async throws {
        let throttle = try await makeThrottle(LoginThrottleConfiguration(maxFailuresPerEmail: 2, maxFailuresPerClient: 100, window: 60))
        let email = try Email("user@example.com")
        try await attempt(throttle, email, client: "c", at: now, outcome: .failure)
        try await attempt(throttle, email, client: "c", at: now, outcome: .success)
        try await attempt(throttle, email, client: "c", at: now, outcome: .failure)
        #expect(try await attempt(throttle, email, client: "c", at: now, outcome: .failure) == .allowed,
                "a success cleared the failure before it: one failure since, not two")
    }

    func clientAddressHasItsOwnCeiling() async throws {
        let throttle = try await makeThrottle(LoginThrottleConfiguration(maxFailuresPerEmail: 100, maxFailuresPerClient: 3, window: 60))
        try await attempt(throttle, try Email("u0@example.com"), client: "203.0.113.7", at: now, outcome: .failure)
        let inFlight = [UUID(), UUID()]
        for (index, id) in inFlight.enumerated() {
            #expect(try await throttle.beginAttempt(id, email: try Email("u\(index + 1)@example.com"), client: "203.0.113.7", now: now) == .allowed)
        }
        guard case .throttled = try await throttle.beginAttempt(UUID(), email: try Email("fresh@example.com"), client: "203.0.113.7", now: now)
        else {
            Issue.record("an address over its ceiling (failures and attempts in flight) is throttled, whatever the email")
            return
        }
        #expect(try await attempt(throttle, try Email("fresh@example.com"), client: "198.51.100.1", at: now, outcome: .failure) == .allowed,
                "other addresses are unaffected")
        for (index, id) in inFlight.enumerated() {
            try await throttle.finishAttempt(id, email: try Email("u\(index + 1)@example.com"), client: "203.0.113.7", outcome: .success, now: now)
        }
        #expect(try await attempt(throttle, try Email("fresh@example.com"), client: "203.0.113.7", at: now, outcome: .success) == .allowed,
                "attempts that succeeded no longer count for the address")
    }

    func clearingFailuresEndsALockout() async throws {
        let throttle = try await makeThrottle(LoginThrottleConfiguration(maxFailuresPerEmail: 2, maxFailuresPerClient: 100, window: 60))
        let email = try Email("locked@example.com")
        let other = try Email("other@example.com")
        for _ in 0..<2 {
            try await attempt(throttle, email, client: nil, at: now, outcome: .failure)
            try await attempt(throttle, other, client: nil, at: now, outcome: .failure)
        }
        guard case .throttled = try await throttle.beginAttempt(UUID(), email: email, client: nil, now: now) else {
            Issue.record("two failures lock the email")
            return
        }
        try await throttle.clearFailures(email: email, now: now)
        #expect(try await attempt(throttle, email, client: nil, at: now, outcome: .success) == .allowed, "a reset ends the lockout")
        guard case .throttled = try await throttle.beginAttempt(UUID(), email: other, client: nil, now: now) else {
            Issue.record("another email's lockout stays")
            return
        }
    }

    func mailRequestsCountTowardTheClientCeiling() async throws {
        let throttle = try await makeThrottle(LoginThrottleConfiguration(maxFailuresPerEmail: 100, maxFailuresPerClient: 3, window: 60))
        try await attempt(throttle, try Email("u@example.com"), client: "203.0.113.9", at: now, outcome: .failure)
        #expect(try await throttle.countMailRequest(client: "203.0.113.9", now: now) == .allowed)
        #expect(try await throttle.countMailRequest(client: "203.0.113.9", now: now.addingTimeInterval(1)) == .allowed)
        #expect(try await throttle.countMailRequest(client: "203.0.113.9", now: now.addingTimeInterval(2)) == .throttled(retryAfterSeconds: 58),
                "a failed login and two mail requests reach a ceiling of 3, until the oldest leaves the window")
        guard case .throttled = try await throttle.beginAttempt(UUID(), email: try Email("v@example.com"), client: "203.0.113.9", now: now.addingTimeInterval(2))
        else {
            Issue.record("mail requests count toward the logins' ceiling too")
            return
        }
        #expect(try await throttle.countMailRequest(client: "198.51.100.2", now: now.addingTimeInterval(2)) == .allowed, "other addresses are unaffected")
        #expect(try await throttle.countMailRequest(client: "203.0.113.9", now: now.addingTimeInterval(61)) == .allowed, "the window passes")
    }
}
