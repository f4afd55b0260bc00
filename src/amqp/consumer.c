/* SPDX-License-Identifier: MIT */
#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/socket.h>

#include "amqp/consumer.h"
#include "os/log.h"
#include "util/mailbox.h"
#include "version.h"

#define RECONNECT_BACKOFF_MIN (500 * USEC_PER_MSEC)
/* Capped low: while the broker is away nothing is consumed or acked, so a broker that is back
 * should be used again within seconds; a failed attempt costs little. */
#define RECONNECT_BACKOFF_MAX (10 * USEC_PER_SEC)
#define CONSUME_CHANNEL 1
#define PUBLISH_CHANNEL 2
#define FRAME_MAX 131072
/* Deliveries read in one go before they are handed to the loop. */
#define READ_BURST 256
#define STOP_GRACE_USEC (2 * USEC_PER_SEC)

typedef enum CommandType {
        COMMAND_SETTLE,
        COMMAND_DEAD_LETTER,
        COMMAND_CANCEL,
} CommandType;

typedef enum ConfirmState {
        CONFIRM_NONE,
        CONFIRM_ACK,
        CONFIRM_NACK,
} ConfirmState;

typedef struct Command {
        MailboxItem item;
        CommandType type;
        uint64_t epoch;
        AmqpDelivery *delivery;
        DeadLetterReason reason;
        size_t n_acks;
        AckCommand acks[];
} Command;

struct AmqpConsumer {
        sd_event *event;
        sd_event_source *event_source;
        AmqpEventHandler handler;
        void *userdata;

        char *url, *ca_file, *exchange, *queue, *dead_letter_exchange, *dead_queue, *instance_id;
        QueueType queue_type;
        unsigned prefetch, heartbeat_s, connect_timeout_s;

        pthread_t thread;
        bool thread_started;
        atomic_bool stop_requested;
        atomic_bool cancel_requested; /* sticks across reconnects: a stopping service consumes no more */
        pthread_mutex_t lock;
        /* The connection's socket, for stop_thread() to shutdown() when the thread is stuck in a
         * send or an RPC towards a frozen broker. Under lock, so that it never names a descriptor
         * that amqp_destroy_connection() closed and something else may have reused. */
        int socket_fd;
        Mailbox *events;   /* the thread posts, the loop takes */
        Mailbox *commands; /* the loop posts, the thread takes */
        MailboxItem stop;  /* no command: posted by stop_thread() to wake the thread */

        /* Owned by the thread. */
        amqp_connection_state_t conn;
        bool connected; /* logged in, and the broker did not close: worth a clean connection.close */
        uint64_t epoch;
        bool consuming;
        amqp_bytes_t consumer_tag;
        ConfirmState confirm;  /* of the one dead-letter publish waiting for it */
        bool confirm_returned;
        bool returned_expect_header;
        uint64_t returned_remaining;

        /* The message being read: basic.deliver seen, its content frames arriving. */
        bool reading_method;
        uint64_t reading_tag;
        bool reading_redelivered;
        amqp_bytes_t reading_routing_key;
        char reading_routing_key_buffer[255];
        AmqpDelivery *reading;
        size_t reading_received;
};

AmqpDelivery *amqp_delivery_free(AmqpDelivery *d) {
        if (!d)
                return NULL;
        if (d->has_headers_pool)
                empty_amqp_pool(&d->headers_pool);
        return mfree(d);
}

/* Events of a delivery are part of it; the others are allocated on their own. */
static void event_free(AmqpEvent *ev) {
        if (!ev || ev->type == AMQP_EVENT_DELIVERY)
                return;
        free(ev->message);
        free(ev);
}

static void command_free(Command *cmd) {
        if (!cmd)
                return;
        amqp_delivery_free(cmd->delivery);
        free(cmd);
}

static void post_event(AmqpConsumer *c, AmqpEventType type, uint64_t epoch, AmqpDelivery *d, bool ok,
                       const char *message) {
        AmqpEvent *ev = calloc(1, sizeof *ev);

        if (!ev) {
                /* Without memory the delivery cannot travel; the broker redelivers it. */
                amqp_delivery_free(d);
                return;
        }
        *ev = (AmqpEvent) { .type = type, .epoch = epoch, .delivery = d, .ok = ok };
        if (message)
                ev->message = strdup(message); /* NULL when out of memory: the loop logs "" then */
        mailbox_post(c->events, &ev->item);
}

static void format_reply(amqp_rpc_reply_t reply, const char *what, char *buf, size_t size) {
        switch (reply.reply_type) {
        case AMQP_RESPONSE_NORMAL:
                snprintf(buf, size, "%s: ok", what);
                break;
        case AMQP_RESPONSE_NONE:
                snprintf(buf, size, "%s: no reply", what);
                break;
        case AMQP_RESPONSE_LIBRARY_EXCEPTION:
                snprintf(buf, size, "%s: %s", what, amqp_error_string2(reply.library_error));
                break;
        case AMQP_RESPONSE_SERVER_EXCEPTION:
                if (reply.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
                        const amqp_connection_close_t *m = reply.reply.decoded;
                        snprintf(buf, size, "%s: connection closed by broker: %u %.*s", what, m->reply_code,
                                 (int) m->reply_text.len, (const char *) m->reply_text.bytes);
                } else if (reply.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
                        const amqp_channel_close_t *m = reply.reply.decoded;
                        snprintf(buf, size, "%s: channel closed by broker: %u %.*s", what, m->reply_code,
                                 (int) m->reply_text.len, (const char *) m->reply_text.bytes);
                } else
                        snprintf(buf, size, "%s: unexpected broker method 0x%08x", what, reply.reply.id);
                break;
        }
}

