public import IdentityPorts
public import IdentityDomain
public import Foundation
public import Logging
public import CoreMetrics
import PostgresNIO
import IdentityAdapterSupport
import Synchronization
public import ServiceLifecycle

/// Revocations answered from memory, kept current by PostgreSQL itself: a `RevocationStore`
/// over `PostgresRevocationStore` for every instance that shares the database.
///
/// Every revocation written is numbered in one gap-free order and announced with its number on
/// the channel `identity_revocations` when its transaction commits (triggers of migrations 0003
/// and 0004, so writes by any instance, or by hand, count). The cache holds one connection of its
/// own that listens on it:
///
/// - `run()` connects, `LISTEN`s, then catches up: it reads every revocation numbered after the
///   place it has, and the newest place, in one snapshot. Whatever commits after the `LISTEN` is
///   announced, so from then on it has everything; only then does `isRevoked` answer from memory.
/// - A message numbered past the next one expected, or a heartbeat naming a later place than the
///   cache has, is a gap: the cache asks the database until it has caught up again.
/// - Every `heartbeatInterval` the cache announces the newest place through the pool, so
///   heartbeats travel the same path as revocations. A cache that hears nothing, neither its own
///   heartbeats nor another's, within `silenceLimit` (1 s) answers from the database; silent for
///   three times that, it drops the connection and connects again. A link that is up but silent
///   (a paused network, a pooler that does not deliver notifications) is found this way.
/// - While the connection is down, being re-established or catching up, `isRevoked` asks the
///   database, as `PostgresRevocationStore` does. Nothing held is forgotten (revocations only add
///   up, and expire by themselves), so a reconnect reads only what it missed.
/// - A write goes to the database first, so it is durable before it returns, then into this
///   cache at once (this instance honours it without waiting for the announcement); so do the
///   revocations of changes this instance made or was told of (`committed(_:)`).
public final class PostgresRevocationCache: RevocationStore, Service, Sendable {
    /// The channel the triggers announce on.
    public static let channel = "identity_revocations"

    private let base: PostgresRevocationStore
    private let listener: PostgresClient
    private let logger: Logger
    private let heartbeatInterval: Duration
    private let silenceLimit: Duration
    private let memory: CachedRevocations
    /// Catch-ups done, by any connection: a connection that did one worked.
    private let catchUps = Atomic<Int>(0)
    private let reconnectWaits = Mutex<(count: Int, lastWait: Duration?)>((0, nil))

    /// Creates the cache over `base`; its listening connection is made with `settings` (one
    /// connection, outside the pool the stores use). Nothing is answered from memory until
    /// `run()` has caught up.
    public init(base: PostgresRevocationStore, listeningWith settings: PostgresConfiguration,
                heartbeatInterval: Duration = .milliseconds(250), silenceLimit: Duration = .seconds(1),
                logger: Logger = Logger(label: "identity.postgres"), metrics: any MetricsFactory = MetricsSystem.factory) {
        var one = settings
        one.poolSize = 1
        self.base = base
        self.listener = one.makeClient(logger: logger)
        self.logger = logger
        self.heartbeatInterval = heartbeatInterval
        self.silenceLimit = silenceLimit
        let size = Gauge(label: "identity_revocation_cache_entries", dimensions: [], factory: metrics)
        self.memory = CachedRevocations(silenceLimit: silenceLimit) { size.record($0) }
    }

    /// Whether answers come from memory (true) or from the database (false).
    public var isSynchronised: Bool { memory.isSynchronised }

    /// Entries held in memory.
    public var count: Int { memory.count }

    /// The place in the order of revocations up to which the cache has every one.
    public var lastSequence: Int64 { memory.lastSequence }

    /// How many times `run()` has waited to connect again, and how long it waited the last time.
    var reconnects: (count: Int, lastWait: Duration?) { reconnectWaits.withLock { $0 } }

    public func revoke(jti: String, userID: UserID, until: Date) async throws {
        try await base.revoke(jti: jti, userID: userID, until: until)
        memory.apply([.token(jti: jti, userID: userID, until: until)])
    }

    public func revokeAll(userID: UserID, belowVersion: Int64, until: Date) async throws {
        try await base.revokeAll(userID: userID, belowVersion: belowVersion, until: until)
        memory.apply([.account(userID: userID, belowVersion: belowVersion, until: until)])
    }

    public func committed(_ revocations: [Revocation]) async {
        memory.apply(revocations)
    }

    public func isRevoked(jti: String, userID: UserID, accountVersion: Int64) async throws -> Bool {
        if let cached = memory.answer(jti: jti, userID: userID, accountVersion: accountVersion) { return cached }
        return try await base.isRevoked(jti: jti, userID: userID, accountVersion: accountVersion)
    }

