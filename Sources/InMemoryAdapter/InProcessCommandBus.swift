public import IdentityPorts

/// Runs each command in the calling process: the embedded-mode bus.
public struct InProcessCommandBus: CommandBus {
    private let handler: any CommandHandler

    /// Creates a bus that hands every command to `handler`.
    public init(handler: any CommandHandler) {
        self.handler = handler
    }

    public func dispatch(_ envelope: CommandEnvelope) async throws -> CommandReply {
        try await handler.handle(envelope)
    }
}
