import ArgumentParser
import CryptoAdapter
import Foundation
import IdentityComposition
import IdentityPorts
import Logging
import PostgresAdapter
import ServiceLifecycle

/// `DemoServer keys rotate | list`: the ES256/EdDSA signing keys in the store (contract §10).
struct Keys: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Rotate or list the ES256/EdDSA signing keys (needs JWT_ALGORITHM=ES256 or EdDSA and a durable store).",
        subcommands: [Rotate.self, List.self]
    )

    struct Rotate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make a new signing key now: published at once, signing 600 s later; the current key retires then."
        )

        func run() async throws {
            try await Keys.withStack { stack in
                if let key = try await stack.rotateSigningKeys() {
                    print("created \(key.kid) (\(key.algorithm)): published now, signs from \(Keys.time(key.activatesAt))")
                } else if let waiting = try await stack.signingKeyRecords().last(where: { $0.state == .next }) {
                    print("no key made: \(waiting.kid) is already published and signs from \(Keys.time(waiting.activatesAt))")
                } else {
                    print("no key made")
                }
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List every stored signing key: kid, algorithm, state, created, activates, retired, published until."
        )

        func run() async throws {
            try await Keys.withStack { stack in
                print(Keys.table(try await stack.signingKeyRecords()))
            }
        }
    }

    /// The keys one a line under a header, columns aligned; `-` for an instant not set.
    static func table(_ keys: [SigningKeyRecord]) -> String {
        let header = ["KID", "ALG", "STATE", "CREATED", "ACTIVATES", "RETIRED", "PUBLISHED-UNTIL"]
        let rows = keys.map { key in
            [key.kid, key.algorithm, key.state.rawValue, time(key.createdAt), time(key.activatesAt),
             key.retiredAt.map(time) ?? "-", key.publishedUntil.map(time) ?? "-"]
        }
        let widths = header.indices.map { column in ([header] + rows).map { $0[column].count }.max() ?? 0 }
        return ([header] + rows).map { row in
            zip(row, widths).map { $0.0.padding(toLength: $0.1, withPad: " ", startingAt: 0) }.joined(separator: "  ")
                .trimmingCharacters(in: .whitespaces)
        }.joined(separator: "\n")
    }

    /// RFC 3339 in UTC, to the second.
    static func time(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.string(from: date)
    }

    /// Runs `body` on the configured stack once it is prepared (the schema current, the keys
    /// opened with `JWT_KEY_ENCRYPTION_KEY`): a wrong key stops here, before anything is written.
    static func withStack(_ body: @Sendable (IdentityStack) async throws -> Void) async throws {
        let settings = Startup.configuration()
        let logger = Startup.logger(settings)
        guard settings.tokens.algorithm.isAsymmetric else {
            exitWithConfigurationError(ConfigurationError(
                "JWT_ALGORITHM=\(settings.tokens.algorithm.rawValue) signs with JWT_SECRET: there are no key pairs (set JWT_ALGORITHM to ES256 or EdDSA)"
            ))
        }
        guard !settings.isInMemory else {
            exitWithConfigurationError(ConfigurationError(
                "keys needs a durable store (POSTGRES_HOST, or IDENTITY_SQLITE_PATH other than :memory:): keys in memory end with the process"
            ))
        }
        let wiring = try await Startup.wiring(settings, logger: logger, role: .serve(worker: false))
        try await withThrowingTaskGroup(of: Void.self) { group in
            for service in wiring.services { group.addTask { try await service.run() } }
            defer { group.cancelAll() }
            do {
                try await wiring.prepare()
            } catch let error as SigningKeyError {
                Startup.exitWithSigningKeyError(error)
            } catch {
                exitCannotStart("\(error)\(settings.postgres.map { " (\($0.summary))" } ?? "")")
            }
            do {
                try await body(wiring)
            } catch {
                FileHandle.standardError.write(Data("keys failed: \(error)\n".utf8))
                throw ExitCode(1)
            }
        }
    }
}
