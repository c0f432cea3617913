import Crypto
import CryptoAdapter
import Foundation
import HTTPAdapter
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import IdentityApplication
import IdentityDomain
import IdentityPorts
import IdentityTestSupport
import InMemoryAdapter
import Synchronization
import Testing

@testable import IdentityVerifier

@Suite("Verifying our tokens in another service (IdentityVerifier)")
struct IdentityVerifierTests {
    /// A verifier of `server`'s tokens at `port`, on the server's clock.
    static func verifier(
        _ server: KeyServer, port: Int?, discovery: Bool = false, issuer: String = "identity",
        revocations: any RevocationStore = InMemoryRevocationStore()
    ) throws -> IdentityVerifier {
        let base = "http://127.0.0.1:\(port ?? 0)"
        let location: KeySetLocation = discovery ? .discovery(base) : .jwks(base + "/.well-known/jwks.json")
        let configuration = IdentityVerifierConfiguration(location: location, issuer: issuer, audience: "identity", algorithm: server.algorithm)
        return try IdentityVerifier(configuration: configuration, revocations: revocations, clock: server.clock)
    }

    static func rejection(_ verifier: IdentityVerifier, _ token: String) async -> TokenRejected? {
        do {
            _ = try await verifier.authenticate(bearer: token)
            return nil
        } catch {
            return error as? TokenRejected
        }
    }

    /// A token whose header names `kid`, signed by a key nobody published.
    static func madeUpKidToken(_ kid: String, now: Date) throws -> String {
        let key = P256.Signing.PrivateKey()
        return try compactToken(header: #"{"alg":"ES256","kid":"\#(kid)","typ":"JWT"}"#, payload: claims(now: now)) {
            Array(try key.signature(for: $0).rawRepresentation)
        }
    }

    @Test("the keys are fetched once and used until their max-age, then fetched again", arguments: JWTAlgorithm.asymmetric)
    func maxAge(algorithm: JWTAlgorithm) async throws {
        let server = try await KeyServer(algorithm: algorithm, clock: ManualClock(), cacheControl: "public, max-age=120")
        try await server.application().test(.live) { client in
            let verifier = try Self.verifier(server, port: client.port)
            let fetchedAt = server.clock.now()
            #expect(try await verifier.keys.refreshIfStale())
            #expect(server.hits == 1)
            #expect(verifier.keys.expiresAt == fetchedAt.addingTimeInterval(120), "max-age=120 is what the response said")
            for _ in 0..<5 {
                _ = try await verifier.authenticate(bearer: try await server.token().token)
            }
            server.clock.advance(by: 119)
            #expect(try await verifier.keys.refreshIfStale() == false, "fresh for 120 s")
            #expect(server.hits == 1)
            server.clock.advance(by: 1)
            #expect(try await verifier.keys.refreshIfStale(), "stale at 120 s")
            #expect(server.hits == 2)
        }
    }

    @Test("Cache-Control: max-age is read, no-store and no-cache count as 0, and the lifetime is bounded")
    func cacheControl() throws {
        #expect(CacheControl.maxAge(["public, max-age=300"]) == 300)
        #expect(CacheControl.maxAge(["public", "Max-Age = 42"]) == 42)
        #expect(CacheControl.maxAge(["no-store"]) == 0)
        #expect(CacheControl.maxAge(["max-age=60, no-cache"]) == 0)
        #expect(CacheControl.maxAge(["public"]) == nil)
        #expect(CacheControl.maxAge(["max-age=-1"]) == nil)
        #expect(CacheControl.maxAge([]) == nil)
    }

    @Test("a max-age beyond the bounds is held to them; none at all is the default lifetime")
    func lifetimeBounds() async throws {
        let server = try await KeyServer(clock: ManualClock(), cacheControl: "max-age=0")
        try await server.application().test(.live) { client in
            let verifier = try Self.verifier(server, port: client.port)
            try await verifier.keys.refresh()
            #expect(verifier.keys.expiresAt == server.clock.now().addingTimeInterval(10), "max-age=0 is held to 10 s")
            server.cacheControl.withLock { $0 = "max-age=31536000" }
            try await verifier.keys.refresh()
            #expect(verifier.keys.expiresAt == server.clock.now().addingTimeInterval(3600), "a year is held to an hour")
            server.cacheControl.withLock { $0 = "public" }
            try await verifier.keys.refresh()
            #expect(verifier.keys.expiresAt == server.clock.now().addingTimeInterval(300))
        }
    }

