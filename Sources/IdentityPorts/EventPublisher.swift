public import IdentityDomain

/// Publishes committed events to the world (the broker's event exchange).
public protocol EventPublisher: Sendable {
    /// Publishes `events` in order; returns once the broker holds every one of them, and
    /// throws (`BackendUnavailable`) when it may not.
    func publish(_ events: [IdentityEvent]) async throws
}
