public import Foundation
public import IdentityDomain

/// Sessions and their refresh-token digests (contract §9), shared by every instance.
///
/// A store never sees a refresh token, only its digest (`RefreshDigest`), and never reads the
/// wall clock: every operation takes `now` from the caller. A session is **open** while it has
/// not ended and neither its idle nor its absolute lifetime has passed
/// (`SessionConfiguration.isOpen(_:at:)`); only an open session rotates, lists or ends, and an
/// ended session never comes back, whatever is presented.
///
/// **Events.** A store writes the events of its changes to the outbox the account store uses
/// (`EventOutbox`), in the same transaction as the change: `open` writes `session.started`;
/// `end`, `endAll` (one per session ended) and a `rotate` that finds a reuse write
/// `session.ended` with the reason, at `now`. Anything that changes nothing (a rotation, the
/// grace, an unknown digest, a refused or failed write) writes none, and a session that lapses
/// ends with no event. A store writes no command message id (`CommandContext`): the account
/// store records it with the command's own change.
///
/// `rotate` is the one operation that races: two refreshes with one token, on one instance or
/// two, must give exactly one rotation. It is a compare-and-swap on the current digest, decided
/// inside the store (one statement, or one transaction that holds the row only for the
/// database's own work), never a lock held across a call to anything else.
///
/// **Accounts.** A store shares its database with the account store whose outbox it writes to.
/// `rotate` checks the account's version in the same step as the compare-and-swap, so a
/// refresh whose token says which account and version it was made for rotates in one round
/// trip; `sessionAndAccount(id:)` reads a session together with its account's current version,
/// for a refresh that must look first.
public protocol SessionStore: Sendable {
    /// Stores a session just opened (`Session.open`): its first refresh digest works. Writes
    /// `session.started` at its `createdAt` with it.
    func open(_ session: Session) async throws

    /// Presents, at `now`, the digest of a refresh token that names session `id`, with the
    /// digest of the token that is to replace it, `graceBlob` (the new pair sealed under a key
    /// derived from the presented token) and `accountVersion` (the account version the new
    /// pair was made for). In one atomic step, for the session `id`:
    ///
    /// - its current digest, the session open, its account (in the account store this store
    ///   shares) at `accountVersion`: the digest becomes the previous one, `replacement` the
    ///   current, `graceBlob` is kept, `lastUsedAt` is `now`, `generation` goes up by one,
    ///   `accountVersion` is stored: `.rotated` with the session as stored;
    /// - its current digest, the session open, its account at another version or gone:
    ///   nothing changes, `.accountChanged` with the version the account has now (nil: gone),
    ///   for the caller to make the pair again;
    /// - the digest the last rotation replaced, within `SessionConfiguration.graceInterval` of
    ///   that rotation: nothing changes, `.grace` with the blob stored by that rotation;
    /// - any other replaced digest it keeps (later than the grace interval, or older than the
    ///   one just replaced): the session ends with reason `reuse` in the same step, writing
    ///   `session.ended` (`reuse`): `.reused` with the session as ended;
    /// - anything else (a digest the session never issued, a session that does not exist,
    ///   ended or expired): nothing changes, `.unknown`.
    ///
    /// Only `.rotated` stores `accountVersion`; the others keep the session's own.
    ///
    /// With `revokingUntil`, a reuse also writes the session's revocation
    /// (`Revocation.session(id, userID:, until: revokingUntil)`) to the revocation store of the
    /// same database in that step: the end, its event and its revocation commit together or
    /// not at all, so no ended session's access tokens stay accepted.
    func rotate(
        session id: SessionID, presented: RefreshDigest, replacement: RefreshDigest, graceBlob: Data, accountVersion: Int64,
        revokingUntil: Date?, now: Date
    ) async throws -> RotationOutcome

    /// The session with `id`, open, ended or expired, until it is purged; nil if there is none.
    func session(id: SessionID) async throws -> Session?

