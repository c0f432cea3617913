public import IdentityPorts
import IdentityDomain
import Foundation
import Testing

/// The behaviour every `RevocationStore` must show.
///
/// ```swift
/// @Test func conforms() async throws {
///     try await RevocationStoreConformance { MyRevocationStore() }.run()
/// }
/// ```
public struct RevocationStoreConformance: Sendable {
    /// Makes a fresh, empty store.
    public typealias Factory = @Sendable () async throws -> any RevocationStore
    private let makeStore: Factory

    /// Creates the suite.
    public init(makeStore: @escaping Factory) {
        self.makeStore = makeStore
    }

    /// Runs every check, each on a fresh store.
    public func run() async throws {
        await Fixture.check("revokedTokenIsRevoked") { try await revokedTokenIsRevoked() }
        await Fixture.check("cutoffRevokesOnlyOlderVersions") { try await cutoffRevokesOnlyOlderVersions() }
        await Fixture.check("higherCutoffWins") { try await higherCutoffWins() }
        await Fixture.check("expiredEntriesArePurged") { try await expiredEntriesArePurged() }
        await Fixture.check("snapshotListsWhatHasNotExpired") { try await snapshotListsWhatHasNotExpired() }
    }

    private let now = Fixture.epoch

    func revokedTokenIsRevoked() async throws {
        let store = try await makeStore()
        let user = UserID(UUID())
        try await store.revoke(jti: "a", userID: user, until: now.addingTimeInterval(3600))
        try await store.revoke(jti: "a", userID: user, until: now.addingTimeInterval(3600))
        #expect(try await store.isRevoked(jti: "a", userID: user, accountVersion: 1), "a revoked jti is revoked (twice is fine)")
        #expect(try await !store.isRevoked(jti: "b", userID: user, accountVersion: 1), "another jti of the same user is not")
    }

    func cutoffRevokesOnlyOlderVersions() async throws {
        let store = try await makeStore()
        let user = UserID(UUID())
        let other = UserID(UUID())
        let gone = UserID(UUID())
        try await store.revokeAll(userID: user, belowVersion: 3, until: now.addingTimeInterval(3600))
        try await store.revokeAll(userID: gone, belowVersion: Revocation.everyVersion, until: now.addingTimeInterval(3600))
        #expect(try await store.isRevoked(jti: "x", userID: user, accountVersion: 2), "a token of an older version is revoked")
        #expect(try await store.isRevoked(jti: "w", userID: user, accountVersion: 0), "so is a token that carries no version (0)")
        #expect(try await !store.isRevoked(jti: "y", userID: user, accountVersion: 3),
                "a token of the version the cut-off names works (issued after the change, whatever the clocks say)")
        #expect(try await !store.isRevoked(jti: "z", userID: user, accountVersion: 4), "and so does a later one")
        #expect(try await !store.isRevoked(jti: "x", userID: other, accountVersion: 1), "another user's tokens are untouched")
        #expect(try await store.isRevoked(jti: "v", userID: gone, accountVersion: Int64(Int32.max)),
                "a deleted account's cut-off revokes every version")
    }

    func higherCutoffWins() async throws {
        let store = try await makeStore()
        let user = UserID(UUID())
        try await store.revokeAll(userID: user, belowVersion: 7, until: now.addingTimeInterval(3600))
        try await store.revokeAll(userID: user, belowVersion: 4, until: now.addingTimeInterval(60))
        #expect(try await store.isRevoked(jti: "x", userID: user, accountVersion: 5), "a lower cut-off does not undo a higher one")
        #expect(try await store.purgeExpired(now: now.addingTimeInterval(120)) == 0, "nor does its shorter life shorten the entry")
        #expect(try await store.isRevoked(jti: "x", userID: user, accountVersion: 6))
    }

    func expiredEntriesArePurged() async throws {
        let store = try await makeStore()
        let user = UserID(UUID())
        try await store.revoke(jti: "short", userID: user, until: now.addingTimeInterval(60))
        try await store.revoke(jti: "long", userID: user, until: now.addingTimeInterval(7200))
        try await store.revokeAll(userID: user, belowVersion: 2, until: now.addingTimeInterval(60))
        #expect(try await store.purgeExpired(now: now.addingTimeInterval(60)) == 0, "an entry lasts through its `until` instant")
        let purged = try await store.purgeExpired(now: now.addingTimeInterval(120))
        #expect(purged == 2, "the expired token entry and the expired cut-off are purged")
        #expect(try await store.isRevoked(jti: "long", userID: user, accountVersion: 2), "an unexpired entry stays")
        #expect(try await !store.isRevoked(jti: "short", userID: user, accountVersion: 1),
                "a purged entry no longer counts (its token has expired anyway)")
    }

    /// For stores that are also `RevocationSnapshotting` (a cache can start from them).
    func snapshotListsWhatHasNotExpired() async throws {
        guard let store = try await makeStore() as? any RevocationSnapshotting else { return }
        let user = UserID(UUID())
        let other = UserID(UUID())
        try await store.revoke(jti: "gone", userID: user, until: now.addingTimeInterval(-1))
        try await store.revoke(jti: "kept", userID: user, until: now.addingTimeInterval(600))
        try await store.revokeAll(userID: other, belowVersion: 5, until: now.addingTimeInterval(600))
        try await store.revokeAll(userID: user, belowVersion: 9, until: now.addingTimeInterval(-1))
        let snapshot = try await store.snapshot(now: now)
        #expect(snapshot.tokens == [.init(jti: "kept", userID: user, expiresAt: now.addingTimeInterval(600))])
        #expect(snapshot.cutoffs == [.init(userID: other, belowVersion: 5, until: now.addingTimeInterval(600))],
                "expired entries are left out")
    }
}
