import Foundation
import IdentityApplication
import IdentityConformance
import IdentityDomain
import IdentityPorts
import IdentityTestSupport
import PostgresAdapter
import PostgresNIO
import Testing

@Suite("PostgreSQL stores", .enabled(if: TestDatabase.isConfigured, TestDatabase.skipReason))
struct PostgresStoreTests {
    /// A migrated database, with every table emptied by `reset`.
    static func withMigrated<T: Sendable>(_ body: (PostgresClient) async throws -> T) async throws -> T {
        try await TestDatabase.with { client, _ in
            try await PostgresMigrator(client: client).up()
            return try await body(client)
        }
    }

    static func reset(_ client: PostgresClient) async throws {
        try await client.query(
            """
            TRUNCATE identity_users, identity_outbox, identity_revoked_tokens, identity_account_cutoffs,
                     identity_processed_messages, identity_login_failures, identity_sessions, identity_session_digests,
                     identity_account_tokens, identity_mail_outbox
            """
        )
    }

    @Test("PostgresUserStore passes the UserRepository and EventOutbox suite")
    func userStore() async throws {
        try await Self.withMigrated { client in
            try await UserRepositoryConformance {
                try await Self.reset(client)
                let store = PostgresUserStore(client: client)
                return (store, store)
            }.run()
        }
    }

    @Test("PostgresUserStore writes a change's revocations in its transaction: both commit or neither (a trigger fails the second write)")
    func changeRevocations() async throws {
        try await Self.withMigrated { client in
            let stores: @Sendable () -> (users: any UserRepository, revocations: any RevocationStore) = {
                (PostgresUserStore(client: client), PostgresRevocationStore(client: client))
            }
            try await client.query(
                """
                CREATE FUNCTION identity_test_fail() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN RAISE EXCEPTION 'injected failure of a revocation write'; END $$
                """
            )
            try await ChangeRevocationConformance(
                makeStores: {
                    try await Self.reset(client)
                    try await client.query("DROP TRIGGER IF EXISTS identity_test_fail ON identity_account_cutoffs")
                    return stores()
                },
                makeStoresFailingRevocations: {
                    try await Self.reset(client)
                    try await client.query("DROP TRIGGER IF EXISTS identity_test_fail ON identity_account_cutoffs")
                    try await client.query(
                        "CREATE TRIGGER identity_test_fail BEFORE INSERT OR UPDATE ON identity_account_cutoffs FOR EACH ROW EXECUTE FUNCTION identity_test_fail()"
                    )
                    return stores()
                }
            ).run()
        }
    }

    @Test("PostgresRevocationStore passes the RevocationStore suite")
    func revocationStore() async throws {
        try await Self.withMigrated { client in
            try await RevocationStoreConformance {
                try await Self.reset(client)
                return PostgresRevocationStore(client: client)
            }.run()
        }
    }

    @Test("PostgresLoginThrottle passes the LoginThrottle suite")
    func throttle() async throws {
        try await Self.withMigrated { client in
            try await LoginThrottleConformance { limits in
                try await Self.reset(client)
                return PostgresLoginThrottle(client: client, limits: limits)
            }.run()
        }
    }

    @Test("PostgresSessionStore passes the SessionStore suite")
    func sessionStore() async throws {
        try await Self.withMigrated { client in
            try await SessionStoreConformance { configuration in
                try await Self.reset(client)
                return (PostgresSessionStore(client: client, configuration: configuration), PostgresUserStore(client: client))
            }.run()
        }
    }

    @Test("PostgresSessionStore writes its events in the change's transaction: with the outbox refusing writes (a trigger), no session opens or ends")
    func sessionEventsCommitWithTheirChange() async throws {
        try await Self.withMigrated { client in
            try await client.query(
                """
                CREATE FUNCTION identity_test_fail_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN RAISE EXCEPTION 'injected outbox failure'; END $$
                """
            )
            try await SessionEventsCommitWithTheirChange(
                store: PostgresSessionStore(client: client), outbox: PostgresUserStore(client: client)
            ) { refuse in
                try await client.query(refuse
                    ? "CREATE TRIGGER identity_test_fail_outbox BEFORE INSERT ON identity_outbox FOR EACH ROW EXECUTE FUNCTION identity_test_fail_outbox()"
                    : "DROP TRIGGER identity_test_fail_outbox ON identity_outbox")
            }.run()
        }
    }

