import NIOCore
import NIOPosix

/// A TCP proxy on 127.0.0.1 that a test puts between a client and a server to break the link
/// the way networks break: `cut()` closes every connection at once (and closes new ones as they
/// arrive) until `restore()`; `pause()` silently stops forwarding in both directions, closing
/// nothing, until `resume()`, when everything held flows on, in order.
///
/// It runs on an event loop thread of its own (SwiftNIO), never on Swift concurrency's threads;
/// its methods hop to that thread and await it, so none of them blocks a caller's thread.
///
/// Each accepted connection gets a connection of its own to the target. While paused, bytes
/// read from either side are held (`heldBytes` counts them) and so is a close by either side: a
/// peer sees a link that is up but silent. Connections accepted while paused are connected to
/// the target too, and held the same way. While cut, a new connection is accepted and closed at
/// once.
public final class FaultProxy: Sendable {
    /// The port it listens on, on 127.0.0.1.
    public let port: Int

    private let group: MultiThreadedEventLoopGroup
    private let core: ProxyCore
    private let server: any Channel

    private init(port: Int, group: MultiThreadedEventLoopGroup, core: ProxyCore, server: any Channel) {
        self.port = port
        self.group = group
        self.core = core
        self.server = server
    }

    /// Starts a proxy on a free port of 127.0.0.1 that forwards to `host`:`port`.
    public static func start(forwardingTo host: String, port targetPort: Int) async throws -> FaultProxy {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        let core = ProxyCore(loop: loop)
        do {
            let server = try await ServerBootstrap(group: loop)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                .childChannelInitializer { inbound in
                    core.accept(inbound, target: host, port: targetPort)
                }
                .bind(host: "127.0.0.1", port: 0)
                .get()
            guard let port = server.localAddress?.port else { throw FaultProxyError(description: "the proxy has no local port") }
            return FaultProxy(port: port, group: group, core: core, server: server)
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
    }

    /// Closes every live connection, and every new one as it arrives, until `restore()`.
    public func cut() async throws {
        try await core.loop.submit { self.core.cut() }.get()
    }

    /// Accepts and forwards new connections again after `cut()`.
    public func restore() async throws {
        try await core.loop.submit { self.core.isCut = false }.get()
    }

    /// Stops forwarding bytes (and closes) in both directions, holding them, without closing anything.
    public func pause() async throws {
        try await core.loop.submit { self.core.isPaused = true }.get()
    }

    /// Forwards what was held, in order, and everything after it.
    public func resume() async throws {
        try await core.loop.submit { self.core.resume() }.get()
    }

    /// Connections accepted since the start (including those closed at once while cut).
    public func acceptedConnections() async throws -> Int {
        try await core.loop.submit { self.core.accepted }.get()
    }

    /// Connections forwarding (or held) right now.
    public func liveConnections() async throws -> Int {
        try await core.loop.submit { self.core.links.count }.get()
    }

    /// One side of the proxied connections.
    public enum Side: Sendable {
        /// The clients that connect to the proxy.
        case client
        /// The target the proxy connects to.
        case server
    }

    /// Bytes read while paused and not yet forwarded: those sent by `side`, or by either.
    public func heldBytes(from side: Side? = nil) async throws -> Int {
        try await core.loop.submit {
            self.core.links.reduce(0) { total, link in
                switch side {
                case .client: total + link.inbound.heldBytes
                case .server: total + link.outbound.heldBytes
                case nil: total + link.inbound.heldBytes + link.outbound.heldBytes
                }
            }
        }.get()
    }

    /// Connections a peer closed while paused whose close is held (not yet passed on).
    public func heldCloses() async throws -> Int {
        try await core.loop.submit { self.core.links.reduce(0) { $0 + $1.heldCloses } }.get()
    }

    /// Closes the listening socket and every connection, and stops the proxy's thread.
    public func stop() async {
        try? await server.close()
        try? await core.loop.submit { self.core.cut() }.get()
        try? await group.shutdownGracefully()
    }
}

/// A proxy that could not start.
public struct FaultProxyError: Error, CustomStringConvertible {
    /// What went wrong.
    public let description: String
}

/// The proxy's state. Everything in it is touched on `loop` only (every channel of the proxy is
/// on that one loop), which is what makes it safe to share.
private final class ProxyCore: @unchecked Sendable {
    let loop: any EventLoop
    var isCut = false
    var isPaused = false
    var accepted = 0
    var links: [ProxyLink] = []

