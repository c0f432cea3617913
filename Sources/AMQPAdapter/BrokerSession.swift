import CRabbitMQ
import Foundation
import Glibc

/// The properties of a message we publish.
struct MessageProperties: Sendable {
    var messageID: String?
    var correlationID: String?
    var replyTo: String?
    var type: String?
    /// Per-message TTL: the broker dead-letters the message when it waits longer.
    var expirationMilliseconds: Int?
    /// Sent as the header `x-identity-deadline-ms`.
    var deadlineMilliseconds: Int64?
    /// Sent as the header `x-identity-mac` (`CommandSigningKeys.sign`).
    var mac: String?
    var persistent = true
    /// The W3C trace context (`traceparent`, `tracestate`), sent as headers of those names;
    /// empty when tracing is off. Not covered by the MAC (Docs/observability.md).
    var traceHeaders: [String: String] = [:]
}

/// The live librabbitmq connection, confined to the connection thread: never Sendable,
/// never touched from anywhere else.
final class BrokerSession {
    enum Event {
        case nothing
        case delivery(Delivery)
        case confirm
    }

    let generation: UInt64
    let usesTLS: Bool
    private let connection: amqp_connection_state_t
    private var nextPublishTag: UInt64 = 1
    private var confirms: [UInt64: (Bool) -> Void] = [:]

    private init(connection: amqp_connection_state_t, generation: UInt64, usesTLS: Bool) {
        self.connection = connection
        self.generation = generation
        self.usesTLS = usesTLS
    }

    /// Connects, logs in, opens the channel and turns on publisher confirms.
    static func open(_ settings: AMQPConfiguration, generation: UInt64) throws(BrokerError) -> BrokerSession {
        var error = ErrorBuffer()
        let milliseconds = Int32(clamping: settings.connectTimeout.wholeMilliseconds)
        let connection = error.withPointer { pointer, length in
            identity_amqp_open(
                settings.host, Int32(settings.port), settings.username, settings.password, settings.virtualHost,
                Int32(settings.heartbeatSeconds), settings.tls == nil ? 0 : 1, settings.tls?.caFile,
                settings.tls?.verifyPeer == false ? 0 : 1, milliseconds, pointer, length
            )
        }
        guard let connection else {
            throw BrokerError(operation: "connect to \(settings.host):\(settings.port)", status: -1, reason: error.text)
        }
        return BrokerSession(connection: connection, generation: generation, usesTLS: settings.tls != nil)
    }

    var socket: Int32 { amqp_get_sockfd(connection) }

    /// Frames librabbitmq has read but not handed out yet: poll(2) would not see them.
    var hasBufferedInput: Bool { amqp_frames_enqueued(connection) != 0 || amqp_data_in_buffer(connection) != 0 }

    func close(polite: Bool) {
        identity_amqp_close(connection, polite ? 1 : 0)
    }

    // MARK: topology

    func declareExchange(_ name: String, type: String) throws(BrokerError) {
        try check("declare exchange \(name)") { identity_amqp_declare_exchange(connection, name, type, $0, $1) }
    }

    func declareWorkQueue(_ name: String, deadLetterQueue: String, deliveryLimit: Int) throws(BrokerError) {
        try check("declare queue \(name)") {
            identity_amqp_declare_work_queue(connection, name, deadLetterQueue, Int32(deliveryLimit), $0, $1)
        }
    }

    /// Declares a durable queue by name, or with `name` nil an exclusive server-named one; returns its name.
    @discardableResult
    func declareQueue(_ name: String?, durable: Bool = true) throws(BrokerError) -> String {
        var actual = ErrorBuffer()
        try check("declare queue \(name ?? "(exclusive)")") { error, length in
            actual.withPointer { identity_amqp_declare_queue(connection, name ?? "", durable ? 1 : 0, $0, $1, error, length) }
        }
        return name ?? actual.text
    }

