/// Carries commands to the write side and brings back the reply.
///
/// In-process in embedded mode; over a broker in distributed mode. Infrastructure failures
/// throw (`BackendUnavailable` for a broker that is down or a reply that timed out).
public protocol CommandBus: Sendable {
    /// Sends `envelope` and waits for its reply.
    func dispatch(_ envelope: CommandEnvelope) async throws -> CommandReply
}

/// The write side: applies one command (implemented by IdentityApplication's handlers).
public protocol CommandHandler: Sendable {
    /// Applies `envelope` and returns the reply; throws only on infrastructure failure.
    func handle(_ envelope: CommandEnvelope) async throws -> CommandReply
}
