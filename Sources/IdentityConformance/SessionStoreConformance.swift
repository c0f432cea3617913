public import IdentityPorts
import IdentityDomain
import Foundation
import Testing

/// The behaviour every `SessionStore` must show (contract §9): rotation, the grace rule, reuse
/// detection, idle and absolute lifetimes, one rotation out of simultaneous ones, listing,
/// ending one, the others or all, the purge, the account version a session stands on, a
/// session read with its account's current version, and the events each change writes to the
/// outbox (`session.started`, `session.ended`), and only those.
///
/// ```swift
/// @Test func conforms() async throws {
///     try await SessionStoreConformance { configuration in
///         let users = MyUserStore()
///         return (MySessionStore(outbox: users, configuration: configuration), users)
///     }.run()
/// }
/// ```
///
/// Every call of the factory must return an empty store that applies `configuration`, and
/// the account store whose outbox it writes its events to (and whose accounts
/// `sessionAndAccount(id:)` reads), holding no account and no event. The concurrent check runs 20
/// rotations at once: a store on a connection pool needs as many connections, or waits for
/// them within its deadline.
public struct SessionStoreConformance: Sendable {
    /// Makes a fresh, empty store with `configuration`, and the empty account store whose outbox
    /// it writes to.
    public typealias Factory = @Sendable (_ configuration: SessionConfiguration) async throws
        -> (store: any SessionStore, outbox: any UserRepository & EventOutbox)
    private let makeStores: Factory

    /// Creates the suite.
    public init(makeStore: @escaping Factory) {
        self.makeStores = makeStore
    }

    /// Runs every check, each on a fresh store.
    public func run() async throws {
        await Fixture.check("anOpenedSessionIsStoredAsGiven") { try await anOpenedSessionIsStoredAsGiven() }
        await Fixture.check("theCurrentDigestRotates") { try await theCurrentDigestRotates() }
        await Fixture.check("theDigestJustReplacedGetsTheStoredBlobWithinTheGrace") {
            try await theDigestJustReplacedGetsTheStoredBlobWithinTheGrace()
        }
        await Fixture.check("aReplayAfterTheGraceEndsTheSession") { try await aReplayAfterTheGraceEndsTheSession() }
        await Fixture.check("anOlderDigestEndsTheSession") { try await anOlderDigestEndsTheSession() }
        await Fixture.check("anEndedSessionNeverComesBack") { try await anEndedSessionNeverComesBack() }
        await Fixture.check("unknownDigestsChangeNothing") { try await unknownDigestsChangeNothing() }
        await Fixture.check("aSessionLapsesAfterItsIdleLifetime") { try await aSessionLapsesAfterItsIdleLifetime() }
        await Fixture.check("aSessionLapsesAfterItsAbsoluteLifetime") { try await aSessionLapsesAfterItsAbsoluteLifetime() }
        await Fixture.check("simultaneousRotationsWithOneDigestRotateOnce") { try await simultaneousRotationsWithOneDigestRotateOnce() }
        await Fixture.check("replacedDigestsAreKeptUpToTheConfiguredNumber") { try await replacedDigestsAreKeptUpToTheConfiguredNumber() }
        await Fixture.check("openSessionsAreListedNewestFirst") { try await openSessionsAreListedNewestFirst() }
        await Fixture.check("endingOneSessionNeedsItsOwner") { try await endingOneSessionNeedsItsOwner() }
        await Fixture.check("endingAllOrTheOthersEndsOnlyThose") { try await endingAllOrTheOthersEndsOnlyThose() }
        await Fixture.check("sessionsArePurgedOnceTheirLifetimeHasPassed") { try await sessionsArePurgedOnceTheirLifetimeHasPassed() }
        await Fixture.check("aRotationChecksAndStoresTheAccountVersion") { try await aRotationChecksAndStoresTheAccountVersion() }
        await Fixture.check("aSessionIsReadWithItsAccountsCurrentVersion") { try await aSessionIsReadWithItsAccountsCurrentVersion() }
        await Fixture.check("eventsLeaveInTheOrderOfTheirChanges") { try await eventsLeaveInTheOrderOfTheirChanges() }
    }

    private let now = Fixture.epoch
    private static let day: TimeInterval = 86_400

    /// Makes a fresh store and its outbox with `configuration`. Every session it opens has an
    /// account, at version 1, in the account store (`WithAccounts`).
    private func makeStore(_ configuration: SessionConfiguration) async throws -> (any SessionStore, EventLog) {
        let (store, log, accounts) = try await makeStoreAndAccounts(configuration)
        return (WithAccounts(store: store, accounts: accounts), log)
    }

    /// Makes a fresh store, its outbox and its account store with `configuration`.
    private func makeStoreAndAccounts(
        _ configuration: SessionConfiguration
    ) async throws -> (any SessionStore, EventLog, any UserRepository) {
        let (store, outbox) = try await makeStores(configuration)
        let log = EventLog(outbox: outbox)
        try await log.expect([], "a fresh outbox holds no event")
        return (store, log, outbox)
    }

