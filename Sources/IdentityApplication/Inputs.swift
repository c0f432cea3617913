public import IdentityDomain

/// A registration's fields, checked (`POST /users`).
public struct RegistrationInput: Sendable {
    /// The canonical email.
    public let email: Email
    /// The password, as it will be hashed.
    public let password: Password
    /// The display name.
    public let name: DisplayName

    /// Checks the raw fields; throws a `ValidationError` that lists every bad one.
    public init(email: String, password: String, name: String) throws(ValidationError) {
        var check = ValidationCollector()
        let (email, password, name) = Self.parse(email: email, password: password, name: name, into: &check)
        guard let email, let password, let name, check.errors.isEmpty else { throw ValidationError(check.errors) }
        (self.email, self.password, self.name) = (email, password, name)
    }

    /// The rules the given fields break, without side effects; absent fields are skipped (a
    /// driving adapter reports them as missing).
    public static func errors(email: String?, password: String?, name: String?) -> [FieldError] {
        var check = ValidationCollector()
        _ = parse(email: email, password: password, name: name, into: &check)
        return check.errors
    }

    private static func parse(
        email: String?, password: String?, name: String?, into check: inout ValidationCollector
    ) -> (Email?, Password?, DisplayName?) {
        (
            email.flatMap { raw in check.attempt { () throws(ValidationError) in try Email(raw) } },
            password.flatMap { raw in check.attempt { () throws(ValidationError) in try Password(raw) } },
            name.flatMap { raw in check.attempt { () throws(ValidationError) in try DisplayName(raw) } }
        )
    }
}

/// An account brought from another system with its password hash (`DemoServer import-users`).
public struct AccountImportInput: Sendable {
    /// The canonical email.
    public let email: Email
    /// The display name.
    public let name: DisplayName

    /// Checks the raw fields; `recognizes` says whether the hasher can verify the hash. Never
    /// echoes the hash.
    public init(email: String, name: String, passwordHash: String, recognizes: (String) -> Bool) throws(ValidationError) {
        let errors = Self.errors(email: email, name: name, passwordHash: passwordHash, recognizes: recognizes)
        guard errors.isEmpty, let email = try? Email(email), let name = try? DisplayName(name) else { throw ValidationError(errors) }
        (self.email, self.name) = (email, name)
    }

    /// The rules the given fields break, without side effects; absent fields are skipped.
    public static func errors(email: String?, name: String?, passwordHash: String?, recognizes: (String) -> Bool) -> [FieldError] {
        var check = ValidationCollector()
        _ = email.flatMap { raw in check.attempt { () throws(ValidationError) in try Email(raw) } }
        _ = name.flatMap { raw in check.attempt { () throws(ValidationError) in try DisplayName(raw) } }
        if let passwordHash, !recognizes(passwordHash) {
            check.add(field: "password_hash", "is not a password hash this service can verify (Argon2id PHC or bcrypt)")
        }
        return check.errors
    }
}

/// A change of one's own profile, checked (`PUT /users/me`): any non-empty subset of name,
/// email and password, with `current_password` when the email or password changes.
public struct ProfileChangeInput: Sendable {
    /// The new name, if it changes.
    public let name: DisplayName?
    /// The new canonical email, if it changes.
    public let email: Email?
    /// The new password, if it changes.
    public let password: Password?
    /// The current password, given when the email or password changes.
    public let currentPassword: Password?

    /// Checks the raw fields; throws a `ValidationError` that lists every bad one.
    public init(name: String?, email: String?, password: String?, currentPassword: String?) throws(ValidationError) {
        var check = ValidationCollector()
        let values = Self.parse(name: name, email: email, password: password, currentPassword: currentPassword, into: &check)
        try check.check()
        (self.name, self.email, self.password, self.currentPassword) = values
    }

    /// The rules the given fields break, without side effects.
    public static func errors(name: String?, email: String?, password: String?, currentPassword: String?) -> [FieldError] {
        var check = ValidationCollector()
        _ = parse(name: name, email: email, password: password, currentPassword: currentPassword, into: &check)
        return check.errors
    }

    private static func parse(
        name: String?, email: String?, password: String?, currentPassword: String?, into check: inout ValidationCollector
    ) -> (DisplayName?, Email?, Password?, Password?) {
        if name == nil, email == nil, password == nil {
            check.addDocumentError("give at least one of name, email, password")
        }
        let newName = name.flatMap { raw in check.attempt { () throws(ValidationError) in try DisplayName(raw) } }
        let newEmail = email.flatMap { raw in check.attempt { () throws(ValidationError) in try Email(raw) } }
        let newPassword = password.flatMap { raw in check.attempt { () throws(ValidationError) in try Password(raw) } }
        var current: Password?
        if email != nil || password != nil {
            if let currentPassword {
                current = check.attempt { () throws(ValidationError) in try Password(candidate: currentPassword, field: "current_password") }
            } else {
                check.add(field: "current_password", "is required to change email or password")
            }
        }
        return (newName, newEmail, newPassword, current)
    }
}

/// A login's fields, checked (`POST /auth/login`).
public struct LoginInput: Sendable {
    /// The canonical email.
    public let email: Email
    /// The password to check.
    public let password: Password

    /// Checks the raw fields; `emailField` names the email field in errors (`username` in the
    /// OAuth2 form). Throws a `ValidationError` that lists every bad one.
    public init(email: String, password: String, emailField: String = "email") throws(ValidationError) {
        var check = ValidationCollector()
        let (email, password) = Self.parse(email: email, password: password, emailField: emailField, into: &check)
        guard let email, let password, check.errors.isEmpty else { throw ValidationError(check.errors) }
        (self.email, self.password) = (email, password)
    }

    /// The rules the given fields break, without side effects.
    public static func errors(email: String?, password: String?, emailField: String = "email") -> [FieldError] {
        var check = ValidationCollector()
        _ = parse(email: email, password: password, emailField: emailField, into: &check)
        return check.errors
    }

    private static func parse(
        email: String?, password: String?, emailField: String, into check: inout ValidationCollector
    ) -> (Email?, Password?) {
        (
            email.flatMap { raw in check.attempt { () throws(ValidationError) in try Email(raw, field: emailField) } },
            password.flatMap { raw in check.attempt { () throws(ValidationError) in try Password(candidate: raw) } }
        )
    }
}
