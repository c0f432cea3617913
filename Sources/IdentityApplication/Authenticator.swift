public import IdentityPorts
import IdentityDomain
import Foundation

/// Turns a bearer token into a `Principal`: signature, algorithm, claims, then revocation.
///
/// Reads no account row, so a host application can put it in front of its own routes cheaply.
public struct Authenticator: Sendable {
    private let tokens: any TokenVerifier
    private let revocations: any RevocationStore
    private let clock: any IdentityClock

    /// Creates an authenticator.
    public init(tokens: any TokenService, revocations: any RevocationStore, clock: any IdentityClock = SystemClock()) {
        self.init(verifier: tokens, revocations: revocations, clock: clock)
    }

    /// Creates an authenticator that only verifies, for a service that issues no tokens
    /// itself (IdentityVerifier's, over the published keys), with the same revocation checks.
    public init(verifier: any TokenVerifier, revocations: any RevocationStore, clock: any IdentityClock = SystemClock()) {
        self.tokens = verifier
        self.revocations = revocations
        self.clock = clock
    }

    /// The principal behind `token`; throws `TokenRejected` when it must not be honoured.
    public func authenticate(bearer token: String) async throws -> Principal {
        let verified = try await tokens.verify(token, now: clock.now())
        if try await revocations.isRevoked(jti: verified.jti, userID: verified.userID, accountVersion: verified.accountVersion) {
            throw TokenRejected.revoked
        }
        // A token of an ended session: its session's revocation covers every token it issued.
        if let session = verified.sessionID,
           try await revocations.isRevoked(
               jti: Revocation.sessionKey(session), userID: verified.userID, accountVersion: verified.accountVersion
           )
        {
            throw TokenRejected.revoked
        }
        return Principal(
            userID: verified.userID, tokenID: verified.jti, issuedAt: verified.issuedAt, expiresAt: verified.expiresAt,
            sessionID: verified.sessionID
        )
    }
}
