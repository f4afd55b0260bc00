/* SPDX-License-Identifier: MIT */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>

#include "amqp/connect.h"
#include "amqp/dead-letter-queue.h"
#include "amqp/headers.h"
#include "core/broker-url.h"
#include "core/timespan.h"
#include "util/buffer.h"

#define GET_CHANNEL 1
#define PUBLISH_CHANNEL 2
/* How long a publisher confirm may take. A persistent message is confirmed once on disk, in
 * milliseconds; a broker that blocked publishers (a resource alarm) may not answer at all. */
#define CONFIRM_TIMEOUT_S 60

struct DeadLetterQueue {
        amqp_connection_state_t conn;
        bool connected;          /* logged in: close politely */
        bool publishing;         /* the publish channel is open, in confirm mode */
        char *queue;
        uint64_t *held;          /* delivery tags fetched and not acked, in queue order */
        size_t n_held, n_held_allocated;
};

DeadLetterMessage *dead_letter_message_free(DeadLetterMessage *m) {
        if (!m)
                return NULL;
        amqp_destroy_message(&m->message);
        amqp_bytes_free(m->routing_key);
        return mfree(m);
}

static int check_reply(DeadLetterQueue *q, const char *what, char *error, size_t size) {
        amqp_rpc_reply_t reply = amqp_get_rpc_reply(q->conn);

        if (reply.reply_type == AMQP_RESPONSE_NORMAL)
                return 0;
        rpc_reply_format(reply, what, error, size);
        /* After a connection.close or a socket error there is nothing left to close politely. */
        if (reply.reply_type != AMQP_RESPONSE_SERVER_EXCEPTION || reply.reply.id == AMQP_CONNECTION_CLOSE_METHOD)
                q->connected = false;
        return -EPROTO;
}

/* The nodes of RABBITMQ_URL in turn, as the daemon moves to the next one it can reach: any node
 * of a cluster serves the queue. A refused login ends the search: the next node would refuse
 * the same credentials. */
static int connect_any(DeadLetterQueue *q, const DeadLetterQueueSettings *s, char *error, size_t size) {
        _cleanup_(broker_url_list_done) BrokerUrlList urls = { 0 };
        char name[300];
        BrokerConnectSettings settings = {
                .ca_file = s->ca_file,
                .connect_timeout_s = s->connect_timeout_s,
                /* The same bound for every RPC: a frozen broker must not hang the tool for ever. */
                .rpc_timeout_s = MAX(s->connect_timeout_s, 30u),
                .heartbeat_s = s->heartbeat_s,
                .connection_name = name,
        };
        char tried[512] = "";
        size_t used = 0;
        int r;

        snprintf(name, sizeof name, "transmitter dead-letters@%s", s->instance_id);
        r = broker_url_list_parse(s->url, &urls, NULL, NULL);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                snprintf(error, size, "cannot parse RABBITMQ_URL");
                return r;
        }
        for (size_t i = 0; i < urls.n; i++) {
                char why[300];

                q->conn = amqp_new_connection();
                if (!q->conn)
                        return -ENOMEM;
                r = broker_open_socket(q->conn, &urls.urls[i], &settings, why, sizeof why);
                if (r >= 0) {
                        r = broker_login(q->conn, &urls.urls[i], &settings, error, size);
                        if (r >= 0)
                                q->connected = true;
                        return r;
                }
                (void) amqp_destroy_connection(q->conn);
                q->conn = NULL;
                if (r != -ECONNREFUSED) {
                        snprintf(error, size, "%s", why);
                        return r;
                }
                if (used < sizeof tried)
                        used += (size_t) snprintf(tried + used, sizeof tried - used, "%s%s", i > 0 ? "; " : "",
                                                  why);
        }
        snprintf(error, size, "cannot connect to RabbitMQ at %s", tried);
        return -ECONNREFUSED;
}

