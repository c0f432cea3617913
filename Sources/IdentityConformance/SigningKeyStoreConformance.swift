public import IdentityPorts
import Foundation
import Testing

/// The behaviour every `SigningKeyStore` must show (contract §10): records kept exactly (the
/// sealed private key as opaque bytes), commits all or nothing, and a compare-and-swap on the
/// revision, so that two instances rotating at once make one new key.
///
/// ```swift
/// @Test func conforms() async throws {
///     try await SigningKeyStoreConformance { MySigningKeyStore() }.run()
/// }
/// ```
/// Each call of the factory must give an empty store. The race checks share one store between
/// concurrent tasks, as two instances share one database.
public struct SigningKeyStoreConformance: Sendable {
    /// Makes a fresh, empty store.
    public typealias Factory = @Sendable () async throws -> any SigningKeyStore
    private let makeStore: Factory

    /// Creates the suite.
    public init(makeStore: @escaping Factory) {
        self.makeStore = makeStore
    }

    /// Runs every check, each on a fresh store.
    public func run() async throws {
        await Fixture.check("anEmptyStoreHasNoKeys") { try await anEmptyStoreHasNoKeys() }
        await Fixture.check("aRecordRoundTripsExactly") { try await aRecordRoundTripsExactly() }
        await Fixture.check("instantsAreKeptToTheMillisecond") { try await instantsAreKeptToTheMillisecond() }
        await Fixture.check("keysAreListedOldestFirst") { try await keysAreListedOldestFirst() }
        await Fixture.check("aCommitAppliesEveryChangeAndMovesTheRevision") { try await aCommitAppliesEveryChangeAndMovesTheRevision() }
        await Fixture.check("aStaleRevisionChangesNothing") { try await aStaleRevisionChangesNothing() }
        await Fixture.check("aChangeThatDoesNotFitAppliesNothing") { try await aChangeThatDoesNotFitAppliesNothing() }
        await Fixture.check("twoInstancesRotatingAtOnceMakeOneKey") { try await twoInstancesRotatingAtOnceMakeOneKey() }
        await Fixture.check("tenRacingCommitsOneWinsPerRevision") { try await tenRacingCommitsOneWinsPerRevision() }
    }

    /// Whole milliseconds: what every store keeps.
    private let now = Date(timeIntervalSince1970: 1_790_000_000.125)

    private func record(_ kid: String, state: SigningKeyState = .active, createdAt: Date? = nil) -> SigningKeyRecord {
        let created = createdAt ?? now
        return SigningKeyRecord(
            kid: kid, algorithm: "ES256", publicKey: Data((0..<64).map { UInt8($0) }),
            sealedPrivateKey: Data([1, 0, 0, 255, 0] + (0..<60).map { UInt8(255 - $0) }), state: state, createdAt: created,
            activatesAt: created.addingTimeInterval(600)
        )
    }

    func anEmptyStoreHasNoKeys() async throws {
        let store = try await makeStore()
        #expect(try await store.keySet().keys.isEmpty, "a new store holds no key")
    }

    func aRecordRoundTripsExactly() async throws {
        let store = try await makeStore()
        var key = record("k-1", state: .retired)
        key.algorithm = "EdDSA"
        key.publicKey = Data(repeating: 0, count: 32)
        key.retiredAt = now.addingTimeInterval(3600.5)
        key.publishedUntil = now.addingTimeInterval(7210.75)
        var next = record("k-2", state: .next, createdAt: now.addingTimeInterval(1))
        next.sealedPrivateKey = Data()
        let revision = try await store.keySet().revision
        #expect(try await store.commit([.insert(key), .insert(next)], expectedRevision: revision), "a commit on the current revision applies")
        let stored = try await store.keySet().keys
        #expect(stored == [key, next], "every field comes back as written: the sealed key byte for byte (zeros too), the instants to the millisecond, nil stays nil")
    }

    func instantsAreKeptToTheMillisecond() async throws {
        let store = try await makeStore()
        var key = record("k", state: .retired, createdAt: Date(timeIntervalSince1970: 1_790_000_000.1239))
        key.activatesAt = Date(timeIntervalSince1970: 1_790_000_600.9996)
        key.retiredAt = Date(timeIntervalSince1970: 1_790_003_600.0004)
        key.publishedUntil = Date(timeIntervalSince1970: 1_790_007_200.5555)
        #expect(try await store.commit([.insert(key)], expectedRevision: try await store.keySet().revision))
        var expected = key
        expected.createdAt = Date(timeIntervalSince1970: 1_790_000_000.123)
        expected.activatesAt = Date(timeIntervalSince1970: 1_790_000_600.999)
        expected.retiredAt = Date(timeIntervalSince1970: 1_790_003_600)
        expected.publishedUntil = Date(timeIntervalSince1970: 1_790_007_200.555)
        #expect(try await store.keySet().keys == [expected], "instants come back rounded down to the millisecond, the rest as written")
    }

