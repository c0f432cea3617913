@testable import AMQPAdapter
import Foundation
import Testing

/// The command MAC on its own (no broker): the documented bytes, the header, the key ring.
@Suite("Command MAC")
struct CommandSigningTests {
    static let key = Data("0123456789abcdef0123456789abcdef".utf8)
    static let body = Data(#"{"userID":"6A2F41A0-0000-4000-8000-000000000000"}"#.utf8)

    /// A delivery as a worker would receive it.
    static func delivery(
        messageID: String? = "m-1", correlationID: String? = "m-1", replyTo: String? = "amq.gen-reply",
        type: String? = "DeleteAccount", deadline: Int64? = 1_790_000_000_000, body: Data = body, mac: String?
    ) -> Delivery {
        Delivery(
            tag: 1, generation: 1, consumerTag: "c", body: body, messageID: messageID, correlationID: correlationID,
            replyTo: replyTo, type: type, redelivered: false, deliveryCount: 0, deadlineMilliseconds: deadline, mac: mac
        )
    }

    static let properties = MessageProperties(
        messageID: "m-1", correlationID: "m-1", replyTo: "amq.gen-reply", type: "DeleteAccount",
        expirationMilliseconds: 5000, deadlineMilliseconds: 1_790_000_000_000
    )

    @Test("known vector: the header is v1.<key id>.<HMAC-SHA256 in base64url>, as Docs/messaging.md specifies (computed with Python's hmac)")
    func knownVector() throws {
        let keys = try CommandSigningKeys([Self.key])
        #expect(keys.keyIDs == ["7d2b9a50"])
        let signed = keys.sign(Self.properties, body: Self.body)
        #expect(signed.mac == "v1.7d2b9a50.50ZQX6tQJJm7V5mCs5DuLo90vZJFaFypqksgXTr9XS4")
        #expect(keys.sign(MessageProperties(), body: Data()).mac == "v1.7d2b9a50.i7GHA9l8Juen5XD4c6QdFfigC4PACpRV-X_k7GFI2fI",
                "nothing but the label and six absent fields")
    }

    @Test("what was signed verifies; changing any authenticated property or the body does not")
    func everyFieldCounts() throws {
        let keys = try CommandSigningKeys([Self.key])
        let mac = try #require(keys.sign(Self.properties, body: Self.body).mac)
        #expect(try keys.verify(Self.delivery(mac: mac)).get() == "7d2b9a50")
        let altered: [(String, Delivery)] = [
            ("message_id", Self.delivery(messageID: "m-2", mac: mac)),
            ("correlation_id", Self.delivery(correlationID: "m-2", mac: mac)),
            ("reply_to", Self.delivery(replyTo: "amq.gen-attacker", mac: mac)),
            ("type", Self.delivery(type: "UpdateProfile", mac: mac)),
            ("deadline", Self.delivery(deadline: 1_790_000_060_000, mac: mac)),
            ("deadline removed", Self.delivery(deadline: nil, mac: mac)),
            ("body", Self.delivery(body: Data(#"{"userID":"6A2F41A0-0000-4000-8000-000000000001"}"#.utf8), mac: mac)),
            ("property moved into the next", Self.delivery(correlationID: nil, replyTo: "m-1amq.gen-reply", mac: mac)),
        ]
        for (what, delivery) in altered {
            #expect(throws: CommandMAC.Refusal(description: "the MAC (key 7d2b9a50) does not match the message"), "\(what)") {
                try keys.verify(delivery).get()
            }
        }
    }

    @Test("the trace headers are outside the MAC: a signature made with or without them verifies either way, so v1 is unchanged")
    func traceHeadersAreNotSigned() throws {
        let keys = try CommandSigningKeys([Self.key])
        var traced = Self.properties
        traced.traceHeaders = ["traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tracestate": "k=v"]
        let mac = try #require(keys.sign(traced, body: Self.body).mac)
        #expect(mac == keys.sign(Self.properties, body: Self.body).mac, "the same MAC as without trace headers")
        var delivery = Self.delivery(mac: mac)
        delivery.traceHeaders = ["traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"]
        #expect(try keys.verify(delivery).get() == "7d2b9a50")
    }

    @Test("a span name takes a command type only when it is a known command")
    func spanNames() {
        #expect(TraceHeaders.commandName("RegisterUser") == "RegisterUser")
        #expect(TraceHeaders.commandName("Register\(UUID())") == "command" && TraceHeaders.commandName(nil) == "command")
    }

    @Test("no header, a malformed one, an unknown key: refused, saying which")
    func refusals() throws {
        let keys = try CommandSigningKeys([Self.key])
        let other = try CommandSigningKeys([Data(repeating: 0x42, count: 32)])
        let foreign = try #require(other.sign(Self.properties, body: Self.body).mac)
        let cases: [(String?, String)] = [
            (nil, "no x-identity-mac header"),
            ("", "a malformed x-identity-mac header"),
            ("v2.7d2b9a50.50ZQX6tQJJm7V5mCs5DuLo90vZJFaFypqksgXTr9XS4", "a malformed x-identity-mac header"),
            ("v1.7D2B9A50.50ZQX6tQJJm7V5mCs5DuLo90vZJFaFypqksgXTr9XS4", "a malformed x-identity-mac header"),
            ("v1.7d2b9a50.50ZQX6tQJJm7V5mCs5DuLo90vZJFaFypqksgXTr9XS", "a malformed x-identity-mac header"),
            ("v1.7d2b9a50.50ZQX6tQJJm7V5mCs5DuLo90vZJFaFypqksgXTr9XS4=", "a malformed x-identity-mac header"),
            ("v1.7d2b9a50.50ZQX6tQJJm7V5mCs5DuLo90vZJFaFypqksgXTr9X+4", "a malformed x-identity-mac header"),
            (foreign, "signed with key \(other.keyIDs[0]), which is not configured here"),
        ]
        for (header, reason) in cases {
            #expect(throws: CommandMAC.Refusal(description: reason), "\(header ?? "nil")") {
                try keys.verify(Self.delivery(mac: header)).get()
            }
        }
    }

    @Test("rotation: the first key signs, every key verifies")
    func rotation() throws {
        let old = Self.key
        let new = Data(repeating: 0x42, count: 40)
        let before = try CommandSigningKeys([old])
        let during = try CommandSigningKeys([new, old])
        #expect(during.keyIDs == [try CommandSigningKeys([new]).keyIDs[0], "7d2b9a50"])
        let oldMAC = try #require(before.sign(Self.properties, body: Self.body).mac)
        let newMAC = try #require(during.sign(Self.properties, body: Self.body).mac)
        #expect(newMAC.hasPrefix("v1.\(during.keyIDs[0])."), "signed with the first key")
        #expect(try during.verify(Self.delivery(mac: oldMAC)).get() == "7d2b9a50", "a command signed before the rotation")
        #expect(try during.verify(Self.delivery(mac: newMAC)).get() == during.keyIDs[0])
        #expect(throws: CommandMAC.Refusal.self, "a node not yet rotated refuses the new key") {
            try before.verify(Self.delivery(mac: newMAC)).get()
        }
    }

