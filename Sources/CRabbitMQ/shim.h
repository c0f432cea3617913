/* A thin layer over librabbitmq-c (0.11) for the AMQPAdapter: Swift cannot call the
   variadic amqp_login, and building tables, properties and frames is plainer in C.
   Every function here works on one connection with one channel (1), and is called only
   from the thread that owns that connection. Return values: 0 success, < 0 a librabbitmq
   status (amqp_error_string2 describes it), > 0 an AMQP reply code from the broker. */
#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/time.h>

#define IDENTITY_AMQP_CHANNEL 1

/* A non-blocking eventfd that other threads write to wake the connection thread's poll. */
static inline int identity_wake_fd(void) { return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC); }

static inline struct timeval identity_amqp_timeval(int milliseconds) {
    struct timeval tv;
    tv.tv_sec = milliseconds / 1000;
    tv.tv_usec = (milliseconds % 1000) * 1000;
    return tv;
}

/* Folds an RPC reply into one status, and writes the broker's reply text, if any, to error. */
static inline int identity_amqp_status(amqp_rpc_reply_t reply, char *error, size_t error_length) {
    if (error && error_length > 0) error[0] = 0;
    switch (reply.reply_type) {
    case AMQP_RESPONSE_NORMAL:
        return 0;
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
        if (error && error_length > 0) snprintf(error, error_length, "%s", amqp_error_string2(reply.library_error));
        return reply.library_error < 0 ? reply.library_error : AMQP_STATUS_UNEXPECTED_STATE;
    case AMQP_RESPONSE_SERVER_EXCEPTION:
        if (reply.reply.id == AMQP_CONNECTION_CLOSE_METHOD || reply.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
            amqp_channel_close_t *close = (amqp_channel_close_t *)reply.reply.decoded; /* same layout */
            if (error && error_length > 0)
                snprintf(error, error_length, "%.*s", (int)close->reply_text.len, (const char *)close->reply_text.bytes);
            return close->reply_code > 0 ? close->reply_code : 1;
        }
        if (error && error_length > 0) snprintf(error, error_length, "unexpected broker method 0x%08x", reply.reply.id);
        return 1;
    default:
        if (error && error_length > 0) snprintf(error, error_length, "no reply");
        return AMQP_STATUS_UNEXPECTED_STATE;
    }
}

static inline int identity_amqp_last_status(amqp_connection_state_t conn, char *error, size_t error_length) {
    return identity_amqp_status(amqp_get_rpc_reply(conn), error, error_length);
}

/* Connects (TCP, or TLS when use_tls), logs in with PLAIN, opens channel 1 and turns on
   publisher confirms. Returns the connection, or NULL with a description in error. */
static inline amqp_connection_state_t identity_amqp_open(
    const char *host, int port, const char *user, const char *password, const char *vhost, int heartbeat_seconds,
    int use_tls, const char *ca_file, int verify_peer, int timeout_ms, char *error, size_t error_length) {
    amqp_connection_state_t conn = amqp_new_connection();
    if (!conn) {
        snprintf(error, error_length, "out of memory");
        return NULL;
    }
    amqp_socket_t *socket = NULL;
    if (use_tls) {
        socket = amqp_ssl_socket_new(conn);
        if (socket) {
            amqp_ssl_socket_set_verify_peer(socket, verify_peer);
            amqp_ssl_socket_set_verify_hostname(socket, verify_peer);
            if (ca_file && ca_file[0] && amqp_ssl_socket_set_cacert(socket, ca_file) != AMQP_STATUS_OK) {
                snprintf(error, error_length, "cannot read the CA file");
                amqp_destroy_connection(conn);
                return NULL;
            }
        }
    } else {
        socket = amqp_tcp_socket_new(conn);
    }
    if (!socket) {
        snprintf(error, error_length, "cannot create a socket");
        amqp_destroy_connection(conn);
        return NULL;
    }
    struct timeval timeout = identity_amqp_timeval(timeout_ms);
    amqp_set_handshake_timeout(conn, &timeout);
    amqp_set_rpc_timeout(conn, &timeout);
    int status = amqp_socket_open_noblock(socket, host, port, &timeout);
    if (status != AMQP_STATUS_OK) {
        snprintf(error, error_length, "%s", amqp_error_string2(status));
        amqp_destroy_connection(conn);
        return NULL;
    }
    amqp_rpc_reply_t reply = amqp_login(conn, vhost, 0, 131072, heartbeat_seconds, AMQP_SASL_METHOD_PLAIN, user, password);
    if (identity_amqp_status(reply, error, error_length) != 0) {
        amqp_destroy_connection(conn);
        return NULL;
    }
    amqp_channel_open(conn, IDENTITY_AMQP_CHANNEL);
    if (identity_amqp_last_status(conn, error, error_length) == 0) {
        amqp_confirm_select(conn, IDENTITY_AMQP_CHANNEL);
    }
    if (identity_amqp_last_status(conn, error, error_length) != 0) {
        amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
        amqp_destroy_connection(conn);
        return NULL;
    }
    return conn;
}

