import Foundation

/// Proxies whose `X-Forwarded-For` is believed, as IP addresses or CIDR blocks (IPv4, IPv6).
///
/// Empty by default: then the client is the socket peer and `X-Forwarded-For` is ignored, as it
/// must be, since any client can send it. With proxies configured, and the peer one of them, the
/// client is the rightmost address in `X-Forwarded-For` that is not itself a trusted proxy: the
/// first hop no trusted party vouches for. A forged left part of the header changes nothing.
///
/// An IPv4 address and its IPv4-mapped IPv6 form (`::ffff:10.0.0.5`, what a dual-stack socket
/// reports for an IPv4 peer) are the same address here: either matches an IPv4 entry, and an
/// IPv6 block that contains the mapped form.
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
            let parts = entry.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            guard let address = IPAddress.bytes(of: parts[0]) else { return nil }
            let maximum = address.count * 8
            let prefix = parts.count == 2 ? Self.prefix(parts[1]) : maximum
            guard let prefix, (0...maximum).contains(prefix) else { return nil }
            if let v4 = IPAddress.unmapped(address), prefix >= 96 {
                // `::ffff:10.0.0.0/104` is the IPv4 block 10.0.0.0/8.
                blocks.append(Block(address: v4, prefixLength: prefix - 96))
            } else {
                blocks.append(Block(address: address, prefixLength: prefix))
            }
        }
        self.blocks = blocks
    }

    /// Decimal digits only: `Int` would also take `+8`.
    private static func prefix(_ text: String) -> Int? {
        guard (1...3).contains(text.utf8.count), text.utf8.allSatisfy({ (0x30...0x39).contains($0) }) else { return nil }
        return Int(text)
    }

    /// Whether `address` is one of the trusted proxies.
    public func trusts(_ address: String) -> Bool {
        guard let bytes = IPAddress.bytes(of: address) else { return false }
        let v4 = IPAddress.unmapped(bytes) ?? (bytes.count == 4 ? bytes : nil)
        let forms = v4.map { [$0, IPAddress.mapped($0)] } ?? [bytes]
        return blocks.contains { block in forms.contains { block.contains($0) } }
    }

    /// The client's address, given the socket peer and the `X-Forwarded-For` header.
    public func clientAddress(peer: String?, forwardedFor: String?) -> String? {
        guard let peer, !blocks.isEmpty, trusts(peer), let forwardedFor else { return peer }
        let hops = forwardedFor.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        for hop in hops.reversed() {
            guard IPAddress.bytes(of: hop) != nil else { return peer }  // a malformed hop: trust nothing left of it
            if !trusts(hop) { return hop }
        }
        return hops.first ?? peer
    }
}

/// IP addresses as login throttling and proxy matching read them.
enum IPAddress {
    /// The key a client address is counted under by login throttling (contract §3): an IPv4
    /// address as itself, an IPv4-mapped IPv6 address (`::ffff:192.0.2.1`) as its IPv4
    /// address, any other IPv6 address as its /64 (`2001:db8:1:2::/64`), since one subscriber
    /// commonly holds a whole /64. All in canonical text, so every spelling of an address
    /// counts once. Text that is no address (which the socket and the proxy walk never give)
    /// is its own key.
    static func throttlingKey(for address: String) -> String {
        guard let bytes = bytes(of: address) else { return address }
        if let v4 = unmapped(bytes) ?? (bytes.count == 4 ? bytes : nil) {
            return text(of: v4) ?? address
        }
        let prefix = Array(bytes[0..<8]) + Array(repeating: 0, count: 8)
        return text(of: prefix).map { $0 + "/64" } ?? address
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

    /// The IPv4 address inside an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`); nil for any other.
    static func unmapped(_ bytes: [UInt8]) -> [UInt8]? {
        guard bytes.count == 16, bytes[0..<10].allSatisfy({ $0 == 0 }), bytes[10] == 0xFF, bytes[11] == 0xFF else { return nil }
        return Array(bytes[12..<16])
    }

    /// The IPv4-mapped IPv6 form of 4 IPv4 bytes.
    static func mapped(_ v4: [UInt8]) -> [UInt8] {
        Array(repeating: 0, count: 10) + [0xFF, 0xFF] + v4
    }

    /// Canonical text (RFC 5952 for IPv6) of 4 or 16 bytes.
    static func text(of bytes: [UInt8]) -> String? {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let family = bytes.count == 4 ? AF_INET : AF_INET6
        let written = bytes.withUnsafeBytes { raw in
            inet_ntop(family, raw.baseAddress, &buffer, socklen_t(buffer.count))
        }
        guard written != nil else { return nil }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
