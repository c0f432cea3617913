import IdentityDomain
import IdentityPorts
import Logging
import PostgresNIO
@testable import PostgresAdapter
import Testing

@Suite("PostgreSQL client configuration")
struct ClientConfigurationTests {
    @Test("the settings print without their password, however they are printed")
    func redacted() {
        let settings = PostgresConfiguration(host: "db", username: "identity", password: "s3cret-pg-password", database: "ids")
        for text in ["\(settings)", String(reflecting: settings), String(describing: settings)] {
            #expect(!text.contains("s3cret-pg-password"), "\(text)")
            #expect(text.contains("identity@db:5432/ids") && text.contains("<redacted>"), "\(text)")
        }
        #expect("\(PostgresConfiguration(host: "db"))".contains("password: none"))
    }

    @Test("the pool keeps every connection open and schedules no keep-alive: no timer per request")
    func noTimerPerRequest() {
        let options = PostgresConfiguration(host: "db", poolSize: 12).clientConfiguration.options
        #expect(options.maximumConnections == 12)
        #expect(options.minimumConnections == 12, "no idle-timeout timer each time a connection goes back to the pool")
        #expect(options.keepAliveBehavior == nil, "no keep-alive timer either")
        #expect(PostgresConfiguration(host: "db", poolSize: 0).clientConfiguration.options.minimumConnections == 1)
    }

    @Test("a store operation past its deadline is BackendUnavailable(postgres)")
    func deadlineError() async {
        await #expect(throws: BackendUnavailable(backend: "postgres")) {
            try await PostgresErrors.withDeadline(.milliseconds(10)) { try await Task.sleep(for: .seconds(30)) }
        }
    }

    @Test("our pool connects with the settings' TLS mode, server and credentials, and has at least one slot")
    func poolConfiguration() throws {
        let settings = PostgresConfiguration(host: "db", port: 6543, username: "u", password: "p", database: "d", poolSize: 0)
        #expect(try settings.makePool(logger: Logger(label: "test")).size == 1)
        var plain = settings
        plain.tls = .disable
        #expect(try plain.connectionConfiguration().tls.isAllowed == false)
        let prefer = try settings.connectionConfiguration()
        #expect(prefer.tls.isAllowed && !prefer.tls.isEnforced)
        #expect(prefer.host == "db" && prefer.port == 6543 && prefer.username == "u" && prefer.password == "p" && prefer.database == "d")
        var required = settings
        required.tls = .require
        #expect(try required.connectionConfiguration().tls.isEnforced)
    }

    @Test("a connection goes back to the pool after the caller's own error; not after a cancellation")
    func reuseRule() {
        struct Own: Error {}
        #expect(PostgresConnectionPool.leavesConnectionUsable(Own()))
        #expect(PostgresConnectionPool.leavesConnectionUsable(IdentityError.emailTaken))
        #expect(!PostgresConnectionPool.leavesConnectionUsable(CancellationError()))
    }
}
