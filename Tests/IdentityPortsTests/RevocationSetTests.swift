import Foundation
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
