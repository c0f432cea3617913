public import IdentityPorts

/// Runs each command in the calling process: the embedded-mode bus.
public struct InProcessCommandBus: CommandBus {
    private let handler: any CommandHandler
    private let retryPauses: [Duration]
    private let report: @Sendable (PostedCommandFailure) -> Void

    /// Creates a bus that hands every command to `handler`.
    ///
    /// - Parameters:
    ///   - retryPauses: how long a posted command waits before each new attempt after its
    ///     store was unavailable (`BackendUnavailable`); the default, 2, 4, 8 and 16 s, is the
    ///     worker's over a broker, so an outage of half a minute loses nothing in either mode.
    ///   - report: told of each failed attempt of a posted command, and whether it is retried.
    public init(
        handler: any CommandHandler, retryPauses: [Duration] = [.seconds(2), .seconds(4), .seconds(8), .seconds(16)],
        report: @escaping @Sendable (PostedCommandFailure) -> Void = { _ in }
    ) {
        self.handler = handler
        self.retryPauses = retryPauses
        self.report = report
    }

    public func dispatch(_ envelope: CommandEnvelope) async throws -> CommandReply {
        try await handler.handle(envelope)
    }

    /// Applies `envelope` in a task of its own, not awaited. Its caller was told it was
    /// accepted and waits for nothing, so a store that is unavailable does not lose it: it is
    /// tried again after each of `retryPauses`. Any other failure, or the last one, is reported
    /// as given up. A process that stops meanwhile loses it (nothing in process outlives it).
    ///
    /// Every attempt runs with `CommandContext.messageID` set to the envelope's, as a worker's
    /// does: an attempt that committed although it was reported unavailable (a deadline, a
    /// connection lost after the commit) is recorded, and the next attempt changes nothing.
    public func post(_ envelope: CommandEnvelope) async throws {
        let (handler, pauses, report) = (handler, retryPauses, report)
        Task {
            for attempt in 0...pauses.count {
                do {
                    _ = try await CommandContext.$messageID.withValue(envelope.messageID) { try await handler.handle(envelope) }
                    return
                } catch {
                    let pause = error is BackendUnavailable && attempt < pauses.count ? pauses[attempt] : nil
                    report(PostedCommandFailure(command: envelope.command.name, error: error, retryIn: pause))
                    guard let pause else { return }
                    try? await Task.sleep(for: pause)
                }
            }
        }
    }
}

/// A posted command's attempt that failed (`InProcessCommandBus.post`).
public struct PostedCommandFailure: Sendable, CustomStringConvertible {
    /// The command's name, such as `RequestPasswordReset`.
    public let command: String
    /// What the attempt threw.
    public let error: any Error
    /// When it is tried again; nil: given up, the command is lost.
    public let retryIn: Duration?

    public var description: String {
        if let retryIn { return "posted command \(command) failed (\(error)); trying again in \(retryIn)" }
        return "posted command \(command) failed (\(error)); given up, it is lost"
    }
}