    func bind(queue: String, exchange: String, routingKey: String) throws(BrokerError) {
        try check("bind \(queue) to \(exchange)") { identity_amqp_bind(connection, queue, exchange, routingKey, $0, $1) }
    }

    func prefetch(_ count: Int) throws(BrokerError) {
        try check("basic.qos") { identity_amqp_qos(connection, Int32(count), $0, $1) }
    }

    /// Starts a consumer on `queue`; returns its tag.
    func consume(_ queue: String, noAck: Bool) throws(BrokerError) -> String {
        var tag = ErrorBuffer()
        try check("consume \(queue)") { error, length in
            tag.withPointer { identity_amqp_consume(connection, queue, noAck ? 1 : 0, $0, $1, error, length) }
        }
        return tag.text
    }

    // MARK: messages

    /// Publishes; `confirmed` is called on this thread with the broker's verdict (or false
    /// when the connection is lost first).
    func publish(
        exchange: String, routingKey: String, body: Data, properties: MessageProperties,
        confirmed: ((Bool) -> Void)? = nil
    ) throws(BrokerError) {
        let strings = [properties.messageID, properties.correlationID, properties.replyTo, properties.type,
                       properties.expirationMilliseconds.map(String.init), properties.mac,
                       properties.traceHeaders[TraceHeaders.parent], properties.traceHeaders[TraceHeaders.state]]
            .map { $0.flatMap { strdup($0) } }
        defer { strings.forEach { free($0) } }
        let fields = identity_amqp_message_properties(
            message_id: strings[0], correlation_id: strings[1], reply_to: strings[2], type: strings[3],
            expiration: strings[4], deadline_ms: properties.deadlineMilliseconds ?? 0, mac: strings[5],
            persistent: properties.persistent ? 1 : 0, traceparent: strings[6], tracestate: strings[7]
        )
        let status = body.withUnsafeBytes { raw in
            identity_amqp_publish(connection, exchange, routingKey, raw.baseAddress, raw.count, fields)
        }
        guard status == 0 else {
            throw BrokerError(operation: "publish to \(exchange)/\(routingKey)", status: status, reason: Self.describe(status))
        }
        let tag = nextPublishTag
        nextPublishTag += 1
        if let confirmed { confirms[tag] = confirmed }
    }

    func ack(_ tag: UInt64) throws(BrokerError) {
        let status = identity_amqp_ack(connection, tag)
        guard status == 0 else { throw BrokerError(operation: "basic.ack", status: status, reason: Self.describe(status)) }
    }

    /// Returns a delivery to its queue, or (requeue false) dead-letters it.
    func nack(_ tag: UInt64, requeue: Bool) throws(BrokerError) {
        let status = identity_amqp_nack(connection, tag, requeue ? 1 : 0)
        guard status == 0 else { throw BrokerError(operation: "basic.nack", status: status, reason: Self.describe(status)) }
    }

    /// Takes one message off `queue` (basic.get, auto-acknowledged): its body, or nil when empty.
    func get(_ queue: String) throws(BrokerError) -> (body: Data, type: String?)? {
        var message = amqp_message_t()
        var error = ErrorBuffer()
        let status = error.withPointer { identity_amqp_get(connection, queue, &message, $0, $1) }
        guard status >= 0 else { throw BrokerError(operation: "basic.get \(queue)", status: status, reason: error.text) }
        guard status == 1 else { return nil }
        defer { amqp_destroy_message(&message) }
        let type = (message.properties._flags & UInt32(AMQP_BASIC_TYPE_FLAG)) != 0 ? Self.string(message.properties.type) : nil
        return (Self.data(message.body), type)
    }

