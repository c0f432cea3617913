public import Foundation
public import IdentityDomain
public import IdentityPorts

extension Session {
    /// The `session.started` event of this session just opened: at its `createdAt`, with a
    /// fresh event id (`id`, for tests).
    public func startedEvent(id: UUID = UUID()) -> IdentityEvent {
        IdentityEvent(eventID: id, occurredAt: createdAt, payload: .sessionStarted(userID: userID, sessionID: self.id))
    }

    /// The `session.ended` event of this session as ended: at its `endedAt`, for its
    /// `endReason`, with a fresh event id (`id`, for tests); nil while it has not ended.
    public func endedEvent(id: UUID = UUID()) -> IdentityEvent? {
        guard let endedAt, let endReason else { return nil }
        return IdentityEvent(eventID: id, occurredAt: endedAt, payload: .sessionEnded(userID: userID, sessionID: self.id, reason: endReason))
    }
}

extension RotationOutcome {
    /// The events a store writes with this outcome, in its transaction: `session.ended`
    /// (`reuse`) for `.reused`; none otherwise (a rotation is no event, and the grace or an
    /// unknown digest changes nothing).
    public func events() -> [IdentityEvent] {
        guard case .reused(let ended) = self, let event = ended.endedEvent() else { return [] }
        return [event]
    }
}
