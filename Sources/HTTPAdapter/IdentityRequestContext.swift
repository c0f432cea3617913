public import Hummingbird
public import NIOCore
public import IdentityApplication

/// What the identity routes and `IdentityBearerAuthenticator` need of a request context:
/// the client address (login throttling), a request id, and a place for the authenticated
/// user. A host application that has a context of its own conforms it and mounts the routes
/// with `IdentityHTTP.addRoutes(to:atPath:service:)`; or it uses `IdentityRequestContext`.
public protocol IdentityContext: RequestContext, RemoteAddressRequestContext {
    /// The request id that the response and the request's log lines carry; set by the routes.
    var requestID: String { get set }
    /// The user of the request's bearer token, once `IdentityBearerAuthenticator` has checked it.
    var principal: Principal? { get set }
}

extension IdentityContext {
    /// The authenticated user; throws a 401 when no authenticator put one here.
    public func requirePrincipal() throws -> Principal {
        guard let principal else { throw AuthenticationRequired() }
        return principal
    }
}

/// The request context of the identity routes: the client address (for login throttling)
/// and the request id that every response and log line of the request carries.
public struct IdentityRequestContext: IdentityContext {
    public var coreContext: CoreRequestContextStorage
    /// The connected peer.
    public let remoteAddress: SocketAddress?
    /// The request id: the client's `X-Request-ID` when acceptable, else a generated one.
    public var requestID: String = ""
    /// The user of the bearer token, on routes behind `IdentityBearerAuthenticator`.
    public var principal: Principal?

    /// Creates the context for a new request.
    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.remoteAddress = source.channel.remoteAddress
    }

    /// Bodies are read with their own 16 KiB limit; this bounds anything else that reads one.
    public var maxUploadSize: Int { 16 * 1024 }
}
