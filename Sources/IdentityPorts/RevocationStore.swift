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

/// Revocations held in memory: the rule every in-memory revocation store and cache applies.
///
/// Entries only add up: a token revoked twice keeps the later expiry, a user's cut-offs merge
/// to the higher version and the later expiry. So merging the same entries in any order, or
/// twice, gives the same set, which is what lets a cache apply a snapshot and a feed of
/// changes in whatever order they arrive.
public struct RevocationSet: Sendable {
    private var tokens: [String: (userID: UserID, until: Date)] = [:]
    private var cutoffs: [UserID: (belowVersion: Int64, until: Date)] = [:]

    /// An empty set.
    public init() {}

    /// How many entries (tokens and cut-offs) are held.
    public var count: Int { tokens.count + cutoffs.count }

    /// Adds a revoked token, lasting until `until`.
    public mutating func revoke(jti: String, userID: UserID, until: Date) {
        tokens[jti] = (userID, max(until, tokens[jti]?.until ?? until))
    }

    /// Adds a cut-off: `userID`'s tokens with an account version below `belowVersion`, lasting
    /// until `until`.
    public mutating func revokeAll(userID: UserID, belowVersion: Int64, until: Date) {
        let existing = cutoffs[userID]
        cutoffs[userID] = (max(belowVersion, existing?.belowVersion ?? belowVersion), max(until, existing?.until ?? until))
    }

    /// Adds `revocation`.
    public mutating func apply(_ revocation: Revocation) {
        switch revocation {
        case .token(let jti, let userID, let until): revoke(jti: jti, userID: userID, until: until)
        case .account(let userID, let version, let until): revokeAll(userID: userID, belowVersion: version, until: until)
        }
    }

    /// Adds every entry of `snapshot`.
    public mutating func merge(_ snapshot: RevocationSnapshot) {
        for token in snapshot.tokens { revoke(jti: token.jti, userID: token.userID, until: token.expiresAt) }
        for cutoff in snapshot.cutoffs { revokeAll(userID: cutoff.userID, belowVersion: cutoff.belowVersion, until: cutoff.until) }
    }

    /// Whether a token is revoked: by its `jti`, or by a cut-off above its account version.
    public func isRevoked(jti: String, userID: UserID, accountVersion: Int64) -> Bool {
        if tokens[jti] != nil { return true }
        if let entry = cutoffs[userID], accountVersion < entry.belowVersion { return true }
        return false
    }

    /// Drops entries that expired before `now`; returns how many were dropped.
    @discardableResult
    public mutating func purge(expiredBefore now: Date) -> Int {
        let before = count
        tokens = tokens.filter { $0.value.until >= now }
        cutoffs = cutoffs.filter { $0.value.until >= now }
        return before - count
    }

    /// Drops every entry.
    public mutating func removeAll() {
        tokens.removeAll()
        cutoffs.removeAll()
    }

    /// The entries that have not expired at `now`.
    public func snapshot(now: Date) -> RevocationSnapshot {
        RevocationSnapshot(
            tokens: tokens.filter { $0.value.until >= now }
                .map { RevocationSnapshot.Token(jti: $0.key, userID: $0.value.userID, expiresAt: $0.value.until) },
            cutoffs: cutoffs.filter { $0.value.until >= now }.map {
                RevocationSnapshot.Cutoff(userID: $0.key, belowVersion: $0.value.belowVersion, until: $0.value.until)
            }
        )
    }
}

/// One revocation as it travels between instances, on the AMQP fan-out exchange
/// `identity.revocations` and on PostgreSQL's channel `identity_revocations`, as a JSON
/// document: a token (`{"seq": …, "jti": …, "user_id": …, "expires_at_ms": …}`), a per-account
/// cut-off (`{"seq": …, "user_id": …, "below_version": …, "expires_at_ms": …}`), or a heartbeat
/// (`{"last": …}`) that names the newest revocation written so far.
///
/// `seq` is the revocation's place in the database's order of revocations (1, 2, 3, … with no
/// gap, in commit order), so that a listener that sees a gap, or a heartbeat ahead of what it
/// has, knows it missed something.
public struct RevocationMessage: Codable, Sendable, Equatable {
    /// The revocation's place in the order of revocations, when the store gives one.
    public var sequence: Int64?
    /// The revoked token's `jti`, for a token.
    public var jti: String?
    /// The user, as a UUID string (absent in a heartbeat).
    public var userID: String?
    /// Tokens with an account version below this are revoked, for a cut-off.
    public var belowVersion: Int64?
    /// When the entry lapses (epoch milliseconds).
    public var expiresAtMilliseconds: Int64?
    /// In a heartbeat: the newest revocation's `seq` at the time it was sent.
    public var last: Int64?

    /// A revoked token.
    public init(sequence: Int64? = nil, jti: String, userID: UserID, until: Date) {
        self.sequence = sequence
        self.jti = jti
        self.userID = userID.description
        self.expiresAtMilliseconds = until.epochMilliseconds
    }

    /// A per-account cut-off.
    public init(sequence: Int64? = nil, userID: UserID, belowVersion: Int64, until: Date) {
        self.sequence = sequence
        self.userID = userID.description
        self.belowVersion = belowVersion
        self.expiresAtMilliseconds = until.epochMilliseconds
    }

    /// A heartbeat: the newest revocation written so far is `last`.
    public init(heartbeat last: Int64) {
        self.last = last
    }

    /// The message for `revocation`.
    public init(_ revocation: Revocation, sequence: Int64? = nil) {
        switch revocation {
        case .token(let jti, let userID, let until): self.init(sequence: sequence, jti: jti, userID: userID, until: until)
        case .account(let userID, let version, let until):
            self.init(sequence: sequence, userID: userID, belowVersion: version, until: until)
        }
    }

    /// The revocation it announces; nil for a heartbeat or a message that names no valid user,
    /// or neither a token nor a cut-off.
    public var revocation: Revocation? {
        guard let userID = userID.flatMap(UserID.init), let expires = expiresAtMilliseconds else { return nil }
        let until = Date(timeIntervalSince1970: Double(expires) / 1000)
        if let jti { return .token(jti: jti, userID: userID, until: until) }
        if let belowVersion { return .account(userID: userID, belowVersion: belowVersion, until: until) }
        return nil
    }

    enum CodingKeys: String, CodingKey {
        case sequence = "seq"
        case jti
        case userID = "user_id"
        case belowVersion = "below_version"
        case expiresAtMilliseconds = "expires_at_ms"
        case last
    }
}

extension RevocationSet {
    /// Adds what `message` announces. Returns false, changing nothing, for a heartbeat or a
    /// message that names no valid user, or neither a token nor a cut-off.
    @discardableResult
    public mutating func apply(_ message: RevocationMessage) -> Bool {
        guard let revocation = message.revocation else { return false }
        apply(revocation)
        return true
    }
}
