import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import IdentityTestSupport
import Testing

/// Contract §11 under faults injected for real: PostgreSQL's link cut or paused (a `FaultProxy`)
/// around a verification, a reset confirmation and a delivery round, and a worker killed with
/// SIGKILL while it sends. The SMTP server is a private aiosmtpd behind a `FaultProxy` too, so
/// a send can be held in flight.
extension MailEndToEndTests {
    /// A private SMTP server reached through a proxy, and the mailbox it fills.
    struct ProxiedSMTP {
        let server: Process
        let proxy: FaultProxy
        let mailbox: Mailbox

        static func start(_ extra: [String: String] = [:]) async throws -> ProxiedSMTP {
            let port = try freePort()
            let folder = FileManager.default.temporaryDirectory.appendingPathComponent("identity-smtp-\(UUID().uuidString)")
            let server = try MailEndToEndTests.startSMTPServer(port: port, folder: folder)
            let proxy: FaultProxy
            do { proxy = try await FaultProxy.start(forwardingTo: "127.0.0.1", port: port) } catch { server.terminate(); throw error }
            let environment = [
                "SMTP_HOST": "127.0.0.1", "SMTP_PORT": "\(proxy.port)", "SMTP_TLS": "none", "SMTP_FROM": "identity@example.com",
                "MAIL_RETRY_SECONDS": "1", "MAIL_MAX_ATTEMPTS": "30", "LOG_LEVEL": "info",
            ].merging(extra) { $1 }
            return ProxiedSMTP(server: server, proxy: proxy, mailbox: Mailbox(folder: folder, environment: environment))
        }

        func stop() async {
            await proxy.stop()
            server.terminate()
        }
    }

    /// How many usable tokens of `purpose` PostgreSQL holds (a used token is deleted).
    func tokens(_ postgres: PrivatePostgres, _ purpose: String) async throws -> Int? {
        Int(try await psql(postgres, "SELECT count(*) FROM identity_account_tokens WHERE purpose = '\(purpose)'"))
    }

    /// Runs `body` on a node whose PostgreSQL (`POSTGRES_TIMEOUT_SECONDS=1`) and SMTP server
    /// are each reached through a `FaultProxy`; stops everything after.
    func withFaultyLinks(body: (PrivatePostgres, FaultProxy, ProxiedSMTP, ServerProcess, String) async throws -> Void) async throws {
        let postgres = try await PrivatePostgres()
        defer { postgres.destroy() }
        let link = try await FaultProxy.start(forwardingTo: "127.0.0.1", port: postgres.port)
        let smtp: ProxiedSMTP
        do { smtp = try await ProxiedSMTP.start() } catch { await link.stop(); throw error }
        do {
            let env = try await SessionEndToEndTests.migratedEnvironment(postgres, port: link.port, timeout: "1").merging(smtp.mailbox.environment) { $1 }
            let (server, base) = try await FaultEndToEndTests().node(env)
            defer { server.stop() }
            try await body(postgres, link, smtp, server, base)
        } catch {
            await link.stop()
            await smtp.stop()
            throw error
        }
        await link.stop()
        await smtp.stop()
    }

    static var faultsEnabled: Bool { PrivatePostgres.isAvailable && hasSMTPPython }

    @Test("PostgreSQL's link cut, or paused with the request in flight, during a verification and a reset confirmation: 503 and nothing used or changed; the same token then works once",
          .enabled(if: faultsEnabled, "needs PostgreSQL and IDENTITY_TEST_SMTP_PYTHON"))
    func databaseLinkFaultsAroundTokens() async throws {
        try await withFaultyLinks(body: databaseLinkFaultsAroundTokens)
    }

