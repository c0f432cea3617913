public import Foundation

/// The wall clock, injected so that tests control time.
///
/// Named `IdentityClock` rather than `Clock` so that it never shadows `Swift.Clock` in an
/// embedder's code.
public protocol IdentityClock: Sendable {
    /// The current instant.
    func now() -> Date
}

/// The real wall clock.
public struct SystemClock: IdentityClock {
    /// Creates the system clock.
    public init() {}
    public func now() -> Date { Date() }
}

/// Makes new identifiers, injected so that tests can predict them.
public protocol IDGenerator: Sendable {
    /// A new random UUID (version 4).
    func makeUUID() -> UUID
}

/// UUIDs from the system's cryptographically secure generator.
public struct RandomIDGenerator: IDGenerator {
    /// Creates the generator.
    public init() {}

    public func makeUUID() -> UUID {
        var generator = SystemRandomNumberGenerator()
        var bytes = (generator.next() as UInt64, generator.next() as UInt64)
        // Version 4, variant RFC 4122.
        bytes.0 = (bytes.0 & ~(0xF << 12)) | (0x4 << 12)
        bytes.1 = (bytes.1 & ~(0x3 << 62)) | (0x2 << 62)
        let hi = bytes.0.bigEndian
        let lo = bytes.1.bigEndian
        return withUnsafeBytes(of: (hi, lo)) { raw in
            UUID(uuid: (raw[0], raw[1], raw[2], raw[3], raw[4], raw[5], raw[6], raw[7],
                        raw[8], raw[9], raw[10], raw[11], raw[12], raw[13], raw[14], raw[15]))
        }
    }
}