int dead_letter_queue_open(const DeadLetterQueueSettings *s, DeadLetterQueue **ret, uint64_t *ret_count, char *error,
                           size_t size) {
        _cleanup_(dead_letter_queue_freep) DeadLetterQueue *q = NULL;
        amqp_queue_declare_ok_t *ok;
        amqp_rpc_reply_t reply;
        int r;

        q = calloc(1, sizeof *q);
        if (!q)
                return -ENOMEM;
        q->queue = strdup(s->queue);
        if (!q->queue)
                return -ENOMEM;
        r = connect_any(q, s, error, size);
        if (r < 0)
                return r;

        amqp_channel_open(q->conn, GET_CHANNEL);
        r = check_reply(q, "channel.open", error, size);
        if (r < 0)
                return r;
        ok = amqp_queue_declare(q->conn, GET_CHANNEL, amqp_cstring_bytes(q->queue), 1, 0, 0, 0, amqp_empty_table);
        reply = amqp_get_rpc_reply(q->conn);
        if (reply.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION && reply.reply.id == AMQP_CHANNEL_CLOSE_METHOD &&
            ((const amqp_channel_close_t *) reply.reply.decoded)->reply_code == AMQP_NOT_FOUND) {
                snprintf(error, size, "the dead-letter queue %s does not exist (the daemon declares it when it "
                         "connects; is RABBITMQ_QUEUE right?)", q->queue);
                /* The broker closed the channel; the connection is still fine to close. */
                return -ENOENT;
        }
        if (!ok) {
                char what[300];

                snprintf(what, sizeof what, "queue.declare %s", q->queue);
                rpc_reply_format(reply, what, error, size);
                return -EPROTO;
        }
        *ret_count = ok->message_count;
        *ret = TAKE_PTR(q);
        return 0;
}

/* The messages ready in the queue now (passive queue.declare); -1 when it cannot tell. */
static int64_t ready_count(DeadLetterQueue *q) {
        amqp_queue_declare_ok_t *ok =
                amqp_queue_declare(q->conn, GET_CHANNEL, amqp_cstring_bytes(q->queue), 1, 0, 0, 0, amqp_empty_table);

        if (!ok) {
                q->connected = amqp_get_rpc_reply(q->conn).reply_type == AMQP_RESPONSE_SERVER_EXCEPTION;
                return -1;
        }
        return ok->message_count;
}

/* Hands back what was fetched and not acked, first fetched first, with basic.nack (requeue).
 * Closing the channel would requeue them as well, and a classic queue puts each back at its old
 * place either way. A quorum queue (RabbitMQ 3.10) puts a closed channel's messages back in no
 * particular order, and nacked ones in the order they were nacked, but only while the channel
 * has at most 32 returns on their way (quorum_commands_soft_limit); the ones beyond go in reverse,
 * or, when the channel closes first, in any order. So they go back RETURN_WINDOW at a time, each
 * window once the queue counts the one before as ready again. A classic queue counts them at
 * once, so that costs it one round trip a window. */
#define RETURN_WINDOW 32
#define RETURN_WAIT_USEC (5 * USEC_PER_SEC)
static void return_held(DeadLetterQueue *q) {
        int64_t ready = q->n_held > RETURN_WINDOW ? ready_count(q) : 0;

        for (size_t i = 0; i < q->n_held && q->connected && ready >= 0; i += RETURN_WINDOW) {
                size_t n = MIN(q->n_held - i, (size_t) RETURN_WINDOW);
                usec_t deadline = now(CLOCK_MONOTONIC) + RETURN_WAIT_USEC;

                for (size_t j = i; j < i + n; j++)
                        if (amqp_basic_nack(q->conn, GET_CHANNEL, q->held[j], 0, 1) != AMQP_STATUS_OK) {
                                q->connected = false; /* the broker requeues the rest itself */
                                return;
                        }
                if (i + n == q->n_held)
                        break;
                /* Messages that arrive meanwhile only make it look done early: then the order may
                 * change, nothing else. */
                for (int64_t r; (r = ready_count(q)) >= 0 && r < ready + (int64_t) n;) {
                        if (now(CLOCK_MONOTONIC) > deadline)
                                break;
                        (void) usleep(1000);
                }
                ready += (int64_t) n;
        }
        q->n_held = 0;
}

