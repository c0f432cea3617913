import Foundation

/// Proxies whose `X-Forwarded-For` is believed, as IP addresses or CIDR blocks (IPv4, IPv6).
///
/// Empty by default: then the client is the socket peer and `X-Forwarded-For` is ignored, as it
/// must be, since any client can send it. With proxies configured, and the peer one of them, the
/// client is the rightmost address in `X-Forwarded-For` that is not itself a trusted proxy: the
/// first hop no trusted party vouches for. A forged left part of the header changes nothing.
public struct TrustedProxies: Sendable, Equatable {
    private struct Block: Sendable, Equatable {
        let address: [UInt8]
        let prefixLength: Int

        func contains(_ other: [UInt8]) -> Bool {
            guard other.count == address.count else { return false }
            var remaining = prefixLength
            for index in address.indices where remaining > 0 {
                let bits = min(8, remaining)
                let mask = UInt8(truncatingIfNeeded: 0xFF << (8 - bits))
                if address[index] & mask != other[index] & mask { return false }
                remaining -= bits
            }
            return true
        }
    }

    private let blocks: [Block]

    /// No trusted proxies: the socket peer is the client.
    public static let none = TrustedProxies(blocks: [])

    private init(blocks: [Block]) {
        self.blocks = blocks
    }

    /// Parses a comma-separated list such as `10.0.0.0/8, 192.168.1.10, fd00::/8`; nil when an
    /// entry is not an address or a block.
    public init?(_ list: String) {
        var blocks: [Block] = []
        for entry in list.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !entry.isEmpty {
            let parts = entry.split(separator: "/", maxSplits: 1).map(String.init)
            guard let address = Self.bytes(of: parts[0]) else { return nil }
            let maximum = address.count * 8
            let prefix = parts.count == 2 ? Int(parts[1]) : maximum
            guard let prefix, (0...maximum).contains(prefix) else { return nil }
            blocks.append(Block(address: address, prefixLength: prefix))
        }
        self.blocks = blocks
    }

    /// Whether `address` is one of the trusted proxies.
    public func trusts(_ address: String) -> Bool {
        guard let bytes = Self.bytes(of: address) else { return false }
        return blocks.contains { $0.contains(bytes) }
    }

    /// The client's address, given the socket peer and the `X-Forwarded-For` header.
    public func clientAddress(peer: String?, forwardedFor: String?) -> String? {
        guard let peer, !blocks.isEmpty, trusts(peer), let forwardedFor else { return peer }
        let hops = forwardedFor.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        for hop in hops.reversed() {
            guard Self.bytes(of: hop) != nil else { return peer }  // a malformed hop: trust nothing left of it
            if !trusts(hop) { return hop }
        }
        return hops.first ?? peer
    }

    /// The address's bytes (4 or 16); nil when it is neither IPv4 nor IPv6.
    static func bytes(of text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            return withUnsafeBytes(of: &v4) { Array($0) }
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 {
            return withUnsafeBytes(of: &v6) { Array($0) }
        }
        return nil
    }
}
