public import Foundation
public import IdentityDomain

/// What the sessions use case needs of cryptography for refresh tokens (contract §9): new
/// opaque tokens, the digest a store keeps in their place, and sealing under a key derived
/// from a token, so that what the grace rule hands out again is stored, yet a copy of the
/// database alone never yields a usable token.
public protocol RefreshTokenSealing: Sendable {
    /// A new refresh token of session `session`: the session's id and at least 256 random
    /// bits, URL-safe, no padding.
    func makeToken(for session: SessionID) -> String
    /// The session a token names and the digest a store keeps instead of it, or nil when
    /// `token` cannot be one of ours (wrong length or alphabet): such a token is refused
    /// without a lookup.
    func parse(_ token: String) -> RefreshTokenParts?
    /// Seals `plaintext` under a key derived from `token` (and from nothing the store holds).
    func seal(_ plaintext: Data, under token: String) throws -> Data
    /// Opens what `seal` made under the same token; nil when `token` is another or `sealed`
    /// was altered.
    func open(_ sealed: Data, with token: String) -> Data?
}

/// What a well-formed refresh token carries: the session it names, and the digest its session
/// store knows it by.
public struct RefreshTokenParts: Sendable, Equatable {
    /// The session the token names (the token's first part; not a secret).
    public let sessionID: SessionID
    /// The digest of the whole token.
    public let digest: RefreshDigest

    /// Creates the parts.
    public init(sessionID: SessionID, digest: RefreshDigest) {
        self.sessionID = sessionID
        self.digest = digest
    }
}
