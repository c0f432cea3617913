import Foundation
public import IdentityPorts
public import NIOCore
import NIOPosix
import NIOSSL

/// Delivers mail to an SMTP server (RFC 5321) over swift-nio, one connection per mail.
///
/// Greeting, `EHLO` (`HELO` if refused), `STARTTLS` and `EHLO` again when asked for,
/// `AUTH PLAIN` or `AUTH LOGIN` when configured, `MAIL FROM`, `RCPT TO`, `DATA` (dot-stuffed,
/// CRLF lines), `QUIT`. Every wait has a timeout that closes the connection, so a silent or
/// babbling server fails the send instead of holding it.
///
/// Failures: a 5xx to `MAIL FROM`, `RCPT TO`, `DATA` or the data itself concerns this mail
/// and is permanent, and so is an address that cannot be sent to; everything else (4xx,
/// a 5xx to the greeting, `EHLO`, `STARTTLS` or `AUTH`, which concerns the link or the
/// configuration, timeouts, refused connections, TLS failures, garbage) is transient.
public final class SMTPMailer: Mailer {
    private let configuration: SMTPConfiguration
    private let eventLoopGroup: any EventLoopGroup
    private let tlsContext: NIOSSLContext?
    private let serverHostname: String?

    /// Creates the mailer; throws `SMTPConfigurationError` when the trust roots cannot be
    /// read or the EHLO name cannot be sent. Without a group, NIO's shared singleton is used.
    public init(configuration: SMTPConfiguration, eventLoopGroup: (any EventLoopGroup)? = nil) throws {
        guard !configuration.heloName.isEmpty, configuration.heloName.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            throw SMTPConfigurationError(description: "the EHLO name must be printable ASCII without spaces")
        }
        if let sender = configuration.envelopeFrom, let problem = MailAddressCheck.problem(with: sender) {
            throw SMTPConfigurationError(description: "invalid envelope sender: \(problem)")
        }
        self.configuration = configuration
        self.eventLoopGroup = eventLoopGroup ?? MultiThreadedEventLoopGroup.singleton
        // An IP address is checked against the certificate's IP entries; a name goes in SNI.
        let isIPAddress = (try? SocketAddress(ipAddress: configuration.host, port: 0)) != nil
        serverHostname = isIPAddress ? nil : configuration.host
        if configuration.tlsMode == .none {
            tlsContext = nil
        } else {
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.certificateVerification = .fullVerification
            tls.minimumTLSVersion = .tlsv12
            if case .pemFile(let path) = configuration.trustRoots {
                guard FileManager.default.isReadableFile(atPath: path) else {
                    throw SMTPConfigurationError(description: "the trust roots file cannot be read")
                }
                tls.trustRoots = .file(path)
            }
            do {
                tlsContext = try NIOSSLContext(configuration: tls)
            } catch {
                throw SMTPConfigurationError(description: "the TLS configuration is not usable: \(error)")
            }
        }
    }

    public func send(_ message: MailMessage) async throws {
        try MailAddressCheck.check(message)
        let data = SMTPData.stuffed(MailRendering.render(message))
        let connection: SMTPConnection
        do {
            connection = try await SMTPConnection.open(
                host: configuration.host, port: configuration.port, group: eventLoopGroup,
                connectTimeout: TimeAmount(configuration.connectTimeout),
                tls: configuration.tlsMode == .tls ? tlsContext.map { ($0, serverHostname) } : nil
            )
        } catch {
            throw transient("cannot connect to \(configuration.host):\(configuration.port): \(Self.describe(error))")
        }
        do {
            try await converse(over: connection, message: message, data: data)
            await connection.close()
        } catch let failure as MailDeliveryFailure {
            await connection.close()
            throw failure
        } catch {
            await connection.close()
            throw transient(Self.describe(error))
        }
    }

    private func converse(over connection: SMTPConnection, message: MailMessage, data: ByteBuffer) async throws {
        let command = TimeAmount(configuration.commandTimeout)
        let greeting = try await connection.request(nil, timeout: command, step: "the greeting")
        try expect(greeting, 220, step: "greeting")
        var capabilities = try await hello(connection)
        var encrypted = configuration.tlsMode == .tls
        if configuration.tlsMode == .startTLS {
            guard capabilities.keys.contains("STARTTLS"), let tlsContext else {
                throw transient("the server does not offer STARTTLS; not sending in clear")
            }
            try expect(try await connection.request("STARTTLS", timeout: command), 220, step: "STARTTLS")
            try await connection.startTLS(tlsContext, serverHostname: serverHostname)
            encrypted = true
            capabilities = try await hello(connection)
        }
        if let credentials = configuration.credentials {
            guard encrypted || configuration.allowsAuthenticationWithoutTLS else {
                throw transient("refusing to send credentials over a link without TLS")
            }
            try await authenticate(connection, credentials: credentials, capabilities: capabilities)
        }
        let sender = configuration.envelopeFrom ?? message.from.address
        try expect(try await connection.request("MAIL FROM:<\(sender)>", timeout: command), 250, step: "MAIL FROM", aboutMail: true)
        let rcpt = try await connection.request("RCPT TO:<\(message.to.address)>", timeout: command)
        try expect(rcpt, [250, 251], step: "RCPT TO", aboutMail: true)
        try expect(try await connection.request("DATA", timeout: command), 354, step: "DATA", aboutMail: true)
        let accepted = try await connection.request(data, timeout: TimeAmount(configuration.dataTimeout), step: "the message data")
        try expect(accepted, 250, step: "the message data", aboutMail: true)
        // The mail is accepted; a QUIT that goes wrong changes nothing.
        _ = try? await connection.request("QUIT", timeout: command)
    }

    /// `EHLO`, or `HELO` when the server does not know it; the capabilities by keyword.
    private func hello(_ connection: SMTPConnection) async throws -> [String: [String]] {
        let command = TimeAmount(configuration.commandTimeout)
        let ehlo = try await connection.request("EHLO \(configuration.heloName)", timeout: command)
        if ehlo.isPositive {
            var capabilities: [String: [String]] = [:]
            for line in ehlo.lines.dropFirst() {
                let words = line.uppercased().split(separator: " ").map(String.init)
                if let keyword = words.first { capabilities[keyword] = Array(words.dropFirst()) }
            }
            return capabilities
        }
        try expect(try await connection.request("HELO \(configuration.heloName)", timeout: command), 250, step: "HELO")
        return [:]
    }

    /// `AUTH PLAIN` if offered, else `AUTH LOGIN`. Errors name the reply's code only: a
    /// server's text after `AUTH` could echo what we sent.
    private func authenticate(
        _ connection: SMTPConnection, credentials: SMTPConfiguration.Credentials, capabilities: [String: [String]]
    ) async throws {
        let command = TimeAmount(configuration.commandTimeout)
        let mechanisms = Set(capabilities["AUTH"] ?? [])
        func base64(_ text: String) -> String { Data(text.utf8).base64EncodedString() }
        let reply: SMTPReply
        if mechanisms.contains("PLAIN") {
            let token = base64("\0\(credentials.username)\0\(credentials.password)")
            reply = try await connection.request("AUTH PLAIN \(token)", timeout: command, step: "AUTH")
        } else if mechanisms.contains("LOGIN") {
            let start = try await connection.request("AUTH LOGIN", timeout: command, step: "AUTH")
            guard start.code == 334 else { throw transient("AUTH LOGIN refused (\(start.code))") }
            let user = try await connection.request(base64(credentials.username), timeout: command, step: "AUTH")
            guard user.code == 334 else { throw transient("AUTH LOGIN refused the user name (\(user.code))") }
            reply = try await connection.request(base64(credentials.password), timeout: command, step: "AUTH")
        } else {
            throw transient("the server offers neither AUTH PLAIN nor AUTH LOGIN")
        }
        guard reply.code == 235 else { throw transient("authentication failed (\(reply.code))") }
    }

    private func expect(_ reply: SMTPReply, _ code: Int, step: String, aboutMail: Bool = false) throws {
        try expect(reply, [code], step: step, aboutMail: aboutMail)
    }

    private func expect(_ reply: SMTPReply, _ codes: [Int], step: String, aboutMail: Bool = false) throws {
        guard !codes.contains(reply.code) else { return }
        throw MailDeliveryFailure(
            isPermanent: aboutMail && reply.isPermanentNegative,
            reason: "the server answered \(step) with \(reply.summary)"
        )
    }

    private func transient(_ reason: String) -> MailDeliveryFailure {
        MailDeliveryFailure(isPermanent: false, reason: reason)
    }

    private static func describe(_ error: any Error) -> String {
        switch error {
        case let error as SMTPLinkFailure: error.description
        case let error as SMTPProtocolViolation: error.description
        case let error as NIOSSLError: "TLS failed: \(error)"
        case let error as BoringSSLError: "TLS failed: \(error)"
        case let error as NIOConnectionError:
            "connection failed: \(error.connectionErrors.map { "\($0.error)" }.first ?? "\(error)")"
        case let error as ChannelError:
            if case .connectTimeout = error { "the connection timed out" } else { "connection failed: \(error)" }
        default: "\(error)"
        }
    }
}

/// The message as the `DATA` phase sends it: CRLF lines, a line that starts with "." gets
/// another in front (RFC 5321 §4.5.2), and the closing `.` line.
enum SMTPData {
    /// `message`, stuffed and terminated.
    static func stuffed(_ message: [UInt8]) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(message.count + message.count / 64 + 8)
        var atLineStart = true
        var index = 0
        while index < message.count {
            let byte = message[index]
            if atLineStart && byte == UInt8(ascii: ".") { buffer.writeInteger(UInt8(ascii: ".")) }
            switch byte {
            case UInt8(ascii: "\r"):
                buffer.writeBytes([0x0D, 0x0A])
                if index + 1 < message.count && message[index + 1] == UInt8(ascii: "\n") { index += 1 }
                atLineStart = true
            case UInt8(ascii: "\n"):
                buffer.writeBytes([0x0D, 0x0A])
                atLineStart = true
            default:
                buffer.writeInteger(byte)
                atLineStart = false
            }
            index += 1
        }
        if !atLineStart { buffer.writeBytes([0x0D, 0x0A]) }
        buffer.writeString(".\r\n")
        return buffer
    }
}
