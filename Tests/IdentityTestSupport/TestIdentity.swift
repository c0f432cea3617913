import CryptoAdapter
public import IdentityComposition
import Testing
public import Foundation
public import IdentityApplication
public import IdentityPorts
public import InMemoryAdapter

/// The identity service on in-memory adapters, a manual clock and cheap Argon2 parameters:
/// real adapters, fast enough for hundreds of tests.
public struct TestIdentity: Sendable {
    /// The use cases.
    public let service: IdentityService
    /// The clock every adapter reads.
    public let clock: ManualClock
    /// The account store (and outbox).
    public let store: InMemoryUserStore
    /// The revocation store.
    public let revocations: InMemoryRevocationStore
    /// The token service.
    public let tokens: any TokenService
    /// The hasher.
    public let hasher: any PasswordHasher
    /// The session store.
    public let sessions: InMemorySessionStore

    /// The secret tokens are signed with.
    public static let secret = "test-secret-test-secret-test-secret-0123"
    /// Token lifetime in seconds.
    public static let lifetime: TimeInterval = 3600

    /// The token service every test identity signs with.
    public static func makeTokens() async throws -> any TokenService {
        await JWTTokenService(configuration: try TokenConfiguration(secret: secret, lifetime: lifetime))
    }

    /// The service on in-memory stores signing with key pairs (`ES256` or `EdDSA`), prepared:
    /// its first key made.
    public static func keyPairService(algorithm: String = "ES256") async throws -> IdentityService {
        let algorithm = try #require(JWTAlgorithm(rawValue: algorithm))
        let stack = try await IdentityStack.make(store: .inMemory, configuration: IdentityConfiguration(
            tokens: try TokenConfiguration(keyPairs: algorithm, lifetime: lifetime), argon2: try Argon2Configuration(memoryKiB: 64, iterations: 1)
        ))
        try await stack.prepare()
        return stack.service
    }

    /// Builds the service; `argon2` defaults to the cheapest parameters libargon2 accepts, and
    /// `hasher`, when given, replaces the Argon2id hasher made with them.
    public static func make(
        limits: LoginThrottleConfiguration = LoginThrottleConfiguration(), memoryKiB: UInt32 = 64, iterations: UInt32 = 1,
        clock: ManualClock = ManualClock(Date()), hasher: (any PasswordHasher)? = nil, mail: MailSetup? = nil
    ) async throws -> TestIdentity {
        let revocations = InMemoryRevocationStore(clock: clock)
        let store = InMemoryUserStore(revocations: revocations)
        let hasher = try hasher ?? Argon2idHasher(parameters: try Argon2Configuration(memoryKiB: memoryKiB, iterations: iterations))
        let tokens = try await makeTokens()
        let sessions = InMemorySessionStore(outbox: store)
        let stores = IdentityStores(
            users: store, outbox: store, revocations: revocations, throttle: InMemoryLoginThrottle(limits: limits), sessions: sessions
        )
        let service = try IdentityStack.assemble(stores: stores, hasher: hasher, tokens: tokens, clock: clock, mail: mail).service
        return TestIdentity(
            service: service, clock: clock, store: store, revocations: revocations, tokens: tokens, hasher: hasher, sessions: sessions
        )
    }

    /// The service over other stores (a database adapter under test), with cheap Argon2. A
    /// refresh reads the account through the session store, so pass the session store of the
    /// same database; without one, sessions are kept in memory beside `users` when it is the
    /// in-memory store, and otherwise beside an empty one (logins work, refreshes are refused).
    public static func service(
        users: any UserRepository, outbox: any EventOutbox, revocations: any RevocationStore, clock: any IdentityClock = SystemClock(),
        throttle: any LoginThrottle = InMemoryLoginThrottle(), sessions: (any SessionStore)? = nil
    ) async throws -> IdentityService {
        let stores = IdentityStores(
            users: users, outbox: outbox, revocations: revocations, throttle: throttle,
            sessions: sessions ?? InMemorySessionStore(outbox: (users as? InMemoryUserStore) ?? InMemoryUserStore())
        )
        let hasher = Argon2idHasher(parameters: try Argon2Configuration(memoryKiB: 64, iterations: 1))
        return try IdentityStack.assemble(stores: stores, hasher: hasher, tokens: try await makeTokens(), clock: clock).service
    }
}
