import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import IdentityTestSupport
import Testing

/// Contract §11 (email verification and password reset) through real `DemoServer` processes,
/// observed from the outside: HTTP, the mail that arrives (at a real SMTP server when
/// `scripts/test` started one, else as files in `MAIL_DIR`), and psql where the store is
/// PostgreSQL.
@Suite("DemoServer mail end to end", .serialized)
struct MailEndToEndTests {
    typealias Mode = SessionEndToEndTests.Mode
    static let password = SessionEndToEndTests.password

    /// Where a deployment's mail is read back.
    struct Mailbox: Sendable {
        /// A folder of raw messages, one file each (`MAIL_DIR`, or the SMTP server's).
        let folder: URL
        /// The variables that send a deployment's mail there.
        let environment: [String: String]

        /// The real SMTP server of `scripts/test` (plain, on loopback), if it runs; else files.
        static func make(smtp: Bool = true) throws -> Mailbox {
            let env = ProcessInfo.processInfo.environment
            if smtp, let host = env["IDENTITY_TEST_SMTP_HOST"], let port = env["IDENTITY_TEST_SMTP_PORT"], let folder = env["IDENTITY_TEST_SMTP_MAILDIR"] {
                return Mailbox(
                    folder: URL(fileURLWithPath: folder),
                    environment: ["SMTP_HOST": host, "SMTP_PORT": port, "SMTP_TLS": "none", "SMTP_FROM": "identity@example.com", "MAIL_RETRY_SECONDS": "1"]
                )
            }
            let folder = FileManager.default.temporaryDirectory.appendingPathComponent("identity-mail-\(UUID().uuidString)")
            return Mailbox(folder: folder, environment: ["MAIL_DIR": folder.path, "MAIL_RETRY_SECONDS": "1"])
        }

        static var hasSMTPServer: Bool { ProcessInfo.processInfo.environment["IDENTITY_TEST_SMTP_HOST"] != nil }

        /// Every message in the folder addressed to `address` (read in its decoded form).
        func messages(to address: String) -> [String] {
            let files = (try? FileManager.default.contentsOfDirectory(at: folder, includingPropertiesForKeys: nil)) ?? []
            return files.sorted { $0.lastPathComponent < $1.lastPathComponent }.compactMap { file in
                guard let raw = try? String(contentsOf: file, encoding: .utf8) else { return nil }
                let decoded = Self.decodedQuotedPrintable(raw)
                return decoded.contains("To: \(address)") || decoded.contains("<\(address)>") ? decoded : nil
            }
        }

        /// The tokens of the links in the messages to `address` whose path is `path`, oldest first.
        func tokens(_ path: String, to address: String) -> [String] {
            messages(to: address).compactMap { message in
                guard let range = message.range(of: "\(path)?token=") else { return nil }
                let token = message[range.upperBound...].prefix { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }
                return String(token)
            }
        }

        /// Waits until a `path` token for `address` arrives beyond the `after` first; returns it.
        func nextToken(_ path: String, to address: String, after count: Int = 0) async throws -> String {
            var found: [String] = []
            let arrived = await eventually(within: 30) {
                found = tokens(path, to: address)
                return found.count > count
            }
            try #require(arrived, "a mail with a \(path) link reaches \(address)")
            return found[count]
        }

        /// Undoes quoted-printable soft line breaks and `=XX` escapes.
        static func decodedQuotedPrintable(_ text: String) -> String {
            let joined = text.replacingOccurrences(of: "=\r\n", with: "").replacingOccurrences(of: "=\n", with: "")
            var bytes: [UInt8] = []
            var utf8 = Array(joined.utf8)[...]
            while let byte = utf8.popFirst() {
                if byte == UInt8(ascii: "="), utf8.count >= 2, let value = UInt8(String(decoding: utf8.prefix(2), as: UTF8.self), radix: 16) {
                    bytes.append(value)
                    utf8 = utf8.dropFirst(2)
                } else {
                    bytes.append(byte)
                }
            }
            return String(decoding: bytes, as: UTF8.self)
        }
    }

    func post(_ client: SessionClient, _ url: String, _ object: [String: Any], token: String? = nil) async throws -> SessionReply {
        try await client.send("POST", url, body: try JSONSerialization.data(withJSONObject: object), contentType: "application/json", token: token)
    }

