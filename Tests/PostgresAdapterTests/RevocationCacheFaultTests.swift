import Foundation
import IdentityDomain
import IdentityTestSupport
@testable import PostgresAdapter
import PostgresNIO
import Testing

/// The revocation cache with its listening connection through a `FaultProxy`, broken the way
/// networks break, while another instance (a store on a direct connection) writes revocations.
/// The cache's own pool (its base store, its heartbeats) goes straight to the server: only the
/// feed is faulty, the case where an instance could wrongly believe it has heard everything.
@Suite("PostgreSQL revocation cache on a faulty link", .enabled(if: TestDatabase.isConfigured, TestDatabase.skipReason))
struct RevocationCacheFaultTests {
    typealias Caches = PostgresRevocationCacheTests.Caches

    /// Runs `body` with a cache listening through a fresh proxy; afterwards the proxy is cut
    /// first, so that stopping the cache never waits on a held link.
    static func withProxiedCache(_ body: (Caches, FaultProxy, PostgresRevocationCache) async throws -> Void) async throws {
        let proxy = try await FaultProxy.start(forwardingTo: TestDatabase.host, port: TestDatabase.port)
        do {
            try await PostgresRevocationCacheTests.with { caches in
                let cache = try await caches.start(listeningThrough: proxy.port)
                do {
                    try await body(caches, proxy, cache)
                    try await proxy.cut()
                } catch {
                    try? await proxy.cut()
                    throw error
                }
            }
            await proxy.stop()
        } catch {
            await proxy.stop()
            throw error
        }
    }

    /// Pauses the link and waits until the cache stops answering from memory; that happens
    /// while its connection is still open (the cache has not closed it: no close is held at the
    /// proxy), so by the silence limit (1 s), not by giving up the connection (3 s). Meanwhile the
    /// server keeps sending: heartbeats, with nothing revoked, held at the proxy.
    static func pauseUntilUnsynchronised(_ proxy: FaultProxy, _ cache: PostgresRevocationCache) async throws {
        try await proxy.pause()
        #expect(await eventually(within: 10) { (try? await proxy.heldBytes(from: .server)) ?? 0 > 0 },
                "heartbeats keep coming for the listening connection (held at the proxy)")
        #expect(await eventually(within: 10) { !cache.isSynchronised }, "no heartbeat arrives: the cache stops answering from memory")
        #expect(try await proxy.heldCloses() == 0, "before it gives up the silent connection")
    }

    /// Another instance's revocation, written while the cache cannot hear: refused at once
    /// (from the database), and held in memory once the cache has caught up.
    static func revocationMeanwhile(_ caches: Caches, _ cache: PostgresRevocationCache) async throws -> UserID {
        let user = UserID(UUID())
        try await PostgresRevocationStore(client: caches.client).revoke(jti: "meanwhile", userID: user, until: Date().addingTimeInterval(600))
        #expect(try await cache.isRevoked(jti: "meanwhile", userID: user, accountVersion: 1),
                "a revocation the cache cannot have heard of is honoured: it asks the database")
        #expect(try await !cache.isRevoked(jti: "other", userID: user, accountVersion: 1))
        return user
    }

    /// The cache is synchronised again and answers the revocation from memory (rows deleted).
    static func heldInMemory(_ caches: Caches, _ cache: PostgresRevocationCache, _ user: UserID) async throws {
        #expect(await eventually(within: 60) { cache.isSynchronised && cache.count == 1 },
                "synchronised again, holding the revocation (synchronised: \(cache.isSynchronised), \(cache.count) held)")
        try await caches.client.query("DELETE FROM identity_revoked_tokens")
        // The rows are gone, so only memory can say yes. On a loaded machine a late heartbeat
        // may send the cache to the database for a moment (short silence limit here, for the
        // pause): it answers from memory again once the next heartbeat arrives.
        #expect(await eventually(within: 30) { (try? await cache.isRevoked(jti: "meanwhile", userID: user, accountVersion: 1)) ?? false },
                "answered from memory")
    }

    @Test("a paused link (up, silent): answers come from the database within about a second; after resume the cache holds what it missed")
    func paused() async throws {
        try await Self.withProxiedCache { caches, proxy, cache in
            try await Self.pauseUntilUnsynchronised(proxy, cache)
            let user = try await Self.revocationMeanwhile(caches, cache)
            try await proxy.resume()
            try await Self.heldInMemory(caches, cache, user)
        }
    }

    @Test("a link paused past three silence limits: the cache drops it and connects again, and catches up once the link resumes")
    func pausedUntilReconnect() async throws {
        try await Self.withProxiedCache { caches, proxy, cache in
            // Under load the cache may already have reconnected once before the pause (a late
            // heartbeat), so count from what the proxy has seen so far.
            let before = try await proxy.acceptedConnections()
            #expect(before >= 1)
            try await Self.pauseUntilUnsynchronised(proxy, cache)
            let user = try await Self.revocationMeanwhile(caches, cache)
            #expect(await eventually(within: 30) { (try? await proxy.acceptedConnections()) ?? 0 > before },
                    "the cache gives up the silent connection and opens another (held too)")
            #expect(try await proxy.heldCloses() >= 1, "it closed the silent one")
            #expect(!cache.isSynchronised)
            #expect(try await cache.isRevoked(jti: "meanwhile", userID: user, accountVersion: 1))
            try await proxy.resume()
            try await Self.heldInMemory(caches, cache, user)
        }
    }

    @Test("a link that goes silent again and again: after each connection that had caught up, the cache connects again after the shortest wait")
    func repeatedSilence() async throws {
        try await Self.withProxiedCache { _, proxy, cache in
            for round in 1...2 {
                try await proxy.pause()
                #expect(await eventually(within: 30) { cache.reconnects.count == round }, "round \(round): the cache drops the silent connection")
                #expect(cache.reconnects.lastWait == .milliseconds(100),
                        "round \(round): the backoff starts again after a connection that had caught up (waited \(String(describing: cache.reconnects.lastWait)))")
                try await proxy.resume()
                #expect(await eventually(within: 30) { cache.isSynchronised }, "round \(round): the next connection catches up")
            }
        }
    }

    @Test("a cut link: answers come from the database, and after the link is restored the cache reconnects and holds what it missed")
    func cut() async throws {
        try await Self.withProxiedCache { caches, proxy, cache in
            try await proxy.cut()
            #expect(await eventually(within: 10) { !cache.isSynchronised }, "the cache notices its connection closed")
            let user = try await Self.revocationMeanwhile(caches, cache)
            try await proxy.restore()
            try await Self.heldInMemory(caches, cache, user)
        }
    }
}