    @discardableResult
    public func purgeExpired(now: Date) async throws -> Int {
        memory.purge(expiredBefore: now)
        return try await base.purgeExpired(now: now)
    }

    /// Runs as a service of the host's `ServiceGroup`: listens (``listen()``) until a graceful
    /// shutdown begins or the task is cancelled.
    public func run() async throws {
        await cancelWhenGracefulShutdown { await self.listen() }
    }

    /// Listens until cancelled: connects, catches up, follows the announcements; after a
    /// failure it answers from the database and starts again, waiting 0.1 s, doubling up to
    /// 5 s while it cannot catch up. Heartbeats go out all along.
    public func listen() async {
        await withDiscardingTaskGroup { group in
            let listener = listener
            group.addTask { await listener.run() }
            group.addTask { await self.sendHeartbeats() }
            var delay = Duration.milliseconds(100)
            while !Task.isCancelled {
                let catchUpsBefore = catchUps.load(ordering: .relaxed)
                do {
                    try await listenOnce()
                } catch let error as PostgresStoreError where error.sqlState == "42P01" {
                    // undefined_table: a host that migrates at start-up starts this feed first.
                    if Task.isCancelled { break }
                    logger.notice("revocation tables not there yet (schema not migrated); asking the database until they are")
                } catch {
                    if Task.isCancelled { break }
                    logger.warning("revocation cache lost its feed; asking the database until it has caught up again",
                                   metadata: ["error": "\(error)"])
                }
                // After a connection that got as far as catching up, start the backoff again. (Not
                // `isSynchronised`: a connection that went silent had caught up, but by the time it
                // is dropped the cache no longer counts as synchronised.)
                if catchUps.load(ordering: .relaxed) > catchUpsBefore { delay = .milliseconds(100) }
                memory.desynchronise()
                reconnectWaits.withLock { $0 = ($0.count + 1, delay) }
                if (try? await Task.sleep(for: delay)) == nil { break }
                delay = min(delay * 2, .seconds(5))
            }
            memory.desynchronise()
            group.cancelAll()
        }
    }

    private func sendHeartbeats() async {
        while (try? await Task.sleep(for: heartbeatInterval)) != nil {
            do {
                try await base.announceHeartbeat()
            } catch {
                logger.debug("revocation heartbeat not sent", metadata: ["error": "\(error)"])
            }
        }
    }

    /// One listening connection's life: returns or throws when it ends.
    private func listenOnce() async throws {
        let (gaps, gapFound) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        try await listener.withConnection { connection in
            try await connection.listen(on: Self.channel) { notifications in
                try await catchUp()
                logger.info("revocation cache caught up", metadata: ["entries": "\(memory.count)", "last": "\(memory.lastSequence)"])
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        for try await notification in notifications where self.receive(notification.payload) == .gap {
                            gapFound.yield()
                        }
                        throw ListeningEnded()
                    }
                    group.addTask {
                        for await _ in gaps { try await self.catchUp() }
                    }
                    group.addTask { try await self.watchForSilence(on: connection) }
                    try await group.next()
                    group.cancelAll()
                }
            }
        }
    }

    /// Reads what came after the place the cache has and answers from memory again.
    private func catchUp() async throws {
        let (last, messages) = try await base.changes(after: memory.lastSequence)
        memory.synchronise(with: messages, upTo: last)
        catchUps.add(1, ordering: .relaxed)
    }

    /// Ends the connection when nothing has been heard on it for three silence limits (answers
    /// already come from the database after one).
    private func watchForSilence(on connection: PostgresConnection) async throws {
        while true {
            try await Task.sleep(for: heartbeatInterval)
            if memory.silence > silenceLimit * 3 {
                _ = try? await PostgresErrors.withDeadline(.seconds(1)) { try await connection.close() }
                throw FeedSilent(limit: silenceLimit * 3)
            }
        }
    }

    /// Applies one announcement; one that does not decode is logged and skipped.
    func receive(_ payload: String) -> CachedRevocations.Reception {
        guard let message = try? JSONDecoder().decode(RevocationMessage.self, from: Data(payload.utf8)) else {
            skip(payload)
            return .notUnderstood
        }
        let reception = memory.receive(message)
        if reception == .notUnderstood { skip(payload) }
        return reception
    }

    private func skip(_ payload: String) {
        logger.warning("revocation announcement not understood; skipped", metadata: ["payload": "\(payload.prefix(200))"])
    }
}

/// The listening connection's notifications ended: it closed.
struct ListeningEnded: Error, CustomStringConvertible {
    var description: String { "the listening connection closed" }
}

/// Nothing, not even a heartbeat, arrived on the listening connection for too long.
struct FeedSilent: Error, CustomStringConvertible {
    let limit: Duration
    var description: String { "no announcement or heartbeat arrived for \(limit)" }
}