DeadLetterQueue *dead_letter_queue_free(DeadLetterQueue *q) {
        if (!q)
                return NULL;
        if (q->conn) {
                /* The channel handles the nacks before its channel.close. A connection.close alone
                 * may stop the channel with nacks still unread, and the broker requeue those its
                 * own way. */
                if (q->connected) {
                        return_held(q);
                        (void) amqp_channel_close(q->conn, GET_CHANNEL, AMQP_REPLY_SUCCESS);
                        (void) amqp_connection_close(q->conn, AMQP_REPLY_SUCCESS);
                }
                (void) amqp_destroy_connection(q->conn);
        }
        free(q->held);
        free(q->queue);
        return mfree(q);
}

static int64_t field_int(const amqp_field_value_t *v, bool *ret_ok) {
        *ret_ok = true;
        switch (v->kind) {
        case AMQP_FIELD_KIND_I8:
                return v->value.i8;
        case AMQP_FIELD_KIND_U8:
                return v->value.u8;
        case AMQP_FIELD_KIND_I16:
                return v->value.i16;
        case AMQP_FIELD_KIND_U16:
                return v->value.u16;
        case AMQP_FIELD_KIND_I32:
                return v->value.i32;
        case AMQP_FIELD_KIND_U32:
                return v->value.u32;
        case AMQP_FIELD_KIND_I64:
                return v->value.i64;
        case AMQP_FIELD_KIND_U64:
        case AMQP_FIELD_KIND_TIMESTAMP:
                return v->value.u64 > INT64_MAX ? INT64_MAX : (int64_t) v->value.u64;
        default:
                *ret_ok = false;
                return 0;
        }
}

static bool field_string(const amqp_field_value_t *v, const char **ret, size_t *ret_len) {
        if (v->kind != AMQP_FIELD_KIND_UTF8 && v->kind != AMQP_FIELD_KIND_BYTES)
                return false;
        *ret = v->value.bytes.bytes;
        *ret_len = v->value.bytes.len;
        return true;
}

static bool key_is(const amqp_bytes_t *k, const char *name) {
        return k->len == strlen(name) && memcmp(k->bytes, name, k->len) == 0;
}

static usec_t seconds_to_usec(int64_t s) {
        return s > 0 && (uint64_t) s < USEC_INFINITY / USEC_PER_SEC ? (usec_t) s * USEC_PER_SEC : 0;
}

/* x-death is an array of tables, the most recent dead-lettering first. */
static void read_x_death(const amqp_field_value_t *v, DeadLetterHeaders *h) {
        const amqp_table_t *t;

        if (v->kind != AMQP_FIELD_KIND_ARRAY || v->value.array.num_entries < 1 ||
            v->value.array.entries[0].kind != AMQP_FIELD_KIND_TABLE)
                return;
        t = &v->value.array.entries[0].value.table;
        for (int i = 0; i < t->num_entries; i++) {
                const amqp_table_entry_t *e = &t->entries[i];
                bool ok;

                if (key_is(&e->key, "reason"))
                        (void) field_string(&e->value, &h->death_reason, &h->death_reason_len);
                else if (key_is(&e->key, "time")) {
                        int64_t s = field_int(&e->value, &ok);
                        if (ok)
                                h->death_time = seconds_to_usec(s);
                }
        }
}

/* An integer header as amqp/headers.c reads the daemon's own (any integer kind, not negative);
 * 0 when absent or unreadable. */
static int64_t header_int(const amqp_table_t *headers, const char *key) {
        uint64_t v;

        return amqp_header_uint(headers, key, &v) >= 0 ? (int64_t) MIN(v, (uint64_t) INT64_MAX) : 0;
}