/* Closes politely when asked to (polite != 0), then frees everything. */
static inline void identity_amqp_close(amqp_connection_state_t conn, int polite) {
    if (polite) {
        amqp_channel_close(conn, IDENTITY_AMQP_CHANNEL, AMQP_REPLY_SUCCESS);
        amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
    }
    amqp_destroy_connection(conn);
}

/* A durable exchange of the given type (topic, fanout). */
static inline int identity_amqp_declare_exchange(amqp_connection_state_t conn, const char *name, const char *type,
                                                 char *error, size_t error_length) {
    amqp_exchange_declare(conn, IDENTITY_AMQP_CHANNEL, amqp_cstring_bytes(name), amqp_cstring_bytes(type), 0, 1, 0, 0,
                          amqp_empty_table);
    return identity_amqp_last_status(conn, error, error_length);
}

/* A durable quorum queue that dead-letters, through the default exchange, to dead_letter_queue
   once a message has been delivered delivery_limit + 1 times. */
static inline int identity_amqp_declare_work_queue(amqp_connection_state_t conn, const char *name,
                                                   const char *dead_letter_queue, int delivery_limit,
                                                   char *error, size_t error_length) {
    amqp_table_entry_t entries[4];
    entries[0].key = amqp_cstring_bytes("x-queue-type");
    entries[0].value.kind = AMQP_FIELD_KIND_UTF8;
    entries[0].value.value.bytes = amqp_cstring_bytes("quorum");
    entries[1].key = amqp_cstring_bytes("x-dead-letter-exchange");
    entries[1].value.kind = AMQP_FIELD_KIND_UTF8;
    entries[1].value.value.bytes = amqp_cstring_bytes("");
    entries[2].key = amqp_cstring_bytes("x-dead-letter-routing-key");
    entries[2].value.kind = AMQP_FIELD_KIND_UTF8;
    entries[2].value.value.bytes = amqp_cstring_bytes(dead_letter_queue);
    entries[3].key = amqp_cstring_bytes("x-delivery-limit");
    entries[3].value.kind = AMQP_FIELD_KIND_I32;
    entries[3].value.value.i32 = delivery_limit;
    amqp_table_t arguments = {4, entries};
    amqp_queue_declare(conn, IDENTITY_AMQP_CHANNEL, amqp_cstring_bytes(name), 0, 1, 0, 0, arguments);
    return identity_amqp_last_status(conn, error, error_length);
}

/* A queue: named and durable, or (name "") a server-named exclusive one whose name is
   written to actual_name. */
static inline int identity_amqp_declare_queue(amqp_connection_state_t conn, const char *name, int durable,
                                              char *actual_name, size_t actual_length, char *error, size_t error_length) {
    int exclusive = name[0] == 0;
    amqp_queue_declare_ok_t *ok = amqp_queue_declare(conn, IDENTITY_AMQP_CHANNEL, amqp_cstring_bytes(name), 0, durable,
                                                     exclusive, exclusive, amqp_empty_table);
    int status = identity_amqp_last_status(conn, error, error_length);
    if (status == 0 && ok && actual_name && actual_length > 0) {
        snprintf(actual_name, actual_length, "%.*s", (int)ok->queue.len, (const char *)ok->queue.bytes);
    }
    return status;
}

static inline int identity_amqp_bind(amqp_connection_state_t conn, const char *queue, const char *exchange,
                                     const char *routing_key, char *error, size_t error_length) {
    amqp_queue_bind(conn, IDENTITY_AMQP_CHANNEL, amqp_cstring_bytes(queue), amqp_cstring_bytes(exchange),
                    amqp_cstring_bytes(routing_key), amqp_empty_table);
    return identity_amqp_last_status(conn, error, error_length);
}