    /// The next delivery or confirm, without waiting; `.nothing` when none has arrived.
    func next() throws(BrokerError) -> Event {
        var event = identity_amqp_event()
        var error = ErrorBuffer()
        let status = error.withPointer { identity_amqp_next(connection, &event, 0, $0, $1) }
        guard status == 0 else { throw BrokerError(operation: "read from the broker", status: status, reason: error.text) }
        switch Int(event.kind) {
        case Int(IDENTITY_AMQP_DELIVERY):
            defer { amqp_destroy_envelope(&event.envelope) }
            return .delivery(delivery(from: &event.envelope))
        case Int(IDENTITY_AMQP_CONFIRM_ACK), Int(IDENTITY_AMQP_CONFIRM_NACK):
            settle(upTo: event.tag, multiple: event.multiple != 0, ok: Int(event.kind) == Int(IDENTITY_AMQP_CONFIRM_ACK))
            return .confirm
        default:
            return .nothing
        }
    }

    /// The connection is gone: every publish still waiting for a confirm failed.
    func failPendingConfirms() {
        let waiting = confirms.values
        confirms.removeAll()
        for confirmed in waiting { confirmed(false) }
    }

    private func settle(upTo tag: UInt64, multiple: Bool, ok: Bool) {
        let tags = multiple ? confirms.keys.filter { $0 <= tag } : [tag]
        for tag in tags {
            confirms.removeValue(forKey: tag)?(ok)
        }
    }

    private func delivery(from envelope: inout amqp_envelope_t) -> Delivery {
        func property(_ name: String) -> String? {
            let bytes = identity_amqp_property(&envelope, name)
            return bytes.len == 0 ? nil : Self.string(bytes)
        }
        var count: Int64 = 0
        let hasCount = identity_amqp_integer_header(&envelope, "x-delivery-count", &count) != 0
        var deadline: Int64 = 0
        let hasDeadline = identity_amqp_integer_header(&envelope, "x-identity-deadline-ms", &deadline) != 0
        let mac = identity_amqp_string_header(&envelope, "x-identity-mac")
        var traceHeaders: [String: String] = [:]
        for name in [TraceHeaders.parent, TraceHeaders.state] {
            let value = identity_amqp_string_header(&envelope, name)
            if value.len > 0 { traceHeaders[name] = Self.string(value) }
        }
        return Delivery(
            tag: envelope.delivery_tag, generation: generation, consumerTag: Self.string(envelope.consumer_tag),
            body: Self.data(identity_amqp_body(&envelope)), messageID: property("message_id"),
            correlationID: property("correlation_id"), replyTo: property("reply_to"), type: property("type"),
            redelivered: envelope.redelivered != 0, deliveryCount: hasCount ? Int(count) : 0,
            deadlineMilliseconds: hasDeadline ? deadline : nil, mac: mac.len == 0 ? nil : Self.string(mac),
            traceHeaders: traceHeaders
        )
    }

    private func check(_ operation: String, _ call: (UnsafeMutablePointer<CChar>, Int) -> Int32) throws(BrokerError) {
        var error = ErrorBuffer()
        let status = error.withPointer(call)
        guard status == 0 else { throw BrokerError(operation: operation, status: status, reason: error.text) }
    }

    private static func describe(_ status: Int32) -> String {
        String(cString: amqp_error_string2(status))
    }

    private static func data(_ bytes: amqp_bytes_t) -> Data {
        guard bytes.len > 0, let pointer = bytes.bytes else { return Data() }
        return Data(bytes: pointer, count: bytes.len)
    }

    private static func string(_ bytes: amqp_bytes_t) -> String {
        String(decoding: data(bytes), as: UTF8.self)
    }
}

/// A C string buffer for librabbitmq's out-parameters (error text, names, tags).
struct ErrorBuffer {
    private var bytes = [CChar](repeating: 0, count: 512)

    mutating func withPointer<T>(_ body: (UnsafeMutablePointer<CChar>, Int) -> T) -> T {
        bytes.withUnsafeMutableBufferPointer { body($0.baseAddress!, $0.count) }
    }

    var text: String {
        bytes.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }
}
