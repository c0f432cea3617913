import CryptoAdapter
import Foundation
import IdentityApplication
import IdentityComposition
import IdentityDomain
import IdentityPorts
import IdentityTestSupport
import InMemoryAdapter
import Testing

@Suite("IdentityStack with ES256 and EdDSA key pairs (contract §10)")
struct SigningKeyStackTests {
    static let argon2 = try! Argon2Configuration(memoryKiB: 64, iterations: 1)
    static let kek = try! KeyEncryptionKey(String(repeating: "key-encryption-key-", count: 2), for: .es256)
    static let otherKEK = try! KeyEncryptionKey(String(repeating: "another-encryption-key-", count: 2), for: .es256)

    static func configuration(
        _ algorithm: JWTAlgorithm = .es256, kek: KeyEncryptionKey? = kek, clock: any IdentityClock = SystemClock(), migrate: Bool = false
    ) -> IdentityConfiguration {
        IdentityConfiguration(
            tokens: try! TokenConfiguration(keyPairs: algorithm), keyPairs: kek.map { KeyPairSigning(keyEncryptionKey: $0) }, argon2: argon2,
            schema: migrate ? .migrate : .requireCurrent, clock: clock
        )
    }

    /// In-memory stores whose signing keys live in `keys`, which several stacks may share (as
    /// they share a database).
    static func stores(sharing keys: any SigningKeyStore, clock: any IdentityClock = SystemClock()) -> IdentityStore {
        var stores = IdentityStores.inMemory(clock: clock)
        stores.signingKeys = keys
        return .custom(stores)
    }

    /// The `kid` and `alg` of a token's header.
    static func header(_ token: String) throws -> (kid: String?, alg: String?) {
        let part = try #require(token.split(separator: ".").first)
        var base64 = part.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        let data = try #require(Data(base64Encoded: base64))
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        return (object["kid"] as? String, object["alg"] as? String)
    }

    static func signIn(_ service: IdentityService, email: String = "ada@example.com") async throws -> String {
        try await service.login(email: email, password: "correct horse battery", client: nil).token
    }

    static func accepted(_ token: String, by service: IdentityService) async -> Bool {
        (try? await service.authenticator.authenticate(bearer: token)) != nil
    }

    @Test("in memory with ES256: the first start makes a key, every token names it, the key set lists it, tokens verify", arguments: [
        JWTAlgorithm.es256, .eddsa,
    ])
    func inMemory(algorithm: JWTAlgorithm) async throws {
        let stack = try await IdentityStack.make(store: .inMemory, configuration: Self.configuration(algorithm, kek: nil))
        #expect(stack.services.contains { $0 is SigningKeyMaintenance })
        #expect(stack.summary.hasSuffix("tokens=\(algorithm.rawValue)(rotation=30d)"), "\(stack.summary)")
        try await stack.prepare()
        _ = try await stack.service.register(email: "ada@example.com", password: "correct horse battery", name: "Ada")
        let token = try await Self.signIn(stack.service)
        let (kid, alg) = try Self.header(token)
        #expect(alg == algorithm.rawValue)
        let keys = stack.service.publishedSigningKeys()
        #expect(keys.count == 1 && keys.first?.kid == kid && keys.first?.alg == algorithm.rawValue)
        #expect(stack.service.tokenSigningAlgorithm == algorithm.rawValue)
        #expect(await Self.accepted(token, by: stack.service))
        #expect(try await stack.signingKeyRecords().map(\.state) == [.active])
    }