static inline int identity_amqp_qos(amqp_connection_state_t conn, int prefetch, char *error, size_t error_length) {
    amqp_basic_qos(conn, IDENTITY_AMQP_CHANNEL, 0, (uint16_t)prefetch, 0);
    return identity_amqp_last_status(conn, error, error_length);
}

/* Starts a consumer; its tag is written to tag. */
static inline int identity_amqp_consume(amqp_connection_state_t conn, const char *queue, int no_ack, char *tag,
                                        size_t tag_length, char *error, size_t error_length) {
    amqp_basic_consume_ok_t *ok = amqp_basic_consume(conn, IDENTITY_AMQP_CHANNEL, amqp_cstring_bytes(queue),
                                                     amqp_empty_bytes, 0, no_ack, 0, amqp_empty_table);
    int status = identity_amqp_last_status(conn, error, error_length);
    if (status == 0 && ok) snprintf(tag, tag_length, "%.*s", (int)ok->consumer_tag.len, (const char *)ok->consumer_tag.bytes);
    return status;
}

/* The properties a message of ours may carry; NULL or empty strings are left out. */
typedef struct {
    const char *message_id;
    const char *correlation_id;
    const char *reply_to;
    const char *type;
    const char *expiration;  /* milliseconds, as text */
    long long deadline_ms;   /* header x-identity-deadline-ms when > 0 */
    const char *mac;         /* header x-identity-mac when not empty */
    int persistent;
    const char *traceparent; /* W3C trace context headers traceparent and tracestate when not empty */
    const char *tracestate;
} identity_amqp_message_properties;

static inline int identity_amqp_publish(amqp_connection_state_t conn, const char *exchange, const char *routing_key,
                                        const void *body, size_t body_length, identity_amqp_message_properties in) {
    amqp_basic_properties_t props;
    memset(&props, 0, sizeof props);
    props._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG;
    props.content_type = amqp_cstring_bytes("application/json");
    props.delivery_mode = in.persistent ? AMQP_DELIVERY_PERSISTENT : AMQP_DELIVERY_NONPERSISTENT;
    if (in.message_id && in.message_id[0]) {
        props._flags |= AMQP_BASIC_MESSAGE_ID_FLAG;
        props.message_id = amqp_cstring_bytes(in.message_id);
    }
    if (in.correlation_id && in.correlation_id[0]) {
        props._flags |= AMQP_BASIC_CORRELATION_ID_FLAG;
        props.correlation_id = amqp_cstring_bytes(in.correlation_id);
    }
    if (in.reply_to && in.reply_to[0]) {
        props._flags |= AMQP_BASIC_REPLY_TO_FLAG;
        props.reply_to = amqp_cstring_bytes(in.reply_to);
    }
    if (in.type && in.type[0]) {
        props._flags |= AMQP_BASIC_TYPE_FLAG;
        props.type = amqp_cstring_bytes(in.type);
    }
    if (in.expiration && in.expiration[0]) {
        props._flags |= AMQP_BASIC_EXPIRATION_FLAG;
        props.expiration = amqp_cstring_bytes(in.expiration);
    }
    amqp_table_entry_t headers[4];
    int count = 0;
    if (in.deadline_ms > 0) {
        headers[count].key = amqp_cstring_bytes("x-identity-deadline-ms");
        headers[count].value.kind = AMQP_FIELD_KIND_I64;
        headers[count].value.value.i64 = in.deadline_ms;
        count++;
    }
    if (in.mac && in.mac[0]) {
        headers[count].key = amqp_cstring_bytes("x-identity-mac");
        headers[count].value.kind = AMQP_FIELD_KIND_UTF8;
        headers[count].value.value.bytes = amqp_cstring_bytes(in.mac);
        count++;
    }
    if (in.traceparent && in.traceparent[0]) {
        headers[count].key = amqp_cstring_bytes("traceparent");
        headers[count].value.kind = AMQP_FIELD_KIND_UTF8;
        headers[count].value.value.bytes = amqp_cstring_bytes(in.traceparent);
        count++;
    }
    if (in.tracestate && in.tracestate[0]) {
        headers[count].key = amqp_cstring_bytes("tracestate");
        headers[count].value.kind = AMQP_FIELD_KIND_UTF8;
        headers[count].value.value.bytes = amqp_cstring_bytes(in.tracestate);
        count++;
    }
    if (count > 0) {
        props._flags |= AMQP_BASIC_HEADERS_FLAG;
        props.headers.num_entries = count;
        props.headers.entries = headers;
    }
    amqp_bytes_t bytes;
    bytes.len = body_length;
    bytes.bytes = (void *)body;
    return amqp_basic_publish(conn, IDENTITY_AMQP_CHANNEL, amqp_cstring_bytes(exchange), amqp_cstring_bytes(routing_key),
                              0, 0, &props, bytes);
}

