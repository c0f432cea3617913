@testable import CryptoAdapter
import Crypto
import Foundation
import IdentityDomain
import IdentityPorts
import InMemoryAdapter
import Synchronization
import Testing

/// A store that counts reads and can be made to fail, around an in-memory one.
final class ObservedKeyStore: SigningKeyStore {
    let inner = InMemorySigningKeyStore()
    private let state = Mutex((reads: 0, failing: false))

    var reads: Int { state.withLock { $0.reads } }
    func fail(_ failing: Bool) { state.withLock { $0.failing = failing } }

    func keySet() async throws -> SigningKeySet {
        let failing = state.withLock { state -> Bool in
            state.reads += 1
            return state.failing
        }
        if failing { throw StoreDown() }
        return inner.keySet()
    }

    func commit(_ changes: [SigningKeyChange], expectedRevision: Int64) async throws -> Bool {
        try inner.commit(changes, expectedRevision: expectedRevision)
    }

    struct StoreDown: Error {}
}

@Suite("Signing key rotation")
struct SigningKeyRotationTests {
    let now = Date(timeIntervalSince1970: 1_790_000_000)
    let day: TimeInterval = 86_400

    func policy(_ algorithm: JWTAlgorithm = .es256) throws -> SigningKeyPolicy {
        try SigningKeyPolicy(algorithm: algorithm, tokenLifetime: 3600, leeway: 5)
    }

    func key(_ kid: String, _ state: SigningKeyState, created: Date, activates: Date? = nil, algorithm: String = "ES256") -> SigningKeyRecord {
        SigningKeyRecord(kid: kid, algorithm: algorithm, publicKey: Data(), sealedPrivateKey: Data([1]), state: state, createdAt: created,
                         activatesAt: activates ?? created)
    }

