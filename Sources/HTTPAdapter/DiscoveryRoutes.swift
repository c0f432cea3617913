public import Foundation
public import Hummingbird
public import IdentityApplication
import IdentityPorts

/// `GET /.well-known/jwks.json` and `GET /.well-known/openid-configuration` (contract §10):
/// what standard JWT middleware needs to verify the service's tokens by discovery.
struct DiscoveryRoutes<Context: RequestContext>: Sendable {
    let service: IdentityService
    /// The absolute base URL of the public endpoints, without a trailing slash; nil: the
    /// request's own scheme and `Host`.
    let publicBaseURL: String?
    /// Where the identity routes are mounted (`""` at the root).
    let prefix: String

    /// How long a cache may keep the key set: a new key is published 600 s before it signs,
    /// so a client that re-reads within 300 s knows it before it sees a token it signed.
    static var keySetMaxAge: Int { 300 }

    func add(to router: Router<Context>) {
        router.get("/.well-known/jwks.json", use: jwks)
        router.get("/.well-known/openid-configuration", use: configuration)
    }

    func jwks(_ request: Request, _ context: Context) async throws -> Response {
        Response(
            status: .ok,
            headers: [.contentType: "application/json", .cacheControl: "public, max-age=\(Self.keySetMaxAge)"],
            body: .init(byteBuffer: ByteBuffer(string: Self.keySet(service.publishedSigningKeys())))
        )
    }

    func configuration(_ request: Request, _ context: Context) async throws -> Response {
        let base = try publicBaseURL ?? Self.baseURL(of: request)
        var json = JSONWriter()
        json.field("issuer", service.tokenIssuer ?? base)
        json.field("jwks_uri", base + "/.well-known/jwks.json")
        json.field("token_endpoint", base + prefix + "/auth/login")
        json.raw("id_token_signing_alg_values_supported", "[" + JSONWriter.quoted(service.tokenSigningAlgorithm) + "]")
        json.raw("grant_types_supported", #"["password","refresh_token"]"#)
        // Public clients: client_id and client_secret are accepted in the form and not checked.
        json.raw("token_endpoint_auth_methods_supported", #"["none"]"#)
        return Response(
            status: .ok, headers: [.contentType: "application/json", .cacheControl: "public, max-age=\(Self.keySetMaxAge)"],
            body: .init(byteBuffer: ByteBuffer(string: json.finished()))
        )
    }

    /// `{"keys":[...]}`, each key's members in a fixed order.
    static func keySet(_ keys: [PublishedSigningKey]) -> String {
        let items = keys.map { key -> String in
            var item = JSONWriter()
            item.field("kty", key.kty)
            item.field("crv", key.crv)
            item.field("x", key.x)
            if let y = key.y { item.field("y", y) }
            item.field("kid", key.kid)
            item.field("alg", key.alg)
            item.field("use", "sig")
            return item.finished()
        }
        return #"{"keys":["# + items.joined(separator: ",") + "]}"
    }

    /// `scheme://host[:port]` of the request: its `Host` (or HTTP/2 `:authority`), which must
    /// be a plain host name or address with an optional port, else 400 (a URL is never built
    /// from anything else a client sent).
    static func baseURL(of request: Request) throws -> String {
        guard let authority = request.head.authority, isPlainAuthority(authority) else {
            throw Problem(
                .badRequest, title: "Bad Host header",
                detail: "the Host header must be a host name or address with an optional port (or the server sets PUBLIC_BASE_URL)"
            )
        }
        let scheme = request.head.scheme == "https" ? "https" : "http"
        return "\(scheme)://\(authority.lowercased())"
    }

    static func isPlainAuthority(_ authority: String) -> Bool {
        let bytes = Array(authority.utf8)
        guard !bytes.isEmpty, bytes.count <= 261 else { return false }
        var host = bytes[...]
        var port: ArraySlice<UInt8> = []
        if bytes.first == UInt8(ascii: "[") {
            guard let close = bytes.firstIndex(of: UInt8(ascii: "]")), close > 1 else { return false }
            let inner = bytes[1..<close]
            guard inner.allSatisfy({ isHexDigit($0) || $0 == UInt8(ascii: ":") || $0 == UInt8(ascii: ".") }) else { return false }
            let rest = bytes[(close + 1)...]
            if !rest.isEmpty {
                guard rest.first == UInt8(ascii: ":") else { return false }
                port = rest.dropFirst()
                guard !port.isEmpty else { return false }
            }
            host = []
        } else if let colon = bytes.firstIndex(of: UInt8(ascii: ":")) {
            host = bytes[..<colon]
            port = bytes[(colon + 1)...]
            guard !port.isEmpty else { return false }
        }
        guard port.count <= 5, port.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else { return false }
        if bytes.first != UInt8(ascii: "[") {
            guard !host.isEmpty, host.count <= 253 else { return false }
            guard host.allSatisfy({ isAlphanumeric($0) || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: ".") }) else { return false }
        }
        return true
    }

    private static func isHexDigit(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(byte | 0x20)
    }

    private static func isAlphanumeric(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte | 0x20)
    }
}

extension IdentityHTTP {
    /// Adds `GET /.well-known/jwks.json` and `GET /.well-known/openid-configuration` (contract
    /// §10) at the root of a host application's router, as RFC 8615 wants them.
    ///
    /// - Parameters:
    ///   - router: the host's router.
    ///   - service: the use cases, whose token service publishes the keys.
    ///   - publicBaseURL: the absolute base URL clients reach the host at (such as
    ///     `https://id.example.com`); nil builds it from each request's `Host`.
    ///   - prefix: where the identity routes are mounted (`addRoutes(to:atPath:...)`), so that
    ///     `token_endpoint` names `prefix/auth/login`.
    public static func addDiscoveryRoutes<Context: RequestContext>(
        to router: Router<Context>, service: IdentityService, publicBaseURL: URL? = nil, identityPrefix prefix: String = ""
    ) {
        DiscoveryRoutes<Context>(service: service, publicBaseURL: publicBaseURL.map(baseURLText), prefix: prefix).add(to: router)
    }

    /// `url` without a trailing slash.
    static func baseURLText(_ url: URL) -> String {
        var text = url.absoluteString
        while text.hasSuffix("/") { text.removeLast() }
        return text
    }
}
