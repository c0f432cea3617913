public import Foundation
public import IdentityDomain
public import IdentityPorts

/// What a login or a refresh hands out (contract §9): an access token carrying the session's
/// `sid`, and the session's current refresh token.
public struct SignIn: Sendable, Equatable {
    /// The access token.
    public let access: IssuedToken
    /// The refresh token that renews the session once.
    public let refreshToken: String
    /// The session both belong to.
    public let sessionID: SessionID

    /// Creates the pair.
    public init(access: IssuedToken, refreshToken: String, sessionID: SessionID) {
        self.access = access
        self.refreshToken = refreshToken
        self.sessionID = sessionID
    }

    /// The compact access token.
    public var token: String { access.token }
    /// The access token's `jti`.
    public var jti: String { access.jti }
    /// When the access token was issued.
    public var issuedAt: Date { access.issuedAt }
    /// When the access token expires.
    public var expiresAt: Date { access.expiresAt }
    /// The access token's lifetime in whole seconds (`expires_in`).
    public var expiresIn: Int { access.expiresIn }
}

/// One of the caller's open sessions, as `GET /sessions` lists it.
public struct SessionRecord: Sendable, Equatable {
    /// The session's id.
    public let id: SessionID
    /// When it opened (the login).
    public let createdAt: Date
    /// When it was last refreshed (or opened).
    public let lastUsedAt: Date
    /// The `User-Agent` of the login, if any.
    public let userAgent: String?
    /// The client address of the login, if known.
    public let clientAddress: String?
    /// Whether it is the session of the token the caller presented.
    public let isCurrent: Bool
}

/// Which sessions `DELETE /sessions` ends.
public enum SessionScope: String, Sendable, CaseIterable {
    /// Every session of the caller but the current one.
    case others
    /// Every session of the caller, the current one included.
    case all
}

/// The session use cases: open one at login, refresh (rotation, grace, reuse), end one, some or
/// all. Session writes apply here, on the instance that serves the request, to the store every
/// instance shares (see Docs/decisions.md, "Sessions in distributed mode").
///
/// Ending a session writes its revocation first, then ends it: should the second write fail,
/// its access tokens are already refused, and a refresh finds the revocation and is refused
/// too. A reuse is ended and revoked in one step of the store (`rotate(…revokingUntil:…)`). A refresh also refuses a session whose account version is below a cut-off (a password
/// change or a deletion since its last token), so a session never outlives those even if
/// ending it failed or raced a login.
struct SessionHandler: Sendable {
    let users: any UserRepository
    let sessions: any SessionStore
    let revocations: any RevocationStore
    let tokens: any TokenService
    let refreshTokens: any RefreshTokenSealing
    let configuration: SessionConfiguration
    let throttle: any LoginThrottle
    let clock: any IdentityClock
    let ids: any IDGenerator

    /// Opens a session for `user`, whose password was just checked, and issues its first pair.
    /// `stillAccepted` says whether the account as it is now (nil: deleted) still takes the
    /// password that was checked.
    func open(
        for user: User, client: String?, userAgent: String?, stillAccepted: (User?) async throws -> Bool
    ) async throws -> SignIn {
        let id = SessionID(ids.makeUUID())
        let version = Int64(user.version)
        let refresh = refreshTokens.makeToken(for: id, userID: user.id, accountVersion: version)
        guard let parts = refreshTokens.parse(refresh) else { throw UnusableRefreshToken() }
        let now = clock.now()
        try await sessions.open(Session.open(
            id: id, userID: user.id, refreshDigest: parts.digest, userAgent: userAgent.map(Self.bounded),
            clientAddress: client, accountVersion: version, at: now
        ))
        // A password change or a deletion that committed while this login checked the old
        // password has ended the account's sessions already, before this one opened: read the
        // account again, from the store that decides, and end this one too.
        let current = try await users.user(id: user.id)
        guard try await stillAccepted(current) else {
            let reason: SessionEndReason = current == nil ? .accountDeleted : .passwordChange
            _ = try await sessions.end(id: id, userID: user.id, reason: reason, now: clock.now())
            throw IdentityError.invalidCredentials
        }
        let access = try await tokens.issue(for: user.id, accountVersion: version, sessionID: id, issuedAt: now)
        return SignIn(access: access, refreshToken: refresh, sessionID: id)
    }