    /// Opens a session of `user` at `time` on `accountVersion`, stored; returns it.
    private func open(
        _ store: any SessionStore, _ user: UserID, at time: Date, userAgent: String? = nil, clientAddress: String? = nil,
        accountVersion: Int64 = 1
    ) async throws -> Session {
        let session = Session.open(
            id: SessionID(UUID()), userID: user, refreshDigest: .random(), userAgent: userAgent, clientAddress: clientAddress,
            accountVersion: accountVersion, at: time
        )
        try await store.open(session)
        return session
    }

    /// Rotates `presented`, presented for session `id`, to a fresh digest at `time`; returns the
    /// outcome and the digest and blob offered.
    private func rotate(
        _ store: any SessionStore, _ id: SessionID, _ presented: RefreshDigest, at time: Date, accountVersion: Int64 = 1
    ) async throws -> (outcome: RotationOutcome, replacement: RefreshDigest, blob: Data) {
        let replacement = RefreshDigest.random()
        let blob = Data(RefreshDigest.random().bytes + [0x01])
        let outcome = try await store.rotate(
            session: id, presented: presented, replacement: replacement, graceBlob: blob, accountVersion: accountVersion, now: time
        )
        return (outcome, replacement, blob)
    }

    /// Rotates the current digest of `session` at `time` and requires a rotation; returns the
    /// session as rotated.
    private func mustRotate(
        _ store: any SessionStore, _ session: Session, at time: Date, accountVersion: Int64 = 1
    ) async throws -> Session {
        let (outcome, replacement, blob) = try await rotate(store, session.id, session.refreshDigest, at: time, accountVersion: accountVersion)
        guard case .rotated(let rotated) = outcome else {
            throw ConformanceFailure("the current digest rotates, got \(outcome)")
        }
        #expect(rotated.refreshDigest == replacement && rotated.graceBlob == blob && rotated.accountVersion == accountVersion)
        return rotated
    }

    private static func started(_ session: Session) -> WrittenEvent {
        WrittenEvent(.sessionStarted(userID: session.userID, sessionID: session.id), at: session.createdAt)
    }

    private static func ended(_ session: Session, _ reason: SessionEndReason, at time: Date) -> WrittenEvent {
        WrittenEvent(.sessionEnded(userID: session.userID, sessionID: session.id, reason: reason), at: time)
    }

