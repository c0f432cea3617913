public import IdentityPorts
public import IdentityDomain
public import Foundation
public import Logging
public import CoreMetrics
import PostgresNIO

/// Revocations answered from memory, kept current by PostgreSQL itself: a `RevocationStore`
/// over `PostgresRevocationStore` for instances that share a database and no broker.
///
/// Every write to the revocation tables is announced on the channel `identity_revocations`
/// when its transaction commits (a trigger of migration 0003, so writes by any instance, or
/// by hand, count). The cache holds one connection of its own that listens on it:
///
/// - `run()` connects, `LISTEN`s, then loads the store's snapshot; whatever commits after the
///   `LISTEN` is announced and whatever committed before is in the snapshot, and revocations
///   only add up, so the two merged are exact. Only then does `isRevoked` answer from memory.
/// - While that connection is down, being re-established or not yet synchronised, `isRevoked`
///   asks the database, as `PostgresRevocationStore` does. A ping every `pingInterval` finds a
///   connection that died without a word.
/// - A write goes to the database first, so it is durable before it returns, then into this
///   cache at once (this instance honours it without waiting for the announcement).
public final class PostgresRevocationCache: RevocationStore, Sendable {
    /// The channel the trigger announces on.
    public static let channel = "identity_revocations"

    private let base: PostgresRevocationStore
    private let listener: PostgresClient
    private let clock: any IdentityClock
    private let logger: Logger
    private let pingInterval: Duration
    private let memory: CachedRevocations

    /// Creates the cache over `base`; its listening connection is made with `settings` (one
    /// connection, outside the pool the stores use). Nothing is cached until `run()` has
    /// synchronised.
    public init(base: PostgresRevocationStore, listeningWith settings: PostgresConnectionSettings,
                clock: any IdentityClock = SystemClock(), pingInterval: Duration = .seconds(10),
                logger: Logger = Logger(label: "identity.postgres"), metrics: any MetricsFactory = MetricsSystem.factory) {
        var one = settings
        one.poolSize = 1
        self.base = base
        self.listener = one.makeClient(logger: logger)
        self.clock = clock
        self.logger = logger
        self.pingInterval = pingInterval
        let size = Gauge(label: "identity_revocation_cache_entries", dimensions: [], factory: metrics)
        self.memory = CachedRevocations { size.record($0) }
    }

    /// Whether answers come from memory (true) or from the database (false).
    public var isSynchronised: Bool { memory.isSynchronised }

    /// Entries held in memory.
    public var count: Int { memory.count }

    public func revoke(jti: String, userID: UserID, expiresAt: Date) async throws {
        try await base.revoke(jti: jti, userID: userID, expiresAt: expiresAt)
        memory.apply(RevocationMessage(jti: jti, userID: userID, expiresAt: expiresAt))
    }

    public func revokeAll(userID: UserID, issuedBefore cutoff: Date, until: Date) async throws {
        try await base.revokeAll(userID: userID, issuedBefore: cutoff, until: until)
        memory.apply(RevocationMessage(userID: userID, issuedBefore: cutoff, until: until))
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

    /// Listens until cancelled: connects, synchronises, follows the announcements; after a
    /// failure it forgets what it held (answers come from the database) and starts again,
    /// waiting 0.1 s, doubling up to 5 s while it cannot synchronise.
    public func run() async {
        await withDiscardingTaskGroup { group in
            let listener = listener
            group.addTask { await listener.run() }
            var delay = Duration.milliseconds(100)
            while !Task.isCancelled {
                do {
                    try await listenOnce()
                } catch {
                    if Task.isCancelled { break }
                    logger.warning("revocation cache lost its database connection; asking the database until it is back",
                                   metadata: ["error": "\(error)"])
                }
                // After a connection that got as far as synchronising, start the backoff again.
                if isSynchronised { delay = .milliseconds(100) }
                memory.desynchronise()
                if (try? await Task.sleep(for: delay)) == nil { break }
                delay = min(delay * 2, .seconds(5))
            }
            memory.desynchronise()
            group.cancelAll()
        }
    }

    /// One listening connection's life: returns or throws when it ends.
    private func listenOnce() async throws {
        let pingInterval = pingInterval
        let logger = logger
        try await listener.withConnection { connection in
            try await connection.listen(on: Self.channel) { notifications in
                let snapshot = try await base.snapshot(now: clock.now())
                memory.synchronise(with: snapshot)
                logger.info("revocation cache synchronised", metadata: ["entries": "\(memory.count)"])
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        for try await notification in notifications { self.receive(notification.payload) }
                        throw ListeningEnded()
                    }
                    group.addTask {
                        while true {
                            try await Task.sleep(for: pingInterval)
                            do {
                                _ = try await PostgresErrors.withDeadline(.seconds(5)) {
                                    try await connection.query("SELECT 1", logger: logger)
                                }
                            } catch {
                                try? await connection.close()
                                throw error
                            }
                        }
                    }
                    try await group.next()
                    group.cancelAll()
                }
            }
        }
    }

    /// Applies one announcement; one that does not decode is logged and skipped.
    func receive(_ payload: String) {
        guard let message = try? JSONDecoder().decode(RevocationMessage.self, from: Data(payload.utf8)) else {
            return skip(payload)
        }
        if !memory.apply(message) { skip(payload) }
    }

    private func skip(_ payload: String) {
        logger.warning("revocation announcement not understood; skipped", metadata: ["payload": "\(payload.prefix(200))"])
    }
}

/// The listening connection's notifications ended: it closed.
struct ListeningEnded: Error, CustomStringConvertible {
    var description: String { "the listening connection closed" }
}
