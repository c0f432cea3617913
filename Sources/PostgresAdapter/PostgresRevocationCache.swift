public import IdentityPorts
public import IdentityDomain
public import Foundation
public import Logging
public import CoreMetrics
import PostgresNIO
import Synchronization

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
    private struct State {
        var synchronised = false
        var entries = RevocationSet()
        /// The latest purge's instant: an announcement of an entry that lapsed before it comes
        /// late (the purge already removed it) and is not taken in.
        var purgedBefore = Date.distantPast
    }

    /// The channel the trigger announces on.
    public static let channel = "identity_revocations"

    private let base: PostgresRevocationStore
    private let listener: PostgresClient
    private let clock: any IdentityClock
    private let logger: Logger
    private let pingInterval: Duration
    private let size: Gauge
    private let state = Mutex(State())

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
        self.size = Gauge(label: "identity_revocation_cache_entries", dimensions: [], factory: metrics)
        size.record(0)
    }

    /// Whether answers come from memory (true) or from the database (false).
    public var isSynchronised: Bool { state.withLock { $0.synchronised } }

    /// Entries held in memory.
    public var count: Int { state.withLock { $0.entries.count } }

    public func revoke(jti: String, userID: UserID, expiresAt: Date) async throws {
        try await base.revoke(jti: jti, userID: userID, expiresAt: expiresAt)
        update { $0.revoke(jti: jti, userID: userID, until: expiresAt) }
    }

    public func revokeAll(userID: UserID, issuedBefore cutoff: Date, until: Date) async throws {
        try await base.revokeAll(userID: userID, issuedBefore: cutoff, until: until)
        update { $0.revokeAll(userID: userID, issuedBeforeMilliseconds: cutoff.epochMilliseconds, until: until) }
    }

    public func isRevoked(jti: String, userID: UserID, issuedAt: Date) async throws -> Bool {
        let cached = state.withLock { state -> Bool? in
            state.synchronised ? state.entries.isRevoked(jti: jti, userID: userID, issuedAt: issuedAt) : nil
        }
        if let cached { return cached }
        return try await base.isRevoked(jti: jti, userID: userID, issuedAt: issuedAt)
    }

    @discardableResult
    public func purgeExpired(now: Date) async throws -> Int {
        let count = state.withLock { state in
            state.purgedBefore = max(state.purgedBefore, now)
            state.entries.purge(expiredBefore: now)
            return state.entries.count
        }
        size.record(count)
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
                desynchronise()
                if (try? await Task.sleep(for: delay)) == nil { break }
                delay = min(delay * 2, .seconds(5))
            }
            desynchronise()
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
                let count = state.withLock { state in
                    state.entries.merge(snapshot)
                    state.synchronised = true
                    return state.entries.count
                }
                size.record(count)
                logger.info("revocation cache synchronised", metadata: ["entries": "\(count)"])
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
        let (applied, count) = state.withLock { state in
            // An entry that lapsed before the last purge comes late: the purge already removed it.
            guard message.expiresAt >= state.purgedBefore else { return (true, state.entries.count) }
            return (state.entries.apply(message), state.entries.count)
        }
        size.record(count)
        if !applied { skip(payload) }
    }

    private func skip(_ payload: String) {
        logger.warning("revocation announcement not understood; skipped", metadata: ["payload": "\(payload.prefix(200))"])
    }

    private func update(_ change: (inout RevocationSet) -> Void) {
        let count = state.withLock { state in
            change(&state.entries)
            return state.entries.count
        }
        size.record(count)
    }

    private func desynchronise() {
        state.withLock { state in
            state.synchronised = false
            state.entries.removeAll()
        }
        size.record(0)
    }
}

/// The listening connection's notifications ended: it closed.
struct ListeningEnded: Error, CustomStringConvertible {
    var description: String { "the listening connection closed" }
}