    func anOpenedSessionIsStoredAsGiven() async throws {
        let (store, events) = try await makeStore(SessionConfiguration())
        let user = UserID(UUID())
        let session = try await open(
            store, user, at: now, userAgent: "Mozilla/5.0 (X11; Linux x86_64) Ünïcödé", clientAddress: "2001:db8::1", accountVersion: 7
        )
        let bare = try await open(store, user, at: now, accountVersion: 0)
        #expect(try await store.session(id: session.id) == session, "every field, instants to the millisecond, the account version")
        #expect(try await store.session(id: bare.id) == bare, "no user agent and no address are kept as none")
        #expect(try await store.session(id: SessionID(UUID())) == nil, "an unknown id has no session")
        try await events.expect([Self.started(session), Self.started(bare)],
                                "each opening wrote its session.started, at the session's opening, in the order they committed")
        await #expect(throws: SessionConflict.self, "a second session with the same id is refused") {
            try await store.open(Session.open(id: session.id, userID: user, refreshDigest: .random(), accountVersion: 1, at: now))
        }
        #expect(try await store.session(id: session.id) == session, "and the first is unchanged")
        try await events.expect([], "a refused opening wrote no event")
    }

    func theCurrentDigestRotates() async throws {
        let (store, events) = try await makeStore(SessionConfiguration())
        let opened = try await open(store, UserID(UUID()), at: now, userAgent: "agent")
        try await events.expect([Self.started(opened)], "the opening")
        let first = try await mustRotate(store, opened, at: now.addingTimeInterval(5.5))
        let at = now.addingTimeInterval(5.5).truncatedToMilliseconds
        #expect(first.previousDigest == opened.refreshDigest && first.rotatedAt == at && first.lastUsedAt == at && first.generation == 1,
                "the presented digest is the previous one, the rotation's instant is the last use")
        #expect(first.id == opened.id && first.createdAt == opened.createdAt && first.userAgent == "agent" && first.endedAt == nil)
        #expect(try await store.session(id: opened.id) == first, "the store holds what it returned")
        let second = try await mustRotate(store, first, at: now.addingTimeInterval(3600))
        #expect(second.generation == 2 && second.previousDigest == first.refreshDigest, "the new digest rotates in turn")
        #expect(try await store.session(id: opened.id) == second)
        try await events.expect([], "a rotation writes no event")
    }

    func theDigestJustReplacedGetsTheStoredBlobWithinTheGrace() async throws {
        let (store, events) = try await makeStore(SessionConfiguration(graceInterval: 10))
        let opened = try await open(store, UserID(UUID()), at: now)
        let rotated = try await mustRotate(store, opened, at: now.addingTimeInterval(1))
        try await events.expect([Self.started(opened)], "the opening only")
        for (offset, label) in [(1.0, "at once"), (6.0, "a few seconds later"), (11.0, "10 s after the rotation (the grace includes it)")] {
            let (outcome, offered, _) = try await rotate(store, opened.id, opened.refreshDigest, at: now.addingTimeInterval(offset), accountVersion: 3)
            #expect(outcome == .grace(rotated, blob: rotated.graceBlob ?? Data()),
                    "the replaced digest \(label) gets the blob stored with the current pair, the session unchanged")
            let (unstored, _, _) = try await rotate(store, opened.id, offered, at: now.addingTimeInterval(offset))
            #expect(unstored == .unknown, "the replacement offered with it was not stored")
        }
        #expect(try await store.session(id: opened.id) == rotated, "nothing changed: not the digest, not the last use, not the account version")
        try await events.expect([], "the grace writes no event")
        let next = try await mustRotate(store, rotated, at: now.addingTimeInterval(12))
        #expect(next.generation == 2, "the current digest still rotates")
    }

    func aReplayAfterTheGraceEndsTheSession() async throws {
        let (store, events) = try await makeStore(SessionConfiguration(graceInterval: 10))
        let user = UserID(UUID())
        let opened = try await open(store, user, at: now)
        let rotated = try await mustRotate(store, opened, at: now.addingTimeInterval(1))
        let late = now.addingTimeInterval(11.001)
        let (outcome, _, _) = try await rotate(store, opened.id, opened.refreshDigest, at: late, accountVersion: 3)
        let ended = rotated.ended(.reuse, at: late)
        #expect(outcome == .reused(ended),
                "the replaced digest a millisecond past the grace ends the session with reason reuse, on the version it stood on")
        #expect(try await store.session(id: opened.id) == ended)
        try await events.expect([Self.started(opened), Self.ended(opened, .reuse, at: late)],
                                "the reuse wrote session.ended (reuse), when it was seen")
        #expect(try await rotate(store, rotated.id, rotated.refreshDigest, at: late).outcome == .unknown, "its current token no longer works")
        #expect(try await rotate(store, opened.id, opened.refreshDigest, at: late).outcome == .unknown, "a second replay changes nothing more")
        #expect(try await store.sessions(of: user, now: late).isEmpty, "it is no longer listed")
        #expect(try await store.session(id: opened.id)?.endedAt == late.truncatedToMilliseconds, "it ended when the reuse was seen")
        try await events.expect([], "a session ends once: no second session.ended")
    }

    func anOlderDigestEndsTheSession() async throws {
        let (store, events) = try await makeStore(SessionConfiguration(graceInterval: 10))
        let opened = try await open(store, UserID(UUID()), at: now)
        let first = try await mustRotate(store, opened, at: now.addingTimeInterval(1))
        let second = try await mustRotate(store, first, at: now.addingTimeInterval(2))
        let (outcome, _, _) = try await rotate(store, opened.id, opened.refreshDigest, at: now.addingTimeInterval(3))
        #expect(outcome == .reused(second.ended(.reuse, at: now.addingTimeInterval(3))),
                "a digest older than the one just replaced is a reuse, even within seconds of the last rotation")
        #expect(try await rotate(store, second.id, second.refreshDigest, at: now.addingTimeInterval(3)).outcome == .unknown,
                "and the session's current digest no longer rotates")
        #expect(try await rotate(store, first.id, first.refreshDigest, at: now.addingTimeInterval(3)).outcome == .unknown,
                "nor does the one just replaced get the grace")
        try await events.expect([Self.started(opened), Self.ended(opened, .reuse, at: now.addingTimeInterval(3))],
                                "one session.ended (reuse), nothing for the refusals after it")
    }

    func anEndedSessionNeverComesBack() async throws {
        let (store, events) = try await makeStore(SessionConfiguration(graceInterval: 10))
        let user = UserID(UUID())
        let opened = try await open(store, user, at: now)
        let rotated = try await mustRotate(store, opened, at: now.addingTimeInterval(1))
        let ended = try await store.end(id: opened.id, userID: user, reason: .logout, now: now.addingTimeInterval(2))
        #expect(ended == rotated.ended(.logout, at: now.addingTimeInterval(2)))
        try await events.expect([Self.started(opened), Self.ended(opened, .logout, at: now.addingTimeInterval(2))],
                                "the logout wrote session.ended (logout)")
        for offset in [3.0, 5.0, 60.0, 40 * Self.day] {
            let time = now.addingTimeInterval(offset)
            #expect(try await rotate(store, rotated.id, rotated.refreshDigest, at: time).outcome == .unknown, "its current digest is refused")
            #expect(try await rotate(store, opened.id, opened.refreshDigest, at: time).outcome == .unknown,
                    "the replaced one gets no grace, and is no reuse to report either")
        }
        #expect(try await store.session(id: opened.id) == ended, "it keeps its first end and reason")
        #expect(try await store.end(id: opened.id, userID: user, reason: .revoked, now: now.addingTimeInterval(4)) == nil,
                "it cannot be ended again")
        #expect(try await store.endAll(userID: user, except: nil, reason: .passwordChange, now: now.addingTimeInterval(4)).isEmpty)
        #expect(try await store.session(id: opened.id) == ended)
        try await events.expect([], "nothing after the end wrote an event")
    }

    func unknownDigestsChangeNothing() async throws {
        let (store, events) = try await makeStore(SessionConfiguration())
        let user = UserID(UUID())
        let opened = try await open(store, user, at: now)
        let other = try await open(store, UserID(UUID()), at: now)
        let rotated = try await mustRotate(store, other, at: now.addingTimeInterval(1))
        try await events.expect([Self.started(opened), Self.started(other)], "the openings")
        for index in 0..<20 {
            let time = now.addingTimeInterval(2 + Double(index))
            let (outcome, replacement, _) = try await rotate(store, opened.id, .random(), at: time)
            #expect(outcome == .unknown, "a digest never issued is unknown")
            #expect(try await rotate(store, opened.id, replacement, at: time).outcome == .unknown,
                    "and the replacement offered with it was not stored")
            #expect(try await rotate(store, SessionID(UUID()), opened.refreshDigest, at: time).outcome == .unknown,
                    "a digest presented for a session that does not exist is unknown")
        }
        #expect(try await rotate(store, opened.id, rotated.refreshDigest, at: now.addingTimeInterval(30)).outcome == .unknown,
                "another session's current digest, presented for this one, is unknown")
        #expect(try await rotate(store, opened.id, other.refreshDigest, at: now.addingTimeInterval(30)).outcome == .unknown,
                "and so is a digest another session replaced: it is no reuse of this one")
        let zeros = try #require(RefreshDigest(Data(count: RefreshDigest.byteCount)))
        #expect(try await rotate(store, opened.id, zeros, at: now.addingTimeInterval(30)).outcome == .unknown)
        #expect(try await store.session(id: opened.id) == opened, "no session changed")
        #expect(try await store.session(id: other.id) == rotated, "no session changed")
        #expect(try await store.sessions(of: user, now: now.addingTimeInterval(30)) == [opened])
        try await events.expect([], "an unknown digest writes no event")
    }

    func aSessionLapsesAfterItsIdleLifetime() async throws {
        let (store, events) = try await makeStore(SessionConfiguration(idleLifetime: 30 * Self.day, absoluteLifetime: 90 * Self.day))
        let user = UserID(UUID())
        let opened = try await open(store, user, at: now)
        let idle = now.addingTimeInterval(30 * Self.day)
        #expect(try await store.sessions(of: user, now: idle).map(\.id) == [opened.id], "open through the last instant of its idle lifetime")
        let rotated = try await mustRotate(store, opened, at: idle)
        let lapsed = idle.addingTimeInterval(30 * Self.day + 0.001)
        #expect(try await store.sessions(of: user, now: lapsed).isEmpty, "a rotation moved the idle limit, which then passed")
        #expect(try await rotate(store, rotated.id, rotated.refreshDigest, at: lapsed).outcome == .unknown, "a session past its idle lifetime does not rotate")
        #expect(try await rotate(store, opened.id, opened.refreshDigest, at: lapsed).outcome == .unknown, "nor is a replay of it a reuse")
        #expect(try await store.end(id: opened.id, userID: user, reason: .logout, now: lapsed) == nil, "nor end: it has lapsed")
        #expect(try await store.endAll(userID: user, except: nil, reason: .revoked, now: lapsed).isEmpty)
        let stored = try await store.session(id: opened.id)
        #expect(stored == rotated, "a lapsed session is not ended (no reason): it is unchanged until it is purged")
        #expect(try await store.purgeExpired(now: lapsed) == 1)
        try await events.expect([Self.started(opened)], "lapsing, and the purge after it, wrote no event")
    }

    func aSessionLapsesAfterItsAbsoluteLifetime() async throws {
        let (store, events) = try await makeStore(SessionConfiguration(idleLifetime: 30 * Self.day, absoluteLifetime: 90 * Self.day))
        let user = UserID(UUID())
        var session = try await open(store, user, at: now)
        for day in [20.0, 40, 60, 80, 90] {
            session = try await mustRotate(store, session, at: now.addingTimeInterval(day * Self.day))
        }
        let end = now.addingTimeInterval(90 * Self.day)
        #expect(try await store.sessions(of: user, now: end).map(\.id) == [session.id], "open through its 90th day, used or not")
        let past = end.addingTimeInterval(0.001)
        #expect(try await store.sessions(of: user, now: past).isEmpty, "however recently it was used")
        #expect(try await rotate(store, session.id, session.refreshDigest, at: past).outcome == .unknown, "and no longer rotates")
        #expect(try await store.session(id: session.id) == session)
        try await events.expect([WrittenEvent(.sessionStarted(userID: user, sessionID: session.id), at: now)], "only the opening")
    }

    func simultaneousRotationsWithOneDigestRotateOnce() async throws {
        let (store, events) = try await makeStore(SessionConfiguration(graceInterval: 10))
        let opened = try await open(store, UserID(UUID()), at: now)
        let time = now.addingTimeInterval(1)
        let results = try await withThrowingTaskGroup(of: (RotationOutcome, RefreshDigest, Data).self) { group in
            for _ in 0..<20 {
                group.addTask {
                    let replacement = RefreshDigest.random()
                    let blob = Data(RefreshDigest.random().bytes)
                    let outcome = try await store.rotate(
                        session: opened.id, presented: opened.refreshDigest, replacement: replacement, graceBlob: blob, accountVersion: 1,
                        now: time
                    )
                    return (outcome, replacement, blob)
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        let winners = results.filter { if case .rotated = $0.0 { true } else { false } }
        guard winners.count == 1, let winner = winners.first, case .rotated(let rotated) = winner.0 else {
            Issue.record("exactly one of 20 simultaneous rotations with one digest rotates, got \(winners.count)")
            return
        }
        #expect(rotated.refreshDigest == winner.1 && rotated.graceBlob == winner.2 && rotated.generation == 1)
        let graces = results.filter { $0.0 == .grace(rotated, blob: winner.2) }
        #expect(graces.count == 19, "the other 19 get the winner's pair (its blob), not a rotation of their own nor a reuse")
        #expect(try await store.session(id: opened.id) == rotated, "as the winner stored it")
        try await events.expect([Self.started(opened)], "no rotation, grace or reuse event")
    }

    func replacedDigestsAreKeptUpToTheConfiguredNumber() async throws {
        let (store, events) = try await makeStore(SessionConfiguration(graceInterval: 10, replacedDigestsKept: 3))
        let opened = try await open(store, UserID(UUID()), at: now)
        var digests = [opened.refreshDigest]
        var session = opened
        for second in 1...5 {
            session = try await mustRotate(store, session, at: now.addingTimeInterval(Double(second)))
            digests.append(session.refreshDigest)
        }
        // Replaced: digests[0...4]; kept: the newest three, digests[2...4].
        let time = now.addingTimeInterval(6)
        #expect(try await rotate(store, opened.id, digests[0], at: time).outcome == .unknown, "a digest replaced before the kept ones is unknown")
        #expect(try await rotate(store, opened.id, digests[1], at: time).outcome == .unknown)
        #expect(try await store.session(id: opened.id) == session, "and changes nothing")
        try await events.expect([Self.started(opened)], "and writes no event")
        #expect(try await rotate(store, opened.id, digests[2], at: time).outcome == .reused(session.ended(.reuse, at: time)),
                "the oldest kept one is still recognised as a reuse")
        try await events.expect([Self.ended(opened, .reuse, at: time)], "which writes its session.ended")
    }

    func openSessionsAreListedNewestFirst() async throws {
        let (store, _) = try await makeStore(SessionConfiguration(idleLifetime: 30 * Self.day))
        let (user, other) = (UserID(UUID()), UserID(UUID()))
        let lapsed = try await open(store, user, at: now.addingTimeInterval(-31 * Self.day))
        let first = try await open(store, user, at: now, userAgent: "first")
        let second = try await open(store, user, at: now.addingTimeInterval(1), userAgent: "second")
        let third = try await open(store, user, at: now.addingTimeInterval(2), clientAddress: "192.0.2.1")
        let ended = try await open(store, user, at: now.addingTimeInterval(3))
        _ = try await open(store, other, at: now.addingTimeInterval(4))
        _ = try await store.end(id: ended.id, userID: user, reason: .logout, now: now.addingTimeInterval(5))
        let rotated = try await mustRotate(store, first, at: now.addingTimeInterval(6))
        let listed = try await store.sessions(of: user, now: now.addingTimeInterval(7))
        #expect(listed == [third, second, rotated],
                "open sessions of the user only, latest opened first, as stored (a rotation's last use shows)")
        #expect(!listed.contains { $0.id == lapsed.id || $0.id == ended.id })
        #expect(try await store.sessions(of: UserID(UUID()), now: now).isEmpty, "a user without sessions has none")
    }

    func endingOneSessionNeedsItsOwner() async throws {
        let (store, events) = try await makeStore(SessionConfiguration())
        let (user, intruder) = (UserID(UUID()), UserID(UUID()))
        let session = try await open(store, user, at: now)
        let kept = try await open(store, user, at: now.addingTimeInterval(1))
        try await events.expect([Self.started(session), Self.started(kept)], "the openings")
        let time = now.addingTimeInterval(2)
        #expect(try await store.end(id: session.id, userID: intruder, reason: .revoked, now: time) == nil,
                "another user's session cannot be ended")
        #expect(try await store.end(id: SessionID(UUID()), userID: user, reason: .revoked, now: time) == nil, "nor an unknown one")
        #expect(try await store.session(id: session.id) == session, "it is untouched")
        try await events.expect([], "and no event was written")
        let ended = try await store.end(id: session.id, userID: user, reason: .revoked, now: time)
        #expect(ended == session.ended(.revoked, at: time), "its owner ends it, with the reason and the instant")
        try await events.expect([Self.ended(session, .revoked, at: time)], "one session.ended with the reason given")
        #expect(try await store.sessions(of: user, now: time) == [kept], "only that one")
        #expect(try await rotate(store, session.id, session.refreshDigest, at: time).outcome == .unknown, "its token is refused")
        #expect(try await mustRotate(store, kept, at: time).generation == 1, "the other still rotates")
        try await events.expect([], "neither wrote an event")
    }

    func endingAllOrTheOthersEndsOnlyThose() async throws {
        let (store, events) = try await makeStore(SessionConfiguration())
        let (user, other) = (UserID(UUID()), UserID(UUID()))
        let a = try await open(store, user, at: now)
        let b = try await open(store, user, at: now.addingTimeInterval(1))
        let c = try await open(store, user, at: now.addingTimeInterval(2))
        let theirs = try await open(store, other, at: now.addingTimeInterval(3))
        try await events.expect([a, b, c, theirs].map(Self.started), "four openings")
        let time = now.addingTimeInterval(4)
        let others = try await store.endAll(userID: user, except: b.id, reason: .revoked, now: time)
        #expect(Set(others.map(\.id)) == [a.id, c.id] && others.count == 2, "all but the one excepted")
        #expect(others.allSatisfy { $0.endReason == .revoked && $0.endedAt == time.truncatedToMilliseconds })
        try await events.expect([Self.ended(a, .revoked, at: time), Self.ended(c, .revoked, at: time)],
                                "one session.ended per session ended, in any order", ordered: false)
        #expect(try await store.sessions(of: user, now: time) == [b])
        #expect(try await store.session(id: a.id) == a.ended(.revoked, at: time))
        let later = now.addingTimeInterval(5)
        let all = try await store.endAll(userID: user, except: nil, reason: .passwordChange, now: later)
        #expect(all == [b.ended(.passwordChange, at: later)], "all: the one left")
        try await events.expect([Self.ended(b, .passwordChange, at: later)], "its session.ended only")
        #expect(try await store.sessions(of: user, now: later).isEmpty)
        #expect(try await store.session(id: c.id)?.endReason == .revoked, "an ended session keeps its first reason")
        #expect(try await store.endAll(userID: user, except: nil, reason: .accountDeleted, now: later).isEmpty, "nothing is left to end")
        #expect(try await store.sessions(of: other, now: later) == [theirs], "another user's sessions are untouched")
        try await events.expect([], "ending nothing writes nothing")
    }

    func sessionsArePurgedOnceTheirLifetimeHasPassed() async throws {
        let (store, events) = try await makeStore(SessionConfiguration(idleLifetime: 10 * Self.day, absoluteLifetime: 20 * Self.day))
        let user = UserID(UUID())
        func day(_ days: Double) -> Date { now.addingTimeInterval(days * Self.day) }
        // Every session opens before any lapses, so that a store purging as it goes changes no count.
        let absolute = try await open(store, user, at: now)
        let idle = try await open(store, user, at: now.addingTimeInterval(1))
        let ended = try await open(store, user, at: now.addingTimeInterval(2))
        let live = try await open(store, user, at: now.addingTimeInterval(3))
        var absoluteNow = try await mustRotate(store, absolute, at: day(9))
        absoluteNow = try await mustRotate(store, absoluteNow, at: day(18))      // lapses at day 20
        let endedRotated = try await mustRotate(store, ended, at: day(9))         // lapses at day 19
        let endedNow = try await store.end(id: ended.id, userID: user, reason: .logout, now: day(9).addingTimeInterval(1))
        var liveNow = try await mustRotate(store, live, at: day(9))
        liveNow = try await mustRotate(store, liveNow, at: day(15))               // lapses at day 20 + 3 s
        // `idle` lapses at day 10 + 1 s.
        try await events.expect([absolute, idle, ended, live].map(Self.started) + [Self.ended(ended, .logout, at: day(9).addingTimeInterval(1))],
                                "the openings and the one end")

        #expect(try await store.purgeExpired(now: day(10)) == 0, "a session lasts through the last instant of its lifetime")
        #expect(try await store.purgeExpired(now: day(19)) == 1, "the idle one went")
        #expect(try await store.session(id: idle.id) == nil)
        #expect(try await rotate(store, idle.id, idle.refreshDigest, at: day(19)).outcome == .unknown)
        #expect(endedNow == endedRotated.ended(.logout, at: day(9).addingTimeInterval(1)))
        #expect(try await store.session(id: ended.id) == endedNow, "an ended session stays until it would have lapsed")
        #expect(try await store.purgeExpired(now: day(19).addingTimeInterval(0.001)) == 1, "then it goes")
        #expect(try await store.session(id: ended.id) == nil)
        #expect(try await rotate(store, ended.id, ended.refreshDigest, at: day(19)).outcome == .unknown, "its digests with it")
        #expect(try await store.purgeExpired(now: day(20).addingTimeInterval(0.001)) == 1, "the one past its absolute lifetime")
        #expect(try await store.session(id: absolute.id) == nil)
        #expect(try await store.session(id: live.id) == liveNow, "the open one stays")
        #expect(try await mustRotate(store, liveNow, at: day(20).addingTimeInterval(1)).generation == 3, "and still rotates")
        try await events.expect([], "a purge writes no event")
    }

    func aRotationChecksAndStoresTheAccountVersion() async throws {
        let (store, events, accounts) = try await makeStoreAndAccounts(SessionConfiguration(graceInterval: 10))
        var account = try Fixture.user("session-versions")
        try await accounts.insert(account, events: [])
        let opened = try await open(store, account.id, at: now, accountVersion: 4)
        #expect(try await store.session(id: opened.id)?.accountVersion == 4, "the version read with the password at the login")
        let first = try await mustRotate(store, opened, at: now.addingTimeInterval(1), accountVersion: 1)
        #expect(try await store.session(id: opened.id)?.accountVersion == 1, "the version the new pair was made for, the account's")

        _ = account.apply(name: try DisplayName("Renamed"), email: nil, passwordHash: nil, at: now.addingTimeInterval(2))
        try await accounts.update(account, expectedVersion: 1, events: [])
        let (stale, _, _) = try await rotate(store, first.id, first.refreshDigest, at: now.addingTimeInterval(3), accountVersion: 1)
        #expect(stale == .accountChanged(version: 2), "a pair made for a version the account has left: its version now")
        #expect(try await store.session(id: opened.id) == first, "and nothing changed")
        let second = try await mustRotate(store, first, at: now.addingTimeInterval(4), accountVersion: 2)
        #expect(second.generation == 2 && second.accountVersion == 2, "made again for that version, it rotates")
        let (ahead, _, _) = try await rotate(store, second.id, second.refreshDigest, at: now.addingTimeInterval(5), accountVersion: 3)
        #expect(ahead == .accountChanged(version: 2), "a version the account does not have yet is refused as well")

        #expect(try await rotate(store, first.id, first.refreshDigest, at: now.addingTimeInterval(5), accountVersion: 9).outcome
                    == .grace(second, blob: second.graceBlob ?? Data()), "the grace keeps the version, whatever is asked")
        #expect(try await rotate(store, opened.id, .random(), at: now.addingTimeInterval(5), accountVersion: 9).outcome == .unknown)
        #expect(try await store.session(id: opened.id)?.accountVersion == 2, "nor does an unknown digest change it")

        try await accounts.delete(id: account.id, events: [])
        let (gone, _, _) = try await rotate(store, second.id, second.refreshDigest, at: now.addingTimeInterval(6), accountVersion: 2)
        #expect(gone == .accountChanged(version: nil), "an account that is gone: no version, and no rotation")
        #expect(try await store.session(id: opened.id) == second)
        let reused = try await rotate(store, opened.id, opened.refreshDigest, at: now.addingTimeInterval(20), accountVersion: 9).outcome
        #expect(reused == .reused(second.ended(.reuse, at: now.addingTimeInterval(20))), "a reuse ends it on the version it stood on")
        try await events.expect([Self.started(opened), Self.ended(opened, .reuse, at: now.addingTimeInterval(20))],
                                "a refused rotation writes no event")
        let other = try await open(store, account.id, at: now.addingTimeInterval(21), accountVersion: Int64.max - 1)
        #expect(try await store.session(id: other.id)?.accountVersion == Int64.max - 1, "a version of 63 bits is kept whole")
    }

    func aSessionIsReadWithItsAccountsCurrentVersion() async throws {
        let (store, events, accounts) = try await makeStoreAndAccounts(SessionConfiguration())
        var account = try Fixture.user("session-reader")
        try await accounts.insert(account, events: [])
        let opened = try await open(store, account.id, at: now, accountVersion: 1)
        let orphan = try await open(store, UserID(UUID()), at: now, accountVersion: 3)
        #expect(try await store.sessionAndAccount(id: opened.id) == SessionAndAccount(session: opened, accountVersion: 1),
                "the session as stored, and its account's version")
        #expect(try await store.sessionAndAccount(id: orphan.id) == SessionAndAccount(session: orphan, accountVersion: nil),
                "a session whose account is not there: the session, and no version")
        #expect(try await store.sessionAndAccount(id: SessionID(UUID())) == nil, "an unknown id has no session")

        _ = account.apply(name: try DisplayName("Renamed"), email: nil, passwordHash: nil, at: now.addingTimeInterval(1))
        try await accounts.update(account, expectedVersion: 1, events: [])
        let rotated = try await mustRotate(store, opened, at: now.addingTimeInterval(2), accountVersion: 2)
        let changed = try await open(store, account.id, at: now.addingTimeInterval(3), accountVersion: 2)
        _ = account.apply(name: try DisplayName("Renamed again"), email: nil, passwordHash: nil, at: now.addingTimeInterval(4))
        try await accounts.update(account, expectedVersion: 2, events: [])
        #expect(try await store.sessionAndAccount(id: opened.id) == SessionAndAccount(session: rotated, accountVersion: 3),
                "the account's version now, beside the version of the session's last token")
        #expect(try await store.sessionAndAccount(id: changed.id)?.accountVersion == 3)

        let ended = try #require(try await store.end(id: changed.id, userID: account.id, reason: .logout, now: now.addingTimeInterval(5)))
        #expect(try await store.sessionAndAccount(id: changed.id) == SessionAndAccount(session: ended, accountVersion: 3),
                "an ended session is read too, as ended")
        try await accounts.delete(id: account.id, events: [])
        #expect(try await store.sessionAndAccount(id: opened.id) == SessionAndAccount(session: rotated, accountVersion: nil),
                "once the account is deleted its sessions are read with no version")
        try await events.expect(
            [Self.started(opened), Self.started(orphan), Self.started(changed), Self.ended(changed, .logout, at: now.addingTimeInterval(5))],
            "reading writes no event"
        )
    }

    func eventsLeaveInTheOrderOfTheirChanges() async throws {
        let (store, events) = try await makeStore(SessionConfiguration(graceInterval: 10))
        let (ada, bob) = (UserID(UUID()), UserID(UUID()))
        let first = try await open(store, ada, at: now)
        let second = try await open(store, bob, at: now.addingTimeInterval(1))
        _ = try await store.end(id: first.id, userID: ada, reason: .logout, now: now.addingTimeInterval(2))
        let third = try await open(store, ada, at: now.addingTimeInterval(3))
        let rotated = try await mustRotate(store, second, at: now.addingTimeInterval(4))
        _ = try await rotate(store, second.id, second.refreshDigest, at: now.addingTimeInterval(20))
        _ = try await store.endAll(userID: ada, except: nil, reason: .accountDeleted, now: now.addingTimeInterval(21))
        #expect(try await store.session(id: second.id) == rotated.ended(.reuse, at: now.addingTimeInterval(20)))
        try await events.expect([
            Self.started(first), Self.started(second), Self.ended(first, .logout, at: now.addingTimeInterval(2)), Self.started(third),
            Self.ended(second, .reuse, at: now.addingTimeInterval(20)), Self.ended(third, .accountDeleted, at: now.addingTimeInterval(21)),
        ], "one outbox, in the order the changes committed, each event with an id of its own")
    }
}