    @Test("a token naming an unknown kid makes one refetch, then is refused; the next one within 10 s makes none")
    func unknownKid() async throws {
        let server = try await KeyServer(clock: ManualClock())
        try await server.application().test(.live) { client in
            let verifier = try Self.verifier(server, port: client.port)
            try await verifier.keys.refresh()
            let now = server.clock.now()
            #expect(await Self.rejection(verifier, try Self.madeUpKidToken("made-up-1", now: now)) == .unknownKey)
            #expect(server.hits == 2, "one refetch for the unknown kid")
            server.clock.advance(by: 9)
            #expect(await Self.rejection(verifier, try Self.madeUpKidToken("made-up-2", now: now)) == .unknownKey)
            #expect(server.hits == 2, "none within 10 s of the last")
            server.clock.advance(by: 1)
            #expect(await Self.rejection(verifier, try Self.madeUpKidToken("made-up-3", now: now)) == .unknownKey)
            #expect(server.hits == 3, "10 s later, one more")
            _ = try await verifier.authenticate(bearer: try await server.token().token)
            #expect(server.hits == 3, "a known kid fetches nothing")
        }
    }

    @Test("100 made-up kids at once within 10 s cost the identity service one fetch at most")
    func floodOfKids() async throws {
        let server = try await KeyServer(clock: ManualClock())
        try await server.application().test(.live) { client in
            let verifier = try Self.verifier(server, port: client.port)
            try await verifier.keys.refresh()
            let now = server.clock.now()
            let refusals = try await withThrowingTaskGroup(of: TokenRejected?.self) { group in
                for index in 0..<100 {
                    let token = try Self.madeUpKidToken("flood-\(index)", now: now)
                    group.addTask { await Self.rejection(verifier, token) }
                }
                return try await group.reduce(into: [TokenRejected?]()) { $0.append($1) }
            }
            #expect(refusals.count == 100 && refusals.allSatisfy { $0 == .unknownKey })
            #expect(server.hits <= 2, "the first fetch and one refetch at most")
        }
    }

    @Test("a rotated key is learned on its first token; tokens of the old key stay valid", arguments: JWTAlgorithm.asymmetric)
    func rotation(algorithm: JWTAlgorithm) async throws {
        let server = try await KeyServer(algorithm: algorithm, clock: ManualClock())
        try await server.application().test(.live) { client in
            let verifier = try Self.verifier(server, port: client.port)
            try await verifier.keys.refresh()
            let old = try await server.token().token
            let oldKids = verifier.keys.keyIDs
            #expect(oldKids.count == 1)
            _ = try await verifier.authenticate(bearer: old)

            _ = try await server.rotator.rotate(rotateNow: true)
            server.clock.advance(by: SigningKeyPolicy.minimumPublicationLead + 1)
            let new = try await server.token().token
            let newKid = try #require(try Self.kid(of: new))
            #expect(!oldKids.contains(newKid), "the new key signs")
            #expect(try await verifier.authenticate(bearer: new).userID.description.isEmpty == false)
            #expect(verifier.keys.keyIDs.contains(newKid))
            #expect(server.hits == 2, "learned with one fetch")
            _ = try await verifier.authenticate(bearer: old)
            _ = try await verifier.authenticate(bearer: new)
            #expect(server.hits == 2)
        }
    }

