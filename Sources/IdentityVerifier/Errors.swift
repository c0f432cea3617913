/// The keys could not be fetched or read: the URL, and what went wrong.
public struct KeySetFetchError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What went wrong, with the URL.
    public let description: String
    init(_ description: String) { self.description = description }
}

/// The discovery document is not one the verifier can use: another issuer, no `jwks_uri`.
public struct DiscoveryError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What is wrong with it, with the URL.
    public let description: String
    init(_ description: String) { self.description = description }
}
