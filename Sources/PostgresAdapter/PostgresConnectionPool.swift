public import PostgresNIO
public import Logging
public import ServiceLifecycle
import NIOCore
import NIOSSL
import Synchronization

/// A fixed number of PostgreSQL connections, opened at once and kept open: the pool the stores
/// use in place of `PostgresClient` (see Docs/decisions.md, "Our own connection pool").
///
/// `run()` (the host runs the pool as a service) keeps `size` slots connected: a slot whose
/// connection closes, or fails to open, connects again after 0.1 s, doubling to 5 s. A caller of
/// `withConnection` gets an idle connection or waits its turn (first come, first served); there
/// is no timer per wait: a caller bounds its own wait (the stores' `Deadline.run` cancels it,
/// and a cancelled waiter leaves the queue at once). While no connection is open and the last
/// attempt to open one failed (after the pool has had a connection), callers are refused at
/// once with `PostgresPoolUnavailable` instead of waiting for a server that is away. A connection that fails during use is closed
/// and its slot connects again.
public final class PostgresConnectionPool: Service, Sendable {
    /// Number of connections the pool keeps open.
    public let size: Int
    private let configuration: PostgresConnection.Configuration
    private let logger: Logger
    private let summary: String
    private let state = Mutex(State())

    /// Creates the pool; nothing connects until `run()`.
    ///
    /// - Parameters:
    ///   - configuration: how each connection is made (host, port, credentials, TLS).
    ///   - size: connections kept open (at least one).
    ///   - summary: where it connects, for messages (never the password).
    ///   - logger: where reconnections and failures are reported.
    public init(configuration: PostgresConnection.Configuration, size: Int, summary: String, logger: Logger) {
        self.configuration = configuration
        self.size = max(1, size)
        self.summary = summary
        self.logger = logger
    }

    /// Connections open now (idle or in use).
    public var openConnections: Int { state.withLock { $0.live.count } }

    /// Callers waiting for a connection now.
    public var waiting: Int { state.withLock { $0.waiters.count } }

    /// Keeps the slots connected until the task is cancelled or the service group shuts down
    /// gracefully; then closes every connection and refuses every caller.
    public func run() async throws {
        await cancelWhenGracefulShutdown {
            await withTaskGroup(of: Void.self) { group in
                for slot in 0..<self.size {
                    group.addTask { await self.keepConnected(slot: slot) }
                }
                await group.waitForAll()
            }
        }
        let waiters = state.withLock { state in
            state.shutDown = true
            let waiters = state.waiters
            state.waiters = []
            state.idle = []
            return waiters
        }
        for waiter in waiters { waiter.continuation.resume(throwing: PostgresPoolUnavailable(reason: "the pool is shut down")) }
    }

    /// Runs `body` with a connection of the pool, waiting for one if none is idle.
    ///
    /// The connection goes back to the pool when `body` returns. It is closed instead (and its
    /// slot connects again) when it closed meanwhile or when `body` threw an error that can
    /// leave it in an unknown state: anything but an error the server reported and recovered
    /// from, or an error of the caller's own between statements. `body` must not keep it.
    public func withConnection<T>(_ body: (PostgresConnection) async throws -> T) async throws -> T {
        let connection = try await lease()
        let result: T
        do {
            result = try await body(connection)
        } catch {
            release(connection, reusable: !Task.isCancelled && Self.leavesConnectionUsable(error))
            throw error
        }
        release(connection, reusable: true)
        return result
    }

    // MARK: leasing

    private struct Waiter {
        let id: UInt64
        let continuation: CheckedContinuation<PostgresConnection, any Error>
    }

    private struct State {
        /// Connections open now, by identity.
        var live: Set<ObjectIdentifier> = []
        /// Open connections nobody uses, oldest first.
        var idle: [PostgresConnection] = []
        /// Callers waiting, first come first.
        var waiters: [Waiter] = []
        var nextWaiter: UInt64 = 0
        /// Why the latest attempt to connect failed, while no connection is open, once the pool
        /// has had one; nil otherwise. Before the first connection callers wait (start-up waits
        /// for a server that is starting too).
        var failing: String?
        var everConnected = false
        var shutDown = false
    }

