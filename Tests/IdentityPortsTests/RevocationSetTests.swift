import Foundation
import Synchronization
import IdentityDomain
import IdentityPorts
import Testing

@Suite("Revocation set and messages")
struct RevocationSetTests {
    let user = UserID(UUID())
    let now = Date(timeIntervalSince1970: 1_790_000_000.250)

    @Test("a message is the documented JSON document, both ways")
    func wireForm() throws {
        let token = RevocationMessage(jti: "j1", userID: user, expiresAt: now)
        let json = try JSONSerialization.jsonObject(with: JSONEncoder().encode(token)) as? [String: Any]
        #expect(json?["jti"] as? String == "j1" && json?["user_id"] as? String == user.description)
        #expect((json?["expires_at_ms"] as? NSNumber)?.int64Value == 1_790_000_000_250 && json?["cutoff_ms"] == nil)
        let cutoff = try JSONDecoder().decode(
            RevocationMessage.self, from: Data(#"{"user_id":"\#(user)","cutoff_ms":5,"expires_at_ms":7}"#.utf8)
        )
        #expect(cutoff == RevocationMessage(
            userID: user, issuedBefore: Date(timeIntervalSince1970: 0.005), until: Date(timeIntervalSince1970: 0.007)
        ))
    }

    @Test("applying messages: tokens and cut-offs add up; a message naming no user, or nothing, changes nothing")
    func apply() throws {
        var set = RevocationSet()
        let tokenApplied = set.apply(RevocationMessage(jti: "j1", userID: user, expiresAt: now))
        let cutoffApplied = set.apply(RevocationMessage(userID: user, issuedBefore: now, until: now.addingTimeInterval(60)))
        #expect(tokenApplied && cutoffApplied)
        #expect(set.isRevoked(jti: "j1", userID: UserID(UUID()), issuedAt: now.addingTimeInterval(10)))
        #expect(set.isRevoked(jti: "other", userID: user, issuedAt: now))
        #expect(!set.isRevoked(jti: "other", userID: user, issuedAt: now.addingTimeInterval(0.001)))
        var noUser = RevocationMessage(jti: "j2", userID: user, expiresAt: now)
        noUser.userID = "not-a-uuid"
        var nothing = RevocationMessage(jti: "j3", userID: user, expiresAt: now)
        nothing.jti = nil
        let refused = (set.apply(noUser), set.apply(nothing))
        #expect(refused == (false, false))
        #expect(set.count == 2)
        let purged = set.purge(expiredBefore: now.addingTimeInterval(1))
        #expect(purged == 1, "the token lapsed, the cut-off lasts")
    }
}

@Suite("Cached revocations")
struct CachedRevocationsTests {
    let user = UserID(UUID())
    let now = Date(timeIntervalSince1970: 1_790_000_000)

    @Test("no answer until synchronised, none after a lost feed; the count reaches the gauge after every change")
    func synchronisation() {
        let counts = Mutex<[Int]>([])
        let cache = CachedRevocations { count in counts.withLock { $0.append(count) } }
        cache.apply(RevocationMessage(jti: "mine", userID: user, expiresAt: now.addingTimeInterval(60)))
        #expect(cache.answer(jti: "mine", userID: user, issuedAt: now) == nil, "unsynchronised: ask the store")
        let snapshot = RevocationSnapshot(tokens: [.init(jti: "old", userID: user, expiresAt: now.addingTimeInterval(60))])
        #expect(!cache.synchronise(with: snapshot) { false }, "a feed lost meanwhile leaves it unsynchronised")
        #expect(cache.answer(jti: "old", userID: user, issuedAt: now) == nil)
        #expect(cache.synchronise(with: snapshot))
        #expect(cache.answer(jti: "old", userID: user, issuedAt: now) == true)
        #expect(cache.answer(jti: "mine", userID: user, issuedAt: now) == true, "what it held before is kept")
        #expect(cache.answer(jti: "other", userID: user, issuedAt: now) == false)
        cache.desynchronise()
        #expect(!cache.isSynchronised && cache.count == 0)
        #expect(cache.answer(jti: "old", userID: user, issuedAt: now) == nil)
        #expect(counts.withLock { $0 } == [0, 1, 2, 2, 0])
    }

    @Test("a purge drops what expired, and a message about such an entry that comes later is not taken in")
    func purge() {
        let cache = CachedRevocations()
        cache.synchronise(with: RevocationSnapshot())
        cache.apply(RevocationMessage(jti: "short", userID: user, expiresAt: now.addingTimeInterval(-1)))
        cache.purge(expiredBefore: now)
        #expect(cache.count == 0)
        #expect(cache.apply(RevocationMessage(jti: "late", userID: user, expiresAt: now.addingTimeInterval(-1))))
        #expect(cache.count == 0 && cache.answer(jti: "late", userID: user, issuedAt: now) == false)
        cache.apply(RevocationMessage(jti: "live", userID: user, expiresAt: now.addingTimeInterval(60)))
        #expect(cache.answer(jti: "live", userID: user, issuedAt: now) == true)
    }
}