    func keysAreListedOldestFirst() async throws {
        let store = try await makeStore()
        let keys = [record("c", createdAt: now.addingTimeInterval(20)), record("b", createdAt: now), record("a", createdAt: now)]
        let revision = try await store.keySet().revision
        #expect(try await store.commit(keys.map { .insert($0) }, expectedRevision: revision))
        #expect(try await store.keySet().keys.map(\.kid) == ["a", "b", "c"], "oldest first; the kid decides between equals")
    }

    func aCommitAppliesEveryChangeAndMovesTheRevision() async throws {
        let store = try await makeStore()
        let first = try await store.keySet().revision
        #expect(try await store.commit([.insert(record("old")), .insert(record("current", createdAt: now.addingTimeInterval(1)))],
                                       expectedRevision: first))
        let second = try await store.keySet()
        #expect(second.revision != first, "a commit moves the revision")
        var retired = record("current", createdAt: now.addingTimeInterval(1))
        retired.state = .retired
        retired.retiredAt = now.addingTimeInterval(700)
        retired.publishedUntil = now.addingTimeInterval(4310)
        let fresh = record("new", state: .next, createdAt: now.addingTimeInterval(2))
        #expect(try await store.commit([.delete(kid: "old"), .update(retired), .insert(fresh)], expectedRevision: second.revision))
        let third = try await store.keySet()
        #expect(third.keys == [retired, fresh], "a delete, an update and an insert in one commit all apply")
        #expect(third.revision != second.revision && third.revision != first, "and the revision moves again, never back")
        #expect(try await store.commit([], expectedRevision: third.revision), "an empty commit on the current revision succeeds")
    }

    func aStaleRevisionChangesNothing() async throws {
        let store = try await makeStore()
        let read = try await store.keySet()
        #expect(try await store.commit([.insert(record("first"))], expectedRevision: read.revision))
        let after = try await store.keySet()
        #expect(try await !store.commit([.insert(record("second"))], expectedRevision: read.revision),
                "a commit on a revision read before another commit is refused")
        #expect(try await store.keySet() == after, "and it changed nothing, not even the revision")
    }

    func aChangeThatDoesNotFitAppliesNothing() async throws {
        let store = try await makeStore()
        let start = try await store.keySet().revision
        #expect(try await store.commit([.insert(record("k"))], expectedRevision: start))
        let before = try await store.keySet()
        for changes: [SigningKeyChange] in [
            [.insert(record("fresh")), .insert(record("k"))],
            [.insert(record("fresh")), .update(record("missing"))],
            [.insert(record("fresh")), .delete(kid: "missing")],
        ] {
            await #expect(throws: SigningKeyConflict.self, "a duplicate insert, or an update or delete of a missing key, throws") {
                _ = try await store.commit(changes, expectedRevision: before.revision)
            }
            #expect(try await store.keySet() == before, "and nothing of that commit was applied")
        }
    }

    func twoInstancesRotatingAtOnceMakeOneKey() async throws {
        let store = try await makeStore()
        // Both read the same (empty) set, both decide a key is missing, both commit one.
        let seen = try await store.keySet()
        async let first = store.commit([.insert(record("instance-a"))], expectedRevision: seen.revision)
        async let second = store.commit([.insert(record("instance-b"))], expectedRevision: seen.revision)
        let outcomes = try await [first, second]
        #expect(outcomes.filter { $0 }.count == 1, "exactly one of two racing commits on one revision applies: \(outcomes)")
        let keys = try await store.keySet().keys
        #expect(keys.count == 1, "one new key, not two")
        #expect(keys.first?.kid == (outcomes[0] ? "instance-a" : "instance-b"), "the key of the commit that was told it applied")
    }

    func tenRacingCommitsOneWinsPerRevision() async throws {
        let store = try await makeStore()
        let seen = try await store.keySet()
        let wins = try await withThrowingTaskGroup(of: Bool.self) { group in
            for index in 0..<10 {
                group.addTask { try await store.commit([.insert(record("racer-\(index)"))], expectedRevision: seen.revision) }
            }
            return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(wins == 1, "ten instances committing on one revision: one applies (\(wins) did)")
        #expect(try await store.keySet().keys.count == 1)
    }
}