    /// Renews the session `token` names: a new pair, or within the grace interval the pair the
    /// token's rotation handed out; a replay of an older token ends the session.
    func refresh(_ token: String, client: String?) async throws -> SignIn {
        guard let parts = refreshTokens.parse(token) else { throw try await refused(client) }
        let now = clock.now()
        let sessionID = parts.sessionID
        // The account and version the new pair is made for. A token that says them is taken at
        // its word (the store's compare-and-swap checks both the digest, which covers them, and
        // the account's version): one round trip. One that does not (the earlier format), or
        // one whose session is revoked, reads the session first, and is judged on what is stored.
        var account: (userID: UserID, version: Int64)
        if let said = parts.account,
           !(try await revocations.isRevoked(jti: Revocation.sessionKey(sessionID), userID: said.userID, accountVersion: said.version)) {
            account = said
        } else {
            guard let found = try await sessions.sessionAndAccount(id: sessionID) else { throw try await refused(client) }
            let session = found.session
            guard configuration.isOpen(session, at: now), let version = found.accountVersion else { throw try await refused(client) }
            // Ended by its revocation (an end whose second write failed), or cut off by a
            // password change or deletion since its last token.
            if try await revocations.isRevoked(
                jti: Revocation.sessionKey(session.id), userID: session.userID, accountVersion: session.accountVersion
            ) {
                _ = try? await sessions.end(id: session.id, userID: session.userID, reason: .revoked, now: now)
                throw try await refused(client)
            }
            account = (session.userID, Int64(version))
        }
        // A revocation written with a reuse's end: this instance honours it at once.
        let revokingUntil = tokens.cutoffExpiry(madeAt: now)
        // Made again only when the account moved on since the token (its version changed):
        // at most a few times, each on the version the store saw.
        for _ in 0..<3 {
            let access = try await tokens.issue(for: account.userID, accountVersion: account.version, sessionID: sessionID, issuedAt: now)
            let next = refreshTokens.makeToken(for: sessionID, userID: account.userID, accountVersion: account.version)
            guard let nextParts = refreshTokens.parse(next) else { throw UnusableRefreshToken() }
            let pair = SignIn(access: access, refreshToken: next, sessionID: sessionID)
            let sealed = try refreshTokens.seal(SealedPair(pair).encoded(), under: token)
            // A reuse ends the session and writes its revocation in one step of the store.
            switch try await sessions.rotate(
                session: sessionID, presented: parts.digest, replacement: nextParts.digest, graceBlob: sealed,
                accountVersion: account.version, revokingUntil: revokingUntil, now: now
            ) {
            case .rotated:
                return pair
            case .grace(_, let blob):
                guard let opened = refreshTokens.open(blob, with: token),
                      let earlier = SealedPair(decoding: opened)?.signIn
                else { throw try await refused(client) }
                return earlier
            case .reused(let ended):
                await revocations.committed([.session(ended.id, userID: ended.userID, until: revokingUntil)])
                throw IdentityError.refreshTokenReused
            case .accountChanged(let version):
                // Deleted: its sessions end with it.
                guard let version else { throw try await refused(client) }
                account.version = Int64(version)
            case .unknown:
                // Ended meanwhile. By a reuse, the store wrote its revocation with the end: this
                // instance honours it at once, and the caller is told it was a reuse.
                if let current = try await sessions.session(id: sessionID), current.endReason == .reuse, let ended = current.endedAt {
                    await revocations.committed([.session(current.id, userID: current.userID, until: tokens.cutoffExpiry(madeAt: ended))])
                    throw IdentityError.refreshTokenReused
                }
                throw try await refused(client)
            }
        }
        throw try await refused(client)
    }

    /// The open sessions of `principal`'s account, newest first.
    func list(_ principal: Principal) async throws -> [SessionRecord] {
        try await sessions.sessions(of: principal.userID, now: clock.now()).map { session in
            SessionRecord(
                id: session.id, createdAt: session.createdAt, lastUsedAt: session.lastUsedAt, userAgent: session.userAgent,
                clientAddress: session.clientAddress, isCurrent: session.id == principal.sessionID
            )
        }
    }

    /// Ends the open session `id` of `userID` for `reason`; `IdentityError.sessionNotFound` when
    /// there is none (unknown, ended, another account's).
    func end(_ id: SessionID, of userID: UserID, reason: SessionEndReason) async throws {
        let now = clock.now()
        guard let session = try await sessions.session(id: id), session.userID == userID, configuration.isOpen(session, at: now) else {
            throw IdentityError.sessionNotFound
        }
        try await revoke(session, now: now)
        guard try await sessions.end(id: id, userID: userID, reason: reason, now: now) != nil else {
            throw IdentityError.sessionNotFound
        }
    }

    /// Ends every open session of `userID` (but `except`) for `reason`: revoked first, then ended;
    /// a session opened between the two is revoked after.
    func endAll(of userID: UserID, except: SessionID?, reason: SessionEndReason) async throws {
        let now = clock.now()
        let open = try await sessions.sessions(of: userID, now: now).filter { $0.id != except }
        for session in open { try await revoke(session, now: now) }
        let ended = try await sessions.endAll(userID: userID, except: except, reason: reason, now: now)
        let revoked = Set(open.map(\.id))
        for session in ended where !revoked.contains(session.id) { try await revoke(session, now: now) }
    }

    /// Refuses every access token of `session`, on every instance, for as long as any may live.
    private func revoke(_ session: Session, now: Date) async throws {
        let until = tokens.cutoffExpiry(madeAt: now)
        try await revocations.revoke(jti: Revocation.sessionKey(session.id), userID: session.userID, until: until)
        await revocations.committed([.session(session.id, userID: session.userID, until: until)])
    }

