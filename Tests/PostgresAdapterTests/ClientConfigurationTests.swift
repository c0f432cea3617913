import IdentityPorts
import PostgresNIO
@testable import PostgresAdapter
import Testing

@Suite("PostgreSQL client configuration")
struct ClientConfigurationTests {
    @Test("the pool keeps every connection open and schedules no keep-alive: no timer per request")
    func noTimerPerRequest() {
        let options = PostgresConnectionSettings(host: "db", poolSize: 12).clientConfiguration.options
        #expect(options.maximumConnections == 12)
        #expect(options.minimumConnections == 12, "no idle-timeout timer each time a connection goes back to the pool")
        #expect(options.keepAliveBehavior == nil, "no keep-alive timer either")
        #expect(PostgresConnectionSettings(host: "db", poolSize: 0).clientConfiguration.options.minimumConnections == 1)
    }

    @Test("a store operation past its deadline is BackendUnavailable(postgres)")
    func deadlineError() async {
        await #expect(throws: BackendUnavailable(backend: "postgres")) {
            try await PostgresErrors.withDeadline(.milliseconds(10)) { try await Task.sleep(for: .seconds(30)) }
        }
    }
}
