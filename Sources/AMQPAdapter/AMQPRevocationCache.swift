public import IdentityPorts
public import IdentityDomain
public import Foundation
import CoreMetrics
import Logging

/// Revocations on every instance (contract §5): a `RevocationStore` over a durable `base`
/// (PostgreSQL) with an in-memory cache that the fan-out exchange `identity.revocations` keeps
/// current.
///
/// - A write goes to `base` first, so a logout is durable before its 204 whatever the broker
///   does; then into this cache, then to the fan-out exchange for every other instance.
/// - On every (re)connect it binds an exclusive queue to the exchange, then loads `base`'s
///   snapshot; revocations only ever add up, so merging both in any order is exact. Until the
///   snapshot is in, and whenever the broker connection is down, `isRevoked` asks `base`.
public final class AMQPRevocationCache: RevocationStore, Sendable {
    private let base: any RevocationSnapshotting
    private let connection: BrokerConnection
    private let clock: any IdentityClock
    private let logger: Logger
    private let memory: CachedRevocations

    init(base: any RevocationSnapshotting, connection: BrokerConnection, clock: any IdentityClock, logger: Logger,
         metrics: any MetricsFactory) {
        self.base = base
        self.connection = connection
        self.clock = clock
        self.logger = logger
        let size = Gauge(label: "identity_revocation_cache_entries", dimensions: [], factory: metrics)
        self.memory = CachedRevocations { size.record($0) }
        connection.add(Feed(cache: self))
    }

    /// Whether answers come from the cache (true) or from `base` (false).
    public var isSynchronised: Bool { memory.isSynchronised }

    /// Entries held in memory.
    public var count: Int { memory.count }

    public func revoke(jti: String, userID: UserID, expiresAt: Date) async throws {
        try await base.revoke(jti: jti, userID: userID, expiresAt: expiresAt)
        let message = RevocationMessage(jti: jti, userID: userID, expiresAt: expiresAt)
        memory.apply(message)
        await broadcast(message)
    }

    public func revokeAll(userID: UserID, issuedBefore cutoff: Date, until: Date) async throws {
        try await base.revokeAll(userID: userID, issuedBefore: cutoff, until: until)
        let message = RevocationMessage(userID: userID, issuedBefore: cutoff, until: until)
        memory.apply(message)
        await broadcast(message)
    }

    public func isRevoked(jti: String, userID: UserID, issuedAt: Date) async throws -> Bool {
        if let cached = memory.answer(jti: jti, userID: userID, issuedAt: issuedAt) { return cached }
        return try await base.isRevoked(jti: jti, userID: userID, issuedAt: issuedAt)
    }

    @discardableResult
    public func purgeExpired(now: Date) async throws -> Int {
        memory.purge(expiredBefore: now)
        return try await base.purgeExpired(now: now)
    }

    // MARK: feed

    /// Publishes to the fan-out exchange and waits, at most `broadcastWait`, for the broker to
    /// take it: normally the other instances' queues hold it before the caller answers 204.
    /// Best effort beyond that: an instance that misses it is disconnected (and asks `base`)
    /// or resynchronises from `base` when it reconnects.
    private func broadcast(_ message: RevocationMessage) async {
        guard let body = try? JSONEncoder().encode(message) else { return }
        let connection = connection
        // Whichever comes first, the confirm (or a failure) or the deadline, lets the caller go on;
        // the publish itself goes on either way (it is queued on the connection's thread).
        _ = try? await Deadline.run(Self.broadcastWait, timeoutError: { BackendUnavailable(backend: "rabbitmq") }) {
            try await connection.publish(
                exchange: AMQPTopology.revocationExchange, routingKey: "", body: body, properties: MessageProperties(persistent: false)
            )
        }
    }

    /// How long a revocation waits for the broker to confirm its broadcast.
    static let broadcastWait: Duration = .milliseconds(100)

    /// Loads `base`'s snapshot for connection `generation`, retrying while that connection lasts.
    private func synchronise(generation: UInt64) async {
        var delay = Duration.milliseconds(100)
        while connection.isConnected, connection.generation == generation {
            do {
                let snapshot = try await base.snapshot(now: clock.now())
                // Only if the connection that delivered the messages is still the current one.
                let synced = memory.synchronise(with: snapshot) {
                    connection.isConnected && connection.generation == generation
                }
                if synced {
                    logger.info("revocation cache synchronised", metadata: ["entries": "\(count)"])
                }
                return
            } catch {
                logger.warning("revocation snapshot failed; retrying", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(5))
            }
        }
    }

    private struct Feed: BrokerClient {
        let cache: AMQPRevocationCache

        func setUp(_ session: BrokerSession) throws(BrokerError) -> [String] {
            try session.declareExchange(AMQPTopology.revocationExchange, type: "fanout")
            let queue = try session.declareQueue(nil)
            try session.bind(queue: queue, exchange: AMQPTopology.revocationExchange, routingKey: "")
            return [try session.consume(queue, noAck: true)]
        }

        func receive(_ delivery: Delivery) {
            guard let message = try? JSONDecoder().decode(RevocationMessage.self, from: delivery.body) else { return }
            cache.memory.apply(message)
        }

        func connected() {
            let generation = cache.connection.generation
            Task { await cache.synchronise(generation: generation) }
        }

        func disconnected() {
            cache.memory.desynchronise()
        }
    }
}