static bool reply_is_channel_close(amqp_rpc_reply_t reply, uint16_t code) {
        return reply.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION && reply.reply.id == AMQP_CHANNEL_CLOSE_METHOD &&
               ((const amqp_channel_close_t *) reply.reply.decoded)->reply_code == code;
}

static int check_reply(AmqpConsumer *c, const char *what, char *error, size_t size) {
        amqp_rpc_reply_t reply = amqp_get_rpc_reply(c->conn);

        if (reply.reply_type == AMQP_RESPONSE_NORMAL)
                return 0;
        format_reply(reply, what, error, size);
        return -EPROTO;
}

static amqp_table_t queue_arguments(AmqpConsumer *c, amqp_table_entry_t entries[static 2]) {
        size_t n = 0;

        entries[n++] = (amqp_table_entry_t) {
                .key = amqp_cstring_bytes("x-dead-letter-exchange"),
                .value = { .kind = AMQP_FIELD_KIND_UTF8,
                           .value.bytes = amqp_cstring_bytes(c->dead_letter_exchange) },
        };
        if (c->queue_type == QUEUE_TYPE_QUORUM)
                entries[n++] = (amqp_table_entry_t) {
                        .key = amqp_cstring_bytes("x-queue-type"),
                        .value = { .kind = AMQP_FIELD_KIND_UTF8, .value.bytes = amqp_cstring_bytes("quorum") },
                };
        return (amqp_table_t) { .num_entries = (int) n, .entries = entries };
}

static amqp_table_t quorum_arguments(AmqpConsumer *c, amqp_table_entry_t *entry) {
        if (c->queue_type != QUEUE_TYPE_QUORUM)
                return amqp_empty_table;
        *entry = (amqp_table_entry_t) {
                .key = amqp_cstring_bytes("x-queue-type"),
                .value = { .kind = AMQP_FIELD_KIND_UTF8, .value.bytes = amqp_cstring_bytes("quorum") },
        };
        return (amqp_table_t) { .num_entries = 1, .entries = entry };
}

/* The queue may exist with other arguments (operators set the DLX by policy, or an older
 * deployment made it): use it as it is rather than fail. */
static int declare_queue(AmqpConsumer *c, char *error, size_t size) {
        amqp_table_entry_t entries[2];
        amqp_rpc_reply_t reply;

        amqp_queue_declare(c->conn, CONSUME_CHANNEL, amqp_cstring_bytes(c->queue), 0, 1, 0, 0,
                           queue_arguments(c, entries));
        reply = amqp_get_rpc_reply(c->conn);
        if (reply.reply_type == AMQP_RESPONSE_NORMAL)
                return 0;
        if (!reply_is_channel_close(reply, AMQP_PRECONDITION_FAILED)) {
                format_reply(reply, "queue.declare", error, size);
                return -EPROTO;
        }

        {
                amqp_channel_close_ok_t close_ok = { 0 };
                char msg[256];

                if (amqp_send_method(c->conn, CONSUME_CHANNEL, AMQP_CHANNEL_CLOSE_OK_METHOD, &close_ok) < 0) {
                        snprintf(error, size, "channel.close-ok: send failed");
                        return -EIO;
                }
                amqp_channel_open(c->conn, CONSUME_CHANNEL);
                if (check_reply(c, "channel.open", error, size) < 0)
                        return -EPROTO;
                amqp_queue_declare(c->conn, CONSUME_CHANNEL, amqp_cstring_bytes(c->queue), 1, 0, 0, 0,
                                   amqp_empty_table);
                if (check_reply(c, "queue.declare (passive)", error, size) < 0)
                        return -EPROTO;
                snprintf(msg, sizeof msg,
                         "Queue %s exists with other arguments than x-dead-letter-exchange=%s%s; using it as it is",
                         c->queue, c->dead_letter_exchange, c->queue_type == QUEUE_TYPE_QUORUM ? ", x-queue-type=quorum" : "");
                post_event(c, AMQP_EVENT_WARNING, 0, NULL, true, msg);
        }
        return 0;
}

static int declare_topology(AmqpConsumer *c, char *error, size_t size) {
        amqp_table_entry_t entry;
        int r;

        amqp_exchange_declare(c->conn, CONSUME_CHANNEL, amqp_cstring_bytes(c->exchange), amqp_cstring_bytes("topic"),
                              0, 1, 0, 0, amqp_empty_table);
        if (check_reply(c, "exchange.declare", error, size) < 0)
                return -EPROTO;

        amqp_exchange_declare(c->conn, CONSUME_CHANNEL, amqp_cstring_bytes(c->dead_letter_exchange),
                              amqp_cstring_bytes("fanout"), 0, 1, 0, 0, amqp_empty_table);
        if (check_reply(c, "exchange.declare (dead-letter)", error, size) < 0)
                return -EPROTO;

        amqp_queue_declare(c->conn, CONSUME_CHANNEL, amqp_cstring_bytes(c->dead_queue), 0, 1, 0, 0,
                           quorum_arguments(c, &entry));
        if (check_reply(c, "queue.declare (dead-letter)", error, size) < 0)
                return -EPROTO;

        amqp_queue_bind(c->conn, CONSUME_CHANNEL, amqp_cstring_bytes(c->dead_queue),
                        amqp_cstring_bytes(c->dead_letter_exchange), amqp_cstring_bytes(""), amqp_empty_table);
        if (check_reply(c, "queue.bind (dead-letter)", error, size) < 0)
                return -EPROTO;

        r = declare_queue(c, error, size);
        if (r < 0)
                return r;

        amqp_queue_bind(c->conn, CONSUME_CHANNEL, amqp_cstring_bytes(c->queue), amqp_cstring_bytes(c->exchange),
                        amqp_cstring_bytes("approved.*"), amqp_empty_table);
        if (check_reply(c, "queue.bind", error, size) < 0)
                return -EPROTO;
        return 0;
}