static void read_headers(DeadLetterMessage *m) {
        const amqp_basic_properties_t *p = &m->message.properties;
        const amqp_table_t *t = &p->headers;
        DeadLetterHeaders *h = &m->headers;
        const char *first_death = NULL;
        size_t first_death_len = 0;

        *h = (DeadLetterHeaders) { 0 };
        if (p->_flags & AMQP_BASIC_TIMESTAMP_FLAG)
                h->timestamp = seconds_to_usec(p->timestamp > INT64_MAX ? 0 : (int64_t) p->timestamp);
        if (!(p->_flags & AMQP_BASIC_HEADERS_FLAG))
                return;

        h->http_status = header_int(t, DEAD_LETTER_HEADER_HTTP_STATUS);
        h->replay_count = header_int(t, DEAD_LETTER_HEADER_REPLAY_COUNT);
        h->dead_lettered_at = seconds_to_usec(header_int(t, DEAD_LETTER_HEADER_DEAD_LETTERED_AT));
        h->delivery_count = amqp_headers_delivery_count(t);
        for (int i = 0; i < t->num_entries; i++) {
                const amqp_table_entry_t *e = &t->entries[i];

                if (key_is(&e->key, DEAD_LETTER_HEADER_REASON))
                        (void) field_string(&e->value, &h->reason, &h->reason_len);
                else if (key_is(&e->key, DEAD_LETTER_HEADER_BATCH_ID))
                        (void) field_string(&e->value, &h->batch_id, &h->batch_id_len);
                else if (key_is(&e->key, "x-first-death-reason"))
                        (void) field_string(&e->value, &first_death, &first_death_len);
                else if (key_is(&e->key, "x-death"))
                        read_x_death(&e->value, h);
        }
        if (!h->death_reason && first_death) {
                h->death_reason = first_death;
                h->death_reason_len = first_death_len;
        }
}

int dead_letter_queue_get(DeadLetterQueue *q, DeadLetterMessage **ret, char *error, size_t size) {
        _cleanup_(dead_letter_message_freep) DeadLetterMessage *m = NULL;
        const amqp_basic_get_ok_t *ok;
        amqp_rpc_reply_t reply;

        amqp_maybe_release_buffers(q->conn);
        reply = amqp_basic_get(q->conn, GET_CHANNEL, amqp_cstring_bytes(q->queue), 0);
        if (reply.reply_type != AMQP_RESPONSE_NORMAL) {
                rpc_reply_format(reply, "basic.get", error, size);
                q->connected = false;
                return -EIO;
        }
        if (reply.reply.id == AMQP_BASIC_GET_EMPTY_METHOD)
                return 0;
        if (reply.reply.id != AMQP_BASIC_GET_OK_METHOD) {
                snprintf(error, size, "basic.get: unexpected broker method 0x%08x", reply.reply.id);
                return -EPROTO;
        }
        ok = reply.reply.decoded;

        if (q->n_held == q->n_held_allocated) {
                size_t n = MAX(q->n_held_allocated * 2, (size_t) 256);
                uint64_t *h = realloc(q->held, n * sizeof *h);
                if (!h)
                        return -ENOMEM;
                q->held = h;
                q->n_held_allocated = n;
        }
        q->held[q->n_held++] = ok->delivery_tag;

        m = calloc(1, sizeof *m);
        if (!m)
                return -ENOMEM;
        /* The method lives in the connection's frame pool, which reading the body reuses. */
        m->tag = ok->delivery_tag;
        m->redelivered = ok->redelivered;
        m->routing_key = amqp_bytes_malloc_dup(ok->routing_key);
        if (ok->routing_key.len > 0 && !m->routing_key.bytes)
                return -ENOMEM;

        reply = amqp_read_message(q->conn, GET_CHANNEL, &m->message, 0);
        if (reply.reply_type != AMQP_RESPONSE_NORMAL) {
                rpc_reply_format(reply, "reading a message", error, size);
                q->connected = false;
                return -EIO;
        }
        read_headers(m);
        *ret = TAKE_PTR(m);
        return 1;
}

