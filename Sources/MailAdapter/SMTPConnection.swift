import NIOCore
import NIOPosix
import NIOSSL

/// One connection to an SMTP server: a channel with an `SMTPClientHandler` (behind a
/// `NIOSSLClientHandler` for implicit TLS), driven from async code. The handler is touched
/// only on the channel's event loop.
struct SMTPConnection: Sendable {
    private let channel: any Channel
    private let handler: NIOLoopBound<SMTPClientHandler>

    /// Connects; with `tls`, TLS starts at once (implicit TLS).
    static func open(
        host: String, port: Int, group: any EventLoopGroup, connectTimeout: TimeAmount,
        tls: (context: NIOSSLContext, serverHostname: String?)?
    ) async throws -> SMTPConnection {
        let channel = try await ClientBootstrap(group: group)
            .connectTimeout(connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls {
                        let ssl = try NIOSSLClientHandler(context: tls.context, serverHostname: tls.serverHostname)
                        try channel.pipeline.syncOperations.addHandler(ssl)
                    }
                    try channel.pipeline.syncOperations.addHandler(SMTPClientHandler())
                }
            }
            .connect(host: host, port: port)
            .get()
        do {
            let handler = try await channel.eventLoop.submit {
                NIOLoopBound(try channel.pipeline.syncOperations.handler(type: SMTPClientHandler.self), eventLoop: channel.eventLoop)
            }.get()
            return SMTPConnection(channel: channel, handler: handler)
        } catch {
            try? await channel.close()
            throw error
        }
    }

    /// Sends `line` (CRLF added) and returns the reply; `step` names it in errors (by
    /// default the line's first word, so that no argument, a credential say, is ever shown).
    func request(_ line: String?, timeout: TimeAmount, step: String? = nil) async throws -> SMTPReply {
        let payload = line.map { ByteBuffer(string: $0 + "\r\n") }
        let name = step ?? line.map { String($0.prefix { $0 != " " && $0 != ":" }) } ?? "the greeting"
        return try await request(payload, timeout: timeout, step: name)
    }

    /// Sends `payload` (if any) and returns the reply. A cancelled caller closes the
    /// connection, which fails the request at once.
    func request(_ payload: ByteBuffer?, timeout: TimeAmount, step: String) async throws -> SMTPReply {
        let handler = self.handler
        let loop = channel.eventLoop
        let channel = self.channel
        return try await withTaskCancellationHandler {
            try await loop.flatSubmit {
                handler.value.request(payload, timeout: timeout, step: step, on: loop)
            }.get()
        } onCancel: {
            channel.close(promise: nil)
        }
    }

    /// Starts TLS on the link (after a 220 to `STARTTLS`); the handshake runs before the
    /// next request's bytes leave, and its failure fails that request.
    func startTLS(_ context: NIOSSLContext, serverHostname: String?) async throws {
        let handler = self.handler
        try await channel.eventLoop.submit {
            let ssl = try NIOSSLClientHandler(context: context, serverHostname: serverHostname)
            try handler.value.startTLS(ssl)
        }.get()
    }

    /// Closes the channel (once is enough; later calls do nothing) and waits for it.
    func close() async {
        channel.close(promise: nil)
        try? await channel.closeFuture.get()
    }
}
