public import CoreMetrics
import Foundation
public import IdentityApplication
public import IdentityPorts
public import Logging
public import ServiceLifecycle
import Synchronization

/// Email verification and password reset (contract §11), as a host sets them up: how mail is
/// sent and rendered, how its tokens are sealed, and the lifetimes, limits and retries.
///
/// With it, `IdentityStack` owes mail with every registration, email change and reset
/// request, commits it to the store's mail outbox, and (where commands are applied: in
/// process, or on a broker worker) runs `MailDeliveryService`.
public struct MailSetup: Sendable {
    /// Sends rendered mail (`SMTPMailer`, `FileMailer`, or your own).
    public var mailer: any Mailer
    /// Renders pending mail (`TemplateMailComposer`, or your own).
    public var composer: any MailComposer
    /// Makes tokens and seals them for the outbox: every process sharing a store needs the same
    /// sealing secret (`AccountTokens(secret:)`).
    public var minting: any AccountTokenMinting
    /// Token lifetimes, mail limits, `REQUIRE_VERIFIED_EMAIL`.
    public var policy: AccountMailPolicy
    /// Retries (`MAIL_MAX_ATTEMPTS`), backoff, claims.
    public var delivery: MailDelivery.Policy
    /// How long the delivery service waits when the outbox has nothing due.
    public var pollInterval: Duration

    /// Creates the setup.
    public init(
        mailer: any Mailer, composer: any MailComposer, minting: any AccountTokenMinting, policy: AccountMailPolicy = AccountMailPolicy(),
        delivery: MailDelivery.Policy = MailDelivery.Policy(), pollInterval: Duration = .seconds(1)
    ) {
        self.mailer = mailer
        self.composer = composer
        self.minting = minting
        self.policy = policy
        self.delivery = delivery
        self.pollInterval = pollInterval
    }
}

/// Delivers the mail outbox: a round whenever mail may be due (every `pollInterval`, at once
/// again after a full batch). Logs each failure (a warning while it will be retried, an error
/// when given up on) and records `identity_mail_sent_total`, `identity_mail_failures_total`
/// (label `final`), `identity_mail_dropped_total` (mail whose token no longer works), and the gauges `identity_mail_pending` and `identity_mail_failed`.
public struct MailDeliveryService: Service {
    let delivery: MailDelivery
    let outbox: any MailOutbox
    let pollInterval: Duration
    let logger: Logger
    /// Opened once the stack is prepared (the schema current); nil: no waiting.
    let gate: PreparedGate?
    private let sent: CoreMetrics.Counter
    private let retried: CoreMetrics.Counter
    private let gaveUp: CoreMetrics.Counter
    private let dropped: CoreMetrics.Counter
    private let pending: CoreMetrics.Gauge
    private let failed: CoreMetrics.Gauge

    /// Creates the service; it records into `factory`.
    public init(delivery: MailDelivery, outbox: any MailOutbox, pollInterval: Duration, factory: any MetricsFactory, logger: Logger) {
        self.init(delivery: delivery, outbox: outbox, pollInterval: pollInterval, factory: factory, logger: logger, after: nil)
    }

    /// The service of a stack: its first round waits until `gate` opens (`IdentityStack.prepare()`).
    init(delivery: MailDelivery, outbox: any MailOutbox, pollInterval: Duration, factory: any MetricsFactory, logger: Logger, after gate: PreparedGate?) {
        self.gate = gate
        self.delivery = delivery
        self.outbox = outbox
        self.pollInterval = pollInterval
        self.logger = logger
        sent = CoreMetrics.Counter(label: "identity_mail_sent_total", factory: factory)
        retried = CoreMetrics.Counter(label: "identity_mail_failures_total", dimensions: [("final", "false")], factory: factory)
        gaveUp = CoreMetrics.Counter(label: "identity_mail_failures_total", dimensions: [("final", "true")], factory: factory)
        dropped = CoreMetrics.Counter(label: "identity_mail_dropped_total", factory: factory)
        pending = CoreMetrics.Gauge(label: "identity_mail_pending", factory: factory)
        failed = CoreMetrics.Gauge(label: "identity_mail_failed", factory: factory)
    }

    /// Delivers until nothing is due; returns how many mails were tried.
    @discardableResult
    public func deliverDue() async -> Int {
        var tried = 0
        do {
            while true {
                let outcomes = try await delivery.deliverDue()
                tried += outcomes.count
                for (mail, outcome) in outcomes { record(outcome, of: mail) }
                if outcomes.count < delivery.policy.batchSize { break }
            }
            let status = try await outbox.mailStatus()
            pending.record(status.pending)
            failed.record(status.failed)
        } catch is CancellationError {
            // Shutting down.
        } catch {
            logger.warning("mail outbox unavailable; will retry", metadata: ["error": "\(error)"])
        }
        return tried
    }

    private func record(_ outcome: MailDelivery.Outcome, of mail: OutgoingMail) {
        let metadata: Logger.Metadata = ["mail_id": "\(mail.id)", "mail_kind": "\(mail.kind.rawValue)"]
        switch outcome {
        case .sent:
            sent.increment()
            logger.debug("mail sent", metadata: metadata)
        case .retrying(let at, let reason):
            retried.increment()
            logger.warning("mail not delivered; will retry", metadata: metadata.merging(["retry_at": "\(at)", "error": "\(reason)"]) { $1 })
        case .gaveUp(let reason):
            gaveUp.increment()
            logger.error("mail given up on", metadata: metadata.merging(["error": "\(reason)"]) { $1 })
        case .dropped(let reason):
            dropped.increment()
            logger.info("mail dropped", metadata: metadata.merging(["reason": "\(reason)"]) { $1 })
        }
    }

    public func run() async throws {
        if let gate, await !gate.wait() { return }
        await repeatUntilShutdown(every: pollInterval, startingNow: true) { await deliverDue() }
    }
}

/// A flag `IdentityStack.prepare()` sets once it succeeded, which background work that writes
/// waits for: nothing touches an out-of-date schema or writes a key the others cannot open,
/// and a start-up that fails its checks logs nothing else.
final class PreparedGate: Sendable {
    private let isOpen = Mutex(false)

    func open() { isOpen.withLock { $0 = true } }

    /// Returns true once open, false when shutting down first.
    func wait() async -> Bool {
        await cancelWhenGracefulShutdown {
            // Production waiting, not test synchronisation: prepare() runs beside the services.
            while !self.isOpen.withLock({ $0 }) {
                do { try await Task.sleep(for: .milliseconds(100)) } catch { return false }
            }
            return true
        } ?? false
    }
}