    @Test("20 simultaneous attempts for one email from two instances: one goes ahead, the others are told to wait (not refused)")
    func throttleRace() async throws {
        try await Self.withMigrated { client in
            let limits = LoginThrottleConfiguration(maxFailuresPerEmail: 5, maxFailuresPerClient: 1000, window: 900)
            // Two throttles on one database stand for two instances. The 20 attempts queue on one
            // lock: a loaded machine may take longer than the 5 s default, which is not the point here.
            let instances = [PostgresLoginThrottle(client: client, limits: limits, timeout: .seconds(60)),
                             PostgresLoginThrottle(client: client, limits: limits, timeout: .seconds(60))]
            let now = Date()
            let decisions = try await withThrowingTaskGroup(of: ThrottleDecision.self) { group in
                for index in 0..<20 {
                    group.addTask {
                        try await instances[index % 2].beginAttempt(UUID(), email: try Email("victim@example.com"), client: "10.0.0.\(index)", now: now)
                    }
                }
                return try await group.reduce(into: [ThrottleDecision]()) { $0.append($1) }
            }
            #expect(decisions.filter { $0 == .allowed }.count == 1 && decisions.filter { $0 == .busy }.count == 19, "\(decisions)")
            let purged = try await instances[0].purgeExpired(now: now.addingTimeInterval(901))
            #expect(purged == 2, "the attempt's rows (email and address) go once the window has passed")
        }
    }

    @Test("through two services on one database: 30 simultaneous correct logins all succeed; 20 simultaneous guesses get exactly 5 tries")
    func parallelLogins() async throws {
        try await Self.withMigrated { client in
            let store = PostgresUserStore(client: client)
            let limits = LoginThrottleConfiguration(maxFailuresPerEmail: 5, maxFailuresPerClient: 1000, window: 900)
            let services = [
                try await TestIdentity.service(users: store, outbox: store, revocations: PostgresRevocationStore(client: client),
                                               throttle: PostgresLoginThrottle(client: client, limits: limits, timeout: .seconds(60))),
                try await TestIdentity.service(users: store, outbox: store, revocations: PostgresRevocationStore(client: client),
                                               throttle: PostgresLoginThrottle(client: client, limits: limits, timeout: .seconds(60))),
            ]
            _ = try await services[0].register(email: "ada@example.com", password: "correct horse battery", name: "Ada")
            @Sendable func outcomes(password: String, count: Int) async -> [String] {
                await withTaskGroup(of: String.self) { group in
                    for index in 0..<count {
                        group.addTask {
                            do {
                                _ = try await services[index % 2].login(email: "ada@example.com", password: password, client: "10.0.0.\(index)")
                                return "token"
                            } catch let error as IdentityError where error == .invalidCredentials {
                                return "wrong"
                            } catch is LoginThrottled {
                                return "throttled"
                            } catch {
                                return "\(error)"
                            }
                        }
                    }
                    return await group.reduce(into: [String]()) { $0.append($1) }
                }
            }
            let correct = await outcomes(password: "correct horse battery", count: 30)
            #expect(correct.allSatisfy { $0 == "token" }, "\(correct)")
            let guesses = await outcomes(password: "wrong guess, wrong", count: 20)
            #expect(guesses.filter { $0 == "wrong" }.count == 5 && guesses.filter { $0 == "throttled" }.count == 15, "\(guesses)")
        }
    }

    @Test("an outbox that nothing relays is trimmed to its newest events; applied command ids are forgotten after a while")
    func trimming() async throws {
        try await Self.withMigrated { client in
            try await Self.reset(client)
            let store = PostgresUserStore(client: client)
            let user = UserID(UUID())
            let events = (0..<5).map {
                IdentityEvent(eventID: UUID(), occurredAt: Date(), payload: .tokenRevoked(userID: user, jti: "\($0)", expiresAt: Date()))
            }
            try await store.append(events)
            #expect(try await store.trimOutbox(keeping: 2) == 3)
            #expect(try await store.pending(limit: 10).map(\.event.eventID) == events.suffix(2).map(\.eventID))
            try await CommandContext.$messageID.withValue("old") { try await store.append([events[0]]) }
            #expect(try await store.hasApplied(messageID: "old"))
            #expect(try await store.purgeAppliedCommands(before: Date().addingTimeInterval(60)) == 1)
            #expect(try await !store.hasApplied(messageID: "old"))
        }
    }

