import IdentityDomain
import Tracing
import IdentityPorts
public import Logging
public import PostgresNIO
import IdentityAdapterSupport

/// A PostgreSQL failure that is neither an outage nor a business rule: a bug or a schema
/// mismatch. Its description, like `PSQLError`'s, carries no SQL and no data.
public struct PostgresStoreError: Error, Sendable, CustomStringConvertible {
    /// The SQLSTATE code, when the server sent one.
    public let sqlState: String?
    public var description: String { "PostgreSQL refused a statement (SQLSTATE \(sqlState ?? "unknown"))" }
}

/// Carries the error of a closure run inside a transaction (the outbox relay's publisher) out
/// of it unchanged.
struct PublisherFailed: Error {
    let error: any Error
}

enum PostgresErrors {
    /// SQLSTATE classes and codes that mean "the server is not there right now".
    private static let unavailableStates: Set<String> = ["57P01", "57P02", "57P03", "53300", "40001"]

    /// Maps errors from postgres-nio onto what the ports promise: `BackendUnavailable` for an
    /// outage, `IdentityError.emailTaken` for the email index, and business errors unwrapped
    /// from a rolled-back transaction.
    static func translate(_ error: any Error) -> any Error {
        switch error {
        case let error as PostgresTransactionError:
            if let closure = error.closureError { return translate(closure) }
            if let begin = error.beginError { return translate(begin) }
            if let commit = error.commitError { return translate(commit) }
            return BackendUnavailable(backend: "postgres")
        case let error as PublisherFailed:
            return error.error
        case is IdentityError, is BackendUnavailable, is PostgresStoreError, is MigrationError, is CancellationError,
             is CommandAlreadyApplied, is SessionConflict, is SigningKeyConflict, is UnreadableSigningKey:
            return error
        case is PostgresDecodingError:
            // A column did not decode: a schema mismatch or a bug, not an outage.
            return PostgresStoreError(sqlState: nil)
        case let error as PSQLError:
            guard error.code == .server, let state = error.serverInfo?[.sqlState] else {
                // Connection refused, closed, timed out, pool shut down: an outage.
                return BackendUnavailable(backend: "postgres")
            }
            if state == "23505" {
                let constraint = error.serverInfo?[.constraintName] ?? ""
                if constraint.hasPrefix("identity_session") { return SessionConflict() }
                return constraint == "identity_users_email_key" ? IdentityError.emailTaken : IdentityError.concurrentUpdate
            }
            if state.hasPrefix("08") || unavailableStates.contains(state) { return BackendUnavailable(backend: "postgres") }
            return PostgresStoreError(sqlState: state)
        default:
            // The pool's own errors (its circuit breaker trips while the server is away, a
            // lease times out) are not public types: anything else from a database call is
            // an outage.
            return BackendUnavailable(backend: "postgres")
        }
    }

    /// Runs `body` within `timeout`, translating what it throws. The pool waits up to a minute
    /// for an absent server before failing a request, which a request must not wait out.
    @discardableResult
    static func run<T: Sendable>(timeout: Duration, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        do {
            return try await withDeadline(timeout, body)
        } catch {
            throw translate(error)
        }
    }

    /// Runs `body`, giving up with `BackendUnavailable` after `timeout` (`Deadline.run`: the
    /// caller is answered at the deadline whatever the body does).
    static func withDeadline<T: Sendable>(_ timeout: Duration, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        try await Deadline.run(timeout, timeoutError: { BackendUnavailable(backend: "postgres") }, body)
    }
}

/// Where a store gets its connections: a `PostgresClient` the host or embedder runs, or our
/// own `PostgresConnectionPool`. Every store takes one (`init(source:…)`), so a composition
/// names it once for all of them.
public enum PostgresConnectionSource: Sendable {
    /// A client the host runs (`client.run()` or as a service).
    case client(PostgresClient)
    /// Our own fixed pool, which the host runs as a service.
    case pool(PostgresConnectionPool)

    /// Runs `body` with a connection of the source, which takes it back afterwards.
    func withConnection<T: Sendable>(_ body: (PostgresConnection) async throws -> T) async throws -> T {
        switch self {
        case .client(let client): return try await client.withConnection { connection in try await body(connection) }
        case .pool(let pool): return try await pool.withConnection(body)
        }
    }
}

/// A store whose statements run on a `PostgresConnectionSource` with one deadline and logger:
/// made on the host's client, on our pool, or on either as a source.
public protocol PostgresSourcedStore {
    /// Creates the store on `source`; an operation not done within `timeout` fails with
    /// `BackendUnavailable`.
    init(source: PostgresConnectionSource, timeout: Duration, logger: Logger)
}

extension PostgresSourcedStore {
    /// Creates the store on `client` (which the host runs); an operation not done within
    /// `timeout` fails with `BackendUnavailable`.
    public init(client: PostgresClient, timeout: Duration = .seconds(5), logger: Logger = Logger(label: "identity.postgres")) {
        self.init(source: .client(client), timeout: timeout, logger: logger)
    }

    /// Creates the store on `pool` (which the host runs); an operation not done within
    /// `timeout` fails with `BackendUnavailable`.
    public init(pool: PostgresConnectionPool, timeout: Duration = .seconds(5), logger: Logger = Logger(label: "identity.postgres")) {
        self.init(source: .pool(pool), timeout: timeout, logger: logger)
    }
}

/// What every PostgreSQL store holds: where its connections come from, the deadline of one
/// operation, the logger.
struct PostgresSession: Sendable {
    let source: PostgresConnectionSource
    let timeout: Duration
    let logger: Logger

    /// Runs one store operation on one connection within the deadline, translating what it
    /// throws, in a client span named after the store and the operation
    /// (`PostgresUserStore.insert`): the file's and the calling function's names, so that
    /// every operation is traced without repeating its name. No SQL or value is recorded.
    @discardableResult
    func run<T: Sendable>(
        file: String = #fileID, function: String = #function, _ body: @escaping @Sendable (PostgresConnection, Logger) async throws -> T
    ) async throws -> T {
        let source = source
        let logger = logger
        return try await withSpanInTrace(file: file, function: function, system: "postgresql") {
            try await PostgresErrors.run(timeout: timeout) {
                try await source.withConnection { connection in try await body(connection, logger) }
            }
        }
    }
}

/// Runs `body` in a client span named `<file's name>.<function's name>` when a trace is under
/// way (a request's, a command's), else plainly: background loops (the outbox relay, the
/// revocation feed) would otherwise start a root trace at every poll. The names are worked out
/// only for a span.
func withSpanInTrace<T>(
    file: String, function: String, system: String, isolation: isolated (any Actor)? = #isolation, _ body: () async throws -> T
) async throws -> T {
    guard ServiceContext.current != nil else { return try await body() }
    let operation = String(function.prefix { $0 != "(" })
    let store = String(file.split(separator: "/").last?.prefix { $0 != "." } ?? "Postgres")
    return try await withSpan("\(store).\(operation)", ofKind: .client) { span in
        span.attributes["db.system.name"] = system
        span.attributes["db.operation.name"] = operation
        return try await body()
    }
}