static inline int identity_amqp_ack(amqp_connection_state_t conn, uint64_t tag) {
    return amqp_basic_ack(conn, IDENTITY_AMQP_CHANNEL, tag, 0);
}

/* Returns a delivery to its queue (requeue != 0) or dead-letters it. */
static inline int identity_amqp_nack(amqp_connection_state_t conn, uint64_t tag, int requeue) {
    return amqp_basic_nack(conn, IDENTITY_AMQP_CHANNEL, tag, 0, requeue);
}

/* What identity_amqp_next found. */
enum {
    IDENTITY_AMQP_NOTHING = 0,
    IDENTITY_AMQP_DELIVERY = 1,
    IDENTITY_AMQP_CONFIRM_ACK = 2,
    IDENTITY_AMQP_CONFIRM_NACK = 3,
};

typedef struct {
    int kind;
    uint64_t tag;  /* the delivery tag of a delivery, or of a confirm */
    int multiple;  /* a confirm covers every tag up to this one */
    amqp_envelope_t envelope;  /* valid for a delivery; free with amqp_destroy_envelope */
} identity_amqp_event;

/* Waits up to timeout_ms for the next delivery or publisher confirm, sending heartbeats as
   they fall due. A channel or connection close, or a cancelled consumer, is an error. */
static inline int identity_amqp_next(amqp_connection_state_t conn, identity_amqp_event *event, int timeout_ms,
                                     char *error, size_t error_length) {
    memset(event, 0, sizeof *event);
    if (error && error_length > 0) error[0] = 0;
    amqp_maybe_release_buffers(conn);
    struct timeval timeout = identity_amqp_timeval(timeout_ms);
    amqp_rpc_reply_t reply = amqp_consume_message(conn, &event->envelope, &timeout, 0);
    if (reply.reply_type == AMQP_RESPONSE_NORMAL) {
        event->kind = IDENTITY_AMQP_DELIVERY;
        event->tag = event->envelope.delivery_tag;
        return 0;
    }
    if (reply.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && reply.library_error == AMQP_STATUS_TIMEOUT) return 0;
    if (!(reply.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && reply.library_error == AMQP_STATUS_UNEXPECTED_STATE)) {
        return identity_amqp_status(reply, error, error_length);
    }
    /* Not a delivery: a method frame is waiting. */
    amqp_frame_t frame;
    struct timeval now = identity_amqp_timeval(0);
    int status = amqp_simple_wait_frame_noblock(conn, &frame, &now);
    if (status == AMQP_STATUS_TIMEOUT) return 0;
    if (status != AMQP_STATUS_OK) {
        if (error && error_length > 0) snprintf(error, error_length, "%s", amqp_error_string2(status));
        return status;
    }
    if (frame.frame_type != AMQP_FRAME_METHOD) return 0;
    switch (frame.payload.method.id) {
    case AMQP_BASIC_ACK_METHOD: {
        amqp_basic_ack_t *ack = (amqp_basic_ack_t *)frame.payload.method.decoded;
        event->kind = IDENTITY_AMQP_CONFIRM_ACK;
        event->tag = ack->delivery_tag;
        event->multiple = ack->multiple;
        return 0;
    }
    case AMQP_BASIC_NACK_METHOD: {
        amqp_basic_nack_t *nack = (amqp_basic_nack_t *)frame.payload.method.decoded;
        event->kind = IDENTITY_AMQP_CONFIRM_NACK;
        event->tag = nack->delivery_tag;
        event->multiple = nack->multiple;
        return 0;
    }
    case AMQP_CHANNEL_CLOSE_METHOD:
    case AMQP_CONNECTION_CLOSE_METHOD: {
        amqp_channel_close_t *close = (amqp_channel_close_t *)frame.payload.method.decoded;
        if (error && error_length > 0)
            snprintf(error, error_length, "%.*s", (int)close->reply_text.len, (const char *)close->reply_text.bytes);
        return close->reply_code > 0 ? close->reply_code : 1;
    }
    case AMQP_BASIC_CANCEL_METHOD:
        if (error && error_length > 0) snprintf(error, error_length, "the broker cancelled a consumer");
        return AMQP_STATUS_UNEXPECTED_STATE;
    default:
        return 0;
    }
}

