import Foundation
import IdentityDomain
import IdentityPorts
import IdentityTestSupport
import Testing
import IdentityAdapterSupport

@Suite("Revocations in memory: the set's rules, the message, the cache's order")
struct RevocationSetTests {
    let user = UserID(UUID())
    let until = Date(timeIntervalSince1970: 1_790_000_600)

    @Test("entries only add up: the higher cut-off and the later expiry win, in any order")
    func addsUp() {
        var set = RevocationSet()
        set.revokeAll(userID: user, belowVersion: 5, until: until)
        set.revokeAll(userID: user, belowVersion: 3, until: until.addingTimeInterval(60))
        #expect(set.isRevoked(jti: "x", userID: user, accountVersion: 4), "the lower cut-off does not undo the higher")
        #expect(!set.isRevoked(jti: "x", userID: user, accountVersion: 5), "the version the cut-off names works")
        #expect(set.purge(expiredBefore: until.addingTimeInterval(30)) == 0, "the later expiry is kept")
        set.revoke(jti: "t", userID: user, until: until)
        #expect(set.isRevoked(jti: "t", userID: user, accountVersion: 99), "a revoked jti is revoked at any version")
        #expect(set.count == 2)
    }

    @Test("the message's JSON: a token, a cut-off and a heartbeat, each with exactly its fields")
    func messageJSON() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let token = RevocationMessage(.token(jti: "j", userID: user, until: until), sequence: 7)
        #expect(String(decoding: try encoder.encode(token), as: UTF8.self)
                == #"{"expires_at_ms":1790000600000,"jti":"j","seq":7,"user_id":"\#(user)"}"#)
        let cutoff = RevocationMessage(.account(userID: user, belowVersion: 4, until: until), sequence: 8)
        #expect(String(decoding: try encoder.encode(cutoff), as: UTF8.self)
                == #"{"below_version":4,"expires_at_ms":1790000600000,"seq":8,"user_id":"\#(user)"}"#)
        #expect(String(decoding: try encoder.encode(RevocationMessage(heartbeat: 8)), as: UTF8.self) == #"{"last":8}"#)
        let decoded = try JSONDecoder().decode(RevocationMessage.self, from: Data(#"{"seq":8,"user_id":"\#(user)","below_version":4,"expires_at_ms":1790000600000}"#.utf8))
        #expect(decoded.revocation == .account(userID: user, belowVersion: 4, until: until))
        #expect(RevocationMessage(heartbeat: 3).revocation == nil, "a heartbeat revokes nothing")
        var bad = token
        bad.userID = "not-a-uuid"
        #expect(bad.revocation == nil, "nor does a message with a user that is not a UUID")
    }

    @Test("a cache answers only after a catch-up; in-order messages keep it answering")
    func inOrder() {
        let cache = CachedRevocations()
        #expect(cache.answer(jti: "a", userID: user, accountVersion: 1) == nil, "unsynchronised: ask the store")
        cache.synchronise(with: [RevocationMessage(.token(jti: "a", userID: user, until: until), sequence: 1)], upTo: 1)
        #expect(cache.answer(jti: "a", userID: user, accountVersion: 1) == true)
        #expect(cache.receive(RevocationMessage(.account(userID: user, belowVersion: 2, until: until), sequence: 2)) == .inOrder)
        #expect(cache.lastSequence == 2)
        #expect(cache.answer(jti: "b", userID: user, accountVersion: 1) == true, "the cut-off applies")
        #expect(cache.receive(RevocationMessage(heartbeat: 2)) == .inOrder, "a heartbeat at the place it has names nothing missing")
        #expect(cache.receive(RevocationMessage(.token(jti: "a", userID: user, until: until), sequence: 1)) == .inOrder,
                "a repeated message changes nothing")
        #expect(cache.isSynchronised)
    }

    @Test("a gap, or a heartbeat ahead, stops answers until the catch-up; nothing held is forgotten")
    func gaps() {
        let cache = CachedRevocations()
        cache.synchronise(with: [], upTo: 10)
        #expect(cache.receive(RevocationMessage(.token(jti: "late", userID: user, until: until), sequence: 12)) == .gap)
        #expect(cache.answer(jti: "late", userID: user, accountVersion: 1) == nil, "11 is missing: ask the store")
        cache.synchronise(with: [RevocationMessage(.token(jti: "eleven", userID: user, until: until), sequence: 11)], upTo: 11)
        #expect(cache.lastSequence == 12, "11 caught up, 12 already held: the place moves past both")
        #expect(cache.answer(jti: "late", userID: user, accountVersion: 1) == true)
        #expect(cache.answer(jti: "eleven", userID: user, accountVersion: 1) == true)
        #expect(cache.receive(RevocationMessage(heartbeat: 13)) == .gap, "a heartbeat naming 13 means one was lost")
        #expect(!cache.isSynchronised)
        cache.desynchronise()
        cache.synchronise(with: [], upTo: 13)
        #expect(cache.answer(jti: "late", userID: user, accountVersion: 1) == true, "a reconnect keeps what was held")
    }

    @Test("a silent feed stops answers after the silence limit; the next message resumes them")
    func silence() async throws {
        let cache = CachedRevocations(silenceLimit: .milliseconds(50))
        cache.synchronise(with: [], upTo: 0)
        #expect(cache.isSynchronised)
        #expect(await eventually { !cache.isSynchronised }, "nothing heard: not sure any more")
        #expect(cache.answer(jti: "x", userID: user, accountVersion: 1) == nil)
        cache.receive(RevocationMessage(heartbeat: 0))
        #expect(cache.answer(jti: "x", userID: user, accountVersion: 1) == false, "a heartbeat with nothing missing: sure again")
    }

    @Test("a message about an entry that lapsed before the last purge is not taken in")
    func lateAfterPurge() {
        let cache = CachedRevocations()
        cache.synchronise(with: [], upTo: 0)
        cache.purge(expiredBefore: until.addingTimeInterval(1))
        cache.receive(RevocationMessage(.token(jti: "old", userID: user, until: until), sequence: 1))
        #expect(cache.count == 0)
        #expect(cache.lastSequence == 1, "but its place counts")
    }
}