static int ensure_publish_channel(DeadLetterQueue *q, char *error, size_t size) {
        int r;

        if (q->publishing)
                return 0;
        amqp_channel_open(q->conn, PUBLISH_CHANNEL);
        r = check_reply(q, "channel.open (publish)", error, size);
        if (r < 0)
                return r;
        amqp_confirm_select(q->conn, PUBLISH_CHANNEL);
        r = check_reply(q, "confirm.select", error, size);
        if (r < 0)
                return r;
        q->publishing = true;
        return 0;
}

/* Reads frames until the publisher confirm of the one message in flight: basic.ack, or
 * basic.nack; a basic.return (unroutable) comes first, with the message's content frames. */
static int wait_confirm(DeadLetterQueue *q, bool *ret_returned, bool *ret_acked, char *error, size_t size) {
        struct timeval tv = { .tv_sec = CONFIRM_TIMEOUT_S };

        *ret_returned = false;
        for (;;) {
                amqp_frame_t frame;
                int status;

                amqp_maybe_release_buffers(q->conn);
                status = amqp_simple_wait_frame_noblock(q->conn, &frame, &tv);
                if (status == AMQP_STATUS_TIMEOUT) {
                        snprintf(error, size, "no publisher confirm from RabbitMQ within %d s (is the broker blocking "
                                 "publishers for a resource alarm?)", CONFIRM_TIMEOUT_S);
                        q->connected = false;
                        return -ETIMEDOUT;
                }
                if (status != AMQP_STATUS_OK) {
                        snprintf(error, size, "waiting for a publisher confirm: %s", amqp_error_string2(status));
                        q->connected = false;
                        return -EIO;
                }
                if (frame.frame_type != AMQP_FRAME_METHOD)
                        continue; /* the returned message's header and body */
                switch (frame.payload.method.id) {
                case AMQP_BASIC_ACK_METHOD:
                        *ret_acked = true;
                        return 0;
                case AMQP_BASIC_NACK_METHOD:
                        *ret_acked = false;
                        return 0;
                case AMQP_BASIC_RETURN_METHOD:
                        *ret_returned = true;
                        break;
                case AMQP_CHANNEL_CLOSE_METHOD: {
                        const amqp_channel_close_t *m = frame.payload.method.decoded;
                        snprintf(error, size, "channel %u closed by the broker: %u %.*s", frame.channel, m->reply_code,
                                 (int) m->reply_text.len, (const char *) m->reply_text.bytes);
                        q->connected = false;
                        return -EPROTO;
                }
                case AMQP_CONNECTION_CLOSE_METHOD: {
                        const amqp_connection_close_t *m = frame.payload.method.decoded;
                        snprintf(error, size, "connection closed by the broker: %u %.*s", m->reply_code,
                                 (int) m->reply_text.len, (const char *) m->reply_text.bytes);
                        q->connected = false;
                        return -ECONNRESET;
                }
                default:
                        break;
                }
        }
}

