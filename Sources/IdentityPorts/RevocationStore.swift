public import Foundation
public import IdentityDomain

/// Which tokens are no longer honoured: single tokens by `jti` (logout), and every token of an
/// account below a version (password change, deletion). Entries expire with the tokens they
/// concern, so the store does not grow without bound.
///
/// Whether a token predates a change is decided by the account version it carries (`ver`,
/// read from the account when the token was issued), never by comparing the clocks of
/// different machines: a password change moves the version, and its revocation names it.
public protocol RevocationStore: Sendable {
    /// Revokes one token until `until` (its `exp` plus the leeway, see `TokenService`).
    func revoke(jti: String, userID: UserID, until: Date) async throws
    /// Revokes every token of `userID` that carries an account version below `belowVersion`
    /// (`Revocation.everyVersion` for all of them); the entry lasts until `until`.
    func revokeAll(userID: UserID, belowVersion: Int64, until: Date) async throws
    /// Whether a token is revoked: by its `jti`, or by a cut-off above its account version.
    func isRevoked(jti: String, userID: UserID, accountVersion: Int64) async throws -> Bool
    /// Drops entries that expired before `now`; returns how many were dropped.
    @discardableResult
    func purgeExpired(now: Date) async throws -> Int
    /// Takes note of revocations that this process knows have committed through another path
    /// (a change's transaction, a worker's reply), so that the next request here honours them
    /// before any announcement arrives. A store that answers from its durable data needs
    /// nothing: the default does nothing.
    func committed(_ revocations: [Revocation]) async
}

extension RevocationStore {
    public func committed(_ revocations: [Revocation]) async {}
}

/// One revocation, as a write that must commit with the change that causes it
/// (`UserRepository.update(_:expectedVersion:events:revocations:)`).
public enum Revocation: Sendable, Hashable {
    /// One token (logout), held until `until`.
    case token(jti: String, userID: UserID, until: Date)
    /// Every token of `userID` with an account version below `belowVersion`, held until `until`.
    case account(userID: UserID, belowVersion: Int64, until: Date)

    /// A cut-off version above every version an account can have: all its tokens (deletion).
    public static let everyVersion = Int64.max

    /// Every access token of session `id` (logout, a session ended or reused), held until
    /// `until`: a token revocation keyed by ``sessionKey(_:)``, so every store, cache and feed
    /// carries it as it carries a logout.
    public static func session(_ id: SessionID, userID: UserID, until: Date) -> Revocation {
        .token(jti: sessionKey(id), userID: userID, until: until)
    }

    /// The key under which a session's revocation is kept among revoked tokens: `sid:` and the
    /// session id, which no `jti` can be (they are base64url).
    public static func sessionKey(_ id: SessionID) -> String {
        "sid:" + id.description
    }

    /// When the entry lapses.
    public var until: Date {
        switch self {
        case .token(_, _, let until), .account(_, _, let until): until
        }
    }
}

/// A revocation store that can list what it holds, so that a cache can start from it.
public protocol RevocationSnapshotting: RevocationStore {
    /// Every entry that has not expired at `now`.
    func snapshot(now: Date) async throws -> RevocationSnapshot
}

/// The unexpired entries of a revocation store.
public struct RevocationSnapshot: Sendable, Equatable {
    /// One revoked token.
    public struct Token: Sendable, Equatable, Hashable {
        /// The revoked token's `jti`.
        public let jti: String
        /// Owner of the token, or of the tokens the cut-off revokes.
        public let userID: UserID
        /// When the entry lapses (the token's own expiry).
        public let expiresAt: Date

        /// Creates the entry.
        public init(jti: String, userID: UserID, expiresAt: Date) {
            self.jti = jti
            self.userID = userID
            self.expiresAt = expiresAt
        }
    }

    /// One per-account cut-off: tokens carrying a version below `belowVersion` are revoked.
    public struct Cutoff: Sendable, Equatable, Hashable {
        /// Owner of the tokens the cut-off revokes.
        public let userID: UserID
        /// Tokens with an account version below this are revoked.
        public let belowVersion: Int64
        /// When the entry lapses.
        public let until: Date

        /// Creates the entry.
        public init(userID: UserID, belowVersion: Int64, until: Date) {
            self.userID = userID
            self.belowVersion = belowVersion
            self.until = until
        }
    }

    /// Revoked tokens.
    public var tokens: [Token]
    /// Per-user cut-offs.
    public var cutoffs: [Cutoff]

    /// Creates a snapshot.
    public init(tokens: [Token] = [], cutoffs: [Cutoff] = []) {
        self.tokens = tokens
        self.cutoffs = cutoffs
    }
}
