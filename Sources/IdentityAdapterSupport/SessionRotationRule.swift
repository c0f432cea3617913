public import Foundation
public import IdentityDomain
public import IdentityPorts

/// What `SessionStore.rotate` does to a session once the store has found the session a
/// refresh token names: what to store and what to answer.
public struct SessionRotation: Sendable, Equatable {
    /// The session to store in place of the one found; nil: nothing changes.
    public let stored: Session?
    /// The answer.
    public let outcome: RotationOutcome

    /// Creates a decision.
    public init(stored: Session?, outcome: RotationOutcome) {
        self.stored = stored
        self.outcome = outcome
    }
}

extension SessionConfiguration {
    /// The rule every session store applies to `presented`, a digest presented for `session`,
    /// at `now` (contract §9). `isKept` says whether `presented` is one of the replaced digests
    /// the store keeps for `session`; `accountVersion` is the version its account has now (nil:
    /// gone), `expectedAccountVersion` the one the new pair was made for:
    ///
    /// - a session that is not open (ended, or past its lifetime) changes no more: unknown;
    /// - its current digest rotates to `replacement`, keeping `graceBlob`, on
    ///   `expectedAccountVersion`, if the account is at that version; else nothing changes and
    ///   the answer gives the account's version;
    /// - the digest just replaced, within the grace interval, gets the stored blob, and
    ///   nothing changes;
    /// - any other replaced digest it keeps ends the session with reason `reuse`;
    /// - anything else is unknown.
    ///
    /// A store holds the session (a lock, a transaction, a compare-and-swap on what it read)
    /// from reading it to writing `stored` and the outcome's events (`RotationOutcome.events()`).
    public func rotation(
        of session: Session, presented: RefreshDigest, isKept: Bool, accountVersion: Int?, replacement: RefreshDigest, graceBlob: Data,
        expectedAccountVersion: Int64, now: Date
    ) -> SessionRotation {
        guard isOpen(session, at: now) else { return SessionRotation(stored: nil, outcome: .unknown) }
        if presented == session.refreshDigest {
            guard let accountVersion, Int64(accountVersion) == expectedAccountVersion else {
                return SessionRotation(stored: nil, outcome: .accountChanged(version: accountVersion))
            }
            let rotated = session.rotated(to: replacement, graceBlob: graceBlob, accountVersion: expectedAccountVersion, at: now)
            return SessionRotation(stored: rotated, outcome: .rotated(rotated))
        }
        if presented == session.previousDigest, isWithinGrace(session, at: now), let blob = session.graceBlob {
            return SessionRotation(stored: nil, outcome: .grace(session, blob: blob))
        }
        guard isKept || presented == session.previousDigest else { return SessionRotation(stored: nil, outcome: .unknown) }
        let ended = session.ended(.reuse, at: now)
        return SessionRotation(stored: ended, outcome: .reused(ended))
    }
}