int dead_letter_queue_republish(DeadLetterQueue *q, const DeadLetterMessage *m, const char *exchange,
                                uint64_t replay_count, char *error, size_t size) {
        amqp_basic_properties_t props = m->message.properties;
        const amqp_table_t *orig = (props._flags & AMQP_BASIC_HEADERS_FLAG) ? &props.headers : NULL;
        size_t n_orig = orig ? (size_t) orig->num_entries : 0, n = 0;
        _cleanup_free_ amqp_table_entry_t *entries = NULL;
        _cleanup_free_ char *names = NULL;
        bool returned = false, acked = false;
        int status, r;

        r = ensure_publish_channel(q, error, size);
        if (r < 0)
                return r;

        entries = calloc(n_orig + 1, sizeof *entries);
        names = malloc((n_orig + 1) * 256);
        if (!entries || !names)
                return -ENOMEM;
        for (size_t i = 0; i < n_orig; i++) {
                const amqp_table_entry_t *e = &orig->entries[i];
                char *name = names + i * 256;

                switch (dead_letter_replay_header(e->key.bytes, e->key.len, name)) {
                case DEAD_LETTER_HEADER_KEEP:
                        entries[n++] = *e;
                        break;
                case DEAD_LETTER_HEADER_RENAME:
                        entries[n] = *e;
                        entries[n++].key = amqp_cstring_bytes(name);
                        break;
                case DEAD_LETTER_HEADER_DROP:
                        break;
                }
        }
        entries[n++] = (amqp_table_entry_t) {
                .key = amqp_cstring_bytes(DEAD_LETTER_HEADER_REPLAY_COUNT),
                .value = { .kind = AMQP_FIELD_KIND_I64, .value.i64 = (int64_t) MIN(replay_count, (uint64_t) INT64_MAX) },
        };
        props.headers = (amqp_table_t) { .num_entries = (int) n, .entries = entries };
        props._flags |= AMQP_BASIC_HEADERS_FLAG;

        status = amqp_basic_publish(q->conn, PUBLISH_CHANNEL, amqp_cstring_bytes(exchange), m->routing_key, 1, 0, &props,
                                    m->message.body);
        if (status != AMQP_STATUS_OK) {
                snprintf(error, size, "publishing: %s", amqp_error_string2(status));
                q->connected = false;
                return -EIO;
        }
        r = wait_confirm(q, &returned, &acked, error, size);
        if (r < 0)
                return r;
        if (returned) {
                snprintf(error, size, "exchange %s routed routing key '%.*s' to no queue", exchange,
                         (int) m->routing_key.len, (const char *) m->routing_key.bytes);
                return -EHOSTUNREACH;
        }
        if (!acked) {
                snprintf(error, size, "RabbitMQ refused the message (basic.nack)");
                return -EREMOTEIO;
        }
        return 0;
}

int dead_letter_queue_ack(DeadLetterQueue *q, const DeadLetterMessage *m, char *error, size_t size) {
        int status;

        /* Mostly the message fetched last. */
        for (size_t i = q->n_held; i > 0; i--)
                if (q->held[i - 1] == m->tag) {
                        memmove(q->held + i - 1, q->held + i, (q->n_held - i) * sizeof *q->held);
                        q->n_held--;
                        break;
                }
        status = amqp_basic_ack(q->conn, GET_CHANNEL, m->tag, 0);
        if (status != AMQP_STATUS_OK) {
                snprintf(error, size, "sending basic.ack: %s", amqp_error_string2(status));
                q->connected = false;
                return -EIO;
        }
        return 0;
}

/* ---- show: properties and header values as text */

static int appendf(Buffer *b, const char *format, ...) _printf_(2, 3);
static int appendf(Buffer *b, const char *format, ...) {
        va_list ap;
        int n;

        va_start(ap, format);
        n = vsnprintf(NULL, 0, format, ap);
        va_end(ap);
        if (n < 0 || buffer_reserve(b, (size_t) n + 1) < 0)
                return -ENOMEM;
        va_start(ap, format);
        (void) vsnprintf((char *) b->data + b->size, (size_t) n + 1, format, ap);
        va_end(ap);
        b->size += (size_t) n;
        return 0;
}

static int append_bytes(Buffer *b, amqp_bytes_t v) {
        const uint8_t *p = v.bytes;
        int r = 0;

        for (size_t i = 0; r >= 0 && i < v.len; i++)
                r = p[i] >= 0x20 && p[i] < 0x7f ? buffer_append(b, &p[i], 1) : appendf(b, "\\x%02x", p[i]);
        return r;
}

