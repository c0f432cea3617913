public import Foundation
public import IdentityPorts
import IdentityDomain
import Mustache

/// What `TemplateMailComposer` needs (Docs/mail.md, "Templates").
public struct MailTemplateConfiguration: Sendable {
    /// The sender of every mail (`SMTP_FROM`).
    public var from: MailAddress
    /// The base of the links in mails (`PUBLIC_BASE_URL`); `/verify-email` or
    /// `/reset-password` is appended to its path.
    public var publicBaseURL: URL
    /// The product's name, as the mails call it.
    public var productName: String
    /// How long a verification link lives (`EMAIL_VERIFICATION_TTL_HOURS`), told in the mail.
    public var emailVerificationTTL: Duration
    /// How long a reset link lives (`PASSWORD_RESET_TTL_MINUTES`), told in the mail.
    public var passwordResetTTL: Duration
    /// A directory whose `<kind>.subject.mustache`, `<kind>.text.mustache` and
    /// `<kind>.html.mustache` files replace the defaults (any one of them, for any kind).
    public var templatesDirectory: URL?

    /// Creates the configuration.
    public init(
        from: MailAddress, publicBaseURL: URL, productName: String = "Identity",
        emailVerificationTTL: Duration = .seconds(24 * 3600), passwordResetTTL: Duration = .seconds(30 * 60),
        templatesDirectory: URL? = nil
    ) {
        self.from = from
        self.publicBaseURL = publicBaseURL
        self.productName = productName
        self.emailVerificationTTL = emailVerificationTTL
        self.passwordResetTTL = passwordResetTTL
        self.templatesDirectory = templatesDirectory
    }
}

/// A template that cannot be read or parsed, or a mail that lacks what its template needs.
public struct MailTemplateError: Error, Sendable, CustomStringConvertible {
    /// What is wrong (a file name, never a token).
    public let description: String
}

/// Renders pending mails with Mustache templates (swift-mustache): a subject, a text body and
/// an HTML body for each `MailKind`, built in, each replaceable by a file of the host's.
///
/// Values: `recipient_name`, `recipient_email`, `link`, `token`, `expires_in` ("24 hours",
/// "30 minutes"), `new_email` (the notice), `product_name`. The HTML templates escape them;
/// the subject and text templates are rendered as plain text (no HTML escaping), whatever
/// they say. No password ever reaches a template: none is given to it.
public struct TemplateMailComposer: MailComposer {
    private struct Templates: Sendable {
        let subject: MustacheTemplate
        let text: MustacheTemplate
        let html: MustacheTemplate
    }

    private let configuration: MailTemplateConfiguration
    private let templates: [MailKind: Templates]

    /// Loads the templates; throws `MailTemplateError` for a template file that cannot be
    /// read or parsed.
    public init(configuration: MailTemplateConfiguration) throws {
        self.configuration = configuration
        var templates: [MailKind: Templates] = [:]
        for kind in MailKind.allCases {
            let defaults = DefaultMailTemplates.templates(for: kind)
            func load(_ part: String, _ fallback: String, text: Bool) throws -> MustacheTemplate {
                var source = fallback
                var origin = "the built-in \(kind.rawValue).\(part) template"
                if let directory = configuration.templatesDirectory {
                    let file = directory.appendingPathComponent("\(kind.rawValue).\(part).mustache")
                    if FileManager.default.fileExists(atPath: file.path) {
                        guard let data = FileManager.default.contents(atPath: file.path), let string = String(data: data, encoding: .utf8) else {
                            throw MailTemplateError(description: "cannot read the mail template \(file.lastPathComponent)")
                        }
                        source = string
                        origin = "the mail template \(file.lastPathComponent)"
                    }
                }
                // The pragma makes `{{value}}` insert text as it is: a text mail is not HTML.
                let pragma = text ? "{{% CONTENT_TYPE: TEXT}}" : "{{% CONTENT_TYPE: HTML}}"
                do {
                    return try MustacheTemplate(string: pragma + source)
                } catch {
                    throw MailTemplateError(description: "\(origin) does not parse: \(error)")
                }
            }
            templates[kind] = Templates(
                subject: try load("subject", defaults.subject, text: true),
                text: try load("text", defaults.text, text: true),
                html: try load("html", defaults.html, text: false)
            )
        }
        self.templates = templates
    }

    public func compose(_ mail: OutgoingMail, token: String?) throws -> MailMessage {
        guard let templates = templates[mail.kind] else { throw MailTemplateError(description: "no template for \(mail.kind.rawValue)") }
        var values: [String: String] = [
            "recipient_name": mail.recipientName.value,
            "recipient_email": mail.recipient.value,
            "product_name": configuration.productName,
        ]
        switch mail.kind {
        case .emailVerification, .passwordReset:
            guard let token else { throw MailTemplateError(description: "a \(mail.kind.rawValue) mail needs its token") }
            let isVerification = mail.kind == .emailVerification
            values["token"] = token
            values["link"] = try link(path: isVerification ? "verify-email" : "reset-password", token: token)
            values["expires_in"] = Self.humanDuration(isVerification ? configuration.emailVerificationTTL : configuration.passwordResetTTL)
        case .emailChanged:
            guard let newEmail = mail.newEmail else { throw MailTemplateError(description: "an email_changed mail needs the new address") }
            values["new_email"] = newEmail.value
        }
        let subject = templates.subject.render(values).trimmingCharacters(in: .whitespacesAndNewlines)
        return MailMessage(
            id: mail.id,
            from: configuration.from,
            to: MailAddress(address: mail.recipient.value, name: mail.recipientName.value),
            subject: subject,
            text: templates.text.render(values),
            html: templates.html.render(values),
            // The commit time, not now: a retry renders the very same message.
            date: mail.createdAt
        )
    }

    /// `base` + `/path?token=…`, keeping the base's own path (`https://host/app` gives
    /// `https://host/app/verify-email?token=…`) and encoding the token as a query value.
    private func link(path: String, token: String) throws -> String {
        guard var components = URLComponents(url: configuration.publicBaseURL, resolvingAgainstBaseURL: false) else {
            throw MailTemplateError(description: "the public base URL is not a URL")
        }
        var basePath = components.path
        while basePath.hasSuffix("/") { basePath.removeLast() }
        components.path = basePath + "/" + path
        components.queryItems = [URLQueryItem(name: "token", value: token)]
        components.fragment = nil
        guard let url = components.string else { throw MailTemplateError(description: "the public base URL is not a URL") }
        return url
    }

    /// "24 hours", "30 minutes", "1 hour 30 minutes", "1 minute".
    static func humanDuration(_ duration: Duration) -> String {
        let totalMinutes = Int(duration.components.seconds / 60)
        let days = totalMinutes / 1440, hours = totalMinutes % 1440 / 60, minutes = totalMinutes % 60
        func unit(_ count: Int, _ name: String) -> String? { count == 0 ? nil : "\(count) \(name)\(count == 1 ? "" : "s")" }
        // Whole days read better as hours up to two days ("24 hours", "48 hours").
        let parts = totalMinutes % 1440 == 0 && days > 2
            ? [unit(days, "day")]
            : [unit(days * 24 + hours, "hour"), unit(minutes, "minute")]
        let text = parts.compactMap { $0 }.joined(separator: " ")
        return text.isEmpty ? "less than a minute" : text
    }
}
