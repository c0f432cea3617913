public import IdentityPorts
import IdentityDomain
import Foundation
import Testing

/// The behaviour every `LoginThrottle` must show (contract §3).
///
/// ```swift
/// @Test func conforms() async throws {
///     try await LoginThrottleConformance { limits in MyThrottle(limits: limits) }.run()
/// }
/// ```
public struct LoginThrottleConformance: Sendable {
    /// Makes a fresh throttle with `limits`.
    public typealias Factory = @Sendable (_ limits: LoginThrottleLimits) async throws -> any LoginThrottle
    private let makeThrottle: Factory

    /// Creates the suite.
    public init(makeThrottle: @escaping Factory) {
        self.makeThrottle = makeThrottle
    }

    /// Runs every check, each on a fresh throttle.
    public func run() async throws {
        try await emailIsThrottledAfterTheLimitUntilTheWindowPasses()
        try await successResetsTheEmail()
        try await clientAddressHasItsOwnCeiling()
    }

    private let now = Fixture.epoch

    func emailIsThrottledAfterTheLimitUntilTheWindowPasses() async throws {
        let throttle = try await makeThrottle(LoginThrottleLimits(maxFailuresPerEmail: 3, maxFailuresPerClient: 100, window: 60))
        let email = try Email("victim@example.com")
        for attempt in 0..<3 {
            #expect(try await throttle.beginAttempt(email: email, client: "10.0.0.\(attempt)", now: now.addingTimeInterval(Double(attempt)))
                    == .allowed, "attempts up to the limit go ahead")
        }
        let refused = try await throttle.beginAttempt(email: email, client: "10.0.0.9", now: now.addingTimeInterval(10))
        #expect(refused == .throttled(retryAfterSeconds: 50), "the next one waits until the oldest failure leaves the window")
        #expect(try await throttle.beginAttempt(email: try Email("other@example.com"), client: nil, now: now.addingTimeInterval(10))
                == .allowed, "other emails are unaffected")
        #expect(try await throttle.beginAttempt(email: email, client: nil, now: now.addingTimeInterval(61)) == .allowed,
                "once the oldest failure leaves the window an attempt goes ahead")
    }

    func successResetsTheEmail() async throws {
        let throttle = try await makeThrottle(LoginThrottleLimits(maxFailuresPerEmail: 2, maxFailuresPerClient: 100, window: 60))
        let email = try Email("user@example.com")
        _ = try await throttle.beginAttempt(email: email, client: "c", now: now)
        _ = try await throttle.beginAttempt(email: email, client: "c", now: now)
        try await throttle.recordSuccess(email: email, client: "c")
        #expect(try await throttle.beginAttempt(email: email, client: "c", now: now) == .allowed, "a success clears the email's failures")
    }

    func clientAddressHasItsOwnCeiling() async throws {
        let throttle = try await makeThrottle(LoginThrottleLimits(maxFailuresPerEmail: 100, maxFailuresPerClient: 3, window: 60))
        for index in 0..<3 {
            _ = try await throttle.beginAttempt(email: try Email("u\(index)@example.com"), client: "203.0.113.7", now: now)
        }
        guard case .throttled = try await throttle.beginAttempt(email: try Email("fresh@example.com"), client: "203.0.113.7", now: now)
        else {
            Issue.record("a client address over its ceiling is throttled, whatever the email")
            return
        }
        #expect(try await throttle.beginAttempt(email: try Email("fresh@example.com"), client: "198.51.100.1", now: now) == .allowed,
                "other addresses are unaffected")
    }
}