    func databaseLinkFaultsAroundTokens(_ postgres: PrivatePostgres, _ link: FaultProxy, _ smtp: ProxiedSMTP, _ server: ServerProcess, _ base: String) async throws {
        let client = SessionClient(node: base, postgres: postgres)
        let email = "ada@example.com"
        #expect(try await post(client, "\(base)/users", ["email": email, "password": Self.password, "name": "Ada"]).status == 201)
        let verification = try await smtp.mailbox.nextToken("/verify-email", to: email)

        /// Posts `body` to `path` with the link cut, then paused with the request in flight and
        /// cut: 503 both times, the link restored after.
        func refusedWhileLinkFails(_ path: String, _ body: [String: Any]) async throws {
            try await link.cut()
            let cut = try await post(client, "\(base)\(path)", body)
            try await link.restore()
            #expect(cut.status == 503, "\(path), link cut: \(cut.status) \(cut.json)")
            let data = try JSONSerialization.data(withJSONObject: body)

            try await link.pause()
            let held = Task { try await client.send("POST", "\(base)\(path)", body: data, contentType: "application/json").status }
            let inFlight = try await eventually { try await link.heldBytes(from: .client) > 0 }
            #expect(inFlight, "\(path): the request's query is held at the proxy")
            try await link.cut()
            let paused = try await held.value
            try await link.restore()
            try await link.resume()
            #expect(paused == 503, "\(path), paused then cut: \(paused)")
        }

        try await refusedWhileLinkFails("/auth/verify-email", ["token": verification])
        #expect(try await psql(postgres, "SELECT email_verified FROM identity_users WHERE email = '\(email)'") == "f", "not verified by a failed request")
        #expect(try await tokens(postgres, "email_verification") == 1, "the token is not used up")
        let verified = try await eventually { try await post(client, "\(base)/auth/verify-email", ["token": verification]).status != 503 }
        #expect(verified, "the link is back")
        #expect(try await psql(postgres, "SELECT email_verified FROM identity_users WHERE email = '\(email)'") == "t", "the same token verified once the link was back")
        #expect(try await post(client, "\(base)/auth/verify-email", ["token": verification]).status == 400, "and works only once")
        #expect(try await tokens(postgres, "email_verification") == 0)

        let pair = try await client.login(base, email: email, userAgent: "mail-faults")
        #expect(try await post(client, "\(base)/auth/password-reset", ["email": email]).status == 202)
        let reset = try await smtp.mailbox.nextToken("/reset-password", to: email)
        let confirm: [String: Any] = ["token": reset, "password": SessionEndToEndTests.newPassword]
        try await refusedWhileLinkFails("/auth/password-reset/confirm", confirm)
        #expect(try await tokens(postgres, "password_reset") == 1, "the token is not used up")
        var status = 0
        _ = try await eventually { status = try await call("GET", "\(base)/users/me", token: pair.access).status; return status != 503 }
        #expect(status == 200, "the session outlived the failed confirmations (once the link is back)")
        _ = try await client.login(base, email: email, userAgent: "old password still works")

        let done = try await post(client, "\(base)/auth/password-reset/confirm", confirm)
        #expect(done.status == 204, "\(done.status) \(done.json)")
        #expect(try await call("GET", "\(base)/users/me", token: pair.access).status == 401, "the reset ended the session")
        #expect(try await client.refresh(base, pair.refresh).status == 401)
        _ = try await client.login(base, email: email, password: SessionEndToEndTests.newPassword, userAgent: "new password")
        let replay = try await post(client, "\(base)/auth/password-reset/confirm", ["token": reset, "password": "yet another passphrase"])
        #expect(replay.status == 400, "a reset token works once: \(replay.status)")
        #expect(try await tokens(postgres, "password_reset") == 0)
    }

    @Test("a reset requested while PostgreSQL refuses the write as unavailable, on a node without a broker: 202, the posted request is tried again, and its mail arrives once the write succeeds",
          .enabled(if: faultsEnabled, "needs PostgreSQL and IDENTITY_TEST_SMTP_PYTHON"))
    func resetRequestedWhileWritesFail() async throws {
        try await withFaultyLinks(body: resetRequestedWhileWritesFail)
    }

    func resetRequestedWhileWritesFail(_ postgres: PrivatePostgres, _ link: FaultProxy, _ smtp: ProxiedSMTP, _ server: ServerProcess, _ base: String) async throws {
        let client = SessionClient(node: base, postgres: postgres)
        let faults = FaultEndToEndTests()
        let email = "cleo@example.com"
        #expect(try await post(client, "\(base)/users", ["email": email, "password": Self.password, "name": "Cleo"]).status == 201)
        _ = try await smtp.mailbox.nextToken("/verify-email", to: email)

        // The request is accepted (its throttle and the post work), then the command's write of
        // the reset token fails as an unavailable server would (SQLSTATE 57P03).
        try await faults.sql(postgres, """
            CREATE FUNCTION identity_test_unavailable() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'not now' USING ERRCODE = '57P03'; END $$;
            CREATE TRIGGER identity_test_unavailable BEFORE INSERT ON identity_account_tokens
                FOR EACH ROW EXECUTE FUNCTION identity_test_unavailable();
            """)
        let accepted = try await post(client, "\(base)/auth/password-reset", ["email": email])
        #expect(accepted.status == 202, "\(accepted.status) \(accepted.json)")
        let retrying = await server.waitFor(seconds: 20) { server.log.contains("posted command RequestPasswordReset failed") && server.log.contains("trying again in") }
        #expect(retrying, "the failed attempt is logged with its retry: \(server.log.suffix(1500))")
        #expect(try await tokens(postgres, "password_reset") == 0, "nothing written meanwhile")
        try await faults.sql(postgres, "DROP TRIGGER identity_test_unavailable ON identity_account_tokens; DROP FUNCTION identity_test_unavailable();")

        let reset = try await smtp.mailbox.nextToken("/reset-password", to: email)
        #expect(try await tokens(postgres, "password_reset") == 1, "one reset token")
        #expect(!server.log.contains("given up"), "not given up: \(server.log.suffix(1500))")
        let done = try await post(client, "\(base)/auth/password-reset/confirm", ["token": reset, "password": SessionEndToEndTests.newPassword])
        #expect(done.status == 204, "the mailed link works: \(done.status) \(done.json)")
    }

