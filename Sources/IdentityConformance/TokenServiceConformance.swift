public import IdentityPorts
import IdentityDomain
public import Foundation
import Testing

/// The behaviour every `TokenService` must show, whatever its format.
///
/// ```swift
/// @Test func conforms() async throws {
///     try await TokenServiceConformance(service: myService, lifetime: 3600).run()
/// }
/// ```
/// `lifetime` is the service's token lifetime in seconds; its leeway must be at most 5 s.
public struct TokenServiceConformance: Sendable {
    private let service: any TokenService
    private let lifetime: TimeInterval

    /// Creates the suite.
    public init(service: any TokenService, lifetime: TimeInterval) {
        self.service = service
        self.lifetime = lifetime
    }

    /// Runs every check.
    public func run() async throws {
        let user = UserID(UUID())
        let now = Fixture.epoch
        let issued = try await service.issue(for: user, issuedAt: now)
        #expect(issued.expiresAt.timeIntervalSince(issued.issuedAt) == lifetime, "exp is iat + lifetime")
        #expect(issued.expiresIn == Int(lifetime), "expires_in is the lifetime in seconds")
        #expect(abs(issued.issuedAt.timeIntervalSince(now)) < 0.001, "iat keeps millisecond precision")

        let verified = try await service.verify(issued.token, now: now.addingTimeInterval(1))
        #expect(verified.userID == user, "sub round-trips")
        #expect(verified.jti == issued.jti, "jti round-trips")
        #expect(verified.issuedAt == issued.issuedAt, "iat round-trips to the millisecond")
        #expect(verified.expiresAt == issued.expiresAt, "exp round-trips")

        var ids = Set<String>()
        for _ in 0..<200 { ids.insert(try await service.issue(for: user, issuedAt: now).jti) }
        #expect(ids.count == 200, "every token gets a fresh jti")
        #expect(issued.jti.utf8.count >= 21, "a jti is long enough to carry 122 random bits")

        await #expect(throws: TokenRejected.self, "an expired token is refused") {
            try await service.verify(issued.token, now: issued.expiresAt.addingTimeInterval(6))
        }
        _ = try await service.verify(issued.token, now: issued.expiresAt.addingTimeInterval(4))
        await #expect(throws: TokenRejected.self, "a token issued in the future is refused") {
            try await service.verify(issued.token, now: now.addingTimeInterval(-6))
        }
        for forged in [tamper(issued.token), "", "a.b", "a.b.c", issued.token + "x", String(issued.token.dropLast(2))] {
            await #expect(throws: TokenRejected.self, "a damaged token is refused") {
                try await service.verify(forged, now: now)
            }
        }
    }

    /// Flips one character in the middle of the payload.
    private func tamper(_ token: String) -> String {
        var parts = token.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 3, !parts[1].isEmpty else { return token + "!" }
        var payload = Array(parts[1])
        let middle = payload.count / 2
        payload[middle] = payload[middle] == "A" ? "B" : "A"
        parts[1] = String(payload)
        return parts.joined(separator: ".")
    }
}
