/// A driven adapter could not reach its backend (database, broker): the request may be retried (503).
///
/// Its description names the backend and nothing else: no SQL, no addresses, no data.
public struct BackendUnavailable: Error, Sendable, Equatable, CustomStringConvertible {
    /// Short name of the failing backend, such as `postgres` or `rabbitmq`.
    public let backend: String

    /// Creates the error for `backend`.
    public init(backend: String) {
        self.backend = backend
    }

    public var description: String { "\(backend) is unavailable" }
}

/// A backend whose reachability decides readiness (`GET /health/ready`).
public protocol HealthCheck: Sendable {
    /// Short name shown in the readiness problem body, such as `postgres`.
    var backendName: String { get }
    /// Returns when the backend answers; throws otherwise.
    func checkHealth() async throws
}