    /// The session with `id` as `session(id:)` gives it, with the version its account has now
    /// in the account store this store shares (the one whose outbox it writes to), or with
    /// none when that account no longer exists; nil when there is no session. One read (one
    /// statement where the store can).
    func sessionAndAccount(id: SessionID) async throws -> SessionAndAccount?

    /// The open sessions of `userID` at `now`, newest (latest `createdAt`) first.
    func sessions(of userID: UserID, now: Date) async throws -> [Session]

    /// Ends the open session `id` of `userID` at `now` for `reason`, writing its
    /// `session.ended`, and returns it as ended; nil (nothing changes, no event) when there is
    /// no such open session, or it is another user's.
    func end(id: SessionID, userID: UserID, reason: SessionEndReason, now: Date) async throws -> Session?

    /// Ends every open session of `userID` at `now` for `reason`, except `except` if given,
    /// writing one `session.ended` per session ended, and returns those it ended.
    func endAll(userID: UserID, except: SessionID?, reason: SessionEndReason, now: Date) async throws -> [Session]

    /// Deletes the sessions, ended or not, whose lifetime (`SessionConfiguration.expiry(of:)`)
    /// ended before `now`, with their replaced digests; returns how many sessions went. Writes
    /// no event: lapsing is not ending.
    ///
    /// An ended session stays until then: until it would have expired had it stayed open, a
    /// replay of one of its tokens is still recognised as one of an ended session.
    @discardableResult
    func purgeExpired(now: Date) async throws -> Int
}

/// A session and the version its account has now (`SessionStore.sessionAndAccount(id:)`).
public struct SessionAndAccount: Sendable, Equatable {
    /// The session, open, ended or expired.
    public let session: Session
    /// The account's version now (`User.version`); nil when the account no longer exists.
    /// `session.accountVersion` is the version of the session's last token.
    public let accountVersion: Int?

    /// Pairs `session` with its account's current version.
    public init(session: Session, accountVersion: Int?) {
        self.session = session
        self.accountVersion = accountVersion
    }
}

/// What presenting a refresh token's digest did (`SessionStore.rotate`).
public enum RotationOutcome: Sendable, Equatable {
    /// It was the current digest: the session rotated, and is returned as stored.
    case rotated(Session)
    /// It was the digest just replaced, within the grace interval: nothing changed; `blob` is
    /// the grace blob stored with the current pair, to be opened with the presented token.
    case grace(Session, blob: Data)
    /// It was a replaced digest outside the grace rule: the session ended with reason `reuse`,
    /// and is returned as ended.
    case reused(Session)
    /// It was the current digest, but the account is no longer at the version the new pair
    /// was made for: nothing changed. `version` is the account's version now, nil when the
    /// account no longer exists.
    case accountChanged(version: Int?)
    /// The session does not exist, is not open, or never had that digest: nothing changed.
    case unknown
}

/// Lifetimes of sessions and the grace rule (contract §9).
///
/// Instants compare in whole milliseconds, the precision every store keeps, and a lifetime
/// includes its last instant: a session last used at `t` is open at `t + idleLifetime` and
/// not a millisecond later.
public struct SessionConfiguration: Sendable, Equatable {
    /// How long after its last rotation (or its login) a session lapses: `REFRESH_IDLE_DAYS`.
    public var idleLifetime: TimeInterval
    /// How long after its login a session lapses, however often it rotates: `SESSION_MAX_DAYS`.
    public var absoluteLifetime: TimeInterval
    /// How long after a rotation the replaced token still gets the current pair again.
    public var graceInterval: TimeInterval
    /// How many replaced digests a session keeps for reuse detection, newest first (at least
    /// one: the digest just replaced). A token replaced longer ago than that is answered as
    /// unknown (refused, the session unchanged) rather than as a reuse.
    public var replacedDigestsKept: Int {
        didSet { replacedDigestsKept = max(1, replacedDigestsKept) }
    }