static int append_value(Buffer *b, const amqp_field_value_t *v, unsigned depth);

static int append_table(Buffer *b, const amqp_table_t *t, unsigned depth) {
        int r = buffer_append(b, "{", 1);

        for (int i = 0; r >= 0 && i < t->num_entries; i++) {
                if (i > 0)
                        r = buffer_append(b, ", ", 2);
                if (r >= 0)
                        r = append_bytes(b, t->entries[i].key);
                if (r >= 0)
                        r = buffer_append(b, ": ", 2);
                if (r >= 0)
                        r = append_value(b, &t->entries[i].value, depth + 1);
        }
        return r >= 0 ? buffer_append(b, "}", 1) : r;
}

static int append_value(Buffer *b, const amqp_field_value_t *v, unsigned depth) {
        bool ok;
        int64_t n;
        int r;

        /* Tables nest; a hostile message must not make the tool recurse without end. */
        if (depth > 16)
                return appendf(b, "...");
        switch (v->kind) {
        case AMQP_FIELD_KIND_BOOLEAN:
                return appendf(b, "%s", true_false(v->value.boolean));
        case AMQP_FIELD_KIND_F32:
                return appendf(b, "%g", (double) v->value.f32);
        case AMQP_FIELD_KIND_F64:
                return appendf(b, "%g", v->value.f64);
        case AMQP_FIELD_KIND_UTF8:
        case AMQP_FIELD_KIND_BYTES:
                return append_bytes(b, v->value.bytes);
        case AMQP_FIELD_KIND_TABLE:
                return append_table(b, &v->value.table, depth);
        case AMQP_FIELD_KIND_ARRAY:
                r = buffer_append(b, "[", 1);
                for (int i = 0; r >= 0 && i < v->value.array.num_entries; i++) {
                        if (i > 0)
                                r = buffer_append(b, ", ", 2);
                        if (r >= 0)
                                r = append_value(b, &v->value.array.entries[i], depth + 1);
                }
                return r >= 0 ? buffer_append(b, "]", 1) : r;
        case AMQP_FIELD_KIND_TIMESTAMP: {
                char t[TIMESTAMP_MAX];
                return appendf(b, "%" PRIu64 " (%s)", v->value.u64, format_timestamp(t, seconds_to_usec(
                                       v->value.u64 > INT64_MAX ? 0 : (int64_t) v->value.u64), false));
        }
        case AMQP_FIELD_KIND_U64:
                return appendf(b, "%" PRIu64, v->value.u64);
        case AMQP_FIELD_KIND_VOID:
                return appendf(b, "(void)");
        default:
                n = field_int(v, &ok);
                return ok ? appendf(b, "%" PRId64, n) : appendf(b, "(type '%c')", (char) v->kind);
        }
}

static int field_add(DeadLetterField **list, size_t *n, const char *name, size_t name_len, Buffer *value) {
        DeadLetterField *l;
        char *nm, *val;

        if (buffer_append(value, "", 1) < 0)
                return -ENOMEM;
        nm = strndup(name, name_len);
        val = strndup((const char *) value->data, value->size);
        buffer_clear(value);
        l = nm && val ? realloc(*list, (*n + 1) * sizeof **list) : NULL;
        if (!l) {
                free(nm);
                free(val);
                return -ENOMEM;
        }
        *list = l;
        l[(*n)++] = (DeadLetterField) { .name = text_sanitize(nm), .value = text_sanitize(val) };
        return 0;
}

void dead_letter_fields_free(DeadLetterField *f, size_t n) {
        for (size_t i = 0; i < n; i++) {
                free((char *) f[i].name);
                free((char *) f[i].value);
        }
        free(f);
}

