public import AsyncHTTPClient
public import CryptoAdapter
public import Foundation
public import IdentityPorts
public import Logging
public import ServiceLifecycle
import NIOCore
import NIOHTTP1
import Synchronization

/// Our published keys, fetched over HTTP and kept current: the `PublicKeySource` of a service
/// that verifies our tokens.
///
/// - `run()` (a ServiceLifecycle `Service`) fetches the keys at once and again whenever they
///   are stale by the response's `Cache-Control: max-age` (bounded by
///   `keyLifetimeBounds`); after a failure it tries again after 1 s, 2 s, 4 s… up to 60 s.
/// - A token that names a `kid` the set lacks makes it fetch at once, at most once per
///   `unknownKeyRefetchInterval` (10 s): a rotated key is learned on its first token, and a
///   flood of made-up kids never floods the identity service.
/// - A failed fetch keeps the keys it had, and logs. Past `max-age` plus `staleKeyLimit`
///   without a successful fetch, the keys are no longer trusted: every token is refused.
/// - With `.discovery`, the discovery document is read first, its `issuer` must be the one
///   configured (`DiscoveryError` otherwise), and its `jwks_uri` is where the keys are.
///
/// Fetches are asynchronous (AsyncHTTPClient); nothing blocks an event loop.
public final class JWKSCache: PublicKeySource, Service {
    private struct State {
        var keys: PublicKeySet
        var fetchedAt: Date?
        var expiresAt: Date = .distantPast
        var lastMissFetch: Date?
        var jwksURL: String?
        /// Fetches started, and the number of the one whose keys are held.
        var started = 0
        var installed = 0
    }

    private let configuration: IdentityVerifierConfiguration
    private let httpClient: HTTPClient
    private let clock: any IdentityClock
    private let logger: Logger
    private let state: Mutex<State>

    /// A cache with no keys yet (`run()` or `refresh()` fetches them).
    ///
    /// - Parameters:
    ///   - configuration: where the keys are, and the bounds of the cache.
    ///   - httpClient: the client that fetches (`HTTPClient.shared` by default).
    ///   - clock: what "now" is, for staleness and the unknown-kid rate (tests move it by hand).
    ///   - logger: where failed fetches are reported.
    public init(
        configuration: IdentityVerifierConfiguration, httpClient: HTTPClient = .shared, clock: any IdentityClock = SystemClock(),
        logger: Logger = Logger(label: "identity.verifier")
    ) {
        self.configuration = configuration
        self.httpClient = httpClient
        self.clock = clock
        self.logger = logger
        var initial = State(keys: .empty(configuration.algorithm))
        if case .jwks(let url) = configuration.location { initial.jwksURL = url }
        self.state = Mutex(initial)
    }

    /// The keys as last fetched; none once they are older than their `max-age` plus
    /// `staleKeyLimit`.
    public var publicKeys: PublicKeySet {
        let now = clock.now()
        return state.withLock { state in
            now.timeIntervalSince(state.expiresAt) > configuration.staleKeyLimit && state.fetchedAt != nil
                ? PublicKeySet.empty(configuration.algorithm) : state.keys
        }
    }

    /// The `kid`s of the keys held.
    public var keyIDs: [String] { publicKeys.keyIDs }

    /// When the keys held stop being fresh (their fetch plus `max-age`); nil before any fetch.
    public var expiresAt: Date? { state.withLock { $0.fetchedAt == nil ? nil : $0.expiresAt } }

    /// The keys after fetching them again, unless a token with an unknown `kid` made it fetch
    /// less than `unknownKeyRefetchInterval` ago (then the keys held, at once).
    public func publicKeys(missing kid: String) async -> PublicKeySet {
        let now = clock.now()
        let due = state.withLock { state -> Bool in
            if let last = state.lastMissFetch, now.timeIntervalSince(last) < configuration.unknownKeyRefetchInterval { return false }
            state.lastMissFetch = now
            return true
        }
        if due {
            logger.debug("a token names an unknown key: fetching the keys again", metadata: ["kid": "\(kid)"])
            try? await refresh()
        }
        return publicKeys
    }

    /// Fetches the keys now; on failure logs, keeps the keys held, and throws
    /// `KeySetFetchError`, `DiscoveryError` or `PublicKeySetError`.
    public func refresh() async throws {
        let number = state.withLock { state in
            state.started += 1
            return state.started
        }
        do {
            let url = try await jwksURL()
            let (body, maxAge) = try await fetch(url)
            let keys = try await PublicKeySet.parse(jwks: body, algorithm: configuration.algorithm)
            let now = clock.now()
            let lifetime = min(max(maxAge ?? configuration.defaultKeyLifetime, configuration.keyLifetimeBounds.lowerBound),
                               configuration.keyLifetimeBounds.upperBound)
            state.withLock { state in
                // A fetch that started earlier and ended later does not undo a newer one.
                guard number > state.installed else { return }
                state.installed = number
                state.keys = keys
                state.fetchedAt = now
                state.expiresAt = now.addingTimeInterval(lifetime)
            }
            if keys.keyIDs.isEmpty {
                logger.warning("the JWKS lists no key of the configured algorithm: every token is refused", metadata: [
                    "url": "\(url)", "algorithm": "\(configuration.algorithm.rawValue)", "skipped": "\(keys.skippedKeys)",
                ])
            }
        } catch {
            // A fetch cut short by shutdown is no failure worth a warning.
            if Task.isCancelled { throw error }
            logger.warning("fetching the signing keys failed; the keys held are kept", metadata: [
                "error": "\(error)", "keys": "\(publicKeys.keyIDs.count)",
            ])
            throw error
        }
    }

