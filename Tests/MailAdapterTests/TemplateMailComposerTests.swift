import Foundation
import IdentityDomain
import IdentityPorts
import Testing

@testable import MailAdapter

@Suite("TemplateMailComposer")
struct TemplateMailComposerTests {
    private let token = "q1w2e3r4t5y6u7i8o9p0-_ASDFGHJKLzxcvbnm1234567"

    private func configuration(base: String = "https://id.example.com", directory: URL? = nil) -> MailTemplateConfiguration {
        MailTemplateConfiguration(
            from: MailAddress(address: "noreply@example.com", name: "Example"), publicBaseURL: URL(string: base)!, productName: "Example & Co",
            emailVerificationTTL: .seconds(24 * 3600), passwordResetTTL: .seconds(90 * 60), templatesDirectory: directory
        )
    }

    private func mail(_ kind: MailKind, name: String = "Ada <b>&</b> \"Lovelace\"") -> OutgoingMail {
        OutgoingMail(
            id: UUID(), kind: kind, userID: UserID(UUID()), recipient: Email(trustedCanonical: "ada@example.com"),
            recipientName: DisplayName(trusted: name), sealedToken: kind == .emailChanged ? nil : "sealed",
            newEmail: kind == .emailChanged ? Email(trustedCanonical: "new@example.com") : nil, createdAt: Date(timeIntervalSince1970: 1_796_316_888)
        )
    }

    @Test("the verification mail: link, token, lifetime, names; HTML escaped, text and subject not")
    func verification() throws {
        let composer = try TemplateMailComposer(configuration: configuration())
        let sent = mail(.emailVerification)
        let message = try composer.compose(sent, token: token)
        #expect(message.id == sent.id)
        #expect(message.date == sent.createdAt, "the commit time: a retry renders the same message")
        #expect(message.from == MailAddress(address: "noreply@example.com", name: "Example"))
        #expect(message.to == MailAddress(address: "ada@example.com", name: "Ada <b>&</b> \"Lovelace\""))
        #expect(message.subject == "Confirm your email address for Example & Co")
        let link = "https://id.example.com/verify-email?token=\(token)"
        #expect(message.text.contains(link) && message.text.contains("24 hours") && message.text.contains("\n\(token)\n"))
        #expect(message.text.contains("Hello Ada <b>&</b> \"Lovelace\","), "text is not HTML-escaped")
        let html = try #require(message.html)
        #expect(html.contains("href=\"\(link)\""))
        #expect(html.contains("Ada &lt;b&gt;&amp;&lt;/b&gt; &quot;Lovelace&quot;"), "HTML escapes values")
        #expect(!html.contains("<b>&</b>"))
    }

    @Test("the reset mail and the email-change notice")
    func resetAndNotice() throws {
        let composer = try TemplateMailComposer(configuration: configuration(base: "https://example.com/identity/"))
        let reset = try composer.compose(mail(.passwordReset), token: token)
        #expect(reset.text.contains("https://example.com/identity/reset-password?token=\(token)"), "the base's path is kept, one slash")
        #expect(reset.text.contains("1 hour 30 minutes"))
        let notice = try composer.compose(mail(.emailChanged), token: nil)
        #expect(notice.text.contains("from ada@example.com to new@example.com"))
        #expect(notice.html?.contains("new@example.com") == true)
        #expect(!notice.text.contains("token"))
        #expect(throws: MailTemplateError.self) { try composer.compose(mail(.passwordReset), token: nil) }
    }

    @Test("a file of the templates directory replaces its default; the others stay; text files are never escaped")
    func overrides() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("identity-templates-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try "Bonjour {{recipient_name}} : {{link}}".write(to: directory.appendingPathComponent("email_verification.text.mustache"), atomically: true, encoding: .utf8)
        try "Reset for {{product_name}}".write(to: directory.appendingPathComponent("password_reset.subject.mustache"), atomically: true, encoding: .utf8)
        let composer = try TemplateMailComposer(configuration: configuration(directory: directory))
        let verification = try composer.compose(mail(.emailVerification, name: "Zoë <3"), token: token)
        #expect(verification.text == "Bonjour Zoë <3 : https://id.example.com/verify-email?token=\(token)")
        #expect(verification.subject == "Confirm your email address for Example & Co", "the default subject stays")
        #expect(verification.html?.contains("Zoë &lt;3") == true, "the default HTML stays, escaped")
        #expect(try composer.compose(mail(.passwordReset), token: token).subject == "Reset for Example & Co")

        try "{{#broken}}".write(to: directory.appendingPathComponent("email_changed.html.mustache"), atomically: true, encoding: .utf8)
        #expect(throws: MailTemplateError.self) { try TemplateMailComposer(configuration: configuration(directory: directory)) }
    }

    @Test("lifetimes in words")
    func durations() {
        #expect(TemplateMailComposer.humanDuration(.seconds(24 * 3600)) == "24 hours")
        #expect(TemplateMailComposer.humanDuration(.seconds(30 * 60)) == "30 minutes")
        #expect(TemplateMailComposer.humanDuration(.seconds(3600)) == "1 hour")
        #expect(TemplateMailComposer.humanDuration(.seconds(60)) == "1 minute")
        #expect(TemplateMailComposer.humanDuration(.seconds(7 * 86_400)) == "7 days")
        #expect(TemplateMailComposer.humanDuration(.seconds(25 * 3600 + 60)) == "25 hours 1 minute")
    }
}