    @Test("the rule: a first key signs at once; a due key gets a successor 600 s ahead; on demand too, unless one waits")
    func creation() throws {
        let policy = try policy()
        #expect(policy.plan([], now: now) == [.create(activatesAt: now)], "the first key has nothing to replace")
        let active = key("a", .active, created: now)
        #expect(policy.plan([active], now: now.addingTimeInterval(29 * day)) == [], "a key younger than the interval less the lead stays")
        let due = now.addingTimeInterval(30 * day - 600)
        #expect(policy.plan([active], now: due) == [.create(activatesAt: due.addingTimeInterval(600))],
                "its successor is made 600 s before the interval ends, and signs 600 s later")
        #expect(policy.plan([active], now: now.addingTimeInterval(60), rotateNow: true) == [.create(activatesAt: now.addingTimeInterval(660))],
                "on demand: published now, signing in 600 s")
        let waiting = key("b", .next, created: now.addingTimeInterval(60), activates: now.addingTimeInterval(660))
        #expect(policy.plan([active, waiting], now: now.addingTimeInterval(120), rotateNow: true) == [], "one waiting key is enough")
        #expect(throws: TokenConfigurationError.self) { try SigningKeyPolicy(algorithm: .es256, tokenLifetime: 3600, leeway: 5, publicationLead: 599) }
        #expect(throws: TokenConfigurationError.self) { try SigningKeyPolicy(algorithm: .hs256, tokenLifetime: 3600, leeway: 5) }
    }

    @Test("the rule: the successor is promoted at its instant, the old key retires then and stays published through its last token's expiry")
    func promotionAndRetirement() throws {
        let policy = try policy()
        let old = key("a", .active, created: now)
        let new = key("b", .next, created: now.addingTimeInterval(100), activates: now.addingTimeInterval(700))
        #expect(policy.signingKey(in: [old, new], now: now.addingTimeInterval(699))?.kid == "a")
        #expect(policy.signingKey(in: [old, new], now: now.addingTimeInterval(700))?.kid == "b",
                "every instance switches at the successor's instant, promoted or not")
        #expect(policy.published([old, new], now: now.addingTimeInterval(101)).map(\.kid) == ["a", "b"], "a waiting key is published")
        let until = now.addingTimeInterval(700 + 3600 + 15)
        #expect(policy.plan([old, new], now: now.addingTimeInterval(750)) == [
            .retire(kid: "a", retiredAt: now.addingTimeInterval(700), publishedUntil: until), .promote(kid: "b"),
        ])
        var retired = old
        retired.state = .retired
        retired.retiredAt = now.addingTimeInterval(700)
        retired.publishedUntil = until
        var promoted = new
        promoted.state = .active
        #expect(policy.published([retired, promoted], now: until).map(\.kid) == ["a", "b"], "published through publishedUntil")
        #expect(policy.published([retired, promoted], now: until.addingTimeInterval(0.001)).map(\.kid) == ["b"], "and not after")
        #expect(policy.plan([retired, promoted], now: until) == [])
        #expect(policy.plan([retired, promoted], now: until.addingTimeInterval(1)) == [.unpublish(kid: "a")])
        var gone = retired
        gone.state = .gone
        #expect(policy.plan([gone, promoted], now: until.addingTimeInterval(7 * day + 1)) == [.delete(kid: "a")])
        let changes = policy.changes(applying: [.unpublish(kid: "a")], to: [retired, promoted], created: nil)
        guard case .update(let erased)? = changes.first else {
            Issue.record("unpublishing updates the record")
            return
        }
        #expect(erased.state == .gone && erased.sealedPrivateKey.isEmpty, "a gone key's private key is erased")
    }

    @Test("the rule: keys of another algorithm are unpublished at once and a key of the configured one signs at once")
    func algorithmChange() throws {
        let policy = try policy(.eddsa)
        let es = key("a", .active, created: now)
        #expect(policy.plan([es], now: now.addingTimeInterval(60)) == [.unpublish(kid: "a"), .create(activatesAt: now.addingTimeInterval(60))])
        #expect(policy.published([es], now: now).isEmpty)
    }

    @Test("two instances rotating at once on one store make one key; on demand, one successor", arguments: JWTAlgorithm.asymmetric)
    func racingRotators(algorithm: JWTAlgorithm) async throws {
        let store = InMemorySigningKeyStore()
        let clock = ManualClock(now)
        let a = try await KeyPairInstance.make(algorithm, store: store, clock: clock, rotate: false)
        let b = try await KeyPairInstance.make(algorithm, store: store, clock: clock, rotate: false)
        async let first = a.rotator.rotate()
        async let second = b.rotator.rotate()
        let steps = try await [first, second]
        #expect(store.keySet().keys.count == 1, "one key: \(steps)")
        clock.advance(by: 60)
        async let third = a.rotator.rotate(rotateNow: true)
        async let fourth = b.rotator.rotate(rotateNow: true)
        _ = try await [third, fourth]
        #expect(store.keySet().keys.map(\.state) == [.active, .next], "one successor, waiting")
    }

    @Test("a new key is learned without a restart: published before it signs, verified by another instance, old tokens still verify",
          arguments: JWTAlgorithm.asymmetric)
    func rotationAcrossInstances(algorithm: JWTAlgorithm) async throws {
        let store = ObservedKeyStore()
        let clock = ManualClock(now)
        let a = try await KeyPairInstance.make(algorithm, store: store, clock: clock)
        let b = try await KeyPairInstance.make(algorithm, store: store, clock: clock, rotate: false)
        // An instance that will not read the store again until a token names a kid it does not know.
        let c = try await KeyPairInstance.make(algorithm, store: store, clock: clock, rotate: false)
        let user = UserID(UUID())
        let old = try await a.service.issue(for: user, accountVersion: 1, issuedAt: clock.now())
        let oldKid = try #require(a.service.jwks().keys.first).kid
        clock.advance(by: 1800)
        try await a.rotator.rotate(rotateNow: true)
        clock.advance(by: 60)
        try await b.keys.refresh()
        #expect(b.service.jwks().keys.count == 2, "the successor is published (600 s ahead)")
        let stillOld = try await a.service.issue(for: user, accountVersion: 1, issuedAt: clock.now())
        #expect(try decodedParts(stillOld.token).header["kid"] as? String == oldKid, "and does not sign yet")
        clock.advance(by: 600)
        let fresh = try await a.service.issue(for: user, accountVersion: 1, issuedAt: clock.now())
        let freshKid = try decodedParts(fresh.token).header["kid"] as? String
        #expect(freshKid != oldKid, "600 s after it was published it signs, at once, before any rotation promotes it")
        _ = try await b.service.verify(fresh.token, now: clock.now())
        _ = try await b.service.verify(old.token, now: clock.now())
        try await a.rotator.rotate()
        try await b.keys.refresh()
        _ = try await b.service.verify(stillOld.token, now: stillOld.expiresAt.addingTimeInterval(5))
        #expect(b.service.jwks().keys.count == 2, "the retired key is still published while a token it signed lives")

        let reads = store.reads
        _ = try await c.service.verify(fresh.token, now: clock.now())
        #expect(store.reads == reads + 1, "an instance that had not read the store since learns the new key from the token's kid")
    }

    @Test("maintain rotates every interval and reads the keys again, until cancelled; a failed round does not stop it")
    func maintain() async throws {
        let store = ObservedKeyStore()
        let instance = try await KeyPairInstance.make(.es256, store: store)
        let rounds = Mutex(0)
        let errors = Mutex(0)
        // Each wait moves the clock 10 days on; the fifth ends the loop, as a cancelled sleep does.
        await instance.rotator.maintain(instance.keys, every: .seconds(60), onError: { _ in errors.withLock { $0 += 1 } }) { _ in
            let round = rounds.withLock { rounds -> Int in
                rounds += 1
                return rounds
            }
            if round == 2 { store.fail(true) }
            if round == 3 { store.fail(false) }
            if round == 5 { throw CancellationError() }
            instance.clock.advance(by: 10 * 86_400)
        }
        #expect(errors.withLock { $0 } == 1, "the round with the store down failed, and the loop went on")
        let keys = store.inner.keySet().keys
        #expect(keys.map(\.state) == [.gone, .active],
                "after 40 days the first key is replaced, and gone since its last token expired: \(keys.map(\.state))")
        #expect(instance.keys.current.revision == store.inner.keySet().revision, "and the keys were read again after the rotation")
    }

    @Test("an unknown kid reads the store again at most once per interval, so made-up kids cannot flood it")
    func unknownKidRateLimited() async throws {
        let store = ObservedKeyStore()
        let instance = try await KeyPairInstance.make(.es256, store: store)
        let (_, key) = try await instance.signingKey()
        let before = store.reads
        for index in 0..<50 {
            let token = try KeyPairInstance.token(header: #"{"alg":"ES256","kid":"made-up-\#(index)","typ":"JWT"}"#,
                                                  payload: KeyPairInstance.payload(now: instance.clock.now()), sign: key.sign)
            await #expect(throws: TokenRejected.unknownKey) { try await instance.service.verify(token, now: instance.clock.now()) }
        }
        #expect(store.reads == before + 1, "one read for fifty unknown kids")
    }

    @Test("with the store down, keys read less than 300 s ago still sign; older ones do not")
    func staleKeys() async throws {
        let store = ObservedKeyStore()
        let instance = try await KeyPairInstance.make(.eddsa, store: store)
        store.fail(true)
        instance.clock.advance(by: 120)
        _ = try await instance.service.issue(for: UserID(UUID()), accountVersion: 1, issuedAt: instance.clock.now())
        instance.clock.advance(by: 200)
        await #expect(throws: SigningKeyError.stale) {
            try await instance.service.issue(for: UserID(UUID()), accountVersion: 1, issuedAt: instance.clock.now())
        }
        store.fail(false)
        _ = try await instance.service.issue(for: UserID(UUID()), accountVersion: 1, issuedAt: instance.clock.now())
    }

    @Test("no token is ever refused because of a rotation: 70 days of automatic and on-demand rotations, every live token verifies",
          arguments: JWTAlgorithm.asymmetric)
    func noTokenRefusedByRotation(algorithm: JWTAlgorithm) async throws {
        let store = InMemorySigningKeyStore()
        let clock = ManualClock(now)
        let signer = try await KeyPairInstance.make(algorithm, store: store, clock: clock)
        let verifier = try await KeyPairInstance.make(algorithm, store: store, clock: clock, rotate: false)
        var live: [IssuedToken] = []
        var firstSigned: [String: Date] = [:]
        let step: TimeInterval = 2100
        for index in 0..<Int(70 * day / step) {
            clock.advance(by: step)
            try await signer.rotator.rotate(rotateNow: index % 700 == 350)
            if index % 3 == 0 { try await verifier.keys.refresh() }
            let token = try await signer.service.issue(for: UserID(UUID()), accountVersion: 1, issuedAt: clock.now())
            let kid = try #require(try decodedParts(token.token).header["kid"] as? String)
            if firstSigned[kid] == nil { firstSigned[kid] = clock.now() }
            live.append(token)
            for token in live { _ = try await verifier.service.verify(token.token, now: clock.now()) }
            // A token about to leave its leeway is checked at its very last instant.
            let leaving = live.filter { $0.expiresAt.addingTimeInterval(5) < clock.now().addingTimeInterval(step) }
            for token in leaving { _ = try await verifier.service.verify(token.token, now: token.expiresAt.addingTimeInterval(5)) }
            live.removeAll { token in leaving.contains(token) }
        }
        let records = store.keySet().keys
        #expect(firstSigned.count >= 3, "keys rotated (\(firstSigned.count) signed)")
        #expect(records.count <= 4, "gone keys are deleted after their retention (\(records.count) kept)")
        for record in records where record.kid != records.first?.kid {
            if let signed = firstSigned[record.kid] {
                #expect(signed.timeIntervalSince(record.createdAt) >= 600, "\(record.kid) was published 600 s before it signed")
            }
        }
    }

    @Test("JWT_KEY_ENCRYPTION_KEY: missing or short is one clear configuration error; the wrong one cannot open the keys, and says so")
    func keyEncryptionKey() async throws {
        for (secret, expected) in [(nil, "JWT_KEY_ENCRYPTION_KEY is required"), ("", "JWT_KEY_ENCRYPTION_KEY is required"),
                                   ("short-but-secret-31-bytes-long!", "JWT_KEY_ENCRYPTION_KEY must be at least 32 bytes (got 31)")] as [(String?, String)] {
            do {
                _ = try KeyEncryptionKey(secret, for: .es256)
                Issue.record("\(expected): accepted")
            } catch let error as TokenConfigurationError {
                #expect(error.description.hasPrefix(expected), "\(error)")
                #expect(!error.description.contains("short-but-secret"), "the value is never echoed")
                #expect(!error.description.contains("\n"))
            }
        }
        #expect(throws: TokenConfigurationError.self) { try TokenConfiguration(secret: String(repeating: "s", count: 64), algorithm: .es256) }
        let store = InMemorySigningKeyStore()
        _ = try await KeyPairInstance.make(.es256, store: store)
        do {
            _ = try await KeyPairInstance.make(.es256, store: store, kekSecret: "another key-encryption key of 32 bytes or more", rotate: false)
            Issue.record("keys sealed under another key-encryption key opened")
        } catch let error as SigningKeyError {
            #expect(error.description.contains("JWT_KEY_ENCRYPTION_KEY is not the key it was sealed with"), "\(error)")
        }
    }

    @Test("the store sees only sealed private keys, each bound to its record")
    func sealing() async throws {
        let store = InMemorySigningKeyStore()
        let instance = try await KeyPairInstance.make(.eddsa, store: store)
        let record = try #require(store.keySet().keys.first)
        guard case .ed25519(let key) = try await instance.signingKey().key else {
            Issue.record("an Ed25519 key signs")
            return
        }
        #expect(record.sealedPrivateKey.range(of: key.rawRepresentation) == nil, "the private key is not in the record in the clear")
        let expectedSize = 1 + 12 + 32 + 16  // version, nonce, ciphertext, tag
        #expect(record.sealedPrivateKey.count == expectedSize)
        #expect(throws: SigningKeyError.self, "a sealed key moved onto another record does not open") {
            try instance.kek.open(record.sealedPrivateKey, kid: "another", algorithm: record.algorithm, publicKey: record.publicKey)
        }
        var altered = record.sealedPrivateKey
        altered[20] ^= 1
        #expect(throws: SigningKeyError.self) { try instance.kek.open(altered, kid: record.kid, algorithm: record.algorithm, publicKey: record.publicKey) }
        #expect("\(instance.kek)" == "KeyEncryptionKey(redacted)")
    }
}