    @Test("§11 on every deployment: verification mail and link, resend, reset mail, reset revoking every token on every node, bad tokens, unknown addresses",
          arguments: Mode.allCases.filter(\.isEnabled))
    func contract(_ mode: Mode) async throws {
        let mailbox = try Mailbox.make()
        let deployment = try await SessionEndToEndTests.Deployment.start(mode, extra: mailbox.environment, virtualHost: "identity-e2e-mail")
        defer { deployment.stop() }
        let client = SessionClient(deployment: deployment)
        let (a, b) = (deployment.a, deployment.b)
        let email = "ada+\(mode.rawValue)-\(UUID().uuidString.prefix(8).lowercased())@example.com"

        // Registration mails a verification link; the request did not wait for it.
        let registered = try await post(client, "\(a)/users", ["email": email, "password": Self.password, "name": "Ada Lovelace"])
        try #require(registered.status == 201, "\(registered.json)")
        #expect(registered.json["email_verified"] as? Bool == false)
        let verification = try await mailbox.nextToken("/verify-email", to: email)
        #expect(verification.count == 43)
        let mail = try #require(mailbox.messages(to: email).first)
        #expect(mail.contains(verification) && !mail.contains(Self.password), "the mail carries the token, never a password")

        // Bad tokens: one answer, nothing changes.
        for bad: Any in ["", "x", String(repeating: "A", count: 43), String(repeating: "A", count: 300), verification + "A", 42, ["nested": true]] {
            let reply = try await post(client, "\(b)/auth/verify-email", ["token": bad])
            #expect(reply.status == 400 && reply.json["type"] as? String == "urn:identity:problem:invalid-token", "\(bad): \(reply.status) \(reply.json)")
        }
        let missing = try await post(client, "\(b)/auth/verify-email", [:])
        #expect(missing.status == 400 && missing.json["type"] as? String == "urn:identity:problem:invalid-token")
        let unknownField = try await post(client, "\(b)/auth/verify-email", ["token": verification, "extra": 1])
        #expect(unknownField.status == 422)

        // The link works once, on any node.
        let verified = try await post(client, "\(b)/auth/verify-email", ["token": verification])
        #expect(verified.status == 200 && verified.json["email_verified"] as? Bool == true, "\(verified.status) \(verified.json)")
        let again = try await post(client, "\(a)/auth/verify-email", ["token": verification])
        #expect(again.status == 400 && again.json["type"] as? String == "urn:identity:problem:invalid-token")

        // A resend to a verified address sends nothing, and answers 202.
        let pair = try await client.login(a, email: email, userAgent: "mail-e2e")
        #expect(try await client.send("GET", "\(b)/users/me", token: pair.access).json["email_verified"] as? Bool == true)
        let resend = try await client.send("POST", "\(b)/auth/verify-email/resend", token: pair.access)
        #expect(resend.status == 202)

        // A reset request answers alike for a stranger and for the account.
        let stranger = try await post(client, "\(a)/auth/password-reset", ["email": "nobody-\(UUID().uuidString.prefix(8))@example.com"])
        let owner = try await post(client, "\(b)/auth/password-reset", ["email": email])
        #expect(stranger.status == 202 && owner.status == 202)
        #expect(NSDictionary(dictionary: stranger.json).isEqual(to: owner.json), "one body: \(stranger.json) \(owner.json)")
        let reset = try await mailbox.nextToken("/reset-password", to: email)
        #expect(mailbox.tokens("/verify-email", to: email).count == 1, "no verification mail was resent")

        // On PostgreSQL, the database holds no usable token: digests, and the outbox's tokens sealed.
        if let postgres = deployment.postgres {
            let dump = try await psql(postgres, "SELECT string_agg(t::text, ' ') FROM (SELECT * FROM identity_account_tokens) t")
                + (try await psql(postgres, "SELECT string_agg(t::text, ' ') FROM (SELECT * FROM identity_mail_outbox) t"))
            #expect(!dump.isEmpty && !dump.contains(reset) && !dump.contains(verification), "tokens are never stored in clear")
        }

        // The reset: the rules of §2 first, then every token and session of the account is refused on every node.
        let weak = try await post(client, "\(a)/auth/password-reset/confirm", ["token": reset, "password": "short"])
        #expect(weak.status == 422, "\(weak.json)")
        let done = try await post(client, "\(a)/auth/password-reset/confirm", ["token": reset, "password": SessionEndToEndTests.newPassword])
        #expect(done.status == 204, "\(done.status) \(done.json)")
        try await client.refusedEverywhere(pair.access, ended: a)
        #expect(try await client.refresh(b, pair.refresh).status == 401, "the session ended with the reset")
        let old = try await client.send("POST", "\(a)/auth/login", body: try JSONSerialization.data(withJSONObject: ["email": email, "password": Self.password]),
                                        contentType: "application/json")
        #expect(old.status == 401, "the old password no longer works")
        _ = try await client.login(b, email: email, password: SessionEndToEndTests.newPassword, userAgent: "mail-e2e")
        let reused = try await post(client, "\(b)/auth/password-reset/confirm", ["token": reset, "password": "yet another passphrase"])
        #expect(reused.status == 400 && reused.json["type"] as? String == "urn:identity:problem:invalid-token", "a reset token works once")
    }

