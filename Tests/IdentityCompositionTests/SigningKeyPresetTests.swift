import Foundation
@testable import IdentityComposition
import IdentityPorts
import IdentityTestSupport
import InMemoryAdapter
import Testing

@Suite("Signing keys in the store presets")
struct SigningKeyPresetTests {
    static let key = SigningKeyRecord(
        kid: "preset-key", algorithm: "ES256", publicKey: Data(repeating: 4, count: 64), sealedPrivateKey: Data([1, 0, 255]),
        state: .active, createdAt: Date(timeIntervalSince1970: 1_790_000_000.25), activatesAt: Date(timeIntervalSince1970: 1_790_000_000.25)
    )

    @Test("SQLite: the preset keeps signing keys in its file: a second stack's stores on it read what the first committed")
    func sqlite() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("keys-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("identity.sqlite").path
        let first = try await IdentityStore.sqlite(path: path).open(IdentityStackTests.configuration)
        #expect(try await first.signingKeys.commit([.insert(Self.key)], expectedRevision: 0))
        let second = try await IdentityStore.sqlite(path: path).open(IdentityStackTests.configuration)
        #expect(try await second.signingKeys.keySet() == SigningKeySet(revision: 1, keys: [Self.key]), "the key and its revision, from the file")
        #expect(try await !second.signingKeys.commit([], expectedRevision: 0), "and the revision is the file's: the first's commit counts")
    }

    @Test("in memory: the preset's signing keys are its own, in memory")
    func inMemory() async throws {
        let stores = try await IdentityStore.inMemory.open(IdentityStackTests.configuration)
        #expect(stores.signingKeys is InMemorySigningKeyStore)
    }

    @Test(
        "PostgreSQL: two instances' stores on one database share their signing keys",
        .enabled(if: TestDatabase.isConfigured, TestDatabase.skipReason)
    )
    func postgres() async throws {
        try await TestDatabase.with { client, name in
            let postgres = IdentityStackTests.postgres(name)
            let a = try await IdentityStore.postgresClient(client, configuration: postgres).open(IdentityStackTests.migrating)
            try await a.prepare(.migrate)
            try await TestDatabase.withClient(database: name) { other in
                let b = try await IdentityStore.postgresClient(other, configuration: postgres).open(IdentityStackTests.migrating)
                try await b.prepare(.requireCurrent)
                #expect(try await a.signingKeys.commit([.insert(Self.key)], expectedRevision: 0))
                #expect(try await b.signingKeys.keySet() == SigningKeySet(revision: 1, keys: [Self.key]), "B reads what A committed")
            }
        }
    }
}