    private enum Lease {
        case connection(PostgresConnection)
        case failure(any Error)
        case wait
    }

    private func lease() async throws -> PostgresConnection {
        try Task.checkCancellation()
        let immediate = state.withLock { state -> Lease in
            if state.shutDown { return .failure(PostgresPoolUnavailable(reason: "the pool is shut down")) }
            if let connection = Self.takeIdle(&state) { return .connection(connection) }
            if state.live.isEmpty, let reason = state.failing {
                return .failure(PostgresPoolUnavailable(reason: "no connection to \(summary): \(reason)"))
            }
            return .wait
        }
        switch immediate {
        case .connection(let connection): return connection
        case .failure(let error): throw error
        case .wait: break
        }
        let id = state.withLock { state in
            state.nextWaiter &+= 1
            return state.nextWaiter
        }
        let connection = try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<PostgresConnection, any Error>) in
                let outcome = state.withLock { state -> Lease in
                    if Task.isCancelled { return .failure(CancellationError()) }
                    if state.shutDown { return .failure(PostgresPoolUnavailable(reason: "the pool is shut down")) }
                    // A connection may have come back between the first look and now.
                    if let connection = Self.takeIdle(&state) { return .connection(connection) }
                    if state.live.isEmpty, let reason = state.failing {
                        return .failure(PostgresPoolUnavailable(reason: "no connection to \(summary): \(reason)"))
                    }
                    state.waiters.append(Waiter(id: id, continuation: continuation))
                    return .wait
                }
                switch outcome {
                case .connection(let connection): continuation.resume(returning: connection)
                case .failure(let error): continuation.resume(throwing: error)
                case .wait: break
                }
            }
        } onCancel: {
            let waiter = state.withLock { state -> Waiter? in
                guard let index = state.waiters.firstIndex(where: { $0.id == id }) else { return nil }
                return state.waiters.remove(at: index)
            }
            waiter?.continuation.resume(throwing: CancellationError())
        }
        if Task.isCancelled {
            // Handed over just as the caller gave up: give it back to the next one.
            release(connection, reusable: true)
            throw CancellationError()
        }
        return connection
    }

    /// The oldest idle connection still open, dropping those that closed while idle.
    private static func takeIdle(_ state: inout State) -> PostgresConnection? {
        while !state.idle.isEmpty {
            let connection = state.idle.removeFirst()
            if state.live.contains(ObjectIdentifier(connection)), !connection.isClosed { return connection }
        }
        return nil
    }

    /// Gives `connection` to the first waiter, or back to the idle ones; closes it instead when
    /// it is not `reusable` (its slot then connects again).
    private func release(_ connection: PostgresConnection, reusable: Bool) {
        guard reusable, !connection.isClosed else {
            connection.close().whenComplete { _ in }
            return
        }
        offer(connection)
    }

    /// Hands an open connection to the first waiter or puts it with the idle ones.
    private func offer(_ connection: PostgresConnection) {
        let waiter = state.withLock { state -> Waiter? in
            guard !state.shutDown, state.live.contains(ObjectIdentifier(connection)) else { return nil }
            if state.waiters.isEmpty {
                state.idle.append(connection)
                return nil
            }
            return state.waiters.removeFirst()
        }
        waiter?.continuation.resume(returning: connection)
    }

    /// Whether a connection is fit for the next caller after `body` threw `error`: the server
    /// reported it (the connection is back in sync), or it is the caller's own error, thrown
    /// between statements (a business rule, a publisher's failure).
    static func leavesConnectionUsable(_ error: any Error) -> Bool {
        switch error {
        case let error as PSQLError:
            return error.code == .server
        case let error as PostgresTransactionError:
            if error.rollbackError != nil { return false }
            if let commit = error.commitError { return leavesConnectionUsable(commit) }
            if let begin = error.beginError { return leavesConnectionUsable(begin) }
            if let closure = error.closureError { return leavesConnectionUsable(closure) }
            return false
        case is CancellationError, is PostgresDecodingError:
            return false
        default:
            return true
        }
    }

    // MARK: slots

    /// Keeps one connection open until cancelled: connects, with backoff after a failure, and
    /// connects again when the connection closes.
    private func keepConnected(slot: Int) async {
        var backoff = Duration.milliseconds(100)
        while !Task.isCancelled {
            let connection: PostgresConnection
            do {
                var connectionLogger = logger
                connectionLogger[metadataKey: "postgres_slot"] = "\(slot)"
                connection = try await PostgresConnection.connect(
                    configuration: configuration, id: slot, logger: connectionLogger
                )
            } catch {
                if Task.isCancelled { return }
                let reason = String(describing: PostgresErrors.translate(error))
                let refused = state.withLock { state -> [Waiter] in
                    guard state.everConnected else { return [] }
                    state.failing = reason
                    guard state.live.isEmpty else { return [] }
                    let waiters = state.waiters
                    state.waiters = []
                    return waiters
                }
                for waiter in refused {
                    waiter.continuation.resume(throwing: PostgresPoolUnavailable(reason: "no connection to \(summary): \(reason)"))
                }
                if backoff == .milliseconds(100) {
                    logger.notice("PostgreSQL connection \(slot) to \(summary) failed (\(reason)); retrying with backoff")
                } else {
                    logger.debug("PostgreSQL connection \(slot) to \(summary) failed; next attempt in \(backoff)")
                }
                try? await Task.sleep(for: backoff)
                backoff = min(backoff * 2, .seconds(5))
                continue
            }
            backoff = .milliseconds(100)
            let admitted = state.withLock { state -> Bool in
                guard !state.shutDown else { return false }
                state.live.insert(ObjectIdentifier(connection))
                state.failing = nil
                state.everConnected = true
                return true
            }
            guard admitted else {
                try? await connection.close()
                return
            }
            offer(connection)
            // Until it closes: by the server, a broken socket, `release` (failed during use), or
            // shut-down (cancellation closes it).
            await withTaskCancellationHandler {
                try? await connection.closeFuture.get()
            } onCancel: {
                connection.close().whenComplete { _ in }
            }
            state.withLock { state in
                state.live.remove(ObjectIdentifier(connection))
                state.idle.removeAll { $0 === connection }
            }
            if !Task.isCancelled { logger.debug("PostgreSQL connection \(slot) to \(summary) closed; reconnecting") }
        }
    }
}