/* The envelope's body and a string property (by name: message_id, correlation_id, reply_to,
   type); a missing property gives length 0. */
static inline amqp_bytes_t identity_amqp_body(const amqp_envelope_t *envelope) { return envelope->message.body; }

static inline amqp_bytes_t identity_amqp_property(const amqp_envelope_t *envelope, const char *name) {
    const amqp_basic_properties_t *p = &envelope->message.properties;
    if (strcmp(name, "message_id") == 0 && (p->_flags & AMQP_BASIC_MESSAGE_ID_FLAG)) return p->message_id;
    if (strcmp(name, "correlation_id") == 0 && (p->_flags & AMQP_BASIC_CORRELATION_ID_FLAG)) return p->correlation_id;
    if (strcmp(name, "reply_to") == 0 && (p->_flags & AMQP_BASIC_REPLY_TO_FLAG)) return p->reply_to;
    if (strcmp(name, "type") == 0 && (p->_flags & AMQP_BASIC_TYPE_FLAG)) return p->type;
    return amqp_empty_bytes;
}

/* An integer header (any integer kind) of the envelope; returns 1 when present. */
static inline int identity_amqp_integer_header(const amqp_envelope_t *envelope, const char *name, long long *value) {
    const amqp_basic_properties_t *p = &envelope->message.properties;
    if (!(p->_flags & AMQP_BASIC_HEADERS_FLAG)) return 0;
    size_t length = strlen(name);
    for (int i = 0; i < p->headers.num_entries; i++) {
        const amqp_table_entry_t *entry = &p->headers.entries[i];
        if (entry->key.len != length || memcmp(entry->key.bytes, name, length) != 0) continue;
        switch (entry->value.kind) {
        case AMQP_FIELD_KIND_I8: *value = entry->value.value.i8; return 1;
        case AMQP_FIELD_KIND_U8: *value = entry->value.value.u8; return 1;
        case AMQP_FIELD_KIND_I16: *value = entry->value.value.i16; return 1;
        case AMQP_FIELD_KIND_U16: *value = entry->value.value.u16; return 1;
        case AMQP_FIELD_KIND_I32: *value = entry->value.value.i32; return 1;
        case AMQP_FIELD_KIND_U32: *value = entry->value.value.u32; return 1;
        case AMQP_FIELD_KIND_I64: *value = entry->value.value.i64; return 1;
        case AMQP_FIELD_KIND_U64: *value = (long long)entry->value.value.u64; return 1;
        default: return 0;
        }
    }
    return 0;
}

/* A string header (long string or byte array) of the envelope; length 0 when absent or of
   another kind. */
static inline amqp_bytes_t identity_amqp_string_header(const amqp_envelope_t *envelope, const char *name) {
    const amqp_basic_properties_t *p = &envelope->message.properties;
    if (!(p->_flags & AMQP_BASIC_HEADERS_FLAG)) return amqp_empty_bytes;
    size_t length = strlen(name);
    for (int i = 0; i < p->headers.num_entries; i++) {
        const amqp_table_entry_t *entry = &p->headers.entries[i];
        if (entry->key.len != length || memcmp(entry->key.bytes, name, length) != 0) continue;
        if (entry->value.kind == AMQP_FIELD_KIND_UTF8 || entry->value.kind == AMQP_FIELD_KIND_BYTES) return entry->value.value.bytes;
        return amqp_empty_bytes;
    }
    return amqp_empty_bytes;
}

/* Fetches one message from a queue (basic.get, acknowledged at once): 1 got one, 0 empty. */
static inline int identity_amqp_get(amqp_connection_state_t conn, const char *queue, amqp_message_t *message,
                                    char *error, size_t error_length) {
    amqp_rpc_reply_t reply = amqp_basic_get(conn, IDENTITY_AMQP_CHANNEL, amqp_cstring_bytes(queue), 1);
    int status = identity_amqp_status(reply, error, error_length);
    if (status != 0) return status < 0 ? status : -status;
    if (reply.reply.id != AMQP_BASIC_GET_OK_METHOD) return 0;
    reply = amqp_read_message(conn, IDENTITY_AMQP_CHANNEL, message, 0);
    status = identity_amqp_status(reply, error, error_length);
    return status == 0 ? 1 : (status < 0 ? status : -status);
}