    @Test("SQLite with EdDSA: the stack signs with a kid, and an HS256 token with our claims is refused")
    func sqliteEdDSA() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("keys-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let stack = try await IdentityStack.make(
            store: .sqlite(path: directory.appendingPathComponent("identity.sqlite").path), configuration: Self.configuration(.eddsa)
        )
        try await stack.prepare()
        let user = try await stack.service.register(email: "ada@example.com", password: "correct horse battery", name: "Ada")
        let token = try await Self.signIn(stack.service)
        let kid = try #require(try Self.header(token).kid)
        #expect(stack.service.publishedSigningKeys().map(\.kid) == [kid])
        #expect(await Self.accepted(token, by: stack.service))
        let claims = ForgedClaims.valid(sub: user.id.description, now: Date())
        let hmac = try await TokenForger.sign(claims, key: String(repeating: "s", count: 32))
        #expect(!(await Self.accepted(hmac, by: stack.service)), "an HS256 token is refused when EdDSA is configured")
    }

    @Test("HS256 stays the default: no keys published, no rotation service, and the key commands say why they cannot run")
    func hmacDefault() async throws {
        let stack = try await IdentityStack.make(
            store: .inMemory, configuration: IdentityConfiguration(tokens: try TokenConfiguration(secret: TestIdentity.secret), argon2: Self.argon2)
        )
        try await stack.prepare()
        #expect(stack.service.publishedSigningKeys().isEmpty)
        #expect(stack.service.tokenSigningAlgorithm == "HS256")
        #expect(!stack.services.contains { $0 is SigningKeyMaintenance })
        await #expect(throws: IdentityCompositionError.self) { try await stack.rotateSigningKeys() }
    }

    @Test("ES256 outside the in-memory store without a key-encryption key is refused with one line")
    func kekRequired() async throws {
        let stores = IdentityStores.inMemory()
        do {
            _ = try await IdentityStack.make(store: .custom(stores), configuration: Self.configuration(kek: nil))
            Issue.record("composed without a key-encryption key")
        } catch let error as IdentityCompositionError {
            #expect(error.description.contains("JWT_KEY_ENCRYPTION_KEY") && !error.description.contains("\n"))
        }
    }

    @Test("a wrong key-encryption key stops prepare() before it writes anything; the right one starts")
    func wrongKEK() async throws {
        let shared = InMemorySigningKeyStore()
        let first = try await IdentityStack.make(store: Self.stores(sharing: shared), configuration: Self.configuration())
        try await first.prepare()
        let before = shared.keySet()
        #expect(before.keys.count == 1)

        let wrong = try await IdentityStack.make(store: Self.stores(sharing: shared), configuration: Self.configuration(kek: Self.otherKEK))
        do {
            try await wrong.prepare()
            Issue.record("prepared with the wrong key-encryption key")
        } catch let error as SigningKeyError {
            #expect(error.isConfigurationError)
            #expect(error.description.contains("JWT_KEY_ENCRYPTION_KEY"))
        }
        await #expect(throws: SigningKeyError.self, "nor does a rotation write a key the others cannot open") { try await wrong.rotateSigningKeys() }
        #expect(shared.keySet() == before, "nothing was written")

        let right = try await IdentityStack.make(store: Self.stores(sharing: shared), configuration: Self.configuration())
        try await right.prepare()
        #expect(right.service.publishedSigningKeys().map(\.kid) == before.keys.map(\.kid))
    }

    @Test("a token whose kid is unknown is refused, and so is one without a kid")
    func unknownKid() async throws {
        let a = try await IdentityStack.make(store: .inMemory, configuration: Self.configuration(kek: nil))
        let b = try await IdentityStack.make(store: .inMemory, configuration: Self.configuration(kek: nil))
        try await a.prepare()
        try await b.prepare()
        _ = try await a.service.register(email: "ada@example.com", password: "correct horse battery", name: "Ada")
        let token = try await Self.signIn(a.service)
        #expect(!(await Self.accepted(token, by: b.service)), "signed by a key b never published")
        let parts = token.split(separator: ".")
        let noKid = TokenForger.base64URL(#"{"alg":"ES256","typ":"JWT"}"#) + "." + parts[1] + "." + parts[2]
        #expect(!(await Self.accepted(noKid, by: a.service)))
    }

    @Test("two instances sharing the keys across a rotation: every token of either is accepted by both until it expires; the old key then leaves the key set")
    func rotationAcrossInstancesInMemory() async throws {
        let clock = ManualClock()
        let shared = InMemorySigningKeyStore()
        let users = IdentityStores.inMemory(clock: clock)
        var stores = users
        stores.signingKeys = shared
        let a = try await IdentityStack.make(store: .custom(stores), configuration: Self.configuration(clock: clock))
        let b = try await IdentityStack.make(store: .custom(stores), configuration: Self.configuration(clock: clock))
        try await Self.rotation(a, b, clock: clock)
    }

    /// The key test of contract §10: `a` and `b` share one store and `clock`; `a` rotates.
    static func rotation(_ a: IdentityStack, _ b: IdentityStack, clock: ManualClock) async throws {
        try await a.prepare()
        try await b.prepare()
        _ = try await a.service.register(email: "ada@example.com", password: "correct horse battery", name: "Ada")
        let old = try #require(try await a.signingKeyRecords().first?.kid)
        var issued: [(label: String, token: String, kid: String?)] = []
        func issue(_ label: String) async throws {
            for (name, stack) in [("a", a), ("b", b)] {
                let token = try await signIn(stack.service)
                issued.append(("\(label) by \(name)", token, try header(token).kid))
            }
        }
        func allAccepted(_ moment: String) async {
            for (label, token, _) in issued {
                #expect(await accepted(token, by: a.service), "\(label): accepted by a \(moment)")
                #expect(await accepted(token, by: b.service), "\(label): accepted by b \(moment)")
            }
        }

        try await issue("before the rotation")
        clock.advance(by: 60)
        let new = try #require(try await a.rotateSigningKeys(), "keys rotate makes a key")
        #expect(new.state == .next && new.activatesAt.timeIntervalSince(new.createdAt) >= 600)
        #expect(a.service.publishedSigningKeys().map(\.kid) == [old, new.kid], "published at once on the rotating instance")

        clock.advance(by: 300)
        try await issue("during the lead")
        #expect(issued.suffix(2).allSatisfy { $0.kid == old }, "the old key signs until the new one's activation")
        _ = try await b.maintainSigningKeys()  // b's background round
        #expect(b.service.publishedSigningKeys().map(\.kid) == [old, new.kid], "b publishes the new key before it signs")
        await allAccepted("during the lead")

        clock.advance(by: 299)
        try await issue("just before the switch")
        #expect(issued.suffix(2).allSatisfy { $0.kid == old })
        // The last tokens the old key signs: they expire a lifetime from now.
        let lastOldExpiry = Date(timeIntervalSince1970: clock.now().timeIntervalSince1970.rounded(.down) + 3600)
        let lastOld = issued.suffix(2).map(\.token)

        clock.advance(by: 2)
        try await issue("after the new key signs")
        #expect(issued.suffix(2).allSatisfy { $0.kid == new.kid }, "both instances sign with the new key from its activation")
        _ = try await a.maintainSigningKeys()
        _ = try await b.maintainSigningKeys()
        await allAccepted("after the switch")
        let retired = try #require(try await a.signingKeyRecords().first { $0.kid == old })
        #expect(retired.state == .retired)
        let until = try #require(retired.publishedUntil)

        #expect(until >= lastOldExpiry.addingTimeInterval(5), "published until its last token expired, leeway included")

        clock.set(lastOldExpiry.addingTimeInterval(4))
        _ = try await a.maintainSigningKeys()
        _ = try await b.maintainSigningKeys()
        for token in lastOld {
            #expect(await accepted(token, by: a.service), "the old key's last tokens until they expire")
            #expect(await accepted(token, by: b.service), "the old key's last tokens until they expire")
        }
        #expect(b.service.publishedSigningKeys().map(\.kid) == [old, new.kid])

        clock.set(until.addingTimeInterval(1))
        _ = try await a.maintainSigningKeys()
        _ = try await b.maintainSigningKeys()
        #expect(a.service.publishedSigningKeys().map(\.kid) == [new.kid], "the old key leaves the key set after its last token expired")
        #expect(b.service.publishedSigningKeys().map(\.kid) == [new.kid])
        #expect(try await a.signingKeyRecords().first { $0.kid == old }?.state == .gone)
        let fresh = try await signIn(b.service)
        #expect(try header(fresh).kid == new.kid)
        #expect(await accepted(fresh, by: a.service))
    }
}
