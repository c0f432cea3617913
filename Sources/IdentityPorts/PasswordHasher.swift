public import IdentityDomain

/// Hashes and verifies passwords. Implementations must not block a caller's event loop.
///
/// An implementation that bounds the work waiting for it throws `HashingOverloaded` from
/// `hash` and `verify` when that bound is reached, at once and without hashing.
public protocol PasswordHasher: Sendable {
    /// A PHC string for `password` with a fresh salt and the current parameters.
    func hash(_ password: Password) async throws -> String
    /// Whether `password` matches `phc`. A malformed or unknown PHC string verifies as false.
    func verify(_ password: Password, against phc: String) async throws -> Bool
    /// Whether `phc` was made with other parameters (or algorithm) than the current ones.
    func needsRehash(_ phc: String) -> Bool
    /// Whether `stored` is a hash this hasher can verify: its own format, or an imported one it
    /// understands (an importer refuses anything else rather than store an account nobody can
    /// log in to).
    func recognizes(_ stored: String) -> Bool
}

/// A `PasswordHasher` refused a hash or verification because too many are already waiting
/// for a thread (contract §3, `HASH_QUEUE_LIMIT`). Nothing was hashed; the request may be
/// retried shortly (503 with `Retry-After`).
public struct HashingOverloaded: Error, Sendable, Equatable, CustomStringConvertible {
    /// How many hashing jobs may wait at most; this many were waiting.
    public let limit: Int
    /// Seconds a client should wait before trying again.
    public let retryAfterSeconds: Int

    /// Creates the error for a queue of at most `limit` waiting jobs.
    public init(limit: Int, retryAfterSeconds: Int = 1) {
        self.limit = limit
        self.retryAfterSeconds = retryAfterSeconds
    }

    public var description: String {
        "password hashing is overloaded (\(limit) jobs already waiting); try again shortly"
    }
}
