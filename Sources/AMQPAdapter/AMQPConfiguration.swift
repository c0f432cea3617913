/// Where and how to reach RabbitMQ, in typed form (the host reads it from its configuration).
public struct AMQPConfiguration: Sendable, Equatable {
    /// TLS for `amqps://` (librabbitmq's OpenSSL socket).
    public struct TLS: Sendable, Equatable {
        /// PEM file of the certificate authorities to trust; nil uses OpenSSL's defaults.
        public var caFile: String?
        /// Whether to verify the broker's certificate and host name (on unless testing).
        public var verifyPeer: Bool

        /// Creates TLS settings.
        public init(caFile: String? = nil, verifyPeer: Bool = true) {
            self.caFile = caFile
            self.verifyPeer = verifyPeer
        }
    }

    /// Host name or address of the broker.
    public var host: String
    /// TCP port (5672, or 5671 for TLS).
    public var port: Int
    /// User to log in as (PLAIN).
    public var username: String
    /// Its password; never logged.
    public var password: String
    /// Virtual host to open.
    public var virtualHost: String
    /// TLS, or nil for plain TCP.
    public var tls: TLS?
    /// Heartbeat interval negotiated with the broker; a silent broker is given up after two.
    public var heartbeatSeconds: Int
    /// Longest wait for a TCP connect, the login, or a synchronous broker reply.
    public var connectTimeout: Duration
    /// How long a caller waits for a command's reply before it gets `BackendUnavailable` (503).
    public var commandTimeout: Duration

    /// Creates settings; the defaults are the contract's (guest/guest on 5672, 5 s command timeout).
    public init(
        host: String, port: Int = 5672, username: String = "guest", password: String = "guest",
        virtualHost: String = "/", tls: TLS? = nil, heartbeatSeconds: Int = 10,
        connectTimeout: Duration = .seconds(5), commandTimeout: Duration = .seconds(5)
    ) {
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.virtualHost = virtualHost
        self.tls = tls
        self.heartbeatSeconds = heartbeatSeconds
        self.connectTimeout = connectTimeout
        self.commandTimeout = commandTimeout
    }

    /// `host:port` and the scheme, for logs; never the password.
    public var summary: String { "\(tls == nil ? "amqp" : "amqps")://\(username)@\(host):\(port)" }
}

/// The names this adapter declares on the broker (contract §6).
public enum AMQPTopology {
    /// Durable quorum queue of commands.
    public static let commandQueue = "identity.commands"
    /// Where a command goes after `deliveryLimit` + 1 deliveries, or when it cannot be decoded.
    public static let deadLetterQueue = "identity.commands.dlq"
    /// Durable topic exchange of events; the routing key is the event type.
    public static let eventExchange = "identity.events"
    /// Redeliveries a command may have: the fifth delivery of a failing command is its last.
    public static let deliveryLimit = 4
}

extension AMQPConfiguration: CustomStringConvertible, CustomDebugStringConvertible {
    /// The settings with the password redacted: what `"\(settings)"` or a log line shows.
    public var description: String {
        "AMQPConfiguration(\(summary)/\(virtualHost), password: <redacted>, heartbeat: \(heartbeatSeconds) s, "
            + "connectTimeout: \(connectTimeout), commandTimeout: \(commandTimeout))"
    }

    /// The same as `description`: `String(reflecting:)` never shows the password.
    public var debugDescription: String { description }
}
