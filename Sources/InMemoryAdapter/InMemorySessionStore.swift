public import IdentityPorts
public import IdentityDomain
public import Foundation
import Synchronization
import IdentityAdapterSupport

/// Sessions and their refresh-token digests in memory, for one process.
///
/// Every operation runs under one lock, so a rotation reads and writes a session in one step:
/// two refreshes with one token give one rotation, and the other finds the token just replaced.
/// Its events (`session.started`, `session.ended`) go to the outbox of the `InMemoryUserStore`
/// it is given, in the same step as the change (on that store's actor, the lock held), so
/// they are never seen without it and keep the order of the changes with the accounts' own.
/// Sessions past their lifetime are purged as it goes (at most once a minute, when a session
/// opens) and by `purgeExpired(now:)`, so memory stays bounded by the sessions that can
/// still matter.
///
/// ```swift
/// let users = InMemoryUserStore()
/// let sessions = InMemorySessionStore(outbox: users)
/// ```
public final class InMemorySessionStore: SessionStore {
    private struct State {
        var sessions: [SessionID: Session] = [:]
        /// The current digest of every stored session.
        var current: [RefreshDigest: SessionID] = [:]
        /// The replaced digests kept for reuse detection.
        var replaced: [RefreshDigest: SessionID] = [:]
        /// Each session's kept replaced digests, oldest first.
        var history: [SessionID: [RefreshDigest]] = [:]
        var lastPurge: Date?
    }

    private let state = Mutex(State())
    private let configuration: SessionConfiguration
    private let outbox: InMemoryUserStore

    /// Creates an empty store with `configuration` that writes its events to the outbox of
    /// `outbox`, the account store of the same process.
    public init(outbox: InMemoryUserStore, configuration: SessionConfiguration = SessionConfiguration()) {
        self.outbox = outbox
        self.configuration = configuration
    }

    /// How many sessions are held, ended and expired ones included until they are purged.
    public var count: Int { state.withLock { $0.sessions.count } }

    public func open(_ session: Session) async throws {
        try await commit { state, configuration in
            if state.lastPurge.map({ session.createdAt.timeIntervalSince($0) >= 60 }) ?? true {
                state.lastPurge = session.createdAt
                Self.purge(&state, configuration: configuration, now: session.createdAt)
            }
            guard state.sessions[session.id] == nil, state.current[session.refreshDigest] == nil,
                  state.replaced[session.refreshDigest] == nil
            else { throw SessionConflict() }
            state.sessions[session.id] = session
            state.current[session.refreshDigest] = session.id
            return ((), [session.startedEvent()])
        }
    }

    public func rotate(
        session id: SessionID, presented: RefreshDigest, replacement: RefreshDigest, graceBlob: Data, accountVersion: Int64,
        revokingUntil: Date?, now: Date
    ) async throws -> RotationOutcome {
        let revocations = outbox.revocations
        return try await commitReadingAccounts { state, configuration, versions in
            guard let session = state.sessions[id] else { return (.unknown, []) }
            let rotation = configuration.rotation(
                of: session, presented: presented, isKept: state.replaced[presented] == id, accountVersion: versions(session.userID),
                replacement: replacement, graceBlob: graceBlob, expectedAccountVersion: accountVersion, now: now
            )
            guard let stored = rotation.stored else { return (rotation.outcome, []) }
            if case .reused(let ended) = rotation.outcome, let revokingUntil {
                // Before the session changes: a failed write leaves it as it was.
                try revocations.write([.session(ended.id, userID: ended.userID, until: revokingUntil)])
            }
            if case .rotated = rotation.outcome {
                guard state.current[replacement] == nil, state.replaced[replacement] == nil else { throw SessionConflict() }
                state.current[presented] = nil
                state.current[replacement] = id
                state.replaced[presented] = id
                var kept = state.history[id, default: []]
                kept.append(presented)
                while kept.count > configuration.replacedDigestsKept { state.replaced[kept.removeFirst()] = nil }
                state.history[id] = kept
            }
            state.sessions[id] = stored
            return (rotation.outcome, rotation.outcome.events())
        }
    }

    public func session(id: SessionID) -> Session? {
        state.withLock { $0.sessions[id] }
    }

    /// The session, then its account's version from the `InMemoryUserStore` this store writes
    /// its events to.
    public func sessionAndAccount(id: SessionID) async -> SessionAndAccount? {
        guard let session = session(id: id) else { return nil }
        return SessionAndAccount(session: session, accountVersion: await outbox.user(id: session.userID)?.version)
    }

    public func sessions(of userID: UserID, now: Date) -> [Session] {
        let configuration = configuration
        return state.withLock { state in
            state.sessions.values.filter { $0.userID == userID && configuration.isOpen($0, at: now) }.sorted(by: Self.newestFirst)
        }
    }

    public func end(id: SessionID, userID: UserID, reason: SessionEndReason, now: Date) async throws -> Session? {
        try await commit { state, configuration in
            guard let session = state.sessions[id], session.userID == userID, configuration.isOpen(session, at: now) else {
                return (nil, [])
            }
            let ended = session.ended(reason, at: now)
            state.sessions[id] = ended
            return (ended, ended.endedEvent().map { [$0] } ?? [])
        }
    }

    public func endAll(userID: UserID, except: SessionID?, reason: SessionEndReason, now: Date) async throws -> [Session] {
        try await commit { state, configuration in
            let open = state.sessions.values.filter { $0.userID == userID && $0.id != except && configuration.isOpen($0, at: now) }
            let ended = open.sorted(by: Self.newestFirst).map { session in
                let ended = session.ended(reason, at: now)
                state.sessions[session.id] = ended
                return ended
            }
            return (ended, ended.compactMap { $0.endedEvent() })
        }
    }

    /// Runs `change` under the lock and writes the events it returns to the outbox in the same
    /// step, on the account store's actor.
    private func commit<Result: Sendable>(
        _ change: @escaping @Sendable (inout State, SessionConfiguration) throws -> (result: Result, events: [IdentityEvent])
    ) async throws -> Result {
        try await commitReadingAccounts { state, configuration, _ in try change(&state, configuration) }
    }

    /// `commit`, where `change` may also ask an account's version in the account store, in the
    /// same step.
    private func commitReadingAccounts<Result: Sendable>(
        _ change: @escaping @Sendable (inout State, SessionConfiguration, (UserID) -> Int?) throws -> (result: Result, events: [IdentityEvent])
    ) async throws -> Result {
        try await outbox.commit { versions in try self.state.withLock { try change(&$0, self.configuration, versions) } }
    }

    @discardableResult
    public func purgeExpired(now: Date) -> Int {
        let configuration = configuration
        return state.withLock { state in
            state.lastPurge = now
            return Self.purge(&state, configuration: configuration, now: now)
        }
    }

    /// Deletes the sessions whose lifetime ended before `now`, with their digests.
    @discardableResult
    private static func purge(_ state: inout State, configuration: SessionConfiguration, now: Date) -> Int {
        let gone = state.sessions.values.filter { configuration.expiry(of: $0).epochMilliseconds < now.truncatedToMilliseconds.epochMilliseconds }
        for session in gone {
            state.sessions[session.id] = nil
            state.current[session.refreshDigest] = nil
            for digest in state.history.removeValue(forKey: session.id) ?? [] { state.replaced[digest] = nil }
        }
        return gone.count
    }

    private static func newestFirst(_ a: Session, _ b: Session) -> Bool {
        a.createdAt != b.createdAt ? a.createdAt > b.createdAt : a.id.description > b.id.description
    }
}
