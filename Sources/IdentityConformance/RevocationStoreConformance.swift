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
        try await revokedTokenIsRevoked()
        try await cutoffRevokesOnlyEarlierTokens()
        try await laterCutoffWins()
        try await expiredEntriesArePurged()
        try await snapshotListsWhatHasNotExpired()
    }

    private let now = Fixture.epoch

    func revokedTokenIsRevoked() async throws {
        let store = try await makeStore()
        let user = UserID(UUID())
        try await store.revoke(jti: "a", userID: user, expiresAt: now.addingTimeInterval(3600))
        try await store.revoke(jti: "a", userID: user, expiresAt: now.addingTimeInterval(3600))
        #expect(try await store.isRevoked(jti: "a", userID: user, issuedAt: now), "a revoked jti is revoked (twice is fine)")
        #expect(try await !store.isRevoked(jti: "b", userID: user, issuedAt: now), "another jti of the same user is not")
    }

    func cutoffRevokesOnlyEarlierTokens() async throws {
        let store = try await makeStore()
        let user = UserID(UUID())
        let other = UserID(UUID())
        try await store.revokeAll(userID: user, issuedBefore: now, until: now.addingTimeInterval(3600))
        #expect(try await store.isRevoked(jti: "x", userID: user, issuedAt: now.addingTimeInterval(-0.001)),
                "a token issued a millisecond before the cut-off is revoked")
        #expect(try await store.isRevoked(jti: "y", userID: user, issuedAt: now),
                "a token issued in the very millisecond of the cut-off is revoked (the safe side)")
        #expect(try await !store.isRevoked(jti: "z", userID: user, issuedAt: now.addingTimeInterval(0.001)),
                "a token issued a millisecond after the cut-off, within the same second, is not")
        #expect(try await !store.isRevoked(jti: "x", userID: other, issuedAt: now.addingTimeInterval(-10)),
                "another user's tokens are untouched")
    }

    func laterCutoffWins() async throws {
        let store = try await makeStore()
        let user = UserID(UUID())
        try await store.revokeAll(userID: user, issuedBefore: now.addingTimeInterval(10), until: now.addingTimeInterval(3600))
        try await store.revokeAll(userID: user, issuedBefore: now, until: now.addingTimeInterval(3600))
        #expect(try await store.isRevoked(jti: "x", userID: user, issuedAt: now.addingTimeInterval(5)),
                "an earlier cut-off does not undo a later one")
    }

    func expiredEntriesArePurged() async throws {
        let store = try await makeStore()
        let user = UserID(UUID())
        try await store.revoke(jti: "short", userID: user, expiresAt: now.addingTimeInterval(60))
        try await store.revoke(jti: "long", userID: user, expiresAt: now.addingTimeInterval(7200))
        try await store.revokeAll(userID: user, issuedBefore: now, until: now.addingTimeInterval(60))
        let purged = try await store.purgeExpired(now: now.addingTimeInterval(120))
        #expect(purged == 2, "the expired token entry and the expired cut-off are purged")
        #expect(try await store.isRevoked(jti: "long", userID: user, issuedAt: now), "an unexpired entry stays")
        #expect(try await !store.isRevoked(jti: "short", userID: user, issuedAt: now.addingTimeInterval(-1)),
                "a purged entry no longer counts (its token has expired anyway)")
    }

    /// For stores that are also `RevocationSnapshotting` (a cache can start from them).
    func snapshotListsWhatHasNotExpired() async throws {
        guard let store = try await makeStore() as? any RevocationSnapshotting else { return }
        let user = UserID(UUID())
        let other = UserID(UUID())
        try await store.revoke(jti: "gone", userID: user, expiresAt: now.addingTimeInterval(-1))
        try await store.revoke(jti: "kept", userID: user, expiresAt: now.addingTimeInterval(600))
        try await store.revokeAll(userID: other, issuedBefore: now.addingTimeInterval(-5), until: now.addingTimeInterval(600))
        try await store.revokeAll(userID: user, issuedBefore: now, until: now.addingTimeInterval(-1))
        let snapshot = try await store.snapshot(now: now)
        #expect(snapshot.tokens == [.init(jti: "kept", userID: user, expiresAt: now.addingTimeInterval(600))])
        #expect(snapshot.cutoffs == [.init(userID: other, issuedBefore: now.addingTimeInterval(-5), until: now.addingTimeInterval(600))],
                "expired entries are left out; cut-offs keep millisecond precision")
    }
}
