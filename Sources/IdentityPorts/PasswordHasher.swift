public import IdentityDomain

/// Hashes and verifies passwords. Implementations must not block a caller's event loop.
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
