/// The broker message a command arrived in, so that a store can apply it once (contract §6).
///
/// A worker runs the command handler with `CommandContext.$messageID.withValue(id)`. A store
/// write (`insert`, `update`, `delete`, `append`) made while it is set records the id in the
/// same transaction as the change, and throws `CommandAlreadyApplied` instead when the id is
/// already recorded: a redelivered command then changes nothing a second time. In-process
/// calls leave it nil and record nothing.
public enum CommandContext {
    /// The id of the command message being applied, or nil outside a broker worker.
    @TaskLocal public static var messageID: String?
}

/// A store write found its command's message id already recorded: the command was applied
/// by an earlier delivery, and nothing was written now.
public struct CommandAlreadyApplied: Error, Sendable, Equatable, CustomStringConvertible {
    /// The message id that was recorded before.
    public let messageID: String

    /// Creates the error.
    public init(messageID: String) {
        self.messageID = messageID
    }

    public var description: String { "command message \(messageID) was already applied" }
}

/// A store that records applied command messages (see `CommandContext`) and can be asked.
public protocol AppliedCommandLedger: Sendable {
    /// Whether a write recorded `messageID`.
    func hasApplied(messageID: String) async throws -> Bool
}
