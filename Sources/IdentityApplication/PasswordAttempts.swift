import IdentityPorts
import IdentityDomain
import Foundation

/// Password checks (logins, `current_password`) as throttled attempts, one at a time per email.
///
/// Attempts for one email on this instance queue for their turn here; across instances the
/// throttle answers `.busy` while another attempt for the email is in flight, and the attempt
/// asks again shortly. So simultaneous correct logins all succeed, one after another, and
/// simultaneous guesses each see every failure before them. Only a wrong password counts; an
/// attempt that fails for another reason (overload, a backend error) is abandoned, not counted.
struct PasswordAttempts: Sendable {
    let throttle: any LoginThrottle
    let clock: any IdentityClock
    let ids: any IDGenerator
    let turns = EmailTurns()
    /// How long an attempt waits for its email's turn on other instances before giving up (503).
    static let patience: Duration = .seconds(10)

    /// Runs `check` as one attempt for `email` from `client`; `check` says whether the password
    /// was right, with what the caller keeps. Throws `LoginThrottled` when the email or the
    /// address is over its limit, without running `check`.
    func run<T: Sendable>(
        email: Email, client: String?, _ check: () async throws -> (right: Bool, value: T)
    ) async throws -> (right: Bool, value: T) {
        await turns.acquire(email.value)
        do {
            let result = try await attempt(email: email, client: client, check)
            await turns.release(email.value)
            return result
        } catch {
            await turns.release(email.value)
            throw error
        }
    }

    private func attempt<T: Sendable>(
        email: Email, client: String?, _ check: () async throws -> (right: Bool, value: T)
    ) async throws -> (right: Bool, value: T) {
        let id = ids.makeUUID()
        let deadline = ContinuousClock.now + Self.patience
        var pause = Duration.milliseconds(2)
        while true {
            switch try await throttle.beginAttempt(id, email: email, client: client, now: clock.now()) {
            case .allowed:
                do {
                    let result = try await check()
                    try await throttle.finishAttempt(id, email: email, client: client, outcome: result.right ? .success : .failure, now: clock.now())
                    return result
                } catch {
                    try? await throttle.finishAttempt(id, email: email, client: client, outcome: .abandoned, now: clock.now())
                    throw error
                }
            case .throttled(let seconds):
                throw LoginThrottled(retryAfterSeconds: seconds)
            case .busy:
                // Another instance is checking this email: its check takes a hash's time.
                guard ContinuousClock.now < deadline else { throw LoginAttemptsBusy() }
                try await Task.sleep(for: pause)
                pause = min(pause * 2, .milliseconds(50))
            }
        }
    }
}

/// Attempts for one email waited longer than `PasswordAttempts.patience` for their turn: the
/// service is overloaded (503), nothing was checked or counted.
public struct LoginAttemptsBusy: Error, Sendable, Equatable, CustomStringConvertible {
    /// Seconds after which a retry is sensible.
    public let retryAfterSeconds = 1

    public var description: String { "too many sign-in attempts for this account are waiting; retry shortly" }
}

/// Turns per key within this process: one holder at a time, the others queued in order.
actor EmailTurns {
    private var queues: [String: [CheckedContinuation<Void, Never>]] = [:]

    /// Waits until `key`'s turn is free, and takes it.
    func acquire(_ key: String) async {
        guard queues[key] != nil else {
            queues[key] = []
            return
        }
        await withCheckedContinuation { queues[key, default: []].append($0) }
    }

    /// Hands `key`'s turn to the next waiter, or frees it.
    func release(_ key: String) {
        guard var waiting = queues[key], !waiting.isEmpty else {
            queues[key] = nil
            return
        }
        let next = waiting.removeFirst()
        queues[key] = waiting
        next.resume()
    }
}
