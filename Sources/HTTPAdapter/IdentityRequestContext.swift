public import Hummingbird
public import NIOCore

/// The request context of the identity routes: the client address (for login throttling)
/// and the request id that every response and log line of the request carries.
public struct IdentityRequestContext: RequestContext, RemoteAddressRequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The connected peer.
    public let remoteAddress: SocketAddress?
    /// The request id: the client's `X-Request-ID` when acceptable, else a generated one.
    public var requestID: String = ""

    /// Creates the context for a new request.
    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.remoteAddress = source.channel.remoteAddress
    }

    /// Bodies are read with their own 16 KiB limit; this bounds anything else that reads one.
    public var maxUploadSize: Int { 16 * 1024 }
}
