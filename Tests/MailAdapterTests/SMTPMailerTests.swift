import Foundation
import IdentityConformance
import IdentityPorts
import Testing

@testable import MailAdapter

/// Against real SMTP servers (aiosmtpd, scripts/smtp-test-server.py), one private server per
/// test, on a free loopback port.
@Suite(
    "SMTPMailer against aiosmtpd",
    .enabled(if: smtpPython != nil, "IDENTITY_TEST_SMTP_PYTHON is unset: scripts/test installs aiosmtpd and sets it")
)
struct SMTPMailerTests {
    private func configuration(_ server: TestSMTPServer, tls: SMTPConfiguration.TLSMode = .none, host: String = "127.0.0.1") -> SMTPConfiguration {
        SMTPConfiguration(
            host: host, port: server.port, tlsMode: tls, connectTimeout: .seconds(5), commandTimeout: .seconds(5), dataTimeout: .seconds(5)
        )
    }

    private func message(to: String = "ada@example.com") -> MailMessage {
        MailMessage(
            id: UUID(), from: MailAddress(address: "identity@example.com", name: "Identity"), to: MailAddress(address: to, name: "Ada"),
            subject: "Hello", text: "Hello Ada\n.\n", html: "<p>Hello</p>", date: Date()
        )
    }

    private func failure(_ body: () async throws -> Void) async -> MailDeliveryFailure? {
        do {
            try await body()
            return nil
        } catch let failure as MailDeliveryFailure {
            return failure
        } catch {
            Issue.record("not a MailDeliveryFailure: \(error)")
            return nil
        }
    }

    @Test("plain SMTP passes the Mailer conformance suite")
    func plainConformance() async throws {
        let server = try await TestSMTPServer(.init())
        defer { server.stop() }
        try await MailerConformance(mailer: try SMTPMailer(configuration: configuration(server))) { try server.received() }.run()
    }

    @Test("STARTTLS with AUTH, on a certificate of the test's own CA, passes the conformance suite")
    func startTLSWithAuth() async throws {
        let ca = try TestCertificates(name: "trusted")
        let password = UUID().uuidString
        let server = try await TestSMTPServer(.init(tls: "starttls", certificate: try ca.issue(), auth: ("mailer", password)))
        defer { server.stop() }
        var config = configuration(server, tls: .startTLS, host: "localhost")
        config.trustRoots = .pemFile(ca.caCertificate.path)
        config.credentials = .init(username: "mailer", password: password)
        try await MailerConformance(mailer: try SMTPMailer(configuration: config)) { try server.received() }.run()

        // A wrong password fails, transiently, and the error does not show it.
        config.credentials = .init(username: "mailer", password: "wrong-\(password)")
        let refused = await failure { try await SMTPMailer(configuration: config).send(message()) }
        #expect(refused?.isPermanent == false)
        #expect(refused.map { !"\($0)".contains(password) } == true, "no password in the error")
    }

    @Test("implicit TLS passes the conformance suite; an IP address is checked against the certificate's IP entry")
    func implicitTLS() async throws {
        let ca = try TestCertificates(name: "implicit")
        let server = try await TestSMTPServer(.init(tls: "implicit", certificate: try ca.issue()))
        defer { server.stop() }
        var config = configuration(server, tls: .tls, host: "localhost")
        config.trustRoots = .pemFile(ca.caCertificate.path)
        try await MailerConformance(mailer: try SMTPMailer(configuration: config)) { try server.received() }.run()
        config.host = "127.0.0.1"
        let before = try server.received().count
        try await SMTPMailer(configuration: config).send(message())
        #expect(try server.received().count == before + 1)
    }

    @Test("an untrusted certificate or a wrong host name fails the send, and nothing is delivered")
    func untrustedCertificate() async throws {
        let trusted = try TestCertificates(name: "trusted")
        let other = try TestCertificates(name: "other")
        for (tls, mode) in [("starttls", SMTPConfiguration.TLSMode.startTLS), ("implicit", .tls)] {
            let server = try await TestSMTPServer(.init(tls: tls, certificate: try other.issue()))
            defer { server.stop() }
            var config = configuration(server, tls: mode, host: "localhost")
            config.trustRoots = .pemFile(trusted.caCertificate.path)
            let untrusted = await failure { try await SMTPMailer(configuration: config).send(message()) }
            #expect(untrusted?.isPermanent == false, "\(tls): an untrusted certificate fails (transient: a configuration matter)")
            #expect(try server.received().isEmpty, "\(tls): nothing delivered")
        }
        let server = try await TestSMTPServer(.init(tls: "implicit", certificate: try trusted.issue(for: ["mail.other.example"])))
        defer { server.stop() }
        var config = configuration(server, tls: .tls, host: "localhost")
        config.trustRoots = .pemFile(trusted.caCertificate.path)
        let wrongName = await failure { try await SMTPMailer(configuration: config).send(message()) }
        #expect(wrongName != nil, "a certificate for another name fails")
        #expect(try server.received().isEmpty)
    }