static void reading_reset(AmqpConsumer *c);

static void session_close(AmqpConsumer *c) {
        if (!c->conn)
                return;
        /* A clean close where the broker still answers; a dead socket fails fast, and so does one
         * that stop_thread() shut down because the broker stopped answering. */
        if (c->connected)
                (void) amqp_connection_close(c->conn, AMQP_REPLY_SUCCESS);
        pthread_mutex_lock(&c->lock);
        (void) amqp_destroy_connection(c->conn);
        c->socket_fd = -1;
        pthread_mutex_unlock(&c->lock);
        c->conn = NULL;
        reading_reset(c);
        amqp_bytes_free(c->consumer_tag);
        c->consumer_tag = amqp_empty_bytes;
        c->consuming = false;
}

static int session_open(AmqpConsumer *c, char *error, size_t size) {
        struct amqp_connection_info info;
        _cleanup_free_ char *url = NULL;
        amqp_socket_t *socket;
        struct timeval tv = { .tv_sec = (time_t) c->connect_timeout_s };
        amqp_rpc_reply_t reply;
        char connection_name[300];
        amqp_table_entry_t capabilities[2], properties[4];
        amqp_basic_consume_ok_t *consume_ok;
        int status;

        url = strdup(c->url);
        if (!url)
                return -ENOMEM;
        amqp_default_connection_info(&info);
        if (amqp_parse_url(url, &info) != AMQP_STATUS_OK) {
                snprintf(error, size, "cannot parse RABBITMQ_URL");
                return -EINVAL;
        }
        /* "amqp://host/" names the empty vhost by the letter of the AMQP URI spec, but every
         * operator (and the Python service's default URL) means the default vhost "/". */
        if (isempty(info.vhost))
                info.vhost = (char *) "/";

        c->conn = amqp_new_connection();
        if (!c->conn)
                return -ENOMEM;

        if (info.ssl) {
                socket = amqp_ssl_socket_new(c->conn);
                if (!socket) {
                        snprintf(error, size, "cannot create TLS socket");
                        return -ENOMEM;
                }
                amqp_ssl_socket_set_verify_peer(socket, 1);
                amqp_ssl_socket_set_verify_hostname(socket, 1);
                if (c->ca_file && amqp_ssl_socket_set_cacert(socket, c->ca_file) != AMQP_STATUS_OK) {
                        snprintf(error, size, "cannot load CA file %s", c->ca_file);
                        return -EINVAL;
                }
        } else {
                socket = amqp_tcp_socket_new(c->conn);
                if (!socket)
                        return -ENOMEM;
        }

        (void) amqp_set_handshake_timeout(c->conn, &tv);
        (void) amqp_set_rpc_timeout(c->conn, &tv);

        status = amqp_socket_open_noblock(socket, info.host, info.port, &tv);
        if (status != AMQP_STATUS_OK) {
                snprintf(error, size, "connect to %s:%d: %s", info.host, info.port, amqp_error_string2(status));
                return -ECONNREFUSED;
        }
        pthread_mutex_lock(&c->lock);
        c->socket_fd = amqp_get_sockfd(c->conn);
        pthread_mutex_unlock(&c->lock);

        /* consumer_cancel_notify: a deleted queue cancels us instead of leaving us idle forever. */
        capabilities[0] = (amqp_table_entry_t) {
                .key = amqp_cstring_bytes("consumer_cancel_notify"),
                .value = { .kind = AMQP_FIELD_KIND_BOOLEAN, .value.boolean = 1 },
        };
        capabilities[1] = (amqp_table_entry_t) {
                .key = amqp_cstring_bytes("connection.blocked"),
                .value = { .kind = AMQP_FIELD_KIND_BOOLEAN, .value.boolean = 1 },
        };
        snprintf(connection_name, sizeof connection_name, "transmitter@%s", c->instance_id);
        properties[0] = (amqp_table_entry_t) {
                .key = amqp_cstring_bytes("capabilities"),
                .value = { .kind = AMQP_FIELD_KIND_TABLE,
                           .value.table = { .num_entries = 2, .entries = capabilities } },
        };
        properties[1] = (amqp_table_entry_t) {
                .key = amqp_cstring_bytes("connection_name"),
                .value = { .kind = AMQP_FIELD_KIND_UTF8, .value.bytes = amqp_cstring_bytes(connection_name) },
        };
        properties[2] = (amqp_table_entry_t) {
                .key = amqp_cstring_bytes("product"),
                .value = { .kind = AMQP_FIELD_KIND_UTF8, .value.bytes = amqp_cstring_bytes("transmitter") },
        };
        properties[3] = (amqp_table_entry_t) {
                .key = amqp_cstring_bytes("version"),
                .value = { .kind = AMQP_FIELD_KIND_UTF8, .value.bytes = amqp_cstring_bytes(TRANSMITTER_VERSION) },
        };

        reply = amqp_login_with_properties(c->conn, info.vhost, 0, FRAME_MAX, (int) c->heartbeat_s,
                                           &(amqp_table_t) { .num_entries = 4, .entries = properties },
                                           AMQP_SASL_METHOD_PLAIN, info.user, info.password);
        if (reply.reply_type != AMQP_RESPONSE_NORMAL) {
                format_reply(reply, "login", error, size);
                return -EACCES;
        }
        c->connected = true;

        amqp_channel_open(c->conn, CONSUME_CHANNEL);
        if (check_reply(c, "channel.open", error, size) < 0)
                return -EPROTO;

        if (declare_topology(c, error, size) < 0)
                return -EPROTO;

        amqp_basic_qos(c->conn, CONSUME_CHANNEL, 0, (uint16_t) MIN(c->prefetch, 65535u), 0);
        if (check_reply(c, "basic.qos", error, size) < 0)
                return -EPROTO;

        amqp_channel_open(c->conn, PUBLISH_CHANNEL);
        if (check_reply(c, "channel.open (dead-letter)", error, size) < 0)
                return -EPROTO;
        amqp_confirm_select(c->conn, PUBLISH_CHANNEL);
        if (check_reply(c, "confirm.select", error, size) < 0)
                return -EPROTO;

        if (atomic_load(&c->cancel_requested))
                return 0;
        consume_ok = amqp_basic_consume(c->conn, CONSUME_CHANNEL, amqp_cstring_bytes(c->queue), amqp_empty_bytes, 0,
                                        0, 0, amqp_empty_table);
        if (check_reply(c, "basic.consume", error, size) < 0)
                return -EPROTO;
        c->consumer_tag = amqp_bytes_malloc_dup(consume_ok->consumer_tag);
        if (!c->consumer_tag.bytes) {
                snprintf(error, size, "out of memory");
                return -ENOMEM;
        }
        c->consuming = true;
        return 0;
}

