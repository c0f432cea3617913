public import IdentityPorts
import IdentityDomain
import Foundation
import Testing

/// The behaviour every store must show when a change carries revocations (a password change,
/// a deletion): the change and its revocations commit together, or neither does.
///
/// ```swift
/// @Test func conforms() async throws {
///     try await ChangeRevocationConformance(
///         makeStores: { let store = MyStore(); return (store, store) },
///         makeStoresFailingRevocations: { let store = MyStore(failingRevocationWrites: true); return (store, store) }
///     ).run()
/// }
/// ```
/// `makeStores` returns an empty repository and the revocation store its changes write to.
/// `makeStoresFailingRevocations` returns the same, except that every revocation write fails
/// (a trigger that raises, an injected fault): what a second write that fails inside the
/// change's transaction looks like.
public struct ChangeRevocationConformance: Sendable {
    /// Makes a fresh repository and the revocation store its changes write to.
    public typealias Factory = @Sendable () async throws -> (users: any UserRepository, revocations: any RevocationStore)
    private let makeStores: Factory
    private let makeFailingStores: Factory

    /// Creates the suite.
    public init(makeStores: @escaping Factory, makeStoresFailingRevocations: @escaping Factory) {
        self.makeStores = makeStores
        self.makeFailingStores = makeStoresFailingRevocations
    }

    /// Runs every check, each on fresh stores.
    public func run() async throws {
        await Fixture.check("passwordChangeCommitsWithItsCutoff") { try await passwordChangeCommitsWithItsCutoff() }
        await Fixture.check("deletionCommitsWithItsCutoff") { try await deletionCommitsWithItsCutoff() }
        await Fixture.check("failedCutoffLeavesThePasswordAsItWas") { try await failedCutoffLeavesThePasswordAsItWas() }
        await Fixture.check("failedCutoffLeavesTheAccountInPlace") { try await failedCutoffLeavesTheAccountInPlace() }
    }

    private let until = Fixture.epoch.addingTimeInterval(7200)

    /// Ada, registered (version 1), and her password change to version 2 with its cut-off.
    private func passwordChange(on users: any UserRepository) async throws -> (before: User, after: User, cutoff: Revocation) {
        let ada = try Fixture.user("ada")
        try await users.insert(ada, events: [])
        var changed = ada
        _ = changed.apply(name: nil, email: nil, passwordHash: "$argon2id$v=19$m=8,t=1,p=1$bmV3c2FsdA$bmV3aGFzaA", at: Fixture.epoch)
        return (ada, changed, .account(userID: ada.id, belowVersion: Int64(changed.version), until: until))
    }

    func passwordChangeCommitsWithItsCutoff() async throws {
        let (users, revocations) = try await makeStores()
        let (before, after, cutoff) = try await passwordChange(on: users)
        let updated = Fixture.event(.userUpdated(userID: before.id, changed: [.password]))
        try await users.update(after, expectedVersion: before.version, events: [updated], revocations: [cutoff])
        #expect(try await users.user(id: before.id)?.passwordHash == after.passwordHash, "the new password is stored")
        #expect(try await revocations.isRevoked(jti: "old", userID: before.id, accountVersion: Int64(before.version)),
                "a token of the old version is revoked by the same write")
        #expect(try await !revocations.isRevoked(jti: "new", userID: before.id, accountVersion: Int64(after.version)),
                "a token of the new version works")
    }

    func deletionCommitsWithItsCutoff() async throws {
        let (users, revocations) = try await makeStores()
        let ada = try Fixture.user("ada")
        try await users.insert(ada, events: [])
        let everything = Revocation.account(userID: ada.id, belowVersion: Revocation.everyVersion, until: until)
        try await users.delete(id: ada.id, events: [Fixture.event(.userDeleted(userID: ada.id))], revocations: [everything])
        #expect(try await users.user(id: ada.id) == nil, "the account is gone")
        #expect(try await revocations.isRevoked(jti: "any", userID: ada.id, accountVersion: Int64(ada.version)),
                "and every token it had is revoked by the same write")
    }

    func failedCutoffLeavesThePasswordAsItWas() async throws {
        let (users, revocations) = try await makeFailingStores()
        let (before, after, cutoff) = try await passwordChange(on: users)
        let updated = Fixture.event(.userUpdated(userID: before.id, changed: [.password]))
        await #expect(throws: (any Error).self, "a change whose revocation cannot be written fails") {
            try await users.update(after, expectedVersion: before.version, events: [updated], revocations: [cutoff])
        }
        #expect(try await users.user(id: before.id) == before,
                "and leaves the account as it was: the old password, the old version (neither commits)")
        #expect(try await !revocations.isRevoked(jti: "old", userID: before.id, accountVersion: Int64(before.version)),
                "and no cut-off was written")
        try await users.update(after, expectedVersion: before.version, events: [updated])
        #expect(try await users.user(id: before.id)?.passwordHash == after.passwordHash,
                "a change without revocations still goes through on the same store (only the revocation write fails)")
    }

    func failedCutoffLeavesTheAccountInPlace() async throws {
        let (users, _) = try await makeFailingStores()
        let ada = try Fixture.user("ada")
        try await users.insert(ada, events: [])
        let everything = Revocation.account(userID: ada.id, belowVersion: Revocation.everyVersion, until: until)
        await #expect(throws: (any Error).self, "a deletion whose revocation cannot be written fails") {
            try await users.delete(id: ada.id, events: [Fixture.event(.userDeleted(userID: ada.id))], revocations: [everything])
        }
        #expect(try await users.user(id: ada.id) == ada, "and the account is still there")
    }
}
