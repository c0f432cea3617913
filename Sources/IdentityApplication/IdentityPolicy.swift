public import Foundation

/// Tunables of the use cases, given by the host (DemoServer reads them from configuration).
public struct IdentityPolicy: Sendable {
    /// How long an access token lives (`JWT_EXPIRE_MINUTES`).
    public var tokenLifetime: TimeInterval
    /// Clock leeway allowed when checking token times: revocation entries outlive tokens by it.
    public var clockLeeway: TimeInterval

    /// Creates a policy; defaults are the contract's (60 minutes, 5 s leeway).
    public init(tokenLifetime: TimeInterval = 3600, clockLeeway: TimeInterval = 5) {
        self.tokenLifetime = tokenLifetime
        self.clockLeeway = clockLeeway
    }

    /// How long a revocation entry made now must last to outlive every token that exists now.
    var revocationHorizon: TimeInterval { tokenLifetime + clockLeeway }
}
