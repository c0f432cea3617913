import CRabbitMQ
import Foundation
import Glibc
import IdentityPorts
import Logging
import Synchronization

/// A message to publish.
struct OutgoingMessage: Sendable {
    let exchange: String
    let routingKey: String
    let body: Data
    let properties: MessageProperties
}

/// A message received by one of our consumers, copied out of librabbitmq's buffers.
struct Delivery: Sendable {
    let tag: UInt64
    /// Which connection it came on: an ack is only valid on the same one.
    let generation: UInt64
    let consumerTag: String
    let body: Data
    let messageID: String?
    let correlationID: String?
    let replyTo: String?
    let type: String?
    let redelivered: Bool
    /// Earlier deliveries that were not acknowledged (quorum queues count them).
    let deliveryCount: Int
    /// Epoch milliseconds after which the sender no longer waits for the reply, if given.
    let deadlineMilliseconds: Int64?
    /// The header `x-identity-mac`, if given as a string.
    let mac: String?
    /// The headers `traceparent` and `tracestate`, those given as strings.
    var traceHeaders: [String: String] = [:]
}

/// Something that uses the connection: it declares what it needs after every (re)connect and
/// receives deliveries for the consumers it started. Called on the connection's thread only.
protocol BrokerClient: Sendable {
    /// Declares exchanges and queues and starts consumers; returns the consumer tags it owns.
    func setUp(_ session: BrokerSession) throws(BrokerError) -> [String]
    /// A delivery for one of its consumer tags. Must not block.
    func receive(_ delivery: Delivery)
    /// The connection is up and `setUp` has run for every client.
    func connected()
    /// The connection is gone; whatever it had in flight is lost.
    func disconnected()
}

extension BrokerClient {
    func receive(_ delivery: Delivery) {}
    func connected() {}
    func disconnected() {}
}

/// A failure of librabbitmq or a refusal by the broker. Its description names the operation
/// and the reason, never a message body or a password.
struct BrokerError: Error, CustomStringConvertible {
    let operation: String
    let status: Int32
    let reason: String
    var description: String { "\(operation): \(reason.isEmpty ? "status \(status)" : reason)" }
}

/// One AMQP connection with one channel, owned by a dedicated thread (librabbitmq is
/// blocking and not thread-safe; NIO event loops and Swift's cooperative pool never make a
/// librabbitmq call). It reconnects with exponential backoff, runs jobs that other threads
/// queue, turns publisher confirms into resumed continuations, and hands deliveries to
/// the clients that started their consumers.
final class BrokerConnection: Sendable {
    private struct Shared {
        var jobs: [Job] = []
        var connected = false
        var generation: UInt64 = 0
        var stopping = false
    }

    struct Job {
        /// Runs on the connection thread with the live session.
        let run: @Sendable (BrokerSession) throws(BrokerError) -> Void
        /// Called instead when the connection is (or goes) down before `run`.
        let fail: @Sendable () -> Void
    }

    let settings: AMQPConfiguration
    private let logger: Logger
    private let shared = Mutex(Shared())
    private let wakeFD: Int32
    private let clients: Mutex<[any BrokerClient]> = Mutex([])
    private let finished = DispatchSemaphore(value: 0)
    private let started = Mutex(false)

    init(settings: AMQPConfiguration, logger: Logger) {
        self.settings = settings
        self.logger = logger
        self.wakeFD = identity_wake_fd()
    }

    deinit {
        close(wakeFD)
    }

    /// Adds a client; only before `start`.
    func add(_ client: any BrokerClient) {
        clients.withLock { $0.append(client) }
    }

    var isConnected: Bool { shared.withLock { $0.connected } }
    var generation: UInt64 { shared.withLock { $0.generation } }

    /// Starts the connection thread.
    func start() {
        let first = started.withLock { started in
            defer { started = true }
            return !started
        }
        guard first else { return }
        let thread = Thread { [self] in
            run()
            finished.signal()
        }
        thread.name = "identity-amqp"
        thread.start()
    }

    /// Closes the connection and waits for the thread to end. Queued jobs fail.
    func stop() {
        let wasStarted = started.withLock { $0 }
        shared.withLock { $0.stopping = true }
        wake()
        if wasStarted { finished.wait() }
        failQueuedJobs()
    }

    /// Queues `job` for the connection thread; fails it at once when the connection is down.
    /// With `generation`, the job is dropped (failed) unless it runs on that very connection.
    func enqueue(_ job: Job, onGeneration generation: UInt64? = nil) {
        let accepted = shared.withLock { state -> Bool in
            guard state.connected, !state.stopping, generation == nil || generation == state.generation else { return false }
            state.jobs.append(job)
            return true
        }
        if accepted { wake() } else { job.fail() }
    }