    @Test("20 concurrent renames of one account on PostgreSQL are all applied, one after another: none is refused for the race")
    func renameRace() async throws {
        try await Self.withMigrated { client in
            // The renames queue on one row: a loaded machine may take longer than the 5 s default.
            let store = PostgresUserStore(client: client, timeout: .seconds(60))
            let service = try await TestIdentity.service(users: store, outbox: store, revocations: PostgresRevocationStore(client: client))
            let user = try await service.register(email: "ada@example.com", password: "correct horse battery", name: "Ada")
            let token = try await service.login(email: "ada@example.com", password: "correct horse battery", client: nil)
            let principal = try await service.authenticator.authenticate(bearer: token.token)
            let outcomes = await withTaskGroup(of: String.self) { group in
                for index in 0..<20 {
                    group.addTask {
                        do {
                            _ = try await service.updateProfile(principal, name: "N\(index)", email: nil, password: nil, currentPassword: nil)
                            return "applied"
                        } catch {
                            return "\(error)"
                        }
                    }
                }
                return await group.reduce(into: [String]()) { $0.append($1) }
            }
            #expect(outcomes.allSatisfy { $0 == "applied" }, "\(outcomes)")
            #expect(try await store.user(id: user.id)?.version == 21, "each applied exactly once")
        }
    }

    @Test("20 concurrent registrations of one email give exactly one account (the unique index decides)")
    func registrationRace() async throws {
        try await Self.withMigrated { client in
            let store = PostgresUserStore(client: client)
            let service = try await TestIdentity.service(users: store, outbox: store, revocations: PostgresRevocationStore(client: client))
            let outcomes = await withTaskGroup(of: String.self) { group in
                for index in 0..<20 {
                    group.addTask {
                        do {
                            _ = try await service.register(email: index % 2 == 0 ? "race@example.com" : "RACE@example.com",
                                                           password: "correct horse battery", name: "R\(index)")
                            return "created"
                        } catch let error as IdentityError where error == .emailTaken {
                            return "taken"
                        } catch {
                            return "other: \(error)"
                        }
                    }
                }
                return await group.reduce(into: [String]()) { $0.append($1) }
            }
            #expect(outcomes.filter { $0 == "created" }.count == 1)
            #expect(outcomes.filter { $0 == "taken" }.count == 19, "\(outcomes)")
            let rows = try await client.query("SELECT count(*) FROM identity_users")
            for try await count in rows.decode(Int64.self) { #expect(count == 1) }
        }
    }

    @Test("a write and its events commit together: a refused write leaves no event")
    func atomicity() async throws {
        try await Self.withMigrated { client in
            let store = PostgresUserStore(client: client)
            let user = User.register(id: UserID(UUID()), email: try Email("ada@example.com"), name: try DisplayName("Ada"),
                                     passwordHash: "$argon2id$x", at: Date())
            try await store.insert(user, events: [])
            let twin = User.register(id: UserID(UUID()), email: user.email, name: user.name, passwordHash: "$argon2id$y", at: Date())
            let event = IdentityEvent(eventID: UUID(), occurredAt: Date(), payload: .userRegistered(userID: twin.id, email: twin.email, name: twin.name))
            await #expect(throws: IdentityError.emailTaken) { try await store.insert(twin, events: [event]) }
            #expect(try await store.pending(limit: 10).isEmpty)
        }
    }

    @Test("events keep their JSON form in the outbox")
    func eventJSON() async throws {
        try await Self.withMigrated { client in
            let store = PostgresUserStore(client: client)
            let id = UserID(UUID())
            let event = IdentityEvent(eventID: UUID(), occurredAt: Date(timeIntervalSince1970: 1_790_000_000.5),
                                      payload: .tokenRevoked(userID: id, jti: "j1", expiresAt: Date(timeIntervalSince1970: 1_790_003_600.25)))
            try await store.append([event])
            let rows = try await client.query("SELECT data::text FROM identity_outbox")
            for try await data in rows.decode(String.self) {
                let json = try JSONSerialization.jsonObject(with: Data(data.utf8)) as? [String: String]
                #expect(json == ["user_id": id.description, "jti": "j1", "expires_at": "2026-09-21T15:13:20.250Z"])
            }
            #expect(try await store.pending(limit: 1).map(\.event) == [event])
        }
    }

    @Test("readiness answers while PostgreSQL does")
    func health() async throws {
        try await Self.withMigrated { client in
            try await PostgresHealthCheck(client: client).checkHealth()
        }
    }
}