    @Test("PostgreSQL's link cut between a mail's send and its record: the outcome is recorded once the link is back, and the mail is not sent again",
          .enabled(if: faultsEnabled, "needs PostgreSQL and IDENTITY_TEST_SMTP_PYTHON"))
    func databaseLinkCutMidDelivery() async throws {
        try await withFaultyLinks(body: databaseLinkCutMidDelivery)
    }

    func databaseLinkCutMidDelivery(_ postgres: PrivatePostgres, _ link: FaultProxy, _ smtp: ProxiedSMTP, _ server: ServerProcess, _ base: String) async throws {
        let client = SessionClient(node: base, postgres: postgres)

        // The SMTP conversation is held at its start: the mail is claimed, its send in flight.
        try await smtp.proxy.pause()
        #expect(try await post(client, "\(base)/users", ["email": "bob@example.com", "password": Self.password, "name": "Bob"]).status == 201)
        let sending = try await eventually { try await smtp.proxy.heldBytes() > 0 }
        #expect(sending, "the delivery round reached the SMTP server")
        #expect(try await psql(postgres, "SELECT count(*) FROM identity_mail_outbox WHERE claimed_until IS NOT NULL AND sent_at IS NULL") == "1")

        // The database goes out of reach, then the send completes: its record cannot be written.
        try await link.cut()
        try await smtp.proxy.resume()
        let token = try await smtp.mailbox.nextToken("/verify-email", to: "bob@example.com")
        #expect(await server.waitFor(seconds: 20) { server.log.contains("mail outbox unavailable") }, "the failed record is logged: \(server.log.suffix(1500))")
        #expect(try await post(client, "\(base)/auth/verify-email", ["token": token]).status == 503, "the database is still out of reach")

        // Back: the owed record is written within a round or two, long before the 5-minute claim ends.
        try await link.restore()
        let recorded = await eventually {
            (try? await psql(postgres, "SELECT count(*) FROM identity_mail_outbox WHERE sent_at IS NOT NULL AND claimed_until IS NULL")) == "1"
        }
        #expect(recorded, "the send is recorded once the link is back: \(server.log.suffix(1500))")
        #expect(smtp.mailbox.messages(to: "bob@example.com").count == 1, "sent once")
        #expect(try await psql(postgres, "SELECT attempts FROM identity_mail_outbox") == "0", "a send, not a failure")
        let text = try await rawText("\(base)/metrics")
        #expect(metric("identity_mail_sent_total", in: text) == 1 && metric("identity_mail_pending", in: text) == 0, "counted once it is recorded")
        #expect(try await post(client, "\(base)/auth/verify-email", ["token": token]).status == 200, "and its link works")
    }

    @Test("a worker killed (SIGKILL) while it sends: another worker sends the mail once the claim (MAIL_CLAIM_SECONDS) ends; it arrives once, and its link works",
          .enabled(if: faultsEnabled && TestRabbitMQ.isAvailable, "needs PostgreSQL, RabbitMQ and IDENTITY_TEST_SMTP_PYTHON"))
    func workerKilledMidDelivery() async throws {
        let postgres = try await PrivatePostgres()
        defer { postgres.destroy() }
        let smtp = try await ProxiedSMTP.start(["MAIL_CLAIM_SECONDS": "6", "SMTP_TIMEOUT_SECONDS": "5"])
        do { try await workerKilledMidDelivery(postgres, smtp) } catch { await smtp.stop(); throw error }
        await smtp.stop()
    }

    func workerKilledMidDelivery(_ postgres: PrivatePostgres, _ smtp: ProxiedSMTP) async throws {
        let broker = try await TestRabbitMQ.virtualHost("identity-e2e-mail-faults")
        let env = try await migrated(postgres, broker, smtp.mailbox.environment)
        let distributed = DistributedTests()
        let first = try await distributed.worker(env)
        defer { first.stop() }
        let (node, base) = try await distributed.httpNode(env)
        defer { node.stop() }
        let client = SessionClient(node: base, postgres: postgres)

        try await smtp.proxy.pause()
        #expect(try await post(client, "\(base)/users", ["email": "dora@example.com", "password": Self.password, "name": "Dora"]).status == 201)
        let sending = try await eventually { try await smtp.proxy.heldBytes() > 0 }
        #expect(sending, "the first worker is sending")
        #expect(kill(first.process.processIdentifier, SIGKILL) == 0)
        #expect(await first.waitForExit(seconds: 10))
        try await smtp.proxy.resume()
        #expect(smtp.mailbox.messages(to: "dora@example.com").isEmpty, "the killed send never completed")
        #expect(try await psql(postgres, "SELECT count(*) FROM identity_mail_outbox WHERE claimed_until IS NOT NULL AND sent_at IS NULL") == "1",
                "the mail is still claimed by the dead worker")