    @Test("an email change unverifies, mails the new address a link and the old one a notice; REQUIRE_VERIFIED_EMAIL refuses unverified logins with 403")
    func emailChangeAndRequiredVerification() async throws {
        let mailbox = try Mailbox.make(smtp: false)
        let deployment = try await SessionEndToEndTests.Deployment.start(.memory, extra: mailbox.environment.merging(["REQUIRE_VERIFIED_EMAIL": "1"]) { $1 })
        defer { deployment.stop() }
        let client = SessionClient(deployment: deployment)
        let base = deployment.a
        let registered = try await post(client, "\(base)/users", ["email": "cy@example.com", "password": Self.password, "name": "Cy"])
        try #require(registered.status == 201)
        let refused = try await post(client, "\(base)/auth/login", ["email": "cy@example.com", "password": Self.password])
        #expect(refused.status == 403 && refused.json["type"] as? String == "urn:identity:problem:email-not-verified", "\(refused.json)")
        let wrong = try await post(client, "\(base)/auth/login", ["email": "cy@example.com", "password": "not the password"])
        #expect(wrong.status == 401, "a wrong password says nothing about verification")
        let first = try await mailbox.nextToken("/verify-email", to: "cy@example.com")
        #expect(try await post(client, "\(base)/auth/verify-email", ["token": first]).status == 200)
        let pair = try await client.login(base, email: "cy@example.com", userAgent: "mail-e2e")

        let body = try JSONSerialization.data(withJSONObject: ["email": "cy@new.example", "current_password": Self.password])
        let changed = try await client.send("PUT", "\(base)/users/me", body: body, contentType: "application/json", token: pair.access)
        #expect(changed.status == 200 && changed.json["email_verified"] as? Bool == false, "\(changed.json)")
        let second = try await mailbox.nextToken("/verify-email", to: "cy@new.example")
        #expect(await eventually { mailbox.messages(to: "cy@example.com").contains { $0.contains("cy@new.example") } }, "the old address gets a notice")
        #expect(try await post(client, "\(base)/auth/verify-email", ["token": second]).json["email_verified"] as? Bool == true)
    }

    @Test("mail files land in MAIL_DIR as RFC 5322 messages, one per mail")
    func fileMailer() async throws {
        let mailbox = try Mailbox.make(smtp: false)
        let deployment = try await SessionEndToEndTests.Deployment.start(.memory, extra: mailbox.environment)
        defer { deployment.stop() }
        let client = SessionClient(deployment: deployment)
        for index in 0..<3 {
            let reply = try await post(client, "\(deployment.a)/users", ["email": "f\(index)@example.com", "password": Self.password, "name": "Zoë Ünïcode"])
            #expect(reply.status == 201)
        }
        #expect(await eventually { ((try? FileManager.default.contentsOfDirectory(atPath: mailbox.folder.path)) ?? []).filter { $0.hasSuffix(".eml") }.count == 3 })
        let message = try #require(mailbox.messages(to: "f0@example.com").first)
        #expect(message.contains("Message-ID: <") && message.contains("MIME-Version: 1.0") && message.contains("Subject: "))
    }