/// A session store whose sessions all have an account: `open` registers one for the session's
/// user first (version 1, no event), as a login has one, so that a rotation on version 1
/// finds its account.
private struct WithAccounts: SessionStore {
    let store: any SessionStore
    let accounts: any UserRepository

    func open(_ session: Session) async throws {
        if try await accounts.user(id: session.userID) == nil {
            try await accounts.registerAccount(session.userID, at: session.createdAt)
        }
        try await store.open(session)
    }

    func rotate(
        session id: SessionID, presented: RefreshDigest, replacement: RefreshDigest, graceBlob: Data, accountVersion: Int64,
        revokingUntil: Date?, now: Date
    ) async throws -> RotationOutcome {
        try await store.rotate(
            session: id, presented: presented, replacement: replacement, graceBlob: graceBlob, accountVersion: accountVersion,
            revokingUntil: revokingUntil, now: now
        )
    }

    func session(id: SessionID) async throws -> Session? { try await store.session(id: id) }
    func sessionAndAccount(id: SessionID) async throws -> SessionAndAccount? { try await store.sessionAndAccount(id: id) }
    func sessions(of userID: UserID, now: Date) async throws -> [Session] { try await store.sessions(of: userID, now: now) }
    func end(id: SessionID, userID: UserID, reason: SessionEndReason, now: Date) async throws -> Session? {
        try await store.end(id: id, userID: userID, reason: reason, now: now)
    }
    func endAll(userID: UserID, except: SessionID?, reason: SessionEndReason, now: Date) async throws -> [Session] {
        try await store.endAll(userID: userID, except: except, reason: reason, now: now)
    }
    func purgeExpired(now: Date) async throws -> Int { try await store.purgeExpired(now: now) }
}

