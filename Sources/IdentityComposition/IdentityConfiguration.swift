public import CoreMetrics
public import CryptoAdapter
public import IdentityPorts
public import Logging

/// Everything the composition needs besides the stores and the transport: token and hash
/// settings, throttle limits, and the host's clock, ids, logger and metrics.
///
/// Each value is validated by its own type (`TokenConfiguration`, `Argon2Configuration`,
/// `LoginThrottleConfiguration`) when it is made, so a stack is never built on a bad one.
public struct IdentityConfiguration: Sendable {
    /// How tokens are signed and checked, and how long they last. With ES256 or EdDSA, made
    /// with `TokenConfiguration(keyPairs:)`: the stack reads the keys from its store.
    public var tokens: TokenConfiguration
    /// With ES256 or EdDSA: the key-encryption key and the rotation. Required unless the store
    /// is `.inMemory`, where nil means a random key-encryption key (the keys end with the process).
    public var keyPairs: KeyPairSigning?
    /// The Argon2id cost of new password hashes.
    public var argon2: Argon2Configuration
    /// Hashes and verifications that may wait for a thread before the next is refused (503).
    public var hashQueueLimit: Int
    /// Failed-login limits.
    public var throttle: LoginThrottleConfiguration
    /// Session lifetimes (idle, absolute) and the refresh grace interval.
    public var sessions: SessionConfiguration
    /// Email verification and password reset; nil to offer neither.
    public var mail: MailSetup?
    /// How often expired rows (revocations, login failures, applied commands) are deleted.
    public var purgeInterval: Duration
    /// What `IdentityStack.prepare()` does with a database schema that is not current.
    public var schema: SchemaPolicy
    /// The wall clock every adapter and use case reads.
    public var clock: any IdentityClock
    /// Where account ids and message ids come from.
    public var ids: any IDGenerator
    /// The logger of the stores, the broker and the background services.
    public var logger: Logger
    /// Where metrics go; `nil` records into `MetricsSystem.factory`.
    public var metrics: (any MetricsFactory)?

    /// Creates a configuration; only the token settings have no default.
    public init(
        tokens: TokenConfiguration, keyPairs: KeyPairSigning? = nil, argon2: Argon2Configuration = .recommended,
        hashQueueLimit: Int = Argon2idHasher.defaultQueueLimit, throttle: LoginThrottleConfiguration = LoginThrottleConfiguration(),
        sessions: SessionConfiguration = SessionConfiguration(), mail: MailSetup? = nil, purgeInterval: Duration = .seconds(600), schema: SchemaPolicy = .requireCurrent, clock: any IdentityClock = SystemClock(),
        ids: any IDGenerator = RandomIDGenerator(), logger: Logger = Logger(label: "identity"), metrics: (any MetricsFactory)? = nil
    ) {
        self.tokens = tokens
        self.keyPairs = keyPairs
        self.argon2 = argon2
        self.hashQueueLimit = hashQueueLimit
        self.throttle = throttle
        self.sessions = sessions
        self.mail = mail
        self.purgeInterval = purgeInterval
        self.schema = schema
        self.clock = clock
        self.ids = ids
        self.logger = logger
        self.metrics = metrics
    }

    var metricsFactory: any MetricsFactory { metrics ?? MetricsSystem.factory }
}

/// What start-up does with a database whose schema is behind this build.
public enum SchemaPolicy: Sendable, Equatable {
    /// Refuse to start (`SchemaOutOfDate`): migrations are run apart, by `DemoServer migrate up`
    /// or a deployment step, as several instances should not race to migrate.
    case requireCurrent
    /// Apply the pending migrations first (under the migrator's advisory lock): convenient for
    /// one instance, a development machine or a test.
    case migrate
}

/// A composition that cannot be made as asked, such as a broker without a shared database.
public struct IdentityCompositionError: Error, CustomStringConvertible, Equatable {
    /// What is wrong, in one line.
    public let description: String

    /// Creates the error.
    public init(_ description: String) {
        self.description = description
    }
}
