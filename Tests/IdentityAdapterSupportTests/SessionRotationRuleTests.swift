import Foundation
import IdentityDomain
import IdentityPorts
import Testing
import IdentityAdapterSupport

@Suite("The session rotation rule and lifetimes, on values (no store)")
struct SessionRotationRuleTests {
    let configuration = SessionConfiguration(idleLifetime: 3600, absoluteLifetime: 7200, graceInterval: 10)
    let start = Date(timeIntervalSince1970: 1_790_000_000.123)

    func session() -> Session {
        Session.open(id: SessionID(UUID()), userID: UserID(UUID()), refreshDigest: .random(), accountVersion: 3, at: start.addingTimeInterval(0.0004))
    }

    @Test("a session is open through the last millisecond of its idle and of its absolute lifetime, whichever comes first")
    func lifetimes() {
        var session = session()
        #expect(session.createdAt == start, "opened to the millisecond")
        #expect(configuration.expiry(of: session) == start.addingTimeInterval(3600))
        #expect(configuration.isOpen(session, at: start.addingTimeInterval(3600.0009)), "the same millisecond")
        #expect(!configuration.isOpen(session, at: start.addingTimeInterval(3600.001)))
        session = session.rotated(to: .random(), graceBlob: Data([1]), accountVersion: 4, at: start.addingTimeInterval(5000))
        #expect(configuration.expiry(of: session) == start.addingTimeInterval(7200), "the absolute lifetime comes first")
        #expect(!configuration.isOpen(session.ended(.logout, at: start.addingTimeInterval(5001)), at: start.addingTimeInterval(5002)),
                "an ended session is not open")
    }

    /// The rule for `presented` on `session`, kept or not, the account at `account` (nil: gone),
    /// the pair made for `expected`.
    func rotation(
        of session: Session, _ presented: RefreshDigest, isKept: Bool = false, account: Int? = 4, expected: Int64 = 4,
        replacement: RefreshDigest = .random(), graceBlob: Data = Data(), at now: Date
    ) -> SessionRotation {
        configuration.rotation(
            of: session, presented: presented, isKept: isKept, accountVersion: account, replacement: replacement, graceBlob: graceBlob,
            expectedAccountVersion: expected, now: now
        )
    }

    @Test("the current digest rotates; the one just replaced gets the blob within the grace; any other kept digest ends the session")
    func rule() throws {
        let opened = session()
        let (first, second, third) = (RefreshDigest.random(), RefreshDigest.random(), RefreshDigest.random())
        let at = start.addingTimeInterval(60)
        let rotation = rotation(of: opened, opened.refreshDigest, replacement: first, graceBlob: Data([1]), at: at)
        let rotated = try #require(rotation.stored)
        #expect(rotation.outcome == .rotated(rotated))
        #expect(rotated.refreshDigest == first && rotated.previousDigest == opened.refreshDigest && rotated.generation == 1)
        #expect(rotated.lastUsedAt == at.truncatedToMilliseconds && rotated.rotatedAt == at.truncatedToMilliseconds)
        #expect(opened.accountVersion == 3 && rotated.accountVersion == 4, "a rotation stands on the version its pair was made for")
        #expect(rotation.outcome.events().isEmpty, "a rotation is no event")

        for (offset, label) in [(-5.0, "a clock behind the rotating one"), (0, "at once"), (10, "the last millisecond of the grace")] {
            let grace = self.rotation(of: rotated, opened.refreshDigest, isKept: true, account: 9, expected: 9, at: at.addingTimeInterval(offset))
            #expect(grace == SessionRotation(stored: nil, outcome: .grace(rotated, blob: Data([1]))), "\(label)")
            #expect(grace.outcome.events().isEmpty, "the grace changes nothing: no event")
        }
        let late = at.addingTimeInterval(10.001)
        let reuse = self.rotation(of: rotated, opened.refreshDigest, isKept: true, account: 9, expected: 9, at: late)
        #expect(reuse == SessionRotation(stored: rotated.ended(.reuse, at: late), outcome: .reused(rotated.ended(.reuse, at: late))),
                "the session ends on the version it stood on, not the one offered with the replay")
        let reuseEvents = reuse.outcome.events()
        #expect(reuseEvents.map(\.payload) == [.sessionEnded(userID: opened.userID, sessionID: opened.id, reason: .reuse)])
        #expect(reuseEvents.map(\.occurredAt) == [late.truncatedToMilliseconds], "a reuse's event, when it was seen")

        let twice = rotated.rotated(to: third, graceBlob: Data([3]), accountVersion: 5, at: at.addingTimeInterval(1))
        let older = self.rotation(of: twice, opened.refreshDigest, isKept: true, at: at.addingTimeInterval(2))
        #expect(older.outcome == .reused(twice.ended(.reuse, at: at.addingTimeInterval(2))), "older than the one just replaced")
        #expect(self.rotation(of: twice, opened.refreshDigest, isKept: false, at: at.addingTimeInterval(2)).outcome == .unknown,
                "a digest the store no longer keeps (or never had) is unknown, the session unchanged")
        #expect(self.rotation(of: twice, second, at: at.addingTimeInterval(2)).outcome == .unknown)

        let ended = rotated.ended(.logout, at: at.addingTimeInterval(1))
        for presented in [ended.refreshDigest, opened.refreshDigest] {
            #expect(self.rotation(of: ended, presented, isKept: true, at: at.addingTimeInterval(2)) == SessionRotation(stored: nil, outcome: .unknown),
                    "an ended session changes no more")
        }
        let lapsed = at.addingTimeInterval(3600.001)
        #expect(self.rotation(of: rotated, first, at: lapsed).outcome == .unknown)
    }

    @Test("the current digest rotates only on the account's version: another version, or none (gone), is answered with what the account has")
    func accountVersion() {
        let opened = session()
        let at = start.addingTimeInterval(60)
        #expect(rotation(of: opened, opened.refreshDigest, account: 5, expected: 4, at: at) == SessionRotation(stored: nil, outcome: .accountChanged(version: 5)))
        #expect(rotation(of: opened, opened.refreshDigest, account: 3, expected: 4, at: at).outcome == .accountChanged(version: 3))
        #expect(rotation(of: opened, opened.refreshDigest, account: nil, expected: 4, at: at).outcome == .accountChanged(version: nil))
        #expect(RotationOutcome.accountChanged(version: 5).events().isEmpty, "and nothing changed: no event")
        let ended = opened.ended(.passwordChange, at: at)
        #expect(rotation(of: ended, opened.refreshDigest, account: 5, expected: 4, at: at).outcome == .unknown,
                "an ended session is unknown, whatever its account")
    }

    @Test("a session's events: started at its opening, ended at its end with its reason, each with an id of its own")
    func events() throws {
        let opened = session()
        let started = opened.startedEvent()
        #expect(started.payload == .sessionStarted(userID: opened.userID, sessionID: opened.id) && started.occurredAt == opened.createdAt)
        #expect(started.type == "session.started" && started.userID == opened.userID)
        #expect(opened.startedEvent().eventID != started.eventID, "a fresh id each time")
        #expect(opened.endedEvent() == nil, "an open session has no end to report")
        let at = start.addingTimeInterval(30.0005)
        for reason in SessionEndReason.allCases {
            let ended = try #require(opened.ended(reason, at: at).endedEvent())
            #expect(ended.payload == .sessionEnded(userID: opened.userID, sessionID: opened.id, reason: reason))
            #expect(ended.occurredAt == at.truncatedToMilliseconds && ended.type == "session.ended")
        }
        #expect(RotationOutcome.unknown.events().isEmpty)
    }

    @Test("replaced digests kept: at least one, whatever is asked")
    func keptAtLeastOne() {
        var configuration = SessionConfiguration(replacedDigestsKept: 0)
        #expect(configuration.replacedDigestsKept == 1)
        configuration.replacedDigestsKept = -3
        #expect(configuration.replacedDigestsKept == 1)
    }

    @Test("a digest is 32 bytes and prints none of them")
    func digest() {
        #expect(RefreshDigest(Data(count: 31)) == nil && RefreshDigest(Data(count: 33)) == nil)
        let digest = RefreshDigest.random()
        #expect(digest.bytes.count == 32 && digest != RefreshDigest.random())
        #expect("\(digest)" == "RefreshDigest(…)")
    }
}