    /// Fetches the keys when they are stale (or were never fetched): true when it fetched,
    /// false when they were fresh; throws as `refresh()` does.
    @discardableResult
    public func refreshIfStale() async throws -> Bool {
        let now = clock.now()
        guard state.withLock({ $0.fetchedAt == nil || now >= $0.expiresAt }) else { return false }
        try await refresh()
        return true
    }

    /// Keeps the keys current until the service group shuts down (see the type's summary).
    public func run() async throws {
        await cancelWhenGracefulShutdown {
            var failures = 0
            while !Task.isCancelled {
                let wait: Duration
                do {
                    try await self.refreshIfStale()
                    failures = 0
                    let remaining = self.state.withLock { $0.expiresAt }.timeIntervalSince(self.clock.now())
                    wait = .milliseconds(Int64(max(remaining, 1) * 1000))
                } catch {
                    failures += 1
                    wait = .seconds(min(1 << min(failures - 1, 6), 60))
                }
                try? await Task.sleep(for: wait)
            }
        }
    }

    /// The URL of the JWKS: configured, or read from the discovery document (once).
    private func jwksURL() async throws -> String {
        if let url = state.withLock({ $0.jwksURL }) { return url }
        guard case .discovery(let location) = configuration.location else { throw KeySetFetchError("no JWKS URL") }
        let url = Self.discoveryURL(location)
        let (body, _) = try await fetch(url)
        guard let document = try? JSONSerialization.jsonObject(with: body) as? [String: Any] else {
            throw DiscoveryError("the discovery document at \(url) is not a JSON object")
        }
        guard let issuer = document["issuer"] as? String else { throw DiscoveryError("the discovery document at \(url) has no issuer") }
        guard issuer == configuration.issuer else {
            throw DiscoveryError("the discovery document at \(url) is for issuer \"\(issuer)\", not the expected \"\(configuration.issuer)\"")
        }
        guard let jwksURI = document["jwks_uri"] as? String, let parsed = URL(string: jwksURI), ["http", "https"].contains(parsed.scheme),
              parsed.host != nil
        else { throw DiscoveryError("the discovery document at \(url) has no absolute http(s) jwks_uri") }
        state.withLock { $0.jwksURL = jwksURI }
        return jwksURI
    }

    /// `location` itself when it names the discovery document, else the document under it.
    static func discoveryURL(_ location: String) -> String {
        let suffix = "/.well-known/openid-configuration"
        if location.hasSuffix(suffix) { return location }
        return (location.hasSuffix("/") ? String(location.dropLast()) : location) + suffix
    }

    /// The body of `GET url` (200 only, at most `maximumDocumentSize`) and its `max-age`.
    private func fetch(_ url: String) async throws -> (Data, TimeInterval?) {
        var request = HTTPClientRequest(url: url)
        request.headers.add(name: "Accept", value: "application/json")
        let response: HTTPClientResponse
        do {
            response = try await httpClient.execute(request, timeout: TimeAmount(configuration.fetchTimeout))
        } catch {
            throw KeySetFetchError("GET \(url) failed: \(error)")
        }
        guard response.status == .ok else { throw KeySetFetchError("GET \(url) answered \(response.status.code)") }
        let body: ByteBuffer
        do {
            body = try await response.body.collect(upTo: configuration.maximumDocumentSize)
        } catch {
            throw KeySetFetchError("GET \(url): the body could not be read within \(configuration.maximumDocumentSize) bytes: \(error)")
        }
        return (Data(body.readableBytesView), CacheControl.maxAge(response.headers["Cache-Control"]))
    }
}

/// The one directive of `Cache-Control` a key cache heeds.
enum CacheControl {
    /// `max-age` in seconds; 0 for `no-store` or `no-cache`; nil when none is given.
    static func maxAge(_ values: [String]) -> TimeInterval? {
        var maxAge: TimeInterval?
        for directive in values.flatMap({ $0.split(separator: ",") }) {
            let parts = directive.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
            switch parts.first {
            case "no-store", "no-cache": return 0
            case "max-age":
                if parts.count == 2, let seconds = Int(parts[1].trimmingCharacters(in: CharacterSet(charactersIn: "\""))), seconds >= 0 {
                    maxAge = TimeInterval(seconds)
                }
            default: break
            }
        }
        return maxAge
    }
}