static size_t bytes_size(const amqp_basic_properties_t *p, amqp_flags_t flag, amqp_bytes_t b) {
        return (p->_flags & flag) ? b.len : 0;
}

static void bytes_copy(amqp_bytes_t *b, uint8_t **cursor) {
        memcpy(*cursor, b->bytes, b->len);
        b->bytes = *cursor;
        *cursor += b->len;
}

/* The header frame of the message being read: one allocation for the delivery, its body and
 * what a dead-letter publish needs again (the routing key, the properties). The decoded
 * frame lives in rabbitmq-c's frame pool until the next read, so everything is copied now. */
static int delivery_begin(AmqpConsumer *c, const amqp_frame_t *frame, char *error, size_t size) {
        const amqp_basic_properties_t *p = frame->payload.properties.decoded;
        uint64_t body_size = frame->payload.properties.body_size;
        size_t extra = c->reading_routing_key.len + bytes_size(p, AMQP_BASIC_CONTENT_TYPE_FLAG, p->content_type) +
                       bytes_size(p, AMQP_BASIC_CONTENT_ENCODING_FLAG, p->content_encoding) +
                       bytes_size(p, AMQP_BASIC_CORRELATION_ID_FLAG, p->correlation_id) +
                       bytes_size(p, AMQP_BASIC_REPLY_TO_FLAG, p->reply_to) +
                       bytes_size(p, AMQP_BASIC_EXPIRATION_FLAG, p->expiration) +
                       bytes_size(p, AMQP_BASIC_MESSAGE_ID_FLAG, p->message_id) +
                       bytes_size(p, AMQP_BASIC_TYPE_FLAG, p->type) +
                       bytes_size(p, AMQP_BASIC_USER_ID_FLAG, p->user_id) +
                       bytes_size(p, AMQP_BASIC_APP_ID_FLAG, p->app_id) +
                       bytes_size(p, AMQP_BASIC_CLUSTER_ID_FLAG, p->cluster_id);
        AmqpDelivery *d;
        uint8_t *cursor;

        if (body_size > SIZE_MAX - sizeof *d - extra) {
                snprintf(error, size, "message of %" PRIu64 " bytes", body_size);
                return -EFBIG;
        }
        d = malloc(sizeof *d + (size_t) body_size + extra);
        if (!d) {
                snprintf(error, size, "out of memory for a message of %" PRIu64 " bytes", body_size);
                return -ENOMEM;
        }
        *d = (AmqpDelivery) {
                .epoch = c->epoch,
                .tag = c->reading_tag,
                .redelivered = c->reading_redelivered,
                .body = d->data,
                .body_size = (size_t) body_size,
                .routing_key = c->reading_routing_key,
                .properties = *p,
        };
        d->event = (AmqpEvent) { .type = AMQP_EVENT_DELIVERY, .epoch = c->epoch, .delivery = d };

        cursor = d->data + body_size;
        bytes_copy(&d->routing_key, &cursor);
#define COPY_PROPERTY(flag, field)                                        \
        do {                                                              \
                if (d->properties._flags & (flag))                        \
                        bytes_copy(&d->properties.field, &cursor);        \
        } while (0)
        COPY_PROPERTY(AMQP_BASIC_CONTENT_TYPE_FLAG, content_type);
        COPY_PROPERTY(AMQP_BASIC_CONTENT_ENCODING_FLAG, content_encoding);
        COPY_PROPERTY(AMQP_BASIC_CORRELATION_ID_FLAG, correlation_id);
        COPY_PROPERTY(AMQP_BASIC_REPLY_TO_FLAG, reply_to);
        COPY_PROPERTY(AMQP_BASIC_EXPIRATION_FLAG, expiration);
        COPY_PROPERTY(AMQP_BASIC_MESSAGE_ID_FLAG, message_id);
        COPY_PROPERTY(AMQP_BASIC_TYPE_FLAG, type);
        COPY_PROPERTY(AMQP_BASIC_USER_ID_FLAG, user_id);
        COPY_PROPERTY(AMQP_BASIC_APP_ID_FLAG, app_id);
        COPY_PROPERTY(AMQP_BASIC_CLUSTER_ID_FLAG, cluster_id);
#undef COPY_PROPERTY

        if ((p->_flags & AMQP_BASIC_HEADERS_FLAG) && p->headers.num_entries > 0) {
                init_amqp_pool(&d->headers_pool, 512);
                d->has_headers_pool = true;
                if (amqp_table_clone(&p->headers, &d->properties.headers, &d->headers_pool) != AMQP_STATUS_OK) {
                        amqp_delivery_free(d);
                        snprintf(error, size, "out of memory copying message headers");
                        return -ENOMEM;
                }
        } else
                d->properties.headers = amqp_empty_table;

        c->reading = d;
        c->reading_received = 0;
        return 0;
}

