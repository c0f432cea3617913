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

    @Test("refuses entries that are not addresses or blocks", arguments: ["10.0.0.0/33", "proxy.local", "10.0.0.0/x", "::1/129", "1.2.3"])
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
        let limits = LoginThrottleLimits(maxFailuresPerEmail: 100, maxFailuresPerClient: 3, window: 900)
        try await withIdentityApp(limits: limits, mode: .live) { (client, _) async throws in
            for index in 0..<3 {
                #expect(try await failLogin(client, email: "u\(index)@example.com", forwardedFor: "203.0.113.\(index)") == .unauthorized)
            }
            #expect(try await failLogin(client, email: "fresh@example.com", forwardedFor: "203.0.113.99") == .tooManyRequests)
        }
    }

    @Test("over a socket: behind a trusted proxy each forwarded client has its own ceiling")
    func trusted() async throws {
        let limits = LoginThrottleLimits(maxFailuresPerEmail: 100, maxFailuresPerClient: 3, window: 900)
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
