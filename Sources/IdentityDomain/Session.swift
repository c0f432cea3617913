public import Foundation

/// A session's identifier: a UUID, written lower-case and hyphenated (the `sid` of its tokens).
public struct SessionID: UUIDIdentifier {
    /// The underlying UUID.
    public let uuid: UUID

    /// Wraps a UUID.
    public init(_ uuid: UUID) {
        self.uuid = uuid
    }
}

/// Why a session ended: the `reason` of a `session.ended` event (contract §9).
///
/// A session that outlives its idle or absolute lifetime is not ended: it lapses, unlisted
/// and unusable, with no reason and no event.
public enum SessionEndReason: String, Sendable, Hashable, CaseIterable {
    /// The owner logged out with one of its tokens.
    case logout
    /// The owner ended it from the session list (one session, the others, or all).
    case revoked
    /// A replaced refresh token was presented again outside the grace rule.
    case reuse
    /// The account's password changed or was reset.
    case passwordChange = "password_change"
    /// The account was deleted.
    case accountDeleted = "account_deleted"
}

/// The digest of a refresh token (SHA-256 of its bytes): what a store keeps and looks up in
/// place of the token, so that a copy of the database yields no usable token.
///
/// Always 32 bytes. Its description shows no byte of it.
public struct RefreshDigest: Hashable, Sendable, CustomStringConvertible {
    /// The digest's bytes.
    public let bytes: Data

    /// The number of bytes of a digest.
    public static let byteCount = 32

    /// Wraps `bytes`; nil unless there are exactly 32 of them.
    public init?(_ bytes: Data) {
        guard bytes.count == Self.byteCount else { return nil }
        self.bytes = Data(bytes)
    }

    /// Wraps the bytes of `bytes`; nil unless there are exactly 32 of them.
    public init?(_ bytes: [UInt8]) {
        self.init(Data(bytes))
    }

    /// A random digest: matches no token (tests, and lookups that must take the same time).
    public static func random() -> RefreshDigest {
        var generator = SystemRandomNumberGenerator()
        // Exactly 32 bytes, so the failable initializer cannot fail.
        return RefreshDigest((0..<byteCount).map { _ in generator.next() as UInt8 })!
    }

    /// `RefreshDigest(…)`: never the bytes, which would let a log line be matched to a row.
    public var description: String { "RefreshDigest(…)" }
}

/// A login's session (contract §9): the refresh token that renews it, its rotation, and its end.
///
/// The store keeps digests only: `refreshDigest` is the digest of the token that works now,
/// `previousDigest` that of the token it replaced at `rotatedAt` (still answered within the
/// grace interval, with `graceBlob`). `graceBlob` is the current token pair sealed under a key
/// derived from the replaced token, which the database does not hold: to a store it is opaque
/// bytes. All instants have millisecond precision.
///
/// `accountVersion` is the account's version the session stands on: the one read with the
/// checked password at the login, then the one read at each refresh. A refresh can refuse a
/// session below an account's password-change cut-off, so that a password change ends every
/// session even when ending them failed or raced a login.
public struct Session: Sendable, Equatable, Identifiable {
    /// Stable identifier (the `sid` of the session's access tokens).
    public let id: SessionID
    /// The account the session belongs to.
    public let userID: UserID
    /// When the login opened it.
    public let createdAt: Date
    /// When its refresh token was last rotated (the login, until the first refresh).
    public var lastUsedAt: Date
    /// The `User-Agent` of the login, if any.
    public let userAgent: String?
    /// The client address of the login, if known.
    public let clientAddress: String?
    /// The account's version read with the checked password at the login, then at the last
    /// refresh (the last rotation).
    public var accountVersion: Int64
    /// How many times its refresh token was rotated: 0 at the login.
    public var generation: Int64
    /// Digest of the refresh token that works now.
    public var refreshDigest: RefreshDigest
    /// Digest of the token the last rotation replaced; nil before the first rotation.
    public var previousDigest: RefreshDigest?
    /// When the last rotation happened; nil before the first.
    public var rotatedAt: Date?
    /// The current pair, sealed under a key derived from the token the last rotation replaced
    /// (what the grace rule hands out again); nil before the first rotation.
    public var graceBlob: Data?
    /// When it ended; nil while it has not.
    public var endedAt: Date?
    /// Why it ended; nil while it has not.
    public var endReason: SessionEndReason?

    /// Creates a session from stored fields.
    public init(
        id: SessionID, userID: UserID, createdAt: Date, lastUsedAt: Date, userAgent: String?, clientAddress: String?,
        accountVersion: Int64, generation: Int64, refreshDigest: RefreshDigest, previousDigest: RefreshDigest?, rotatedAt: Date?, graceBlob: Data?,
        endedAt: Date?, endReason: SessionEndReason?
    ) {
        self.id = id
        self.userID = userID
        self.createdAt = createdAt
        self.lastUsedAt = lastUsedAt
        self.userAgent = userAgent
        self.clientAddress = clientAddress
        self.accountVersion = accountVersion
        self.generation = generation
        self.refreshDigest = refreshDigest
        self.previousDigest = previousDigest
        self.rotatedAt = rotatedAt
        self.graceBlob = graceBlob
        self.endedAt = endedAt
        self.endReason = endReason
    }

    /// Opens a session at `now` whose first refresh token has digest `refreshDigest`, on the
    /// account version `accountVersion` read with the checked password.
    public static func open(
        id: SessionID, userID: UserID, refreshDigest: RefreshDigest, userAgent: String? = nil, clientAddress: String? = nil,
        accountVersion: Int64, at now: Date
    ) -> Session {
        let now = now.truncatedToMilliseconds
        return Session(
            id: id, userID: userID, createdAt: now, lastUsedAt: now, userAgent: userAgent, clientAddress: clientAddress,
            accountVersion: accountVersion, generation: 0, refreshDigest: refreshDigest, previousDigest: nil, rotatedAt: nil, graceBlob: nil,
            endedAt: nil, endReason: nil
        )
    }

    /// Whether it has ended (for any reason); a session that merely outlived its lifetime has not.
    public var isEnded: Bool { endedAt != nil }

    /// This session after a rotation at `now`: `replacement` works, the digest that worked is
    /// the previous one, `graceBlob` is kept for the grace rule, and the session stands on
    /// `accountVersion`, the account's version read for this refresh.
    public func rotated(to replacement: RefreshDigest, graceBlob: Data, accountVersion: Int64, at now: Date) -> Session {
        var next = self
        let now = now.truncatedToMilliseconds
        next.accountVersion = accountVersion
        next.previousDigest = refreshDigest
        next.refreshDigest = replacement
        next.rotatedAt = now
        next.graceBlob = graceBlob
        next.lastUsedAt = now
        next.generation += 1
        return next
    }

    /// This session ended at `now` for `reason`.
    public func ended(_ reason: SessionEndReason, at now: Date) -> Session {
        var next = self
        next.endedAt = now.truncatedToMilliseconds
        next.endReason = reason
        return next
    }
}