    @Test("a server without STARTTLS gets nothing when STARTTLS is required, and credentials never go in clear")
    func noSTARTTLS() async throws {
        let server = try await TestSMTPServer(.init())
        defer { server.stop() }
        let missing = await failure { try await SMTPMailer(configuration: configuration(server, tls: .startTLS)).send(message()) }
        #expect(missing?.isPermanent == false)
        #expect(missing?.reason.contains("STARTTLS") == true)
        var config = configuration(server)
        config.credentials = .init(username: "u", password: "p")
        let clear = await failure { try await SMTPMailer(configuration: config).send(message()) }
        #expect(clear?.isPermanent == false)
        #expect(clear?.reason.contains("without TLS") == true)
        #expect(try server.received().isEmpty)
    }

    @Test("AUTH without TLS works only when explicitly allowed")
    func authInClearWhenAllowed() async throws {
        let server = try await TestSMTPServer(.init(auth: ("mailer", "secret-in-clear")))
        defer { server.stop() }
        var config = configuration(server)
        config.credentials = .init(username: "mailer", password: "secret-in-clear")
        config.allowsAuthenticationWithoutTLS = true
        try await SMTPMailer(configuration: config).send(message())
        #expect(try server.received().count == 1)
    }

    @Test("a recipient refused with 550 is a permanent failure")
    func rejectedRecipient() async throws {
        let server = try await TestSMTPServer(.init(reject: ["gone@example.com"]))
        defer { server.stop() }
        let mailer = try SMTPMailer(configuration: configuration(server))
        let refused = await failure { try await mailer.send(message(to: "gone@example.com")) }
        #expect(refused?.isPermanent == true)
        #expect(refused?.reason.contains("550") == true)
        try await mailer.send(message())
        #expect(try server.received().count == 1, "the next mail goes through")
    }

    @Test("a server that answers garbage fails the send at once, transiently")
    func garbage() async throws {
        let server = try await TestSMTPServer(.init(mode: "garbage"))
        defer { server.stop() }
        var config = configuration(server)
        config.commandTimeout = .seconds(30)
        let started = ContinuousClock.now
        let garbage = await failure { try await SMTPMailer(configuration: config).send(message()) }
        #expect(garbage?.isPermanent == false)
        #expect(garbage?.reason.contains("not SMTP") == true)
        // Not a timing assertion on speed: the 30 s timeout would say "no reply".
        #expect(ContinuousClock.now - started < .seconds(30))
    }

    @Test("a server that never answers fails the send after the command timeout, transiently")
    func hang() async throws {
        let server = try await TestSMTPServer(.init(mode: "hang"))
        defer { server.stop() }
        var config = configuration(server)
        config.commandTimeout = .seconds(1)
        let hung = await failure { try await SMTPMailer(configuration: config).send(message()) }
        #expect(hung?.isPermanent == false)
        #expect(hung?.reason.contains("no reply to the greeting within 1 s") == true, "\(String(describing: hung))")
    }

    @Test("a server that is down is a transient failure, and once it is up the next send succeeds")
    func serverDownThenUp() async throws {
        let server = try await TestSMTPServer(.init())
        defer { server.stop() }
        let port = server.port
        server.stop()
        let mailer = try SMTPMailer(configuration: configuration(server))
        let down = await failure { try await mailer.send(message()) }
        #expect(down?.isPermanent == false)
        #expect(down?.reason.contains("cannot connect") == true)
        try await server.start(port: port)
        try await mailer.send(message())
        #expect(try server.received().count == 1)
    }

    @Test("an invalid address is refused permanently before any connection")
    func invalidAddress() async throws {
        // Nothing listens on this configuration: a connection attempt would fail transiently.
        let mailer = try SMTPMailer(configuration: SMTPConfiguration(host: "127.0.0.1", port: 1, tlsMode: .none))
        for address in ["a\r\nRCPT TO:<b@example.com>@example.com", "no-at", "ü@example.com", "a@b@"] {
            let refused = await failure { try await mailer.send(message(to: address)) }
            #expect(refused?.isPermanent == true, "\(address.debugDescription)")
        }
    }
}
