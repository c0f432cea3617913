import Foundation
import HTTPTypes
import HummingbirdTesting
@testable import HTTPAdapter
import IdentityPorts
import Testing

@Suite("Client address behind proxies")
struct TrustedProxiesTests {
    let proxies = TrustedProxies("10.0.0.0/8, 192.168.1.10, fd00::/8")!

    @Test("addresses and blocks, IPv4 and IPv6")
    func matching() {
        #expect(proxies.trusts("10.1.2.3") && proxies.trusts("192.168.1.10") && proxies.trusts("fd12::1"))
        #expect(!proxies.trusts("11.0.0.1") && !proxies.trusts("192.168.1.11") && !proxies.trusts("fe80::1") && !proxies.trusts("nope"))
        #expect(TrustedProxies("0.0.0.0/0")!.trusts("203.0.113.9"))
        #expect(TrustedProxies("") == TrustedProxies.none)
    }

    @Test("an IPv4-mapped IPv6 peer (a dual-stack socket's IPv4 client) matches IPv4 entries, and mapped entries match IPv4")
    func mapped() {
        #expect(proxies.trusts("::ffff:10.1.2.3") && proxies.trusts("::ffff:192.168.1.10") && proxies.trusts("::FFFF:0a01:0203"))
        #expect(!proxies.trusts("::ffff:11.0.0.1") && !proxies.trusts("::ffff:192.168.1.11"))
        #expect(!proxies.trusts("64:ff9b::10.1.2.3") && !proxies.trusts("::10.1.2.3"), "only the ::ffff:0:0/96 form is IPv4")
        #expect(proxies.clientAddress(peer: "::ffff:10.0.0.5", forwardedFor: "203.0.113.7") == "203.0.113.7")
        #expect(proxies.clientAddress(peer: "::ffff:198.51.100.1", forwardedFor: "203.0.113.7") == "::ffff:198.51.100.1")
        #expect(proxies.clientAddress(peer: "10.0.0.5", forwardedFor: "203.0.113.7, ::ffff:10.0.0.9") == "203.0.113.7",
                "a mapped trusted hop is skipped")
        let mappedEntries = TrustedProxies("::ffff:10.0.0.0/104, ::ffff:192.0.2.1")!
        #expect(mappedEntries.trusts("10.9.9.9") && mappedEntries.trusts("::ffff:10.9.9.9") && mappedEntries.trusts("192.0.2.1"))
        #expect(!mappedEntries.trusts("11.0.0.1") && !mappedEntries.trusts("192.0.2.2") && !mappedEntries.trusts("2001:db8::1"))
        #expect(TrustedProxies("::ffff:0:0/96")!.trusts("198.51.100.1"), "the whole mapped range is every IPv4 address")
    }

    @Test("throttling keys: an IPv4 address, a mapped one as its IPv4 address, IPv6 per /64, in canonical text", arguments: [
        ("203.0.113.7", "203.0.113.7"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("::FFFF:cb00:7107", "203.0.113.7"),
        ("0:0:0:0:0:ffff:203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:0DB8:0001:0002::ffff", "2001:db8:1:2::/64"),
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
        ("::1", "::/64"),
        ("fe80::1", "fe80::/64"),
        ("64:ff9b::203.0.113.7", "64:ff9b::/64"),
    ])
    func throttlingKey(address: String, key: String) {
        #expect(IPAddress.throttlingKey(for: address) == key)
    }

    @Test("every address of one /64 is one bucket; the next /64 is another")
    func samePrefix() {
        let keys = Set(["2001:db8:aa:bb::", "2001:db8:aa:bb::1", "2001:db8:aa:bb:ffff:ffff:ffff:ffff", "2001:db8:aa:bb:1234::9"]
            .map(IPAddress.throttlingKey(for:)))
        #expect(keys == ["2001:db8:aa:bb::/64"])
        #expect(IPAddress.throttlingKey(for: "2001:db8:aa:bc::1") != IPAddress.throttlingKey(for: "2001:db8:aa:bb::1"))
        #expect(IPAddress.throttlingKey(for: "203.0.113.7") != IPAddress.throttlingKey(for: "203.0.113.8"), "IPv4 per address")
    }

    @Test("text that is no address is its own key", arguments: [
        "not an address", "", "1.2.3", "1.2.3.256", "2001:db8::1::2", "2001:db8:1:2:3:4:5:6:7", "fe80::1%eth0", "::ffff:1.2.3.4.5",
        "203.0.113.7:443", "[2001:db8::1]",
    ])
    func malformedKey(text: String) {
        #expect(IPAddress.throttlingKey(for: text) == text)
    }

    @Test("refuses entries that are not addresses or blocks", arguments: [
        "10.0.0.0/33", "proxy.local", "10.0.0.0/x", "::1/129", "1.2.3", "10.0.0.0/+8", "10.0.0.0/", "::ffff:10.0.0.0/129", "10.0.0.1, bogus",
    ])
    func invalid(list: String) {
        #expect(TrustedProxies(list) == nil)
    }

    @Test("the client is the rightmost untrusted hop, and only when the peer is a trusted proxy")
    func resolution() {
        #expect(proxies.clientAddress(peer: "10.0.0.5", forwardedFor: "203.0.113.7") == "203.0.113.7")
        #expect(proxies.clientAddress(peer: "10.0.0.5", forwardedFor: "1.1.1.1, 203.0.113.7, 10.0.0.9") == "203.0.113.7",
                "a forged left part changes nothing")
        #expect(proxies.clientAddress(peer: "198.51.100.1", forwardedFor: "203.0.113.7") == "198.51.100.1",
                "an untrusted peer's header is ignored")
        #expect(proxies.clientAddress(peer: "10.0.0.5", forwardedFor: nil) == "10.0.0.5")
        #expect(proxies.clientAddress(peer: "10.0.0.5", forwardedFor: "garbage, 203.0.113.7") == "203.0.113.7")
        #expect(proxies.clientAddress(peer: "10.0.0.5", forwardedFor: "203.0.113.7, garbage") == "10.0.0.5",
                "a malformed hop stops the walk")
        #expect(TrustedProxies.none.clientAddress(peer: "10.0.0.5", forwardedFor: "203.0.113.7") == "10.0.0.5", "off by default")
    }

    func failLogin(_ client: any TestClientProtocol, email: String, forwardedFor: String) async throws -> HTTPResponse.Status {
        try await client.postJSON("/auth/login", #"{"email":"\#(email)","password":"wrong password"}"#,
                                  headers: [.xForwardedFor: forwardedFor]).status
    }

    @Test("over a socket: without trusted proxies X-Forwarded-For cannot dodge the per-address ceiling")
    func untrusted() async throws {
        let limits = LoginThrottleConfiguration(maxFailuresPerEmail: 100, maxFailuresPerClient: 3, window: 900)
        try await withIdentityApp(limits: limits, mode: .live) { (client, _) async throws in
            for index in 0..<3 {
                #expect(try await failLogin(client, email: "u\(index)@example.com", forwardedFor: "203.0.113.\(index)") == .unauthorized)
            }
            #expect(try await failLogin(client, email: "fresh@example.com", forwardedFor: "203.0.113.99") == .tooManyRequests)
        }
    }

    @Test("over a socket: an IPv6 /64 is one client for the per-address ceiling, and a mapped address is its IPv4 address")
    func keyedOverSocket() async throws {
        let limits = LoginThrottleConfiguration(maxFailuresPerEmail: 100, maxFailuresPerClient: 3, window: 900)
        try await withIdentityApp(limits: limits, trustedProxies: TrustedProxies("127.0.0.1, ::1")!, mode: .live) { (client, _) async throws in
            for (index, address) in ["2001:db8:5:6::1", "2001:db8:5:6::2", "2001:db8:5:6:ffff::3"].enumerated() {
                #expect(try await failLogin(client, email: "v6-\(index)@example.com", forwardedFor: address) == .unauthorized)
            }
            #expect(try await failLogin(client, email: "fresh@example.com", forwardedFor: "2001:db8:5:6:abcd::9") == .tooManyRequests,
                    "another address of the same /64")
            #expect(try await failLogin(client, email: "fresh@example.com", forwardedFor: "2001:db8:5:7::1") == .unauthorized,
                    "the next /64 is another client")
            for index in 0..<3 {
                #expect(try await failLogin(client, email: "v4-\(index)@example.com", forwardedFor: "::ffff:198.51.100.4") == .unauthorized)
            }
            #expect(try await failLogin(client, email: "other@example.com", forwardedFor: "198.51.100.4") == .tooManyRequests,
                    "the IPv4 address is the client its mapped form was")
        }
    }

    @Test("over a socket: behind a trusted proxy each forwarded client has its own ceiling")
    func trusted() async throws {
        let limits = LoginThrottleConfiguration(maxFailuresPerEmail: 100, maxFailuresPerClient: 3, window: 900)
        try await withIdentityApp(limits: limits, trustedProxies: TrustedProxies("127.0.0.1, ::1")!, mode: .live) { (client, _) async throws in
            for index in 0..<3 {
                #expect(try await failLogin(client, email: "u\(index)@example.com", forwardedFor: "203.0.113.1") == .unauthorized)
            }
            #expect(try await failLogin(client, email: "fresh@example.com", forwardedFor: "203.0.113.1") == .tooManyRequests)
            #expect(try await failLogin(client, email: "fresh@example.com", forwardedFor: "203.0.113.2") == .unauthorized,
                    "another client behind the same proxy is not throttled")
        }
    }
}