    static func kid(of token: String) throws -> String? {
        let header = String(token.prefix { $0 != "." })
        var base64 = header.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        base64 += String(repeating: "=", count: (4 - base64.count % 4) % 4)
        let json = try JSONSerialization.jsonObject(with: try #require(Data(base64Encoded: base64))) as? [String: Any]
        return json?["kid"] as? String
    }

    @Test("with the identity service down, the keys held still verify, and are dropped once stale past the limit")
    func serverDown() async throws {
        let server = try await KeyServer(clock: ManualClock())
        // Served for the first fetch only, then down for good.
        let live = try await server.application().test(.live) { client in
            var configuration = IdentityVerifierConfiguration(
                location: .jwks("http://127.0.0.1:\(client.port ?? 0)/.well-known/jwks.json"), issuer: "identity", audience: "identity",
                algorithm: .es256
            )
            // Generous: the first fetch may be slow on a loaded machine, and once the server is
            // gone a fetch fails at once (connection refused), not by the timeout.
            configuration.fetchTimeout = .seconds(15)
            let verifier = try IdentityVerifier(configuration: configuration, revocations: InMemoryRevocationStore(), clock: server.clock)
            try await verifier.keys.refresh()
            return verifier
        }
        let token = try await server.token().token
        _ = try await live.authenticate(bearer: token)
        server.clock.advance(by: 301)
        await #expect(throws: KeySetFetchError.self) { try await live.keys.refreshIfStale() }
        _ = try await live.authenticate(bearer: token)
        #expect(await Self.rejection(live, try Self.madeUpKidToken("while-down", now: server.clock.now())) == .unknownKey)
        _ = try await live.authenticate(bearer: token)
        server.clock.advance(by: 3600)
        let late = try await server.token().token
        #expect(await Self.rejection(live, late) == .unknownKey, "past max-age plus the stale limit the keys are not trusted")
    }

    @Test("refused: another issuer, another issuer's keys, HS256, another algorithm, no kid, a key in the header, a bad signature")
    func refusals() async throws {
        let server = try await KeyServer(clock: ManualClock())
        try await server.application().test(.live) { client in
            let verifier = try Self.verifier(server, port: client.port)
            try await verifier.keys.refresh()
            let now = server.clock.now()
            let (kid, _) = (try #require(verifier.keys.keyIDs.first), ())

            // Signed with our key, but for another issuer: a service configured for them.
            let elsewhere = await JWTTokenService(configuration: try TokenConfiguration(signingKeys: server.keys, issuer: "elsewhere", audience: "identity"))
            let foreign = try await elsewhere.issue(for: UserID(UUID()), accountVersion: 1, issuedAt: now).token
            #expect(await Self.rejection(verifier, foreign) == .wrongIssuer)

            // Another identity service altogether: its own keys.
            let other = try await KeyServer(clock: server.clock, issuer: "other")
            #expect(await Self.rejection(verifier, try await other.token().token) == .unknownKey)

            let hmac = await JWTTokenService(configuration: try TokenConfiguration(secret: String(repeating: "s", count: 32)))
            #expect(await Self.rejection(verifier, try await hmac.issue(for: UserID(UUID()), accountVersion: 1, issuedAt: now).token) == .algorithmNotAllowed)

            let ed = Curve25519.Signing.PrivateKey()
            let edToken = try compactToken(header: #"{"alg":"EdDSA","kid":"\#(kid)","typ":"JWT"}"#, payload: claims(now: now)) {
                Array(try ed.signature(for: $0))
            }
            #expect(await Self.rejection(verifier, edToken) == .algorithmNotAllowed)

            let stranger = P256.Signing.PrivateKey()
            let sign: ([UInt8]) throws -> [UInt8] = { Array(try stranger.signature(for: $0).rawRepresentation) }
            #expect(await Self.rejection(verifier, try compactToken(header: #"{"alg":"ES256","typ":"JWT"}"#, payload: claims(now: now), sign: sign)) == .unknownKey)
            let jwk = #"{"kty":"EC","crv":"P-256","x":"\#(base64url(Array(stranger.publicKey.rawRepresentation.prefix(32))))","y":"\#(base64url(Array(stranger.publicKey.rawRepresentation.suffix(32))))"}"#
            let withKey = try compactToken(header: #"{"alg":"ES256","kid":"\#(kid)","jwk":\#(jwk),"typ":"JWT"}"#, payload: claims(now: now), sign: sign)
            #expect(await Self.rejection(verifier, withKey) == .keyInHeader)
            let forged = try compactToken(header: #"{"alg":"ES256","kid":"\#(kid)","typ":"JWT"}"#, payload: claims(now: now), sign: sign)
            #expect(await Self.rejection(verifier, forged) == .badSignature)

            // Ours, but past its exp (beyond the leeway), or for another audience.
            let token = try await server.token().token
            server.clock.advance(by: 3600 + 6)
            #expect(await Self.rejection(verifier, token) == .expired)
        }
    }

    @Test("discovery: the jwks_uri of a document for our issuer is fetched; another issuer is a clear error")
    func discovery() async throws {
        let server = try await KeyServer(clock: ManualClock())
        try await server.application().test(.live) { client in
            let verifier = try Self.verifier(server, port: client.port, discovery: true)
            try await verifier.keys.refresh()
            #expect(server.discoveries == 1)
            #expect(server.hits == 1)
            _ = try await verifier.authenticate(bearer: try await server.token().token)
            try await verifier.keys.refresh()
            #expect(server.discoveries == 1, "the document is read once")

            server.discoveryIssuer.withLock { $0 = "https://impostor.example" }
            let misled = try Self.verifier(server, port: client.port, discovery: true)
            let error = await #expect(throws: DiscoveryError.self) { try await misled.keys.refresh() }
            #expect(error?.description.contains(#""https://impostor.example", not the expected "identity""#) == true, "\(String(describing: error))")
            #expect(server.hits == 2, "no keys fetched for the wrong issuer")
            #expect(await Self.rejection(misled, try await server.token().token) == .unknownKey)
        }
    }

    @Test("the discovery URL may be the base or the document itself")
    func discoveryURL() {
        #expect(JWKSCache.discoveryURL("https://id.example") == "https://id.example/.well-known/openid-configuration")
        #expect(JWKSCache.discoveryURL("https://id.example/") == "https://id.example/.well-known/openid-configuration")
        #expect(JWKSCache.discoveryURL("https://id.example/.well-known/openid-configuration") == "https://id.example/.well-known/openid-configuration")
    }

    @Test("run() keeps the keys current by their max-age, in the background")
    func background() async throws {
        let server = try await KeyServer(clock: ManualClock(), cacheControl: "max-age=1")
        try await server.application().test(.live) { client in
            var configuration = IdentityVerifierConfiguration(
                location: .jwks("http://127.0.0.1:\(client.port ?? 0)/.well-known/jwks.json"), issuer: "identity", audience: "identity",
                algorithm: .es256
            )
            configuration.keyLifetimeBounds = 1...3600
            let verifier = try IdentityVerifier(configuration: configuration, revocations: InMemoryRevocationStore())
            await withTaskGroup(of: Void.self) { group in
                group.addTask { try? await verifier.run() }
                let fetchedTwice = await eventually { server.hits >= 2 }
                #expect(fetchedTwice, "fetched at start and again once stale")
                #expect(verifier.keys.keyIDs.count == 1)
                group.cancelAll()
            }
        }
    }

    @Test("the middleware: the principal in context.principal, the identity service's 401 without a token, after a revocation, or of an ended session")
    func middleware() async throws {
        let server = try await KeyServer(clock: ManualClock())
        let revocations = InMemoryRevocationStore(clock: server.clock)
        try await server.application().test(.live) { keyClient in
            let verifier = try Self.verifier(server, port: keyClient.port, revocations: revocations)
            try await verifier.keys.refresh()
            let router = Router(context: IdentityRequestContext.self)
            router.group("/notes").add(middleware: verifier.bearerAuthenticator()).get { _, context in
                "notes of \(try context.requirePrincipal().userID)"
            }
            let (ada, bob, carol) = (UserID(UUID()), UserID(UUID()), UserID(UUID()))
            let session = SessionID(UUID())
            let adas = try await server.token(for: ada)
            let bobs = try await server.token(for: bob, sessionID: session)
            let carols = try await server.token(for: carol, sessionID: SessionID(UUID()))
            try await Application(router: router).test(.router) { client in
                func get(_ token: String?) async throws -> TestResponse {
                    try await client.execute(uri: "/notes", method: .get, headers: token.map { [.authorization: "Bearer \($0)"] } ?? [:])
                }
                let refused = try await get(nil)
                #expect(refused.status == .unauthorized)
                #expect(refused.headers[.contentType] == "application/problem+json")
                #expect(refused.headers[.wwwAuthenticate] == "Bearer")
                let malformed = try await get("not.a.token")
                #expect(malformed.status == .unauthorized)
                #expect(malformed.headers[.wwwAuthenticate] == #"Bearer error="invalid_token""#)
                for (token, user) in [(adas, ada), (bobs, bob), (carols, carol)] {
                    let ok = try await get(token.token)
                    #expect(ok.status == .ok)
                    #expect(String(buffer: ok.body) == "notes of \(user)")
                }

                // A logout revokes the token; ending a session revokes its key.
                try revocations.revoke(jti: adas.jti, userID: ada, until: adas.expiresAt)
                try revocations.revoke(jti: Revocation.sessionKey(session), userID: bob, until: bobs.expiresAt)
                #expect(try await get(adas.token).status == .unauthorized)
                #expect(try await get(bobs.token).status == .unauthorized)
                #expect(try await get(carols.token).status == .ok, "other tokens are unaffected")
            }
        }
    }
}