    /// Publishes `messages` in order and returns once the broker has confirmed them all
    /// (persisted, for a durable queue). Throws `BackendUnavailable` when the connection is
    /// down, is lost first, or the broker refuses one.
    func publish(_ messages: [OutgoingMessage]) async throws {
        guard !messages.isEmpty else { return }
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let once = ResumeOnce(continuation)
            enqueue(Job(
                run: { session throws(BrokerError) in
                    var outstanding = messages.count
                    for message in messages {
                        try session.publish(
                            exchange: message.exchange, routingKey: message.routingKey, body: message.body,
                            properties: message.properties
                        ) { ok in
                            guard ok else { return once.fail(BackendUnavailable(backend: "rabbitmq")) }
                            outstanding -= 1
                            if outstanding == 0 { once.resume() }
                        }
                    }
                },
                fail: { once.fail(BackendUnavailable(backend: "rabbitmq")) }
            ))
        }
    }

    /// Runs `body` on the connection thread and returns its result (set-up work, tests). A
    /// broker error in `body` closes the connection (it reconnects) and throws `BackendUnavailable`.
    func perform<T: Sendable>(_ body: @escaping @Sendable (BrokerSession) throws(BrokerError) -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            enqueue(Job(
                // A throwing body ends the connection, and `fail` resumes the caller.
                run: { session throws(BrokerError) in continuation.resume(returning: try body(session)) },
                fail: { continuation.resume(throwing: BackendUnavailable(backend: "rabbitmq")) }
            ))
        }
    }

    /// Publishes one message; see `publish(_:)`.
    func publish(exchange: String, routingKey: String, body: Data, properties: MessageProperties) async throws {
        try await publish([OutgoingMessage(exchange: exchange, routingKey: routingKey, body: body, properties: properties)])
    }

    private func wake() {
        var one: UInt64 = 1
        _ = write(wakeFD, &one, 8)
    }

    private func drainWake() {
        var value: UInt64 = 0
        _ = read(wakeFD, &value, 8)
    }

    private var stopping: Bool { shared.withLock { $0.stopping } }

    private func failQueuedJobs() {
        let jobs = shared.withLock { state in
            defer { state.jobs.removeAll() }
            return state.jobs
        }
        for job in jobs { job.fail() }
    }

    // MARK: the connection thread

    private func run() {
        var backoff = 0.1
        var loggedDown = false
        while !stopping {
            let session: BrokerSession
            do {
                session = try BrokerSession.open(settings, generation: generation + 1)
            } catch {
                if !loggedDown { logger.warning("rabbitmq unreachable; retrying", metadata: ["error": "\(error)"]) }
                loggedDown = true
                pause(seconds: backoff)
                backoff = min(backoff * 2, 5)
                continue
            }
            let clients = clients.withLock { $0 }
            var owners: [String: any BrokerClient] = [:]
            do {
                for client in clients {
                    for tag in try client.setUp(session) { owners[tag] = client }
                }
            } catch {
                logger.error("rabbitmq set-up failed; retrying", metadata: ["error": "\(error)"])
                session.close(polite: false)
                pause(seconds: backoff)
                backoff = min(backoff * 2, 5)
                continue
            }
            shared.withLock { state in
                state.generation = session.generation
                state.connected = true
            }
            logger.notice("rabbitmq connected", metadata: ["broker": "\(settings.summary)"])
            loggedDown = false
            backoff = 0.1
            for client in clients { client.connected() }
            let failure = serve(session, owners: owners)
            shared.withLock { $0.connected = false }
            session.failPendingConfirms()
            failQueuedJobs()
            for client in clients { client.disconnected() }
            session.close(polite: failure == nil)
            if let failure {
                logger.warning("rabbitmq connection lost; reconnecting", metadata: ["error": "\(failure)"])
                loggedDown = true
            }
        }
    }

    /// Waits up to `seconds`, or less when woken by `stop`.
    private func pause(seconds: Double) {
        var fds = [pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0)]
        _ = poll(&fds, 1, Int32(seconds * 1000))
        drainWake()
    }

    /// Runs jobs and reads frames until the connection fails (returns the error) or stop.
    private func serve(_ session: BrokerSession, owners: [String: any BrokerClient]) -> BrokerError? {
        // Wake at least twice per heartbeat interval so librabbitmq sends heartbeats in time.
        let idleWait = Int32(max(100, settings.heartbeatSeconds * 1000 / 2))
        while !stopping {
            let jobs = shared.withLock { state in
                defer { state.jobs.removeAll() }
                return state.jobs
            }
            for (index, job) in jobs.enumerated() {
                do {
                    try job.run(session)
                } catch {
                    // This job and the ones after it never ran on a working connection.
                    for unrun in jobs[index...] { unrun.fail() }
                    return error
                }
            }
            if !session.hasBufferedInput {
                var fds = [
                    pollfd(fd: session.socket, events: Int16(POLLIN), revents: 0),
                    pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0),
                ]
                _ = poll(&fds, 2, session.usesTLS ? min(idleWait, 50) : idleWait)
                if fds[1].revents != 0 { drainWake() }
            }
            // Read whatever has arrived (also sends a heartbeat when one is due).
            while true {
                let event: BrokerSession.Event
                do {
                    event = try session.next()
                } catch {
                    return error
                }
                guard case .delivery(let delivery) = event else {
                    if case .nothing = event { break }
                    continue
                }
                if let owner = owners[delivery.consumerTag] {
                    owner.receive(delivery)
                }
            }
        }
        return nil
    }
}

/// Resumes a continuation at most once, from whichever side gets there first.
final class ResumeOnce: Sendable {
    private let continuation: Mutex<CheckedContinuation<Void, any Error>?>

    init(_ continuation: CheckedContinuation<Void, any Error>) {
        self.continuation = Mutex(continuation)
    }

    func resume() {
        take()?.resume()
    }

    func fail(_ error: any Error) {
        take()?.resume(throwing: error)
    }

    private func take() -> CheckedContinuation<Void, any Error>? {
        continuation.withLock { stored in
            defer { stored = nil }
            return stored
        }
    }
}