static void delivery_complete(AmqpConsumer *c, MailboxList *inbox) {
        AmqpDelivery *d = TAKE_PTR(c->reading);

        d->received_at = now(CLOCK_MONOTONIC);
        c->reading_method = false;
        mailbox_list_append(inbox, &d->event.item);
}

static void reading_reset(AmqpConsumer *c) {
        c->reading = amqp_delivery_free(c->reading);
        c->reading_method = false;
        c->returned_remaining = 0;
        c->returned_expect_header = false;
}

/* Content frames: the header and body frames that follow basic.deliver on the consume channel
 * (the delivery being read) or basic.return on the publish channel (skipped). AMQP sends a
 * message's frames in order on its channel; other channels' frames may come in between. */
static int handle_content(AmqpConsumer *c, const amqp_frame_t *frame, MailboxList *inbox, char *error, size_t size) {
        bool header = frame->frame_type == AMQP_FRAME_HEADER;
        int r;

        if (frame->channel == PUBLISH_CHANNEL) {
                if (header && c->returned_expect_header) {
                        c->returned_expect_header = false;
                        c->returned_remaining = frame->payload.properties.body_size;
                } else if (!header)
                        c->returned_remaining -= MIN(c->returned_remaining, (uint64_t) frame->payload.body_fragment.len);
                return 0;
        }
        if (frame->channel != CONSUME_CHANNEL)
                return 0;

        if (header) {
                if (!c->reading_method || c->reading) {
                        snprintf(error, size, "content header without basic.deliver");
                        return -EPROTO;
                }
                r = delivery_begin(c, frame, error, size);
                if (r < 0)
                        return r;
        } else {
                const amqp_bytes_t *f = &frame->payload.body_fragment;

                if (!c->reading || f->len > c->reading->body_size - c->reading_received) {
                        snprintf(error, size, "unexpected content body frame");
                        return -EPROTO;
                }
                memcpy(c->reading->data + c->reading_received, f->bytes, f->len);
                c->reading_received += f->len;
        }
        if (c->reading_received == c->reading->body_size)
                delivery_complete(c, inbox);
        return 0;
}

