public import Foundation
public import IdentityDomain
public import IdentityPorts

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
