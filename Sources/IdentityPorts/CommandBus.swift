/// Carries commands to the write side and brings back the reply.
///
/// In-process in embedded mode; over a broker in distributed mode. Infrastructure failures
/// throw (`BackendUnavailable` for a broker that is down or a reply that timed out).
public protocol CommandBus: Sendable {
    /// Sends `envelope` and waits for its reply.
    func dispatch(_ envelope: CommandEnvelope) async throws -> CommandReply

    /// Hands `envelope` to the write side without waiting for its reply (whose timing could
    /// tell the caller something, such as whether an account exists), returning once it is
    /// accepted there: over a broker, once the broker holds it. Throws `BackendUnavailable`
    /// when it cannot be handed over, so that the caller is never told "accepted" for a
    /// command that went nowhere.
    func post(_ envelope: CommandEnvelope) async throws
}

extension CommandBus {
    /// In process, nothing is lost in transit: the command is applied by a task of its own,
    /// not awaited.
    public func post(_ envelope: CommandEnvelope) async throws {
        Task { _ = try? await dispatch(envelope) }
    }
}

/// The write side: applies one command (implemented by IdentityApplication's handlers).
public protocol CommandHandler: Sendable {
    /// Applies `envelope` and returns the reply; throws only on infrastructure failure.
    func handle(_ envelope: CommandEnvelope) async throws -> CommandReply
}
