import CryptoAdapter
import Foundation
import Hummingbird
import IdentityDomain
import IdentityPorts
import InMemoryAdapter
import Synchronization

/// The publishing side, as the identity service has it: key pairs in an `InMemorySigningKeyStore`,
/// rotated by `SigningKeyRotator`, tokens signed by `JWTTokenService`, and a Hummingbird app that
/// serves the JWKS (and a discovery document) and counts its hits.
final class KeyServer: Sendable {
    static let kekSecret = "a key-encryption key of 32 bytes or more, for tests"
    let algorithm: JWTAlgorithm
    let clock: ManualClock
    let rotator: SigningKeyRotator
    let keys: SigningKeys
    let service: JWTTokenService
    /// `GET /.well-known/jwks.json` answered so far.
    let jwksHits = Atomic<Int>(0)
    /// `GET /.well-known/openid-configuration` answered so far.
    let discoveryHits = Atomic<Int>(0)
    /// `jwksHits`, read.
    var hits: Int { jwksHits.load(ordering: .sequentiallyConsistent) }
    /// `discoveryHits`, read.
    var discoveries: Int { discoveryHits.load(ordering: .sequentiallyConsistent) }
    /// The `Cache-Control` of the JWKS.
    let cacheControl: Mutex<String>
    /// The `issuer` the discovery document names.
    let discoveryIssuer: Mutex<String>

    init(algorithm: JWTAlgorithm = .es256, clock: ManualClock, issuer: String = "identity", cacheControl: String = "public, max-age=300") async throws {
        let store = InMemorySigningKeyStore()
        let kek = try KeyEncryptionKey(Self.kekSecret, for: algorithm)
        rotator = SigningKeyRotator(
            store: store, policy: try SigningKeyPolicy(algorithm: algorithm, tokenLifetime: 3600, leeway: 5), keyEncryptionKey: kek, clock: clock
        )
        try await rotator.rotate()
        keys = try await SigningKeys.load(store: store, algorithm: algorithm, keyEncryptionKey: kek, clock: clock)
        service = await JWTTokenService(configuration: try TokenConfiguration(signingKeys: keys, issuer: issuer, audience: "identity"))
        self.algorithm = algorithm
        self.clock = clock
        self.cacheControl = Mutex(cacheControl)
        self.discoveryIssuer = Mutex(issuer)
    }

    /// A token for a new user, signed now with the key that signs now.
    func token(for userID: UserID = UserID(UUID()), sessionID: SessionID? = nil) async throws -> IssuedToken {
        try await service.issue(for: userID, accountVersion: 1, sessionID: sessionID, issuedAt: clock.now())
    }

    /// The app that publishes the keys.
    func application() -> some ApplicationProtocol {
        let router = Router()
        router.get("/.well-known/jwks.json") { _, _ -> Response in
            self.jwksHits.add(1, ordering: .sequentiallyConsistent)
            return Response(
                status: .ok, headers: [.contentType: "application/json", .cacheControl: self.cacheControl.withLock { $0 }],
                body: ResponseBody(byteBuffer: ByteBuffer(bytes: self.keys.jwks().json()))
            )
        }
        router.get("/.well-known/openid-configuration") { request, _ -> Response in
            self.discoveryHits.add(1, ordering: .sequentiallyConsistent)
            let base = "http://\(request.head.authority ?? "127.0.0.1")"
            let document = #"{"issuer":"\#(self.discoveryIssuer.withLock { $0 })","jwks_uri":"\#(base)/.well-known/jwks.json","#
                + #""id_token_signing_alg_values_supported":["\#(self.algorithm.rawValue)"]}"#
            return Response(status: .ok, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(string: document)))
        }
        return Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
    }
}

/// A compact token with `header` and `payload` (JSON texts), signed as `sign` says.
func compactToken(header: String, payload: String, sign: ([UInt8]) throws -> [UInt8]) rethrows -> String {
    let input = base64url(Array(header.utf8)) + "." + base64url(Array(payload.utf8))
    return input + "." + base64url(try sign(Array(input.utf8)))
}

func base64url(_ bytes: [UInt8]) -> String {
    Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
        .replacingOccurrences(of: "=", with: "")
}

/// Claims that pass every check at `now`.
func claims(now: Date, issuer: String = "identity") -> String {
    let iat = Int(now.timeIntervalSince1970)
    return #"{"aud":["identity"],"exp":\#(iat + 3600),"iat":\#(iat),"iss":"\#(issuer)","jti":"\#(UUID())","sub":"\#(UUID())","ver":1}"#
}
