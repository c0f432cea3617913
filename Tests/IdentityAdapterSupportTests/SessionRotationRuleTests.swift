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
        Session.open(id: SessionID(UUID()), userID: UserID(UUID()), refreshDigest: .random(), at: start.addingTimeInterval(0.0004))
    }

    @Test("a session is open through the last millisecond of its idle and of its absolute lifetime, whichever comes first")
    func lifetimes() {
        var session = session()
        #expect(session.createdAt == start, "opened to the millisecond")
        #expect(configuration.expiry(of: session) == start.addingTimeInterval(3600))
        #expect(configuration.isOpen(session, at: start.addingTimeInterval(3600.0009)), "the same millisecond")
        #expect(!configuration.isOpen(session, at: start.addingTimeInterval(3600.001)))
        session = session.rotated(to: .random(), graceBlob: Data([1]), at: start.addingTimeInterval(5000))
        #expect(configuration.expiry(of: session) == start.addingTimeInterval(7200), "the absolute lifetime comes first")
        #expect(!configuration.isOpen(session.ended(.logout, at: start.addingTimeInterval(5001)), at: start.addingTimeInterval(5002)),
                "an ended session is not open")
    }

    @Test("the current digest rotates; the one just replaced gets the blob within the grace; any other replaced digest ends the session")
    func rule() throws {
        let opened = session()
        let (first, second, third) = (RefreshDigest.random(), RefreshDigest.random(), RefreshDigest.random())
        let at = start.addingTimeInterval(60)
        let rotation = configuration.rotation(of: opened, presented: opened.refreshDigest, replacement: first, graceBlob: Data([1]), now: at)
        let rotated = try #require(rotation.stored)
        #expect(rotation.outcome == .rotated(rotated))
        #expect(rotated.refreshDigest == first && rotated.previousDigest == opened.refreshDigest && rotated.generation == 1)
        #expect(rotated.lastUsedAt == at.truncatedToMilliseconds && rotated.rotatedAt == at.truncatedToMilliseconds)

        for (offset, label) in [(-5.0, "a clock behind the rotating one"), (0, "at once"), (10, "the last millisecond of the grace")] {
            let grace = configuration.rotation(
                of: rotated, presented: opened.refreshDigest, replacement: second, graceBlob: Data([2]), now: at.addingTimeInterval(offset)
            )
            #expect(grace == SessionRotation(stored: nil, outcome: .grace(rotated, blob: Data([1]))), "\(label)")
        }
        let late = at.addingTimeInterval(10.001)
        let reuse = configuration.rotation(of: rotated, presented: opened.refreshDigest, replacement: second, graceBlob: Data([2]), now: late)
        #expect(reuse == SessionRotation(stored: rotated.ended(.reuse, at: late), outcome: .reused(rotated.ended(.reuse, at: late))))

        let twice = rotated.rotated(to: third, graceBlob: Data([3]), at: at.addingTimeInterval(1))
        let older = configuration.rotation(of: twice, presented: opened.refreshDigest, replacement: second, graceBlob: Data(), now: at.addingTimeInterval(2))
        #expect(older.outcome == .reused(twice.ended(.reuse, at: at.addingTimeInterval(2))), "older than the one just replaced")

        let ended = rotated.ended(.logout, at: at.addingTimeInterval(1))
        for presented in [ended.refreshDigest, opened.refreshDigest] {
            #expect(configuration.rotation(of: ended, presented: presented, replacement: second, graceBlob: Data(), now: at.addingTimeInterval(2))
                    == SessionRotation(stored: nil, outcome: .unknown), "an ended session changes no more")
        }
        let lapsed = at.addingTimeInterval(3600.001)
        #expect(configuration.rotation(of: rotated, presented: first, replacement: second, graceBlob: Data(), now: lapsed).outcome == .unknown)
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
