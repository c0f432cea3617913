public import Foundation
public import IdentityDomain

/// What the sessions use case needs of cryptography for refresh tokens (contract §9): new
/// opaque tokens, the digest a store keeps in their place, and sealing under a key derived
/// from a token, so that what the grace rule hands out again is stored, yet a copy of the
/// database alone never yields a usable token.
public protocol RefreshTokenSealing: Sendable {
    /// A new refresh token: at least 256 random bits, URL-safe, no padding.
    func makeToken() -> String
    /// The digest a store keeps instead of `token`, or nil when `token` cannot be one of ours
    /// (wrong length or alphabet): such a token is refused without a lookup.
    func digest(of token: String) -> RefreshDigest?
    /// Seals `plaintext` under a key derived from `token` (and from nothing the store holds).
    func seal(_ plaintext: Data, under token: String) throws -> Data
    /// Opens what `seal` made under the same token; nil when `token` is another or `sealed`
    /// was altered.
    func open(_ sealed: Data, with token: String) -> Data?
}
