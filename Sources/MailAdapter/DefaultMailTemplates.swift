import IdentityPorts

/// The built-in templates (string literals rather than resources: nothing to locate at run
/// time). Subject and text are rendered as plain text, HTML with escaping
/// (`TemplateMailComposer` adds the content-type pragma).
enum DefaultMailTemplates {
    /// The subject, text and HTML template of `kind`.
    static func templates(for kind: MailKind) -> (subject: String, text: String, html: String) {
        switch kind {
        case .emailVerification: (verificationSubject, verificationText, verificationHTML)
        case .passwordReset: (resetSubject, resetText, resetHTML)
        case .emailChanged: (changedSubject, changedText, changedHTML)
        }
    }

    private static let verificationSubject = "Confirm your email address for {{product_name}}"

    private static let verificationText = """
        Hello {{recipient_name}},

        Please confirm that {{recipient_email}} is your email address for {{product_name}} by opening this link:

        {{link}}

        The link works once and expires in {{expires_in}}. If your application asks for a code, use:

        {{token}}

        If you did not ask for this, you can ignore this mail.

        """

    private static let verificationHTML = """
        <!DOCTYPE html>
        <html><body>
        <p>Hello {{recipient_name}},</p>
        <p>Please confirm that {{recipient_email}} is your email address for {{product_name}}:</p>
        <p><a href="{{link}}">Confirm my email address</a></p>
        <p>The link works once and expires in {{expires_in}}. If your application asks for a code, use:<br><code>{{token}}</code></p>
        <p>If you did not ask for this, you can ignore this mail.</p>
        </body></html>

        """

    private static let resetSubject = "Reset your {{product_name}} password"

    private static let resetText = """
        Hello {{recipient_name}},

        Somebody asked to reset the password of your {{product_name}} account. To choose a new password, open this link:

        {{link}}

        The link works once and expires in {{expires_in}}. If your application asks for a code, use:

        {{token}}

        If you did not ask for this, ignore this mail: your password stays as it is.

        """

    private static let resetHTML = """
        <!DOCTYPE html>
        <html><body>
        <p>Hello {{recipient_name}},</p>
        <p>Somebody asked to reset the password of your {{product_name}} account.</p>
        <p><a href="{{link}}">Choose a new password</a></p>
        <p>The link works once and expires in {{expires_in}}. If your application asks for a code, use:<br><code>{{token}}</code></p>
        <p>If you did not ask for this, ignore this mail: your password stays as it is.</p>
        </body></html>

        """

    private static let changedSubject = "Your {{product_name}} email address was changed"

    private static let changedText = """
        Hello {{recipient_name}},

        The email address of your {{product_name}} account was changed from {{recipient_email}} to {{new_email}}.

        If you made this change, there is nothing to do. If you did not, contact us at once: somebody may have access to your account.

        """

    private static let changedHTML = """
        <!DOCTYPE html>
        <html><body>
        <p>Hello {{recipient_name}},</p>
        <p>The email address of your {{product_name}} account was changed from {{recipient_email}} to {{new_email}}.</p>
        <p>If you made this change, there is nothing to do. If you did not, contact us at once: somebody may have access to your account.</p>
        </body></html>

        """
}