        let second = try await distributed.worker(env)
        defer { second.stop() }
        let token = try await smtp.mailbox.nextToken("/verify-email", to: "dora@example.com")
        let recorded = await eventually { (try? await psql(postgres, "SELECT count(*) FROM identity_mail_outbox WHERE sent_at IS NOT NULL")) == "1" }
        #expect(recorded, "the second worker recorded the send: \(second.log.suffix(1500))")
        #expect(smtp.mailbox.messages(to: "dora@example.com").count == 1, "it arrived once")
        #expect(try await post(client, "\(base)/auth/verify-email", ["token": token]).status == 200, "its link works")
    }

    @Test("a worker killed after committing a verification, then a reset confirmation, before its ack: the redelivery answers the waiting caller 200 with the verified account, then 204; each applied once",
          .enabled(if: PrivatePostgres.isAvailable && TestRabbitMQ.isAvailable, "needs PostgreSQL and RabbitMQ"))
    func workerKilledBeforeAck() async throws {
        let postgres = try await PrivatePostgres()
        defer { postgres.destroy() }
        let mailbox = try Mailbox.make(smtp: false)
        let broker = try await TestRabbitMQ.virtualHost("identity-e2e-mail-redelivery")
        let env = try await migrated(postgres, broker, mailbox.environment.merging(["COMMAND_TIMEOUT_SECONDS": "60"]) { $1 })
        let distributed = DistributedTests()
        let (node, base) = try await distributed.httpNode(env)
        defer { node.stop() }
        let client = SessionClient(node: base, postgres: postgres)
        var faulty = env
        faulty["IDENTITY_TEST_EXIT_BEFORE_ACK"] = "1"

        /// Sends `body` to `path` while a worker that dies after its commit, before its ack, is the
        /// only one; once it has died, starts a sound worker; returns the reply and that worker.
        func survivingCrash(_ path: String, _ body: [String: Any]) async throws -> (status: Int, verified: Bool?, worker: ServerProcess) {
            let doomed = try await distributed.worker(faulty)
            defer { doomed.stop() }
            let data = try JSONSerialization.data(withJSONObject: body)
            let request = Task { () async throws -> (Int, Bool?) in
                let reply = try await client.send("POST", "\(base)\(path)", body: data, contentType: "application/json")
                return (reply.status, reply.json["email_verified"] as? Bool)
            }
            try #require(await doomed.waitFor(seconds: 120) { !doomed.process.isRunning }, "\(path): the worker dies after applying: \(doomed.log)")
            #expect(doomed.process.terminationStatus == 86)
            let survivor = try await distributed.worker(env)
            let (status, verified) = try await request.value
            return (status, verified, survivor)
        }

        let sound = try await distributed.worker(env)
        #expect(try await post(client, "\(base)/users", ["email": "eve@example.com", "password": Self.password, "name": "Eve"]).status == 201)
        let verification = try await mailbox.nextToken("/verify-email", to: "eve@example.com")
        sound.stop()
        let verified = try await survivingCrash("/auth/verify-email", ["token": verification])
        defer { verified.worker.stop() }
        #expect(verified.status == 200 && verified.verified == true, "the redelivery answers with the verified account: \(verified)")
        #expect(try await psql(postgres, "SELECT email_verified FROM identity_users") == "t")

        #expect(try await post(client, "\(base)/auth/password-reset", ["email": "eve@example.com"]).status == 202)
        let reset = try await mailbox.nextToken("/reset-password", to: "eve@example.com")
        verified.worker.stop()
        let confirmed = try await survivingCrash("/auth/password-reset/confirm", ["token": reset, "password": SessionEndToEndTests.newPassword])
        defer { confirmed.worker.stop() }
        #expect(confirmed.status == 204, "the redelivery answers the reset: \(confirmed.status)")
        _ = try await client.login(base, email: "eve@example.com", password: SessionEndToEndTests.newPassword, userAgent: "after the crash")
        #expect(try await psql(postgres, "SELECT count(*) FROM identity_processed_messages") == "4", "register, verify, reset request, confirm: each applied once")
    }
}
