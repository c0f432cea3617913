public import CoreMetrics
public import Foundation
public import IdentityApplication
public import IdentityPorts
public import Logging
public import ServiceLifecycle
import IdentityDomain
import Metrics
import Synchronization

/// Deletes expired rows now and then (revocation entries, login failures past their window,
/// applied-command records, events no relay will publish), each task in turn; a failing task
/// is logged and retried at the next round.
public struct ExpiryPurge: Service {
    /// One kind of row to delete: `purge` takes the current time and returns how many rows went.
    public struct PurgeTask: Sendable {
        /// What is purged, for the log.
        public let name: String
        /// Deletes what has expired at the given time; returns the count.
        public let purge: @Sendable (Date) async throws -> Int

        /// Creates a task.
        public init(_ name: String, purge: @escaping @Sendable (Date) async throws -> Int) {
            self.name = name
            self.purge = purge
        }
    }

    let tasks: [PurgeTask]
    let clock: any IdentityClock
    let interval: Duration
    let logger: Logger

    /// Creates the service; the first round comes one `interval` after start.
    public init(tasks: [PurgeTask], clock: any IdentityClock, interval: Duration, logger: Logger) {
        self.tasks = tasks
        self.clock = clock
        self.interval = interval
        self.logger = logger
    }

    /// Runs every task once now.
    public func purgeOnce() async {
        for task in tasks {
            do {
                let purged = try await task.purge(clock.now())
                if purged > 0 { logger.debug("purged expired rows", metadata: ["what": "\(task.name)", "count": "\(purged)"]) }
            } catch {
                logger.warning("purge failed; will retry", metadata: ["what": "\(task.name)", "error": "\(error)"])
            }
        }
    }

    public func run() async throws {
        await repeatUntilShutdown(every: interval, startingNow: false) { await purgeOnce() }
    }
}

/// Publishes the outbox through the relay every 100 ms, until it is empty; while publishing
/// fails it logs once, and once more when it publishes again.
public struct OutboxRelayService: Service {
    let relay: OutboxRelay
    let logger: Logger

    /// Creates the service.
    public init(relay: OutboxRelay, logger: Logger) {
        self.relay = relay
        self.logger = logger
    }

    public func run() async throws {
        let failing = Mutex(false)
        await repeatUntilShutdown(every: .milliseconds(100), startingNow: true) {
            do {
                try await relay.drain()
                if failing.withLock({ $0 }) { logger.notice("outbox relay publishing again") }
                failing.withLock { $0 = false }
            } catch {
                let first = failing.withLock { failing in
                    defer { failing = true }
                    return !failing
                }
                if first { logger.warning("outbox relay cannot publish; will retry", metadata: ["error": "\(error)"]) }
            }
        }
    }
}

/// Samples the age of the oldest unpublished event now and then:
/// `identity_outbox_lag_seconds` (0 when the outbox is empty).
public struct OutboxLagSampler: Service {
    let outbox: any EventOutbox
    let clock: any IdentityClock
    let gauge: CoreMetrics.Gauge
    let interval: Duration
    let logger: Logger

    /// Creates the sampler; it records into `factory`.
    public init(
        outbox: any EventOutbox, clock: any IdentityClock, factory: any MetricsFactory, interval: Duration = .seconds(5), logger: Logger
    ) {
        self.outbox = outbox
        self.clock = clock
        self.gauge = CoreMetrics.Gauge(label: "identity_outbox_lag_seconds", factory: factory)
        self.interval = interval
        self.logger = logger
    }

    /// Records the lag once; the first sample is taken at start-up.
    public func sample() async {
        do {
            let oldest = try await outbox.pending(limit: 1).first
            gauge.record(oldest.map { max(0, clock.now().timeIntervalSince($0.event.occurredAt)) } ?? 0)
        } catch {
            logger.debug("outbox lag not sampled", metadata: ["error": "\(error)"])
        }
    }

    public func run() async throws {
        await repeatUntilShutdown(every: interval, startingNow: true) { await sample() }
    }
}

/// Times every command through the bus it wraps: `identity_command_bus_duration_seconds{command}`
/// (in process, the command's application; over a broker, the round trip).
public struct MeasuredCommandBus: CommandBus {
    let inner: any CommandBus
    private let timers: [String: CoreMetrics.Timer]

    /// Wraps `inner`, recording into `factory`.
    public init(_ inner: any CommandBus, factory: any MetricsFactory) {
        self.inner = inner
        let names = [
            "RegisterUser", "UpdateProfile", "DeleteAccount", "RevokeToken", "RehashPassword", "VerifyEmail", "ResendVerification",
            "RequestPasswordReset", "ConfirmPasswordReset",
        ]
        self.timers = Dictionary(uniqueKeysWithValues: names.map { name in
            (name, CoreMetrics.Timer(label: "identity_command_bus_duration_seconds", dimensions: [("command", name)], factory: factory))
        })
    }

    public func dispatch(_ envelope: CommandEnvelope) async throws -> CommandReply {
        let start = ContinuousClock.now
        defer { timers[envelope.command.name]?.record(duration: ContinuousClock.now - start) }
        return try await inner.dispatch(envelope)
    }

    public func post(_ envelope: CommandEnvelope) async throws {
        try await inner.post(envelope)
    }
}

/// Runs `work` every `interval` until the task is cancelled or a graceful shutdown begins; the
/// first run comes at once when `startingNow`, else after one interval.
func repeatUntilShutdown(every interval: Duration, startingNow: Bool, _ work: @escaping @Sendable () async -> Void) async {
    await cancelWhenGracefulShutdown {
        var waitFirst = !startingNow
        while !Task.isCancelled {
            if waitFirst {
                do {
                    try await Task.sleep(for: interval)
                } catch {
                    return
                }
            }
            waitFirst = true
            await work()
        }
    }
}
