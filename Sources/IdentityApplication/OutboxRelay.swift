public import IdentityPorts

/// Moves committed events from the outbox to the world (contract §6): at least once, in
/// commit order. An event leaves the outbox only after the publisher has it; a failed publish
/// leaves it for the next round, so a consumer may see it twice and dedupes on `event_id`.
public struct OutboxRelay: Sendable {
    private let outbox: any EventOutbox
    private let publisher: any EventPublisher
    private let batchSize: Int

    /// Creates a relay that moves up to `batchSize` events per round.
    public init(outbox: any EventOutbox, publisher: any EventPublisher, batchSize: Int = 100) {
        self.outbox = outbox
        self.publisher = publisher
        self.batchSize = max(1, batchSize)
    }

    /// Publishes what is pending, batch by batch, until the outbox is empty or another relay
    /// holds it; returns how many events were published.
    @discardableResult
    public func drain() async throws -> Int {
        var total = 0
        while true {
            let moved = try await outbox.publishPending(limit: batchSize) { entries in
                try await publisher.publish(entries.map(\.event))
            }
            total += moved
            if moved < batchSize { return total }
        }
    }
}