    /// A private aiosmtpd of `scripts/smtp-test-server.py` on `port`, writing to `folder`; it
    /// ends with this test process.
    static func startSMTPServer(port: Int, folder: URL, reject: [String] = []) throws -> Process {
        let python = try #require(ProcessInfo.processInfo.environment["IDENTITY_TEST_SMTP_PYTHON"])
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../scripts/smtp-test-server.py").standardized
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [script.path, "--port", "\(port)", "--port-file", folder.path + ".port", "--maildir", folder.path]
            + reject.flatMap { ["--reject", $0] }
        try process.run()
        return process
    }

    static var hasSMTPPython: Bool { ProcessInfo.processInfo.environment["IDENTITY_TEST_SMTP_PYTHON"] != nil }

    @Test("an SMTP server that is down at first gets the mail once it is up; one that refuses a recipient with 550 is not tried again",
          .enabled(if: hasSMTPPython, "needs IDENTITY_TEST_SMTP_PYTHON (scripts/test installs aiosmtpd)"))
    func smtpFaults() async throws {
        let port = try freePort()
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("identity-smtp-\(UUID().uuidString)")
        let environment = [
            "SMTP_HOST": "127.0.0.1", "SMTP_PORT": "\(port)", "SMTP_TLS": "none", "SMTP_FROM": "identity@example.com",
            "MAIL_RETRY_SECONDS": "1", "MAIL_MAX_ATTEMPTS": "30", "LOG_LEVEL": "info",
        ]
        let deployment = try await SessionEndToEndTests.Deployment.start(.memory, extra: environment)
        defer { deployment.stop() }
        let client = SessionClient(deployment: deployment)
        let mailbox = Mailbox(folder: folder, environment: environment)

        // Nobody listens yet: the registration is accepted at once, the mail waits and is retried.
        let reply = try await post(client, "\(deployment.a)/users", ["email": "early@example.com", "password": Self.password, "name": "Early"])
        #expect(reply.status == 201)
        let retried = await eventually(within: 30) {
            let text = (try? await rawText("\(deployment.a)/metrics")) ?? ""
            return metric("identity_mail_failures_total{final=\"false\"}", in: text) ?? 0 >= 1 && metric("identity_mail_pending", in: text) == 1
        }
        #expect(retried, "the failed attempt is counted and the mail stays pending")

        let server = try Self.startSMTPServer(port: port, folder: folder, reject: ["bounce@example.com"])
        defer { server.terminate() }
        let token = try await mailbox.nextToken("/verify-email", to: "early@example.com")
        #expect(try await post(client, "\(deployment.a)/auth/verify-email", ["token": token]).status == 200)

        // A permanent refusal: given up on after one attempt, counted, never retried.
        #expect(try await post(client, "\(deployment.a)/users", ["email": "bounce@example.com", "password": Self.password, "name": "Bounce"]).status == 201)
        let gaveUp = await eventually(within: 30) {
            let text = (try? await rawText("\(deployment.a)/metrics")) ?? ""
            return metric("identity_mail_failures_total{final=\"true\"}", in: text) == 1 && metric("identity_mail_failed", in: text) == 1
        }
        #expect(gaveUp, "a 550 is final: one attempt, then given up on (a given-up mail is never claimed again: AccountMailConformance)")
        let text = try await rawText("\(deployment.a)/metrics")
        #expect(metric("identity_mail_pending", in: text) == 0, "nothing left to retry")
        #expect(mailbox.messages(to: "bounce@example.com").isEmpty)
        #expect(deployment.log.contains("mail given up on") && deployment.log.contains("550"), "the operator sees why")
    }
}

/// The value of the sample `name` (with its labels) in Prometheus text, if present.
func metric(_ name: String, in text: String) -> Double? {
    for line in text.split(separator: "\n") where line.hasPrefix(name + " ") {
        return Double(line.dropFirst(name.count + 1).trimmingCharacters(in: .whitespaces))
    }
    return nil
}

/// The body of a GET as text (`/metrics`).
func rawText(_ url: String) async throws -> String {
    let (data, _) = try await URLSession.shared.data(from: try #require(URL(string: url)))
    return String(decoding: data, as: UTF8.self)
}
