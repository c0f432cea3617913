import CryptoAdapter
import Foundation
import IdentityApplication
import IdentityComposition
import IdentityPorts
import MailAdapter

/// The mail variables of contract §8 and §11, checked: where mail goes (SMTP or files), how
/// it is retried and rendered, and the token lifetimes.
struct MailSettings: Sendable {
    /// An SMTP server (`SMTP_HOST` and the rest); nil: files in `directory`.
    struct SMTP: Sendable {
        var host: String
        var port: Int
        var username: String?
        var password: String?
        var security: SMTPConfiguration.TLSMode
        var caFile: String?
        var timeout: Duration
    }

    var smtp: SMTP?
    /// `MAIL_DIR`, for the file mailer.
    var directory: String
    /// `SMTP_FROM`.
    var from: String
    /// The base of the links in mail (`PUBLIC_BASE_URL`, else this server's own address).
    var baseURL: URL
    var templatesDirectory: String?
    var policy: AccountMailPolicy
    var delivery: MailDelivery.Policy
    /// The secret the outbox seals tokens under: `JWT_KEY_ENCRYPTION_KEY`, else `JWT_SECRET`;
    /// nil: a random key per process (pending mail does not survive a restart).
    var sealingSecret: String?

    init(reader: inout VariableReader, jwtSecret: String?, keyEncryptionKey: String?, baseURL: URL?) throws {
        typealias Variable = ConfigurationVariable
        let host = try reader.string(Variable.smtpHost)
        let port = try reader.integer(Variable.smtpPort, in: 1...65_535)
        let username = try reader.string(Variable.smtpUser)
        let password = try reader.string(Variable.smtpPassword)
        // The mailers' own rule: an address they would refuse to send from stops start-up.
        from = try reader.required(Variable.smtpFrom, expected: "an address local@domain") { text in
            let address = text.trimmingCharacters(in: .whitespaces)
            return MailAddressCheck.problem(with: address) == nil ? address : nil
        }
        let security = try reader.choice(Variable.smtpTLS, SMTPConfiguration.TLSMode.self) { $0.lowercased() }
        let caFile = try reader.string(Variable.smtpCAFile)
        let timeout = try reader.integer(Variable.smtpTimeoutSeconds, in: 1...600)
        directory = try reader.required(Variable.mailDirectory, expected: "a path") { $0 }
        let attempts = try reader.integer(Variable.mailMaxAttempts, in: 1...100)
        let retry = try reader.integer(Variable.mailRetrySeconds, in: 1...3600)
        let claim = try reader.integer(Variable.mailClaimSeconds, in: 5...86400)
        templatesDirectory = try reader.string(Variable.mailTemplatesDirectory)
        let verificationHours = try reader.integer(Variable.emailVerificationTTLHours, in: 1...720)
        let resetMinutes = try reader.integer(Variable.passwordResetTTLMinutes, in: 1...1440)
        let requireVerified = try reader.flag(Variable.requireVerifiedEmail)
        if claim <= timeout {
            throw ConfigurationError("MAIL_CLAIM_SECONDS (\(claim)) must be above SMTP_TIMEOUT_SECONDS (\(timeout)): a claim outlasts a send")
        }
        if username != nil, password == nil {
            throw ConfigurationError("SMTP_USER is set, so SMTP_PASSWORD must be too")
        }
        if username != nil, security == .none {
            throw ConfigurationError("SMTP_USER is set, so SMTP_TLS must be starttls or tls (no password is sent in clear)")
        }
        smtp = host.map { host in
            SMTP(
                host: host, port: port, username: username, password: password, security: security, caFile: caFile, timeout: .seconds(timeout)
            )
        }
        guard let baseURL else { throw ConfigurationError("PUBLIC_BASE_URL must be set (the mail links need an absolute URL)") }
        self.baseURL = baseURL
        policy = AccountMailPolicy(
            verificationTTL: TimeInterval(verificationHours * 3600), resetTTL: TimeInterval(resetMinutes * 60),
            requireVerifiedEmail: requireVerified
        )
        delivery = MailDelivery.Policy(maxAttempts: attempts, firstRetryDelay: TimeInterval(retry), lease: TimeInterval(claim))
        sealingSecret = keyEncryptionKey ?? jwtSecret
    }

    /// The composition's mail setup: SMTP or files, the templates, the token minting.
    func setup() throws -> MailSetup {
        let mailer: any Mailer
        if let smtp {
            var configuration = SMTPConfiguration(
                host: smtp.host, port: smtp.port, tlsMode: smtp.security, trustRoots: smtp.caFile.map { .pemFile($0) } ?? .system,
                credentials: smtp.username.map { SMTPConfiguration.Credentials(username: $0, password: smtp.password ?? "") },
                connectTimeout: smtp.timeout, commandTimeout: smtp.timeout, dataTimeout: smtp.timeout * 2
            )
            configuration.envelopeFrom = from
            do {
                mailer = try SMTPMailer(configuration: configuration)
            } catch {
                throw ConfigurationError("SMTP_*: \(error)")
            }
        } else {
            mailer = FileMailer(directory: URL(fileURLWithPath: directory))
        }
        let composer: TemplateMailComposer
        do {
            composer = try TemplateMailComposer(configuration: MailTemplateConfiguration(
                from: MailAddress(address: from), publicBaseURL: baseURL, emailVerificationTTL: .seconds(policy.verificationTTL),
                passwordResetTTL: .seconds(policy.resetTTL), templatesDirectory: templatesDirectory.map { URL(fileURLWithPath: $0) }
            ))
        } catch {
            throw ConfigurationError("MAIL_TEMPLATES_DIR: \(error)")
        }
        return MailSetup(mailer: mailer, composer: composer, minting: try minting(), policy: policy, delivery: delivery)
    }

    /// The token minting of `sealingSecret`.
    func minting() throws -> AccountTokens {
        guard let sealingSecret else { return .random() }
        do {
            return try AccountTokens(secret: sealingSecret)
        } catch {
            throw ConfigurationError("JWT_SECRET or JWT_KEY_ENCRYPTION_KEY: \(error)")
        }
    }
}
