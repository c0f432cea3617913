import Foundation
import HostAppKit
import PostgresAdapter

let environment = ProcessInfo.processInfo.environment
// HOST_APP_JWT_SECRET: at least 32 bytes; the same secret must sign and verify every token.
guard let secret = environment["HOST_APP_JWT_SECRET"], secret.utf8.count >= 32 else {
    FileHandle.standardError.write(Data("set HOST_APP_JWT_SECRET to 32 or more bytes\n".utf8))
    exit(78)
}
// HOST_APP_PORT: the port on 127.0.0.1 (8080 unless set).
let port = Int(environment["HOST_APP_PORT"] ?? "") ?? 8080
// HOST_APP_POSTGRES_HOST (and _PORT, _USER, _PASSWORD, _DB): PostgreSQL instead of memory.
if let host = environment["HOST_APP_POSTGRES_HOST"] {
    let postgres = PostgresConfiguration(
        host: host, port: Int(environment["HOST_APP_POSTGRES_PORT"] ?? "") ?? 5432,
        username: environment["HOST_APP_POSTGRES_USER"] ?? "postgres", password: environment["HOST_APP_POSTGRES_PASSWORD"],
        database: environment["HOST_APP_POSTGRES_DB"] ?? "identity"
    )
    try await makePostgresApplication(postgres: postgres, jwtSecret: secret, port: port).runService()
} else {
    // HOST_APP_JWT_ALGORITHM=ES256: key pairs in memory instead of the shared secret.
    let keyPairs = environment["HOST_APP_JWT_ALGORITHM"] == "ES256"
    try await makeApplication(jwtSecret: secret, port: port, keyPairs: keyPairs).runService()
}