int dead_letter_message_fields(const DeadLetterMessage *m, DeadLetterField **ret_properties, size_t *ret_n_properties,
                               DeadLetterField **ret_headers, size_t *ret_n_headers) {
        const amqp_basic_properties_t *p = &m->message.properties;
        static const struct {
                amqp_flags_t flag;
                const char *name;
                size_t offset;
        } strings[] = {
                { AMQP_BASIC_CONTENT_TYPE_FLAG, "content_type", offsetof(amqp_basic_properties_t, content_type) },
                { AMQP_BASIC_CONTENT_ENCODING_FLAG, "content_encoding",
                  offsetof(amqp_basic_properties_t, content_encoding) },
                { AMQP_BASIC_CORRELATION_ID_FLAG, "correlation_id", offsetof(amqp_basic_properties_t, correlation_id) },
                { AMQP_BASIC_REPLY_TO_FLAG, "reply_to", offsetof(amqp_basic_properties_t, reply_to) },
                { AMQP_BASIC_EXPIRATION_FLAG, "expiration", offsetof(amqp_basic_properties_t, expiration) },
                { AMQP_BASIC_MESSAGE_ID_FLAG, "message_id", offsetof(amqp_basic_properties_t, message_id) },
                { AMQP_BASIC_TYPE_FLAG, "type", offsetof(amqp_basic_properties_t, type) },
                { AMQP_BASIC_USER_ID_FLAG, "user_id", offsetof(amqp_basic_properties_t, user_id) },
                { AMQP_BASIC_APP_ID_FLAG, "app_id", offsetof(amqp_basic_properties_t, app_id) },
                { AMQP_BASIC_CLUSTER_ID_FLAG, "cluster_id", offsetof(amqp_basic_properties_t, cluster_id) },
        };
        DeadLetterField *props = NULL, *headers = NULL;
        size_t n_props = 0, n_headers = 0;
        Buffer b = { 0 };
        int r = 0;

        for (size_t i = 0; r >= 0 && i < ELEMENTSOF(strings); i++)
                if (p->_flags & strings[i].flag) {
                        r = append_bytes(&b, *(const amqp_bytes_t *) ((const uint8_t *) p + strings[i].offset));
                        if (r >= 0)
                                r = field_add(&props, &n_props, strings[i].name, strlen(strings[i].name), &b);
                }
        if (r >= 0 && (p->_flags & AMQP_BASIC_DELIVERY_MODE_FLAG)) {
                r = appendf(&b, "%u (%s)", p->delivery_mode, p->delivery_mode == 2 ? "persistent" : "transient");
                if (r >= 0)
                        r = field_add(&props, &n_props, "delivery_mode", strlen("delivery_mode"), &b);
        }
        if (r >= 0 && (p->_flags & AMQP_BASIC_PRIORITY_FLAG)) {
                r = appendf(&b, "%u", p->priority);
                if (r >= 0)
                        r = field_add(&props, &n_props, "priority", strlen("priority"), &b);
        }
        if (r >= 0 && (p->_flags & AMQP_BASIC_TIMESTAMP_FLAG)) {
                amqp_field_value_t v = { .kind = AMQP_FIELD_KIND_TIMESTAMP, .value.u64 = p->timestamp };
                r = append_value(&b, &v, 0);
                if (r >= 0)
                        r = field_add(&props, &n_props, "timestamp", strlen("timestamp"), &b);
        }
        if (p->_flags & AMQP_BASIC_HEADERS_FLAG)
                for (int i = 0; r >= 0 && i < p->headers.num_entries; i++) {
                        const amqp_table_entry_t *e = &p->headers.entries[i];
                        r = append_value(&b, &e->value, 0);
                        if (r >= 0)
                                r = field_add(&headers, &n_headers, e->key.bytes, e->key.len, &b);
                }
        buffer_done(&b);
        if (r < 0) {
                dead_letter_fields_free(props, n_props);
                dead_letter_fields_free(headers, n_headers);
                return r;
        }
        *ret_properties = props;
        *ret_n_properties = n_props;
        *ret_headers = headers;
        *ret_n_headers = n_headers;
        return 0;
}
