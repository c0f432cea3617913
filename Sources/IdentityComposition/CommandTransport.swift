#if RabbitMQ
public import AMQPAdapter
public import IdentityPorts
#endif

/// How commands reach the write side.
public enum CommandTransport: Sendable {
    /// Applied in this process: one instance, or several that share a database and apply
    /// their own commands.
    case inProcess
    #if RabbitMQ
    /// Over RabbitMQ, signed with the first of `signingKeys` (the rest verify, for a
    /// rotation); the PostgreSQL store is required, as every instance and worker shares it.
    /// With `consumesCommands`, this instance is also a worker. The outbox is relayed to
    /// `identity.events`. `beforeAcknowledging` is a fault-injection hook for tests: it runs
    /// after a command is applied and before it is acknowledged.
    case amqp(
        AMQPConfiguration, signingKeys: CommandSigningKeys, consumesCommands: Bool = true,
        beforeAcknowledging: (@Sendable (CommandEnvelope) -> Void)? = nil
    )
    #endif
}