static int handle_frame(AmqpConsumer *c, const amqp_frame_t *frame, MailboxList *inbox, char *error, size_t size) {
        if (frame->frame_type == AMQP_FRAME_HEADER || frame->frame_type == AMQP_FRAME_BODY)
                return handle_content(c, frame, inbox, error, size);
        if (frame->frame_type != AMQP_FRAME_METHOD)
                return 0;

        switch (frame->payload.method.id) {
        case AMQP_BASIC_DELIVER_METHOD: {
                const amqp_basic_deliver_t *m = frame->payload.method.decoded;

                if (frame->channel != CONSUME_CHANNEL || c->reading_method) {
                        snprintf(error, size, "unexpected basic.deliver");
                        return -EPROTO;
                }
                /* The routing key goes into the delivery at its header frame; keep it until then. */
                memcpy(c->reading_routing_key_buffer, m->routing_key.bytes, MIN(m->routing_key.len, (size_t) 255));
                c->reading_routing_key = (amqp_bytes_t) { .len = MIN(m->routing_key.len, (size_t) 255),
                                                          .bytes = c->reading_routing_key_buffer };
                c->reading_tag = m->delivery_tag;
                c->reading_redelivered = m->redelivered;
                c->reading_method = true;
                return 0;
        }
        case AMQP_BASIC_ACK_METHOD:
                if (frame->channel == PUBLISH_CHANNEL)
                        c->confirm = CONFIRM_ACK;
                return 0;
        case AMQP_BASIC_NACK_METHOD:
                if (frame->channel == PUBLISH_CHANNEL)
                        c->confirm = CONFIRM_NACK;
                return 0;
        case AMQP_BASIC_RETURN_METHOD:
                /* Unroutable (no queue bound to the dead-letter exchange): confirmed all the same.
                 * The returned message's content frames follow; handle_content() skips them. */
                c->confirm_returned = true;
                c->returned_expect_header = true;
                return 0;
        case AMQP_BASIC_CANCEL_METHOD:
                snprintf(error, size, "consumer cancelled by the broker (queue deleted?)");
                return -ECANCELED;
        case AMQP_CHANNEL_CLOSE_METHOD: {
                const amqp_channel_close_t *m = frame->payload.method.decoded;
                snprintf(error, size, "channel %u closed by broker: %u %.*s", frame->channel, m->reply_code,
                         (int) m->reply_text.len, (const char *) m->reply_text.bytes);
                return -EPROTO;
        }
        case AMQP_CONNECTION_CLOSE_METHOD: {
                const amqp_connection_close_t *m = frame->payload.method.decoded;
                amqp_connection_close_ok_t ok = { 0 };
                snprintf(error, size, "connection closed by broker: %u %.*s", m->reply_code,
                         (int) m->reply_text.len, (const char *) m->reply_text.bytes);
                (void) amqp_send_method(c->conn, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
                c->connected = false;
                return -ECONNRESET;
        }
        case AMQP_CONNECTION_BLOCKED_METHOD:
                post_event(c, AMQP_EVENT_WARNING, c->epoch, NULL, true, "broker blocked the connection (resource alarm)");
                return 0;
        case AMQP_CONNECTION_UNBLOCKED_METHOD:
                post_event(c, AMQP_EVENT_WARNING, c->epoch, NULL, true, "broker unblocked the connection");
                return 0;
        default:
                return 0;
        }
}

/* Reads and handles frames: with a zero timeout what is there (at most READ_BURST),
 * otherwise until the pending publisher confirm arrived. Also where rabbitmq-c sends and
 * checks heartbeats. Deliveries go to the loop in one go. */
static int read_frames(AmqpConsumer *c, bool until_confirm, char *error, size_t size) {
        struct timeval tv = { .tv_sec = until_confirm ? (time_t) MAX(2 * c->heartbeat_s, 30u) : 0 };
        MailboxList inbox = { 0 };
        int r = 0;

        for (unsigned i = 0; until_confirm ? c->confirm == CONFIRM_NONE : i < READ_BURST; i++) {
                amqp_frame_t frame;
                int status;

                amqp_maybe_release_buffers(c->conn);
                status = amqp_simple_wait_frame_noblock(c->conn, &frame, &tv);
                if (status == AMQP_STATUS_TIMEOUT && !until_confirm)
                        break;
                if (status != AMQP_STATUS_OK) {
                        snprintf(error, size, "%s: %s", until_confirm ? "waiting for a publisher confirm" : "reading",
                                 amqp_error_string2(status));
                        r = -EIO;
                        break;
                }
                r = handle_frame(c, &frame, &inbox, error, size);
                if (r < 0)
                        break;
        }

        mailbox_post_list(c->events, &inbox);
        return r;
}

static int dead_letter_publish(AmqpConsumer *c, AmqpDelivery *d, const DeadLetterReason *reason, bool *ret_ok,
                               char *error, size_t size) {
        amqp_basic_properties_t props = d->properties;
        const amqp_table_t *orig = (props._flags & AMQP_BASIC_HEADERS_FLAG) ? &props.headers : NULL;
        size_t n_orig = orig ? (size_t) orig->num_entries : 0, n = 0;
        _cleanup_free_ amqp_table_entry_t *entries = NULL;
        int status, r;

        entries = calloc(n_orig + 3, sizeof *entries);
        if (!entries)
                return -ENOMEM;
        /* Keep the publisher's headers, but ours replace any of the same name. */
        for (size_t i = 0; i < n_orig; i++) {
                const amqp_bytes_t *k = &orig->entries[i].key;
                if (k->len >= 14 && memcmp(k->bytes, "x-transmitter-", 14) == 0)
                        continue;
                entries[n++] = orig->entries[i];
        }
        entries[n++] = (amqp_table_entry_t) {
                .key = amqp_cstring_bytes("x-transmitter-reason"),
                .value = { .kind = AMQP_FIELD_KIND_UTF8, .value.bytes = amqp_cstring_bytes(reason->reason) },
        };
        if (reason->http_status > 0)
                entries[n++] = (amqp_table_entry_t) {
                        .key = amqp_cstring_bytes("x-transmitter-http-status"),
                        .value = { .kind = AMQP_FIELD_KIND_I32, .value.i32 = (int32_t) reason->http_status },
                };
        if (reason->batch_id[0])
                entries[n++] = (amqp_table_entry_t) {
                        .key = amqp_cstring_bytes("x-transmitter-batch-id"),
                        .value = { .kind = AMQP_FIELD_KIND_UTF8,
                                   .value.bytes = amqp_cstring_bytes(reason->batch_id) },
                };
        props.headers = (amqp_table_t) { .num_entries = (int) n, .entries = entries };
        props._flags |= AMQP_BASIC_HEADERS_FLAG;

        c->confirm = CONFIRM_NONE;
        c->confirm_returned = false;
        status = amqp_basic_publish(c->conn, PUBLISH_CHANNEL, amqp_cstring_bytes(c->dead_letter_exchange),
                                    d->routing_key, 1, 0, &props,
                                    (amqp_bytes_t) { .len = d->body_size, .bytes = (void *) d->body });
        if (status != AMQP_STATUS_OK) {
                snprintf(error, size, "dead-letter publish: %s", amqp_error_string2(status));
                return -EIO;
        }
        r = read_frames(c, true, error, size);
        if (r < 0)
                return r;
        if (c->confirm_returned) {
                /* No queue is bound to the dead-letter exchange (someone deleted <queue>.dead):
                 * rejecting the original would send it there as well, where it would vanish.
                 * A new connection declares the topology again, and the broker redelivers the
                 * original, unacked, to be dead-lettered then. */
                snprintf(error, size, "dead-letter exchange %s routed the message to no queue (was %s deleted?); "
                         "reconnecting to declare it again",
                         c->dead_letter_exchange, c->dead_queue);
                return -ENOENT;
        }
        *ret_ok = c->confirm == CONFIRM_ACK;
        return 0;
}

static int settle(AmqpConsumer *c, const Command *cmd, char *error, size_t size) {
        for (size_t i = 0; i < cmd->n_acks; i++) {
                const AckCommand *a = &cmd->acks[i];
                int status;

                if (a->kind == SETTLE_ACK)
                        status = amqp_basic_ack(c->conn, CONSUME_CHANNEL, a->tag, a->multiple);
                else
                        status = amqp_basic_nack(c->conn, CONSUME_CHANNEL, a->tag, a->multiple,
                                                 a->kind == SETTLE_REQUEUE);
                if (status != AMQP_STATUS_OK) {
                        snprintf(error, size, "sending ack: %s", amqp_error_string2(status));
                        return -EIO;
                }
        }
        return 0;
}

/* Runs every queued command. Commands of another epoch, or all of them once the
 * connection failed, are dropped; dead-letter requests go back unpublished. */
static int run_commands(AmqpConsumer *c, bool live, char *error, size_t size) {
        int ret = 0;

        for (MailboxItem *i = mailbox_take(c->commands), *next; i; i = next) {
                Command *cmd = container_of(i, Command, item);
                bool current;
                int r = 0;

                next = i->next;
                if (i == &c->stop)
                        continue;
                current = live && ret >= 0 && cmd->epoch == c->epoch;

                switch (cmd->type) {
                case COMMAND_SETTLE:
                        if (current)
                                r = settle(c, cmd, error, size);
                        break;
                case COMMAND_DEAD_LETTER: {
                        bool ok = false;
                        if (current)
                                r = dead_letter_publish(c, cmd->delivery, &cmd->reason, &ok, error, size);
                        /* A message says the publish did not happen for the connection's sake (the
                         * broker redelivers the original); none, that the broker refused it. */
                        post_event(c, AMQP_EVENT_DEAD_LETTERED, cmd->epoch, cmd->delivery, ok && r >= 0,
                                   !current ? "the connection to RabbitMQ is gone" : r < 0 ? error : NULL);
                        break;
                }
                case COMMAND_CANCEL:
                        if (live && ret >= 0 && c->consuming) {
                                amqp_basic_cancel(c->conn, CONSUME_CHANNEL, c->consumer_tag);
                                r = check_reply(c, "basic.cancel", error, size);
                                c->consuming = false;
                        }
                        break;
                }
                if (r < 0 && ret >= 0)
                        ret = r;
                free(cmd);
        }
        return ret;
}

static int session_run(AmqpConsumer *c, char *error, size_t size) {
        /* Wake often enough to send heartbeats on time: rabbitmq-c only does it when called. */
        int idle_ms = c->heartbeat_s > 0 ? (int) MIN(c->heartbeat_s * 1000u / 4, 1000u) : 1000;

        for (;;) {
                struct pollfd p[2] = {
                        { .fd = amqp_get_sockfd(c->conn), .events = POLLIN },
                        { .fd = mailbox_fd(c->commands), .events = POLLIN },
                };
                bool buffered;
                int r;

                r = run_commands(c, true, error, size);
                if (r < 0)
                        return r;
                if (atomic_load(&c->stop_requested))
                        return 0;

                buffered = amqp_frames_enqueued(c->conn) || amqp_data_in_buffer(c->conn);
                /* Commands wake it (and are taken at the top); mailbox_take() clears their fd. */
                if (poll(p, 2, buffered ? 0 : idle_ms) < 0 && errno != EINTR) {
                        r = -errno;
                        snprintf(error, size, "poll: %s", STRERROR(r));
                        return r;
                }

                r = read_frames(c, false, error, size);
                if (r < 0)
                        return r;
        }
}

/* Waits out a reconnect backoff, still answering commands. */
static void wait_backoff(AmqpConsumer *c, usec_t delay) {
        usec_t until = now(CLOCK_MONOTONIC) + delay;
        char ignored[8];

        for (;;) {
                usec_t t = now(CLOCK_MONOTONIC);
                struct pollfd p = { .fd = mailbox_fd(c->commands), .events = POLLIN };

                (void) run_commands(c, false, ignored, sizeof ignored);
                if (atomic_load(&c->stop_requested) || t >= until)
                        return;
                (void) poll(&p, 1, (int) ((until - t + USEC_PER_MSEC - 1) / USEC_PER_MSEC));
        }
}

static void *consumer_thread(void *userdata) {
        AmqpConsumer *c = userdata;
        usec_t backoff = RECONNECT_BACKOFF_MIN;

        while (!atomic_load(&c->stop_requested)) {
                char error[256] = "";
                int r;

                r = session_open(c, error, sizeof error);
                if (r < 0) {
                        session_close(c);
                        c->connected = false;
                        post_event(c, AMQP_EVENT_DISCONNECTED, 0, NULL, false, error);
                        wait_backoff(c, backoff);
                        backoff = MIN(backoff * 2, RECONNECT_BACKOFF_MAX);
                        continue;
                }
                backoff = RECONNECT_BACKOFF_MIN;
                c->epoch++;
                post_event(c, AMQP_EVENT_CONNECTED, c->epoch, NULL, true, NULL);

                r = session_run(c, error, sizeof error);
                if (r < 0)
                        c->connected = false;
                session_close(c);
                c->connected = false;
                post_event(c, AMQP_EVENT_DISCONNECTED, c->epoch, NULL, r >= 0, r >= 0 ? "closed" : error);
        }

        {
                char ignored[8];
                c->epoch++; /* whatever is still queued is stale now */
                (void) run_commands(c, false, ignored, sizeof ignored);
        }
        return NULL;
}

static int on_events(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        AmqpConsumer *c = userdata;

        for (MailboxItem *i = mailbox_take(c->events), *next; i; i = next) {
                AmqpEvent *ev = container_of(i, AmqpEvent, item);
                AmqpEventType type = ev->type;

                next = i->next;
                /* A delivery's event is part of it, and the handler may free it right away. */
                c->handler(c, ev, c->userdata);
                if (type != AMQP_EVENT_DELIVERY)
                        event_free(ev);
        }
        return 0;
}

int amqp_consumer_new(sd_event *e, const AmqpSettings *s, AmqpEventHandler handler, void *userdata,
                      AmqpConsumer **ret) {
        _cleanup_(amqp_consumer_freep) AmqpConsumer *c = NULL;
        int r;

        c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        *c = (AmqpConsumer) {
                .event = sd_event_ref(e),
                .handler = handler,
                .userdata = userdata,
                .queue_type = s->queue_type,
                .prefetch = s->prefetch,
                .heartbeat_s = s->heartbeat_s,
                .connect_timeout_s = s->connect_timeout_s,
                .socket_fd = -1,
                .consumer_tag = amqp_empty_bytes,
        };
        pthread_mutex_init(&c->lock, NULL);

        c->url = strdup(s->url);
        c->exchange = strdup(s->exchange);
        c->queue = strdup(s->queue);
        c->dead_letter_exchange = strdup(s->dead_letter_exchange);
        c->instance_id = strdup(s->instance_id);
        c->ca_file = s->ca_file ? strdup(s->ca_file) : NULL;
        if (!c->url || !c->exchange || !c->queue || !c->dead_letter_exchange || !c->instance_id ||
            (s->ca_file && !c->ca_file))
                return -ENOMEM;
        if (asprintf(&c->dead_queue, "%s.dead", s->queue) < 0)
                return -ENOMEM;

        r = mailbox_new(&c->events);
        if (r < 0)
                return r;
        r = mailbox_new(&c->commands);
        if (r < 0)
                return r;

        r = sd_event_add_io(e, &c->event_source, mailbox_fd(c->events), EPOLLIN, on_events, c);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(c->event_source, "amqp-events");

        *ret = TAKE_PTR(c);
        return 0;
}

int amqp_consumer_start(AmqpConsumer *c) {
        int r;

        r = pthread_create(&c->thread, NULL, consumer_thread, c);
        if (r != 0)
                return -r;
        c->thread_started = true;
        return 0;
}

static void stop_thread(AmqpConsumer *c) {
        struct timespec deadline;

        if (!c->thread_started)
                return;
        atomic_store(&c->stop_requested, true);
        mailbox_post(c->commands, &c->stop);

        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += (time_t) (STOP_GRACE_USEC / USEC_PER_SEC);
        if (pthread_timedjoin_np(c->thread, NULL, &deadline) == 0) {
                c->thread_started = false;
                return;
        }
        /* Stuck in a blocking send or read towards a frozen broker: break the socket. */
        pthread_mutex_lock(&c->lock);
        if (c->socket_fd >= 0)
                (void) shutdown(c->socket_fd, SHUT_RDWR);
        pthread_mutex_unlock(&c->lock);
        (void) pthread_join(c->thread, NULL);
        c->thread_started = false;
}

AmqpConsumer *amqp_consumer_free(AmqpConsumer *c) {
        if (!c)
                return NULL;

        stop_thread(c);

        /* Events nobody will handle now: their deliveries go back to the broker with the connection. */
        if (c->events)
                for (MailboxItem *i = mailbox_take(c->events), *next; i; i = next) {
                        AmqpEvent *ev = container_of(i, AmqpEvent, item);
                        AmqpDelivery *d = ev->delivery;

                        next = i->next;
                        event_free(ev);
                        amqp_delivery_free(d); /* a delivery's own event goes with it */
                }
        reading_reset(c);
        /* Commands that came after the thread's last look. */
        if (c->commands)
                for (MailboxItem *i = mailbox_take(c->commands), *next; i; i = next) {
                        next = i->next;
                        if (i != &c->stop)
                                command_free(container_of(i, Command, item));
                }

        sd_event_source_disable_unref(c->event_source);
        mailbox_free(c->events);
        mailbox_free(c->commands);
        pthread_mutex_destroy(&c->lock);
        sd_event_unref(c->event);
        free(c->url);
        free(c->ca_file);
        free(c->exchange);
        free(c->queue);
        free(c->dead_letter_exchange);
        free(c->dead_queue);
        free(c->instance_id);
        return mfree(c);
}

int amqp_consumer_settle(AmqpConsumer *c, uint64_t epoch, const AckCommand *commands, size_t n) {
        Command *cmd;

        if (n == 0)
                return 0;
        cmd = calloc(1, sizeof *cmd + n * sizeof *commands);
        if (!cmd)
                return -ENOMEM;
        cmd->type = COMMAND_SETTLE;
        cmd->epoch = epoch;
        cmd->n_acks = n;
        memcpy(cmd->acks, commands, n * sizeof *commands);
        mailbox_post(c->commands, &cmd->item);
        return 0;
}

int amqp_consumer_dead_letter(AmqpConsumer *c, AmqpDelivery *d, const DeadLetterReason *reason) {
        Command *cmd = calloc(1, sizeof *cmd);

        if (!cmd)
                return -ENOMEM;
        cmd->type = COMMAND_DEAD_LETTER;
        cmd->epoch = d->epoch;
        cmd->delivery = d;
        cmd->reason = *reason;
        mailbox_post(c->commands, &cmd->item);
        return 0;
}

int amqp_consumer_cancel(AmqpConsumer *c) {
        Command *cmd = calloc(1, sizeof *cmd);

        if (!cmd)
                return -ENOMEM;
        cmd->type = COMMAND_CANCEL;
        atomic_store(&c->cancel_requested, true);
        mailbox_post(c->commands, &cmd->item);
        return 0;
}