    @Test("empty and absent properties are the same (the session leaves empty ones out), and so is a deadline that is not positive")
    func normalisation() throws {
        let keys = try CommandSigningKeys([Self.key])
        let mac = try #require(keys.sign(MessageProperties(messageID: "m", correlationID: "", deadlineMilliseconds: 0), body: Self.body).mac)
        #expect(throws: Never.self) {
            try keys.verify(Self.delivery(messageID: "m", correlationID: nil, replyTo: nil, type: nil, deadline: nil, mac: mac)).get()
        }
    }

    @Test("a key ring needs a key, and every key at least 32 bytes; the error never shows a key")
    func invalidKeys() {
        #expect(throws: InvalidCommandSigningKey(description: "no key given")) { try CommandSigningKeys([]) }
        #expect(throws: InvalidCommandSigningKey(description: "the key has 31 bytes; a key must have at least 32")) {
            try CommandSigningKeys([Data("k".utf8) + Data(repeating: 0x6b, count: 30)])
        }
        #expect(throws: InvalidCommandSigningKey(description: "key 2 of 2 has 0 bytes; a key must have at least 32")) {
            try CommandSigningKeys([Self.key, Data()])
        }
    }

    @Test("an untrusted property is logged at most 64 characters long, printable ASCII only")
    func loggable() {
        #expect(AMQPCommandWorker.loggable("m-1:ok_fine.") == "m-1:ok_fine.")
        #expect(AMQPCommandWorker.loggable("line\nbreak \u{1b}[31m") == "line?break???31m")
        #expect(AMQPCommandWorker.loggable(String(repeating: "x", count: 100)).count == 64)
        #expect(AMQPCommandWorker.loggable(nil) == "(none)")
    }
}

@Suite("AMQP settings")
struct AMQPSettingsTests {
    @Test("the settings print without their password, however they are printed")
    func redacted() {
        let settings = AMQPConfiguration(host: "broker", username: "identity", password: "s3cret-amqp-password", virtualHost: "ids")
        for text in ["\(settings)", String(reflecting: settings), String(describing: settings)] {
            #expect(!text.contains("s3cret-amqp-password"), "\(text)")
            #expect(text.contains("amqp://identity@broker:5672/ids") && text.contains("<redacted>"), "\(text)")
        }
    }
}
