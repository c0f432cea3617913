import Foundation
import HostAppKit

// HOST_APP_JWT_SECRET: at least 32 bytes; the same secret must sign and verify every token.
guard let secret = ProcessInfo.processInfo.environment["HOST_APP_JWT_SECRET"], secret.utf8.count >= 32 else {
    FileHandle.standardError.write(Data("set HOST_APP_JWT_SECRET to 32 or more bytes\n".utf8))
    exit(78)
}
// HOST_APP_PORT: the port on 127.0.0.1 (8080 unless set).
let port = Int(ProcessInfo.processInfo.environment["HOST_APP_PORT"] ?? "") ?? 8080
try await makeApplication(jwtSecret: secret, port: port).runService()