    /// A refused refresh, counted like a failed login for the client address: a throttled
    /// address gets `LoginThrottled` (429) instead.
    private func refused(_ client: String?) async throws -> any Error {
        let attempt = ids.makeUUID()
        // A key of its own per attempt: only the address's count matters.
        let email = Email(trustedCanonical: "refresh-\(attempt.uuidString.lowercased())@sessions.invalid")
        let now = clock.now()
        switch try await throttle.beginAttempt(attempt, email: email, client: client, now: now) {
        case .throttled(let seconds):
            return LoginThrottled(retryAfterSeconds: seconds)
        case .allowed:
            try await throttle.finishAttempt(attempt, email: email, client: client, outcome: .failure, now: now)
            return IdentityError.refreshTokenRefused
        case .busy:
            return IdentityError.refreshTokenRefused
        }
    }

    /// A `User-Agent` kept to a sane length for listing.
    private static func bounded(_ userAgent: String) -> String {
        String(userAgent.prefix(256))
    }
}

/// The pair a rotation hands out, as sealed for the grace rule: a version byte (1), `issuedAt`
/// and `expiresAt` (the bits of their `timeIntervalSince1970`, big-endian), the session's 16
/// bytes, then the access token, its `jti` and the refresh token, each a big-endian 32-bit
/// length and its UTF-8 bytes. Written and read by hand: Foundation's JSON coders were a
/// visible share of a refresh's CPU.
private struct SealedPair {
    let token: String
    let jti: String
    let issuedAt: Date
    let expiresAt: Date
    let refreshToken: String
    let sessionID: UUID

    private static let version: UInt8 = 1

    init(_ pair: SignIn) {
        token = pair.access.token
        jti = pair.access.jti
        issuedAt = pair.access.issuedAt
        expiresAt = pair.access.expiresAt
        refreshToken = pair.refreshToken
        sessionID = pair.sessionID.uuid
    }

    /// Reads what `encoded()` wrote; nil for anything else.
    init?(decoding bytes: Data) {
        guard bytes.first == Self.version else { return nil }
        var reader = ByteReader(bytes: [UInt8](bytes), offset: 1)
        guard let issued = reader.uint64(), let expires = reader.uint64(), let id = reader.bytes(16),
              let token = reader.string(), let jti = reader.string(), let refreshToken = reader.string(), reader.isAtEnd
        else { return nil }
        self.issuedAt = Date(timeIntervalSince1970: Double(bitPattern: issued))
        self.expiresAt = Date(timeIntervalSince1970: Double(bitPattern: expires))
        self.sessionID = id.withUnsafeBytes { UUID(uuid: $0.loadUnaligned(as: uuid_t.self)) }
        self.token = token
        self.jti = jti
        self.refreshToken = refreshToken
    }

    /// The blob to seal.
    func encoded() -> Data {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(1 + 8 + 8 + 16 + 12 + token.utf8.count + jti.utf8.count + refreshToken.utf8.count)
        bytes.append(Self.version)
        Self.append(issuedAt.timeIntervalSince1970.bitPattern, to: &bytes)
        Self.append(expiresAt.timeIntervalSince1970.bitPattern, to: &bytes)
        withUnsafeBytes(of: sessionID.uuid) { bytes.append(contentsOf: $0) }
        for text in [token, jti, refreshToken] {
            Self.append(UInt32(text.utf8.count), to: &bytes)
            bytes.append(contentsOf: text.utf8)
        }
        return Data(bytes)
    }

    private static func append<Integer: FixedWidthInteger>(_ value: Integer, to bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) }
    }

    var signIn: SignIn {
        SignIn(
            access: IssuedToken(token: token, jti: jti, issuedAt: issuedAt, expiresAt: expiresAt), refreshToken: refreshToken,
            sessionID: SessionID(sessionID)
        )
    }
}

/// Reads a sealed pair's fields in order; nil past the end.
private struct ByteReader {
    let bytes: [UInt8]
    var offset: Int

    var isAtEnd: Bool { offset == bytes.count }

    mutating func bytes(_ count: Int) -> ArraySlice<UInt8>? {
        guard count >= 0, bytes.count - offset >= count else { return nil }
        defer { offset += count }
        return bytes[offset..<offset + count]
    }

    mutating func uint64() -> UInt64? {
        bytes(8).map { $0.reduce(0) { $0 << 8 | UInt64($1) } }
    }

    mutating func string() -> String? {
        guard let length = bytes(4).map({ $0.reduce(0) { $0 << 8 | Int($1) } }), let text = bytes(length) else { return nil }
        return String(validating: text, as: UTF8.self)
    }
}

/// A refresh token this service made that its own sealer does not read: a bug.
struct UnusableRefreshToken: Error, CustomStringConvertible {
    var description: String { "a refresh token just made does not parse" }
}
