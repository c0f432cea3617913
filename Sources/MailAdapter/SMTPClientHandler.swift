import NIOCore
import NIOSSL

/// Why the link to the SMTP server failed (the caller turns it into a transient failure).
struct SMTPLinkFailure: Error, CustomStringConvertible {
    /// What happened, without credentials or message content.
    let description: String
}

/// The SMTP client's one channel handler: it parses replies (`SMTPReplyParser`) and hands
/// each to the request waiting for it. SMTP without pipelining has at most one request in
/// flight, so a reply that nobody waits for (other than the greeting) is a protocol violation
/// and ends the link; so does garbage, a closed connection or an error of the pipeline (a TLS
/// handshake that fails, say). Every request carries a timeout that fails it and closes the
/// channel, so nothing waits on a silent server for longer than it was told to.
///
/// Used only on its channel's event loop.
final class SMTPClientHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private struct Waiter {
        let promise: EventLoopPromise<SMTPReply>
        let timeout: Scheduled<Void>
        let step: String
    }

    private var parser = SMTPReplyParser()
    private var context: ChannelHandlerContext?
    private var waiter: Waiter?
    /// The greeting, when it arrived before anybody asked for it.
    private var greeting: SMTPReply?
    private var greeted = false
    private var failure: (any Error)?

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard failure == nil else { return }
        parser.append(unwrapInboundIn(data))
        do {
            while let reply = try parser.next() {
                deliver(reply)
                guard failure == nil else { return }
            }
        } catch {
            fail(error)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail(SMTPLinkFailure(description: "the server closed the connection"))
        context.fireChannelInactive()
    }

    private func deliver(_ reply: SMTPReply) {
        if let waiter {
            self.waiter = nil
            waiter.timeout.cancel()
            waiter.promise.succeed(reply)
        } else if !greeted {
            greeted = true
            greeting = reply
        } else {
            fail(SMTPProtocolViolation(description: "the server sent a reply nobody asked for"))
        }
    }

    /// The first failure sticks: it fails the waiting request and every later one, and the
    /// channel closes.
    private func fail(_ error: any Error) {
        if failure == nil { failure = error }
        if let waiter {
            self.waiter = nil
            waiter.timeout.cancel()
            waiter.promise.fail(failure ?? error)
        }
        context?.close(promise: nil)
    }

    /// Writes `payload` (if any) and returns the next reply, failing after `timeout`. With
    /// no payload it waits for the greeting.
    func request(_ payload: ByteBuffer?, timeout: TimeAmount, step: String, on eventLoop: any EventLoop) -> EventLoopFuture<SMTPReply> {
        if let failure { return eventLoop.makeFailedFuture(failure) }
        guard let context, waiter == nil else {
            return eventLoop.makeFailedFuture(SMTPLinkFailure(description: "the connection is closed"))
        }
        if payload == nil, let greeting {
            self.greeting = nil
            return eventLoop.makeSucceededFuture(greeting)
        }
        greeted = true
        let promise = eventLoop.makePromise(of: SMTPReply.self)
        let timeoutTask = eventLoop.assumeIsolated().scheduleTask(in: timeout) { [self] in
            fail(SMTPLinkFailure(description: "no reply to \(step) within \(Self.describe(timeout))"))
        }
        waiter = Waiter(promise: promise, timeout: timeoutTask, step: step)
        if let payload {
            context.writeAndFlush(wrapOutboundOut(payload), promise: nil)
        }
        return promise.futureResult
    }

    /// Puts TLS under the SMTP exchange (after the server's 220 to `STARTTLS`). Bytes that
    /// arrived in clear after that reply would otherwise be read as if they came over TLS (the
    /// STARTTLS injection attack): with any held, this fails instead.
    func startTLS(_ handler: NIOSSLClientHandler) throws {
        if let failure { throw failure }
        guard let context else { throw SMTPLinkFailure(description: "the connection is closed") }
        guard !parser.hasBufferedBytes, greeting == nil else {
            let violation = SMTPProtocolViolation(description: "the server sent data in clear after accepting STARTTLS")
            fail(violation)
            throw violation
        }
        try context.pipeline.syncOperations.addHandler(handler, position: .first)
    }

    static func describe(_ amount: TimeAmount) -> String {
        let milliseconds = amount.nanoseconds / 1_000_000
        return milliseconds % 1000 == 0 ? "\(milliseconds / 1000) s" : "\(milliseconds) ms"
    }
}
