/// How `SMTPMailer` reaches its server (Docs/mail.md, "SMTP").
public struct SMTPConfiguration: Sendable {
    /// How the link is protected.
    public enum TLSMode: String, Sendable, CaseIterable {
        /// Connect in clear, then `STARTTLS` (port 587): a server that does not offer it gets
        /// nothing, not even the envelope.
        case startTLS = "starttls"
        /// TLS from the first byte (implicit TLS, port 465).
        case tls
        /// No TLS at all: for a relay on the same host or a test server only.
        case none
    }

    /// The certificates that may vouch for the server. Verification is always full (chain
    /// and host name) whenever TLS is used.
    public enum TrustRoots: Sendable, Equatable {
        /// The system's trust store.
        case system
        /// Only the certificates of this PEM file (a private CA, a test CA).
        case pemFile(String)
    }

    /// User name and password for `AUTH PLAIN` or `AUTH LOGIN`. Never logged, never in an error.
    public struct Credentials: Sendable {
        /// The user name.
        public let username: String
        /// The password.
        public let password: String

        /// Creates credentials.
        public init(username: String, password: String) {
            self.username = username
            self.password = password
        }
    }

    /// The server's host name (checked against its certificate) or IP address.
    public var host: String
    /// The server's port.
    public var port: Int
    /// How the link is protected.
    public var tlsMode: TLSMode
    /// Who may vouch for the server's certificate.
    public var trustRoots: TrustRoots
    /// Credentials, if the server wants them.
    public var credentials: Credentials?
    /// Whether credentials may be sent with `tlsMode` `.none`. Off by default: credentials in
    /// clear are refused (a transient failure), so that a configuration mistake never leaks a
    /// password. Turn it on only for a relay on a link you trust (loopback, say).
    public var allowsAuthenticationWithoutTLS: Bool
    /// The envelope sender (`MAIL FROM`, where bounces go); nil uses the message's From address.
    public var envelopeFrom: String?
    /// The name this client gives in `EHLO`.
    public var heloName: String
    /// How long to wait for the TCP connection (and, for implicit TLS, nothing more).
    public var connectTimeout: Duration
    /// How long to wait for each reply but the last (the greeting, `EHLO`, `AUTH`, `RCPT`, ...).
    public var commandTimeout: Duration
    /// How long to wait for the reply to the end of the message data.
    public var dataTimeout: Duration

    /// Creates the configuration; the defaults are port 587 with `STARTTLS`, the system's
    /// trust store, 10 s to connect, 30 s per command and 120 s for the data.
    public init(
        host: String,
        port: Int = 587,
        tlsMode: TLSMode = .startTLS,
        trustRoots: TrustRoots = .system,
        credentials: Credentials? = nil,
        allowsAuthenticationWithoutTLS: Bool = false,
        envelopeFrom: String? = nil,
        heloName: String = "localhost",
        connectTimeout: Duration = .seconds(10),
        commandTimeout: Duration = .seconds(30),
        dataTimeout: Duration = .seconds(120)
    ) {
        self.host = host
        self.port = port
        self.tlsMode = tlsMode
        self.trustRoots = trustRoots
        self.credentials = credentials
        self.allowsAuthenticationWithoutTLS = allowsAuthenticationWithoutTLS
        self.envelopeFrom = envelopeFrom
        self.heloName = heloName
        self.connectTimeout = connectTimeout
        self.commandTimeout = commandTimeout
        self.dataTimeout = dataTimeout
    }
}

extension SMTPConfiguration.Credentials: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// The user name only: a printed configuration never shows the password.
    public var description: String { "Credentials(username: \(username), password: <redacted>)" }
    /// As `description`.
    public var debugDescription: String { description }
    /// The user name only, for `dump` and the debugger.
    public var customMirror: Mirror { Mirror(self, children: ["username": username, "password": "<redacted>"]) }
}

/// A configuration `SMTPMailer` cannot work with (an unreadable trust file, a bad EHLO name).
public struct SMTPConfigurationError: Error, Sendable, CustomStringConvertible {
    /// What is wrong.
    public let description: String
}
