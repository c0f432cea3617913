import Foundation
import HTTPAdapter
import Hummingbird
import IdentityVerifier
import Logging
import PostgresAdapter
import PostgresNIO
import ServiceLifecycle

/// The notes service: `GET /notes` for the caller of a valid, unrevoked token of the identity
/// service, `GET /health` for anyone.
public enum NotesService {
    /// The router: the identity service's request context and its middleware, so that
    /// `context.principal` and the 401 problem+json are exactly the identity service's.
    public static func router(verifier: IdentityVerifier) -> Router<IdentityRequestContext> {
        let router = Router(context: IdentityRequestContext.self)
        router.get("/health") { _, _ in #"{"status":"live"}"# }
        router.group("/notes").add(middleware: verifier.bearerAuthenticator()).get { _, context -> Response in
            let principal = try context.requirePrincipal()
            let body = #"{"user":"\#(principal.userID)","notes":[]}"#
            return Response(status: .ok, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(string: body)))
        }
        return router
    }

    /// Everything the process runs: the PostgreSQL client, the revocation cache, the verifier
    /// (the keys kept current) and the HTTP server, which logs `notes serving on http://HOST:PORT`.
    public static func services(settings: NotesSettings, logger: Logger) throws -> [any Service] {
        let client = settings.postgres.makeClient(logger: logger)
        let revocations = PostgresRevocationCache(base: PostgresRevocationStore(client: client), listeningWith: settings.postgres, logger: logger)
        let verifier = try IdentityVerifier(configuration: settings.verifier, revocations: revocations, logger: logger)
        let host = settings.host
        let application = Application(
            router: router(verifier: verifier), configuration: .init(address: .hostname(host, port: settings.port)),
            onServerRunning: { channel in
                logger.info("notes serving on http://\(host):\(channel.localAddress?.port ?? settings.port)")
            },
            logger: logger
        )
        return [client, revocations, verifier, application]
    }
}
