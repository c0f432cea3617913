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
/// `lifetime` is the service's token lifetime in whole seconds; its leeway must be at most 5 s.
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
        #expect(service.lifetime == lifetime, "the service reports the lifetime its tokens get")
        #expect((0...5).contains(service.leeway), "and a leeway of at most 5 s")
        let issued = try await service.issue(for: user, accountVersion: 7, issuedAt: now)
        #expect(issued.expiresAt.timeIntervalSince(issued.issuedAt) == lifetime, "exp is iat + lifetime")
        #expect(issued.expiresIn == Int(lifetime), "expires_in is the lifetime in seconds")
        #expect(issued.issuedAt.timeIntervalSince1970 == now.timeIntervalSince1970.rounded(.down),
                "iat is a whole second (NumericDate without a fraction), the one the token was issued in")

        let verified = try await service.verify(issued.token, now: now.addingTimeInterval(1))
        #expect(verified.userID == user, "sub round-trips")
        #expect(verified.jti == issued.jti, "jti round-trips")
        #expect(verified.issuedAt == issued.issuedAt, "iat round-trips")
        #expect(verified.expiresAt == issued.expiresAt, "exp round-trips")
        #expect(verified.accountVersion == 7, "the account version round-trips")
        #expect(verified.sessionID == nil, "a token issued outside a session has no session")
        let session = SessionID(UUID())
        let inSession = try await service.issue(for: user, accountVersion: 7, sessionID: session, issuedAt: now)
        #expect(try await service.verify(inSession.token, now: now).sessionID == session, "the session id round-trips")
        #expect(service.revocationExpiry(ofTokenExpiringAt: issued.expiresAt) >= issued.expiresAt.addingTimeInterval(service.leeway),
                "a revocation outlives the token's acceptance (exp plus the leeway)")
        #expect(service.cutoffExpiry(madeAt: now) >= issued.expiresAt.addingTimeInterval(service.leeway),
                "a cut-off made now outlives every token issued until now")

        var ids = Set<String>()
        for _ in 0..<200 { ids.insert(try await service.issue(for: user, accountVersion: 1, issuedAt: now).jti) }
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