    init(loop: any EventLoop) {
        self.loop = loop
    }

    /// Sets up an accepted connection: closed at once while cut, otherwise joined to a new
    /// connection to the target.
    func accept(_ inbound: any Channel, target host: String, port: Int) -> EventLoopFuture<Void> {
        loop.assertInEventLoop()
        accepted += 1
        if isCut {
            return loop.makeCompletedFuture(withResultOf: { try inbound.pipeline.syncOperations.addHandler(CloseWhenActive()) })
        }
        return ClientBootstrap(group: loop)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(.seconds(10))
            .channelInitializer { outbound in
                outbound.eventLoop.makeCompletedFuture(withResultOf: {
                    try outbound.pipeline.syncOperations.addHandler(ProxyEnd(core: self))
                })
            }
            .connect(host: host, port: port)
            .flatMapThrowing { outbound in
                let inboundEnd = ProxyEnd(core: self)
                try inbound.pipeline.syncOperations.addHandler(inboundEnd)
                let outboundEnd = try outbound.pipeline.syncOperations.handler(type: ProxyEnd.self)
                let link = ProxyLink(inbound: inboundEnd, outbound: outboundEnd)
                inboundEnd.link = link
                outboundEnd.link = link
                inboundEnd.partner = outboundEnd
                outboundEnd.partner = inboundEnd
                self.links.append(link)
                if self.isCut { link.close() }
                if !self.isPaused { outboundEnd.release() }
            }
    }

    func cut() {
        loop.assertInEventLoop()
        isCut = true
        for link in links { link.close() }
        links.removeAll()
    }

    func resume() {
        loop.assertInEventLoop()
        isPaused = false
        for link in links {
            link.inbound.release()
            link.outbound.release()
        }
    }

    func remove(_ link: ProxyLink) {
        links.removeAll { $0 === link }
    }
}

/// One proxied connection: the accepted one and the one to the target.
private final class ProxyLink {
    let inbound: ProxyEnd
    let outbound: ProxyEnd

    init(inbound: ProxyEnd, outbound: ProxyEnd) {
        self.inbound = inbound
        self.outbound = outbound
    }

    var heldCloses: Int { (inbound.isCloseHeld || outbound.isCloseHeld) ? 1 : 0 }

    func close() {
        inbound.close()
        outbound.close()
    }
}

/// One side of a proxied connection: what it reads goes out on its partner's side, unless the
/// proxy is paused (then it is held, and so is the end of its input).
private final class ProxyEnd: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let core: ProxyCore
    private var context: ChannelHandlerContext?
    var partner: ProxyEnd?
    var link: ProxyLink?
    private var held: [ByteBuffer] = []
    private var closedWhileHeld = false

    init(core: ProxyCore) {
        self.core = core
    }

    var heldBytes: Int { held.reduce(0) { $0 + $1.readableBytes } }

    var isCloseHeld: Bool { closedWhileHeld }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data)
        if core.isPaused || partner == nil || !held.isEmpty {
            held.append(bytes)
        } else {
            partner?.send(bytes)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if core.isPaused || partner == nil {
            closedWhileHeld = true
        } else {
            finish()
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    /// Forwards what was held, and a close that was held, to the partner.
    func release() {
        guard let partner else { return }
        for bytes in held { partner.send(bytes) }
        held.removeAll()
        if closedWhileHeld { finish() }
    }

    func send(_ bytes: ByteBuffer) {
        context?.writeAndFlush(wrapOutboundOut(bytes), promise: nil)
    }

    func close() {
        context?.close(promise: nil)
    }

    /// This side has closed: close the other, and forget the link.
    private func finish() {
        partner?.close()
        if let link { core.remove(link) }
    }
}

/// Closes a connection as soon as it is up: what a cut proxy does with a new connection.
private final class CloseWhenActive: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    func channelActive(context: ChannelHandlerContext) {
        context.close(promise: nil)
    }
}