    /// Creates a configuration; the defaults are the contract's (30 days idle, 90 days in all,
    /// 10 s of grace) and 1,000 replaced digests per session (six weeks of a client that
    /// refreshes every hour).
    public init(
        idleLifetime: TimeInterval = 30 * 86_400, absoluteLifetime: TimeInterval = 90 * 86_400, graceInterval: TimeInterval = 10,
        replacedDigestsKept: Int = 1_000
    ) {
        self.idleLifetime = idleLifetime
        self.absoluteLifetime = absoluteLifetime
        self.graceInterval = graceInterval
        self.replacedDigestsKept = max(1, replacedDigestsKept)
    }

    /// The idle lifetime in whole milliseconds.
    public var idleMilliseconds: Int64 { Self.milliseconds(idleLifetime) }
    /// The absolute lifetime in whole milliseconds.
    public var absoluteMilliseconds: Int64 { Self.milliseconds(absoluteLifetime) }
    /// The grace interval in whole milliseconds.
    public var graceMilliseconds: Int64 { Self.milliseconds(graceInterval) }

    private static func milliseconds(_ interval: TimeInterval) -> Int64 { Int64((interval * 1000).rounded()) }
    /// An instant in whole milliseconds, rounded down as the stores keep it.
    private static func milliseconds(_ instant: Date) -> Int64 { instant.truncatedToMilliseconds.epochMilliseconds }

    /// The last instant `session` is open if it does not end: its idle or its absolute
    /// lifetime, whichever comes first.
    public func expiry(of session: Session) -> Date {
        let last = min(Self.milliseconds(session.lastUsedAt) + idleMilliseconds, Self.milliseconds(session.createdAt) + absoluteMilliseconds)
        return Date(timeIntervalSince1970: Double(last) / 1000)
    }

    /// Whether `session` is open at `now`: not ended, and `now` not past `expiry(of:)`.
    public func isOpen(_ session: Session, at now: Date) -> Bool {
        !session.isEnded && Self.milliseconds(now) <= Self.milliseconds(expiry(of: session))
    }

    /// Whether `now` is within the grace interval of `session`'s last rotation (a clock behind
    /// the one that rotated counts as within).
    public func isWithinGrace(_ session: Session, at now: Date) -> Bool {
        guard let rotatedAt = session.rotatedAt else { return false }
        return Self.milliseconds(now) - Self.milliseconds(rotatedAt) <= graceMilliseconds
    }

    /// The earliest `lastUsedAt` and `createdAt` of a session open at `now`, as instants of
    /// whole milliseconds: a store that keeps instants compares its columns with these (both
    /// at or after them: open).
    public func openSince(now: Date) -> (lastUsed: Date, created: Date) {
        let now = Self.milliseconds(now)
        return (Date(timeIntervalSince1970: Double(now - idleMilliseconds) / 1000),
                Date(timeIntervalSince1970: Double(now - absoluteMilliseconds) / 1000))
    }
}

/// A session with this id is stored already (a store may also refuse a refresh digest it has
/// issued before): nothing was stored. With random ids and 256-bit tokens it means a bug,
/// never bad luck. Digests are only ever looked up within the session a token names, so a
/// store need not keep them unique across sessions.
public struct SessionConflict: Error, Sendable, Equatable, CustomStringConvertible {
    /// Creates the error.
    public init() {}

    public var description: String { "a session with this id (or refresh token digest) already exists" }
}

extension SessionStore {
    /// A rotation that writes no revocation on a reuse (`revokingUntil: nil`).
    public func rotate(
        session id: SessionID, presented: RefreshDigest, replacement: RefreshDigest, graceBlob: Data, accountVersion: Int64, now: Date
    ) async throws -> RotationOutcome {
        try await rotate(
            session: id, presented: presented, replacement: replacement, graceBlob: graceBlob, accountVersion: accountVersion,
            revokingUntil: nil, now: now
        )
    }
}
