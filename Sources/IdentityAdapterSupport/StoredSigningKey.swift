public import IdentityPorts

/// A stored signing key that does not make a `SigningKeyRecord`: a state this build does not
/// know (written by a newer build, or by hand) or a column of the wrong kind. The SQL stores
/// throw it for the whole key set rather than leave the key out: a rotation that did not see
/// a key would plan as if it were not there.
public struct UnreadableSigningKey: Error, Sendable, Equatable, CustomStringConvertible {
    /// The stored key's `kid`.
    public let kid: String
    /// What is wrong with it.
    public let reason: String

    /// Creates the error.
    public init(kid: String, reason: String) {
        self.kid = kid
        self.reason = reason
    }

    public var description: String { "stored signing key \(kid) cannot be read: \(reason)" }
}

extension SigningKeyState {
    /// The state a SQL store keeps as `text` (its raw value) for the key `kid`; throws
    /// `UnreadableSigningKey` when the text names no state.
    public init(stored text: String, kid: String) throws {
        guard let state = SigningKeyState(rawValue: text) else {
            let known = SigningKeyState.allCases.map(\.rawValue).joined(separator: ", ")
            throw UnreadableSigningKey(kid: kid, reason: "its state '\(text.prefix(32))' is none of \(known)")
        }
        self = state
    }
}
