import Foundation
public import IdentityPorts
public import ServiceLifecycle
import InMemoryAdapter

/// The driven stores of one deployment, with what they need to keep running: their own
/// services (a pool, a revocation feed), their readiness checks, the rows they purge, and how
/// their schema is made current.
///
/// The presets of ``IdentityStore`` make one; an adapter of your own fills one in and passes it
/// as ``IdentityStore/custom(_:)``.
public struct IdentityStores: Sendable {
    /// Accounts.
    public var users: any UserRepository
    /// The events written with account changes; the same database as `users`.
    public var outbox: any EventOutbox
    /// Revoked tokens and account cut-offs: the store `users` writes its revocations to (or a
    /// cache over it).
    public var revocations: any RevocationStore
    /// Failed-login counts.
    public var throttle: any LoginThrottle
    /// Sessions and their refresh-token digests, on the database of `users`: a refresh reads a
    /// session with its account's version through it (`SessionStore.sessionAndAccount(id:)`).
    public var sessions: any SessionStore
    /// The lifetimes `sessions` was made with.
    public var sessionConfiguration: SessionConfiguration
    /// The signing key pairs (ES256, EdDSA), shared by every instance that shares `users`: in
    /// the presets, the same database as `users` (in memory, SQLite or PostgreSQL).
    public var signingKeys: any SigningKeyStore
    /// Email-verification and reset tokens (contract §11), on the database of `users`, which
    /// writes them with account changes; nil when the stores keep none (no mail is offered).
    public var accountTokens: (any AccountTokenStore)?
    /// The mail outbox, on the database of `users`; nil when the stores keep none.
    public var mailOutbox: (any MailOutbox)?
    /// Expired rows to delete now and then (`ExpiryPurge`).
    public var purges: [ExpiryPurge.PurgeTask]
    /// Keeps the newest `keeping` unpublished events, for a deployment that relays none; nil
    /// when the outbox bounds itself.
    public var trimOutbox: (@Sendable (_ keeping: Int) async throws -> Int)?
    /// What the stores run beside the server (a connection pool, a revocation feed).
    public var services: [any Service]
    /// What `/health/ready` asks.
    public var readiness: [any HealthCheck]
    /// Makes the schema current (or checks that it is) before the first request.
    public var prepare: @Sendable (SchemaPolicy) async throws -> Void
    /// Whether every instance shares these stores (a database server), as a broker requires.
    public var isShared: Bool
    /// One line for the start-up log, with no secret in it.
    public var summary: String

    /// Bundles stores of your own; by default nothing is purged, run or checked, signing keys
    /// are kept in memory, and account tokens and mail are kept by `users` if it can.
    public init(
        users: any UserRepository, outbox: any EventOutbox, revocations: any RevocationStore, throttle: any LoginThrottle,
        sessions: any SessionStore, sessionConfiguration: SessionConfiguration = SessionConfiguration(),
        signingKeys: (any SigningKeyStore)? = nil, accountTokens: (any AccountTokenStore)? = nil, mailOutbox: (any MailOutbox)? = nil,
        purges: [ExpiryPurge.PurgeTask] = [], trimOutbox: (@Sendable (_ keeping: Int) async throws -> Int)? = nil,
        services: [any Service] = [], readiness: [any HealthCheck] = [],
        prepare: @escaping @Sendable (SchemaPolicy) async throws -> Void = { _ in }, isShared: Bool = false, summary: String = "custom"
    ) {
        self.users = users
        self.outbox = outbox
        self.revocations = revocations
        self.throttle = throttle
        self.sessions = sessions
        self.sessionConfiguration = sessionConfiguration
        self.signingKeys = signingKeys ?? InMemorySigningKeyStore()
        self.accountTokens = accountTokens ?? users as? any AccountTokenStore
        self.mailOutbox = mailOutbox ?? users as? any MailOutbox
        self.purges = purges
        self.trimOutbox = trimOutbox
        self.services = services
        self.readiness = readiness
        self.prepare = prepare
        self.isShared = isShared
        self.summary = summary
    }

    /// The in-memory stores: everything ends with the process; they purge and bound themselves.
    public static func inMemory(
        clock: any IdentityClock = SystemClock(), throttle: LoginThrottleConfiguration = LoginThrottleConfiguration(),
        sessions: SessionConfiguration = SessionConfiguration()
    ) -> IdentityStores {
        let store = InMemoryUserStore(revocations: InMemoryRevocationStore(clock: clock))
        return IdentityStores(
            users: store, outbox: store, revocations: store.revocations, throttle: InMemoryLoginThrottle(limits: throttle),
            sessions: InMemorySessionStore(outbox: store, configuration: sessions), sessionConfiguration: sessions, summary: "in-memory"
        )
    }
}