/// The pool has no connection to give: the server is unreachable (the latest attempt to connect
/// failed and none is open), or the pool is shut down.
public struct PostgresPoolUnavailable: Error, Sendable, CustomStringConvertible {
    /// Why, in a few words.
    public let reason: String
    public var description: String { "PostgreSQL connection pool unavailable: \(reason)" }
}

extension PostgresConfiguration {
    /// A pool of `poolSize` connections for these settings. The caller runs it (as a service).
    public func makePool(logger: Logger) throws -> PostgresConnectionPool {
        PostgresConnectionPool(configuration: try connectionConfiguration(), size: poolSize, summary: summary, logger: logger)
    }

    /// How one connection is made with these settings: the same server, credentials, TLS and
    /// connect timeout as `makeClient`'s pool.
    func connectionConfiguration() throws -> PostgresConnection.Configuration {
        let tlsSetting: PostgresConnection.Configuration.TLS
        switch (tls, tlsConfiguration) {
        case (.prefer, let configuration?): tlsSetting = .prefer(try NIOSSLContext(configuration: configuration))
        case (.require, let configuration?): tlsSetting = .require(try NIOSSLContext(configuration: configuration))
        default: tlsSetting = .disable
        }
        var configuration = PostgresConnection.Configuration(
            host: host, port: port, username: username, password: password, database: database, tls: tlsSetting
        )
        configuration.options.connectTimeout = .seconds(3)
        return configuration
    }
}
