public import PostgresNIO
public import Logging
import NIOSSL

/// Where and how to connect, in typed form (the host reads it from its configuration).
public struct PostgresConfiguration: Sendable, Equatable {
    /// Whether to encrypt the connection.
    public enum TLSMode: String, Sendable, CaseIterable {
        /// Plain TCP.
        case disable
        /// TLS when the server offers it, plain otherwise.
        case prefer
        /// TLS or no connection; the server's certificate is verified.
        case require
    }

    /// Host name or address of the server.
    public var host: String
    /// TCP port.
    public var port: Int
    /// User to connect as.
    public var username: String
    /// Its password, if the server asks for one; never logged.
    public var password: String?
    /// Database to open.
    public var database: String
    /// Most connections the pool opens.
    public var poolSize: Int
    /// Whether and how to encrypt the connection.
    public var tls: TLSMode

    /// Creates settings; the defaults suit a local server.
    public init(host: String, port: Int = 5432, username: String = "postgres", password: String? = nil,
                database: String = "identity", poolSize: Int = 20, tls: TLSMode = .prefer) {
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.database = database
        self.poolSize = poolSize
        self.tls = tls
    }

    /// A client for these settings. The caller runs it (`client.run()`, or as a service).
    /// The pool's own background log (a line per reconnection attempt during an outage) is
    /// kept at `notice` and above unless `logger` asks for `debug` or finer.
    public func makeClient(logger: Logger) -> PostgresClient {
        var background = logger
        background.logLevel = max(logger.logLevel, .notice)
        if logger.logLevel <= .debug { background.logLevel = logger.logLevel }
        return PostgresClient(configuration: clientConfiguration, backgroundLogger: background)
    }

    /// The pool's configuration for these settings.
    var clientConfiguration: PostgresClient.Configuration {
        let tlsSetting: PostgresClient.Configuration.TLS
        switch (tls, tlsConfiguration) {
        case (.prefer, let configuration?): tlsSetting = .prefer(configuration)
        case (.require, let configuration?): tlsSetting = .require(configuration)
        default: tlsSetting = .disable
        }
        var configuration = PostgresClient.Configuration(
            host: host, port: port, username: username, password: password, database: database, tls: tlsSetting
        )
        configuration.options.maximumConnections = max(1, poolSize)
        // Every connection stays open and none runs keep-alive queries: the pool schedules an
        // idle-timeout timer (for connections above the minimum) and a keep-alive timer each
        // time a connection goes back to it, and cancels them when it is leased again. A
        // cancelled timer's sleeping task stays allocated until its deadline passes (seen with
        // Swift 6.3 on Linux), so under load those timers held ~1.5 KiB per request for 30-60 s:
        // hundreds of MiB at a few thousand requests per second. A connection the server
        // closes is noticed when the socket closes; one that silently dies fails the next
        // query on it at the store's deadline.
        configuration.options.minimumConnections = max(1, poolSize)
        configuration.options.keepAliveBehavior = nil
        configuration.options.connectTimeout = .seconds(3)
        return configuration
    }

    /// `host:port/database`, for logs (never the password).
    public var summary: String { "\(host):\(port)/\(database)" }
}

extension PostgresConfiguration {
    /// The TLS configuration `tls` asks for, the same for the pool and for a client: nil to
    /// disable; `prefer` is opportunistic encryption, as libpq's sslmode=prefer, without
    /// verification; `require` verifies the certificate and the host name.
    var tlsConfiguration: TLSConfiguration? {
        switch tls {
        case .disable:
            return nil
        case .prefer:
            var configuration = TLSConfiguration.makeClientConfiguration()
            configuration.certificateVerification = .none
            return configuration
        case .require:
            return TLSConfiguration.makeClientConfiguration()
        }
    }
}

extension PostgresConfiguration: CustomStringConvertible, CustomDebugStringConvertible {
    /// The settings with the password redacted: what `"\(settings)"` or a log line shows.
    public var description: String {
        "PostgresConfiguration(\(username)@\(summary), password: \(password == nil ? "none" : "<redacted>"), "
            + "poolSize: \(poolSize), tls: \(tls.rawValue))"
    }

    /// The same as `description`: `String(reflecting:)` and `dump`-like output never show the password.
    public var debugDescription: String { description }
}
