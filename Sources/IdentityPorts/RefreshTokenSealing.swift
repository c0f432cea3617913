public import Foundation
public import IdentityDomain

/// What the sessions use case needs of cryptography for refresh tokens (contract §9): new
/// opaque tokens, the digest a store keeps in their place, and sealing under a key derived
/// from a token, so that what the grace rule hands out again is stored, yet a copy of the
/// database alone never yields a usable token.
public protocol RefreshTokenSealing: Sendable {
    /// A new refresh token of session `session`, made for `userID`'s account at
    /// `accountVersion`: those three and at least 256 random bits, URL-safe, no padding. A
    /// refresh of it can then rotate without reading the session first.
    func makeToken(for session: SessionID, userID: UserID, accountVersion: Int64) -> String
    /// The session a token names (with the account and version it was made for, if it says
    /// them) and the digest a store keeps instead of it, or nil when `token` cannot be one of
    /// ours (wrong length or alphabet): such a token is refused without a lookup.
    func parse(_ token: String) -> RefreshTokenParts?
    /// Seals `plaintext` under a key derived from `token` (and from nothing the store holds).
    func seal(_ plaintext: Data, under token: String) throws -> Data
    /// Opens what `seal` made under the same token; nil when `token` is another or `sealed`
    /// was altered.
    func open(_ sealed: Data, with token: String) -> Data?
}

/// What a well-formed refresh token carries: the session it names, the account and version it
/// was made for (nil in a token of an earlier format, which names its session only), and the
/// digest its session store knows it by. None of it is checked until a store finds the digest.
public struct RefreshTokenParts: Sendable, Equatable {
    /// The session the token names (not a secret).
    public let sessionID: SessionID
    /// The account the token was made for, and its version then (not secrets).
    public let account: (userID: UserID, version: Int64)?
    /// The digest of the whole token.
    public let digest: RefreshDigest

    /// Creates the parts.
    public init(sessionID: SessionID, account: (userID: UserID, version: Int64)? = nil, digest: RefreshDigest) {
        self.sessionID = sessionID
        self.account = account
        self.digest = digest
    }

    /// Equal when the session, the account and version (or their absence) and the digest are.
    public static func == (a: RefreshTokenParts, b: RefreshTokenParts) -> Bool {
        a.sessionID == b.sessionID && a.digest == b.digest && a.account?.userID == b.account?.userID
            && a.account?.version == b.account?.version
    }
}