/// An event as the suite expects it: what happened and when (ids are the store's).
struct WrittenEvent: Equatable, CustomStringConvertible {
    let payload: IdentityEvent.Payload
    let occurredAt: Date

    init(_ payload: IdentityEvent.Payload, at occurredAt: Date) {
        self.payload = payload
        self.occurredAt = occurredAt.truncatedToMilliseconds
    }

    var description: String { "\(payload) at \(occurredAt.epochMilliseconds)" }
}

/// Reads what a store wrote to its outbox since the last look.
struct EventLog {
    let outbox: any EventOutbox

    /// Requires the events written since the last call to be `expected` (in that order unless
    /// `ordered` is false), each with an id of its own, and marks them published.
    func expect(
        _ expected: [WrittenEvent], _ comment: Comment, ordered: Bool = true, sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        let entries = try await outbox.pending(limit: 10_000)
        try await outbox.markPublished(entries.map(\.sequence))
        let written = entries.map { WrittenEvent($0.event.payload, at: $0.event.occurredAt) }
        if ordered {
            #expect(written == expected, comment, sourceLocation: sourceLocation)
        } else {
            #expect(written.map(\.description).sorted() == expected.map(\.description).sorted(), comment, sourceLocation: sourceLocation)
        }
        #expect(Set(entries.map(\.event.eventID)).count == entries.count, "every event has an id of its own", sourceLocation: sourceLocation)
        #expect(entries.map(\.sequence) == entries.map(\.sequence).sorted(), "in sequence order", sourceLocation: sourceLocation)
    }
}

/// A check that could not go on; recorded by `Fixture.check` with its name.
struct ConformanceFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
