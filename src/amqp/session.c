/* SPDX-License-Identifier: MIT */
/* The AMQP thread (amqp/session.h): everything here runs on that thread, except the functions
 * under "The loop's side of the session" at the end. Of those, session_post() and
 * session_set_cancelled() touch only what the "Shared" part of Session names;
 * session_new() and session_free() run while there is no thread. The loop's side of the
 * adapter is amqp/consumer.c; no sd-event here. */
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/socket.h>

#include "amqp/connect.h"
#include "amqp/headers.h"
#include "amqp/session.h"
#include "core/broker-url.h"
#include "core/dead-letter-entry.h"

#define RECONNECT_BACKOFF_MIN (500 * USEC_PER_MSEC)
/* Capped low: while the broker is away nothing is consumed or acked, so a broker that is back
 * should be used again within seconds; a failed attempt costs little. */
#define RECONNECT_BACKOFF_MAX (10 * USEC_PER_SEC)
/* A connection that ends sooner than this counts as a failed attempt: one the broker closes right
 * after it opened (a binding refused, say) must not make the thread reconnect in a tight loop. */
#define CONNECTION_STABLE_AFTER (10 * USEC_PER_SEC)
#define CONSUME_CHANNEL 1
#define PUBLISH_CHANNEL 2
/* Declarations: a channel of their own, so that a declaration the broker refuses (and closes its
 * channel over) or is slow to answer never closes or holds up the consume channel. */
#define TOPOLOGY_CHANNEL 3
/* Where nothing is consumed, published or declared: the liveness probes. */
#define PROBE_CHANNEL 4
/* A node that stops answering (frozen, or a host gone without a reset) is noticed by heartbeats
 * only after twice the heartbeat, a minute by default: far too long to fail over. While nothing
 * comes from the broker the thread asks it something (basic.qos on a channel of its own, which
 * touches no queue) and gives the node up when no frame at all came for PROBE_TIMEOUT after. */
#define PROBE_AFTER (1 * USEC_PER_SEC)
#define PROBE_TIMEOUT (5 * USEC_PER_SEC)
_Static_assert(BROKER_FRAME_MAX <= AMQP_HEADERS_ENCODED_MAX, "a frame's header table may not fit the copy's scratch");
/* Deliveries read in one go before they are handed to the loop. */
#define READ_BURST 256
/* While deliveries stream in, the broker writes a few at a time, and each write would wake the
 * thread and, through the mailbox, the loop: a wake-up costs more CPU than the messages it brings.
 * So while reads bring STREAM_MIN_FRAMES or more, or come less than a quarter of STREAM_WAKE_USEC
 * apart (a wait would gather four deliveries or more), the thread asks to be woken only once
 * STREAM_WAKE_BYTES are there (SO_RCVLOWAT), or after STREAM_WAKE_USEC at the latest: a batch's
 * last event may come that much later, while a lone event wakes it at once. Where a wait gathers
 * one delivery (1,000/s) a timer wake costs more than a socket's. A larger mark (32-128 KiB) woke
 * the thread less still (0.10 -> 0.06 wake-ups per event at BATCH_SIZE 100), but in benchmark runs
 * the broker fell into its slow mode (twice its CPU per message, half the events/s) in 14 of 26
 * runs against 6 of 36 at 16 KiB; and above 64 KiB (default tcp_rmem) the kernel also grows the
 * receive buffer and clamps the window to the mark. */
#define STREAM_MIN_FRAMES 8
#define STREAM_WAKE_BYTES (16 * 1024)
#define STREAM_WAKE_USEC (1 * USEC_PER_MSEC)
#define STOP_GRACE_USEC (2 * USEC_PER_SEC)

typedef enum ConfirmState {
        CONFIRM_NONE,
        CONFIRM_ACK,
        CONFIRM_NACK,
} ConfirmState;

struct Session {
        /* Set by session_new(), read-only after. */
        BrokerUrlList urls; /* RABBITMQ_URL's nodes, tried in turn */
        char *ca_file, *exchange, *queue, *dead_letter_exchange, *dead_queue, *instance_id;
        QueueType queue_type;
        unsigned prefetch, heartbeat_s, connect_timeout_s;

        /* Shared with the loop. */
        Mailbox *events;   /* the loop's: the thread posts */
        Mailbox *commands; /* the thread's: the loop posts */
        MailboxItem stop;  /* no command: posted by stop_thread() to wake the thread */
        pthread_t thread;  /* and thread_started: the loop's alone */
        bool thread_started;
        atomic_bool stop_requested;
        atomic_bool cancel_requested; /* sticks across reconnects: a stopping service consumes no more */
        atomic_bool trace;            /* post an ack report for every ack command */
        pthread_mutex_t lock;
        /* The connection's socket, for stop_thread() to shutdown() when the thread is stuck in a
         * send or an RPC towards a frozen broker. Under lock, so that it never names a descriptor
         * that amqp_destroy_connection() closed and something else may have reused. */
        int socket_fd;

        /* Owned by the thread. */
        amqp_connection_state_t conn;
        bool connected; /* logged in, and the broker did not close: worth a clean connection.close */
        uint64_t epoch;
        bool consuming;
        amqp_bytes_t consumer_tag;
        bool broker_cancelled;   /* the broker sent basic.cancel: consume again (consume_again()) */
        bool cancel_ok_accepted; /* the broker takes a basic.cancel-ok for its basic.cancel (4.3.7+) */
        ConfirmState confirm;  /* of the one dead-letter publish waiting for it */
        bool confirm_returned;
        bool returned_expect_header;
        uint64_t returned_remaining;
        Event *ack_report; /* trace: of the last ack command, waiting for the next delivery */

        /* The message being read: basic.deliver seen, its content frames arriving. */
        bool reading_method;
        uint64_t reading_tag;
        bool reading_redelivered;
        amqp_bytes_t reading_routing_key;
        char reading_routing_key_buffer[255];
        Delivery *reading;
        size_t reading_received;

        /* Liveness (PROBE_AFTER): when the last frame came, and when a probe went out unanswered
         * (0: none). No probe counts while the broker blocks the connection: it then reads
         * nothing from us until its resource alarm clears. */
        usec_t last_frame_at;
        usec_t probe_sent_at;
        bool streaming; /* see STREAM_MIN_FRAMES */
        bool blocked;
        uint8_t *headers_scratch; /* AMQP_HEADERS_ENCODED_MAX bytes for amqp_headers_copy() */
};

/* Connection changes and warnings; lost when there is no memory for them. */
static void post_event(Session *s, AmqpEventType type, uint64_t epoch, bool ok, const char *message) {
        Event *ev = event_new(type, epoch, ok, message);

        if (ev)
                mailbox_post(s->events, &ev->item);
}

/* A connection or a connect attempt to the index-th URL began or ended. */
static void post_connection_event(Session *s, AmqpEventType type, uint64_t epoch, size_t index, bool ok,
                                  const char *message) {
        Event *ev = event_new(type, epoch, ok, message);

        if (!ev)
                return;
        ev->public.url_index = index;
        mailbox_post(s->events, &ev->item);
}

/* Hands the delivery back to the loop in its own event, with the command attached for the
 * sake of the message. Nothing is allocated, so the loop hears of the end of every
 * dead-letter command and its count of those in flight comes back down. */
static void dead_letter_done(Session *s, Command *cmd, bool ok, const char *message) {
        Delivery *d = TAKE_PTR(cmd->delivery);

        if (message && message != cmd->error)
                snprintf(cmd->error, sizeof cmd->error, "%s", message);
        d->dead_letter = cmd;
        d->event.public = (AmqpEvent) {
                .type = AMQP_EVENT_DEAD_LETTERED,
                .epoch = cmd->epoch,
                .delivery = &d->public,
                .ok = ok,
                .message = message ? cmd->error : NULL,
        };
        mailbox_post(s->events, &d->event.item);
}

static int check_reply(Session *s, const char *what, char *error, size_t size) {
        amqp_rpc_reply_t reply = amqp_get_rpc_reply(s->conn);

        if (reply.reply_type == AMQP_RESPONSE_NORMAL)
                return 0;
        rpc_reply_format(reply, what, error, size);
        return -EPROTO;
}

static amqp_table_t queue_arguments(Session *s, amqp_table_entry_t entries[static 2]) {
        size_t n = 0;

        entries[n++] = (amqp_table_entry_t) {
                .key = amqp_cstring_bytes("x-dead-letter-exchange"),
                .value = { .kind = AMQP_FIELD_KIND_UTF8,
                           .value.bytes = amqp_cstring_bytes(s->dead_letter_exchange) },
        };
        if (s->queue_type == QUEUE_TYPE_QUORUM)
                entries[n++] = (amqp_table_entry_t) {
                        .key = amqp_cstring_bytes("x-queue-type"),
                        .value = { .kind = AMQP_FIELD_KIND_UTF8, .value.bytes = amqp_cstring_bytes("quorum") },
                };
        return (amqp_table_t) { .num_entries = (int) n, .entries = entries };
}

static amqp_table_t quorum_arguments(Session *s, amqp_table_entry_t *entry) {
        if (s->queue_type != QUEUE_TYPE_QUORUM)
                return amqp_empty_table;
        *entry = (amqp_table_entry_t) {
                .key = amqp_cstring_bytes("x-queue-type"),
                .value = { .kind = AMQP_FIELD_KIND_UTF8, .value.bytes = amqp_cstring_bytes("quorum") },
        };
        return (amqp_table_t) { .num_entries = 1, .entries = entry };
}

/* After the broker closed the topology channel over a declaration it refused. */
static int reopen_topology_channel(Session *s, char *error, size_t size) {
        amqp_channel_close_ok_t close_ok = { 0 };

        if (amqp_send_method(s->conn, TOPOLOGY_CHANNEL, AMQP_CHANNEL_CLOSE_OK_METHOD, &close_ok) < 0) {
                snprintf(error, size, "channel.close-ok: send failed");
                return -EIO;
        }
        amqp_channel_open(s->conn, TOPOLOGY_CHANNEL);
        return check_reply(s, "channel.open (topology)", error, size);
}

/* The queue may exist with other arguments (operators set the DLX or the type by policy, or an
 * older deployment made it): use it as it is, with a warning, rather than fail every connect. */
static int declare_queue(Session *s, const char *name, amqp_table_t arguments, const char *wanted, char *error,
                         size_t size) {
        amqp_rpc_reply_t reply;
        char msg[512];
        int r;

        amqp_queue_declare(s->conn, TOPOLOGY_CHANNEL, amqp_cstring_bytes(name), 0, 1, 0, 0, arguments);
        reply = amqp_get_rpc_reply(s->conn);
        if (reply.reply_type == AMQP_RESPONSE_NORMAL)
                return 0;
        if (!rpc_reply_is_channel_close(reply, AMQP_PRECONDITION_FAILED)) {
                rpc_reply_format(reply, "queue.declare", error, size);
                return -EPROTO;
        }

        /* The broker closed the channel over it: reopen, and make sure the queue is there. */
        r = reopen_topology_channel(s, error, size);
        if (r < 0)
                return r;
        amqp_queue_declare(s->conn, TOPOLOGY_CHANNEL, amqp_cstring_bytes(name), 1, 0, 0, 0, amqp_empty_table);
        if (check_reply(s, "queue.declare (passive)", error, size) < 0)
                return -EPROTO;
        snprintf(msg, sizeof msg, "Queue %s exists with other arguments than the transmitter declares (%s); using it as it is",
                 name, wanted);
        post_event(s, AMQP_EVENT_WARNING, 0, true, msg);
        return 0;
}

/* A binding that exists already is the usual case, but RabbitMQ 3.x adds even that in a metadata
 * transaction that waits for every node of the cluster: with a node frozen (SIGSTOP, a hung host)
 * it hangs until net_ticktime (60 s) takes that node for gone, which would hold the failover to
 * the healthy nodes up as long. So the bindings are asked for without waiting (nowait); the
 * declarations before them, which answer at once, are waited for, and a refused binding closes
 * the topology channel, which read_frames() reports like any channel closed by the broker. */
static int bind_nowait(Session *s, const char *queue, const char *exchange, const char *routing_key, char *error,
                       size_t size) {
        amqp_queue_bind_t bind = {
                .queue = amqp_cstring_bytes(queue),
                .exchange = amqp_cstring_bytes(exchange),
                .routing_key = amqp_cstring_bytes(routing_key),
                .nowait = 1,
                .arguments = amqp_empty_table,
        };

        if (amqp_send_method(s->conn, TOPOLOGY_CHANNEL, AMQP_QUEUE_BIND_METHOD, &bind) != AMQP_STATUS_OK) {
                snprintf(error, size, "queue.bind %s: send failed", queue);
                return -EIO;
        }
        return 0;
}

static int declare_topology(Session *s, char *error, size_t size) {
        amqp_table_entry_t entry, entries[2];
        char wanted[300];
        int r;

        amqp_exchange_declare(s->conn, TOPOLOGY_CHANNEL, amqp_cstring_bytes(s->exchange), amqp_cstring_bytes("topic"),
                              0, 1, 0, 0, amqp_empty_table);
        if (check_reply(s, "exchange.declare", error, size) < 0)
                return -EPROTO;

        amqp_exchange_declare(s->conn, TOPOLOGY_CHANNEL, amqp_cstring_bytes(s->dead_letter_exchange),
                              amqp_cstring_bytes("fanout"), 0, 1, 0, 0, amqp_empty_table);
        if (check_reply(s, "exchange.declare (dead-letter)", error, size) < 0)
                return -EPROTO;

        r = declare_queue(s, s->dead_queue, quorum_arguments(s, &entry),
                          s->queue_type == QUEUE_TYPE_QUORUM ? "x-queue-type=quorum" : "none", error, size);
        if (r < 0)
                return r;

        snprintf(wanted, sizeof wanted, "x-dead-letter-exchange=%s%s", s->dead_letter_exchange,
                 s->queue_type == QUEUE_TYPE_QUORUM ? ", x-queue-type=quorum" : "");
        r = declare_queue(s, s->queue, queue_arguments(s, entries), wanted, error, size);
        if (r < 0)
                return r;

        /* Last: the channel handles its methods in order, so a binding that waits holds up only
         * what comes after it on the topology channel, which is nothing. */
        r = bind_nowait(s, s->dead_queue, s->dead_letter_exchange, "", error, size);
        if (r < 0)
                return r;
        return bind_nowait(s, s->queue, s->exchange, "approved.*", error, size);
}

static void reading_reset(Session *s);

static void ack_report_flush(Session *s);

static void session_close(Session *s) {
        ack_report_flush(s);
        if (!s->conn)
                return;
        /* A clean close where the broker still answers; a dead socket fails fast, and so does one
         * that stop_thread() shut down because the broker stopped answering. */
        if (s->connected)
                (void) amqp_connection_close(s->conn, AMQP_REPLY_SUCCESS);
        pthread_mutex_lock(&s->lock);
        (void) amqp_destroy_connection(s->conn);
        s->socket_fd = -1;
        pthread_mutex_unlock(&s->lock);
        s->conn = NULL;
        s->connected = false;
        reading_reset(s);
        amqp_bytes_free(s->consumer_tag);
        s->consumer_tag = amqp_empty_bytes;
        s->consuming = false;
        s->broker_cancelled = false;
}

static int start_consuming(Session *s, char *error, size_t size) {
        amqp_basic_consume_ok_t *consume_ok;

        if (atomic_load(&s->cancel_requested))
                return 0;
        consume_ok = amqp_basic_consume(s->conn, CONSUME_CHANNEL, amqp_cstring_bytes(s->queue), amqp_empty_bytes, 0,
                                        0, 0, amqp_empty_table);
        if (check_reply(s, "basic.consume", error, size) < 0)
                return -EPROTO;
        amqp_bytes_free(s->consumer_tag);
        s->consumer_tag = amqp_bytes_malloc_dup(consume_ok->consumer_tag);
        if (!s->consumer_tag.bytes) {
                snprintf(error, size, "out of memory");
                return -ENOMEM;
        }
        s->consuming = true;
        return 0;
}

static int session_open(Session *s, const BrokerUrl *url, char *error, size_t size) {
        char connection_name[300];
        BrokerConnectSettings settings = {
                .ca_file = s->ca_file,
                .connect_timeout_s = s->connect_timeout_s,
                .rpc_timeout_s = s->connect_timeout_s,
                .heartbeat_s = s->heartbeat_s,
                .connection_name = connection_name,
                .consumer = true,
        };
        int r;

        snprintf(connection_name, sizeof connection_name, "transmitter@%s", s->instance_id);
        s->conn = amqp_new_connection();
        if (!s->conn)
                return -ENOMEM;
        r = broker_open_socket(s->conn, url, &settings, error, size);
        if (r < 0)
                return r;
        /* Before the login: a login that a frozen broker never answers is broken from here. */
        pthread_mutex_lock(&s->lock);
        s->socket_fd = amqp_get_sockfd(s->conn);
        pthread_mutex_unlock(&s->lock);
        r = broker_login(s->conn, url, &settings, error, size);
        if (r < 0)
                return r;
        s->connected = true;
        s->cancel_ok_accepted =
                amqp_properties_capability(amqp_get_server_properties(s->conn), "accept_consumer_cancel_ok");

        amqp_channel_open(s->conn, CONSUME_CHANNEL);
        if (check_reply(s, "channel.open", error, size) < 0)
                return -EPROTO;
        amqp_channel_open(s->conn, TOPOLOGY_CHANNEL);
        if (check_reply(s, "channel.open (topology)", error, size) < 0)
                return -EPROTO;

        if (declare_topology(s, error, size) < 0)
                return -EPROTO;

        amqp_basic_qos(s->conn, CONSUME_CHANNEL, 0, (uint16_t) MIN(s->prefetch, 65535u), 0);
        if (check_reply(s, "basic.qos", error, size) < 0)
                return -EPROTO;

        amqp_channel_open(s->conn, PUBLISH_CHANNEL);
        if (check_reply(s, "channel.open (dead-letter)", error, size) < 0)
                return -EPROTO;
        amqp_channel_open(s->conn, PROBE_CHANNEL);
        if (check_reply(s, "channel.open (probe)", error, size) < 0)
                return -EPROTO;
        amqp_confirm_select(s->conn, PUBLISH_CHANNEL);
        if (check_reply(s, "confirm.select", error, size) < 0)
                return -EPROTO;

        return start_consuming(s, error, size);
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
static int delivery_begin(Session *s, const amqp_frame_t *frame, char *error, size_t size) {
        const amqp_basic_properties_t *p = frame->payload.properties.decoded;
        uint64_t body_size = frame->payload.properties.body_size;
        size_t extra = s->reading_routing_key.len + bytes_size(p, AMQP_BASIC_CONTENT_TYPE_FLAG, p->content_type) +
                       bytes_size(p, AMQP_BASIC_CONTENT_ENCODING_FLAG, p->content_encoding) +
                       bytes_size(p, AMQP_BASIC_CORRELATION_ID_FLAG, p->correlation_id) +
                       bytes_size(p, AMQP_BASIC_REPLY_TO_FLAG, p->reply_to) +
                       bytes_size(p, AMQP_BASIC_EXPIRATION_FLAG, p->expiration) +
                       bytes_size(p, AMQP_BASIC_MESSAGE_ID_FLAG, p->message_id) +
                       bytes_size(p, AMQP_BASIC_TYPE_FLAG, p->type) +
                       bytes_size(p, AMQP_BASIC_USER_ID_FLAG, p->user_id) +
                       bytes_size(p, AMQP_BASIC_APP_ID_FLAG, p->app_id) +
                       bytes_size(p, AMQP_BASIC_CLUSTER_ID_FLAG, p->cluster_id);
        Delivery *d;
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
        *d = (Delivery) {
                .public = {
                        .epoch = s->epoch,
                        .tag = s->reading_tag,
                        .redelivered = s->reading_redelivered,
                        .body = d->data,
                        .body_size = (size_t) body_size,
                },
                .routing_key = s->reading_routing_key,
                .properties = *p,
        };
        d->event.public = (AmqpEvent) { .type = AMQP_EVENT_DELIVERY, .epoch = s->epoch, .delivery = &d->public };

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
                int r;

                init_amqp_pool(&d->headers_pool, 512);
                d->has_headers_pool = true;
                if (!s->headers_scratch)
                        s->headers_scratch = malloc(AMQP_HEADERS_ENCODED_MAX);
                r = s->headers_scratch ? amqp_headers_copy(&p->headers, &d->properties.headers, &d->headers_pool,
                                                           s->headers_scratch)
                                       : -ENOMEM;
                if (r == -ENOMEM) {
                        delivery_free(d);
                        snprintf(error, size, "out of memory copying message headers");
                        return -ENOMEM;
                }
                /* A table that does not encode again could not go to the dead-letter exchange
                 * either: the message goes on without it, rather than being refused here, which
                 * ends the connection, and redelivered, forever. */
                if (r < 0)
                        d->properties.headers = amqp_empty_table;
                d->public.delivery_count = amqp_headers_delivery_count(&d->properties.headers);
        } else
                d->properties.headers = amqp_empty_table;

        s->reading = d;
        s->reading_received = 0;
        return 0;
}

/* trace: the report of an ack command that went out; it waits for the next delivery (the broker
 * refilling the window the ack freed) and travels with it. */
static void ack_report_begin(Session *s, const Command *cmd) {
        ack_report_flush(s);
        s->ack_report = event_new(AMQP_EVENT_ACKS_SENT, cmd->epoch, true, NULL);
        if (s->ack_report) /* without memory this ack goes untold: a debugging aid */
                s->ack_report->public.ack_report = (AmqpAckReport) {
                        .queued_at = cmd->queued_at,
                        .sent_at = now(CLOCK_MONOTONIC),
                };
}

/* No delivery came within the idle wait, another ack went out first, or the connection ends. */
static void ack_report_flush(Session *s) {
        if (s->ack_report)
                mailbox_post(s->events, &TAKE_PTR(s->ack_report)->item);
}

static void delivery_complete(Session *s, MailboxList *inbox) {
        Delivery *d = TAKE_PTR(s->reading);

        d->public.received_at = now(CLOCK_MONOTONIC);
        s->reading_method = false;
        if (s->ack_report) {
                s->ack_report->public.ack_report.refilled_at = d->public.received_at;
                mailbox_list_append(inbox, &TAKE_PTR(s->ack_report)->item);
        }
        mailbox_list_append(inbox, &d->event.item);
}

static void reading_reset(Session *s) {
        s->reading = delivery_free(s->reading);
        s->reading_method = false;
        s->returned_remaining = 0;
        s->returned_expect_header = false;
}

/* Content frames: the header and body frames that follow basic.deliver on the consume channel
 * (the delivery being read) or basic.return on the publish channel (skipped). AMQP sends a
 * message's frames in order on its channel; other channels' frames may come in between. */
static int handle_content(Session *s, const amqp_frame_t *frame, MailboxList *inbox, char *error, size_t size) {
        bool header = frame->frame_type == AMQP_FRAME_HEADER;
        int r;

        if (frame->channel == PUBLISH_CHANNEL) {
                if (header && s->returned_expect_header) {
                        s->returned_expect_header = false;
                        s->returned_remaining = frame->payload.properties.body_size;
                } else if (!header)
                        s->returned_remaining -= MIN(s->returned_remaining, (uint64_t) frame->payload.body_fragment.len);
                return 0;
        }
        if (frame->channel != CONSUME_CHANNEL)
                return 0;

        if (header) {
                if (!s->reading_method || s->reading) {
                        snprintf(error, size, "content header without basic.deliver");
                        return -EPROTO;
                }
                r = delivery_begin(s, frame, error, size);
                if (r < 0)
                        return r;
        } else {
                const amqp_bytes_t *f = &frame->payload.body_fragment;

                if (!s->reading || f->len > s->reading->public.body_size - s->reading_received) {
                        snprintf(error, size, "unexpected content body frame");
                        return -EPROTO;
                }
                memcpy(s->reading->data + s->reading_received, f->bytes, f->len);
                s->reading_received += f->len;
        }
        if (s->reading_received == s->reading->public.body_size)
                delivery_complete(s, inbox);
        return 0;
}

static int handle_frame(Session *s, const amqp_frame_t *frame, MailboxList *inbox, char *error, size_t size) {
        if (frame->frame_type == AMQP_FRAME_HEADER || frame->frame_type == AMQP_FRAME_BODY)
                return handle_content(s, frame, inbox, error, size);
        if (frame->frame_type != AMQP_FRAME_METHOD)
                return 0;

        switch (frame->payload.method.id) {
        case AMQP_BASIC_DELIVER_METHOD: {
                const amqp_basic_deliver_t *m = frame->payload.method.decoded;

                if (frame->channel != CONSUME_CHANNEL || s->reading_method) {
                        snprintf(error, size, "unexpected basic.deliver");
                        return -EPROTO;
                }
                /* The routing key goes into the delivery at its header frame; keep it until then. */
                memcpy(s->reading_routing_key_buffer, m->routing_key.bytes, MIN(m->routing_key.len, (size_t) 255));
                s->reading_routing_key = (amqp_bytes_t) { .len = MIN(m->routing_key.len, (size_t) 255),
                                                          .bytes = s->reading_routing_key_buffer };
                s->reading_tag = m->delivery_tag;
                s->reading_redelivered = m->redelivered;
                s->reading_method = true;
                return 0;
        }
        case AMQP_BASIC_ACK_METHOD:
                if (frame->channel == PUBLISH_CHANNEL)
                        s->confirm = CONFIRM_ACK;
                return 0;
        case AMQP_BASIC_NACK_METHOD:
                if (frame->channel == PUBLISH_CHANNEL)
                        s->confirm = CONFIRM_NACK;
                return 0;
        case AMQP_BASIC_RETURN_METHOD:
                /* Unroutable (no queue bound to the dead-letter exchange): confirmed all the same.
                 * The returned message's content frames follow; handle_content() skips them. */
                s->confirm_returned = true;
                s->returned_expect_header = true;
                return 0;
        case AMQP_BASIC_CANCEL_METHOD: {
                const amqp_basic_cancel_t *m = frame->payload.method.decoded;

                /* Ours only, and not one a stop asked for (its basic.cancel-ok may cross it). */
                if (frame->channel != CONSUME_CHANNEL || !s->consuming || m->consumer_tag.len != s->consumer_tag.len ||
                    memcmp(m->consumer_tag.bytes, s->consumer_tag.bytes, m->consumer_tag.len) != 0)
                        return 0;
                s->consuming = false;
                if (s->cancel_ok_accepted) {
                        /* RabbitMQ 4.3.7 and later keep a consumer cancelled for a consumer
                         * timeout around until the client answers, or a while longer. */
                        amqp_basic_cancel_ok_t ok = { .consumer_tag = m->consumer_tag };

                        if (amqp_send_method(s->conn, CONSUME_CHANNEL, AMQP_BASIC_CANCEL_OK_METHOD, &ok) !=
                            AMQP_STATUS_OK) {
                                snprintf(error, size, "basic.cancel-ok: send failed");
                                return -EIO;
                        }
                }
                s->broker_cancelled = !atomic_load(&s->cancel_requested);
                return 0;
        }
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
                (void) amqp_send_method(s->conn, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
                s->connected = false;
                return -ECONNRESET;
        }
        case AMQP_CONNECTION_BLOCKED_METHOD:
                s->blocked = true;
                post_event(s, AMQP_EVENT_WARNING, s->epoch, true, "broker blocked the connection (resource alarm)");
                return 0;
        case AMQP_CONNECTION_UNBLOCKED_METHOD:
                s->blocked = false;
                post_event(s, AMQP_EVENT_WARNING, s->epoch, true, "broker unblocked the connection");
                return 0;
        default:
                return 0;
        }
}

/* Reads and handles frames: with a zero timeout what is there (at most READ_BURST),
 * otherwise until the pending publisher confirm arrived. Also where rabbitmq-c sends and
 * checks heartbeats. Deliveries go to the loop in one go. Returns the number of frames read. */
static int read_frames(Session *s, bool until_confirm, char *error, size_t size) {
        struct timeval tv = { .tv_sec = until_confirm ? (time_t) MAX(2 * s->heartbeat_s, 30u) : 0 };
        MailboxList inbox = { 0 };
        unsigned i;
        int r = 0;

        for (i = 0; until_confirm ? s->confirm == CONFIRM_NONE : i < READ_BURST; i++) {
                amqp_frame_t frame;
                int status;

                /* What one recv() brought is used up: a second would only say EAGAIN, after which
                 * rabbitmq-c polls once more; the caller's poll() waits instead. */
                if (!until_confirm && i > 0 && !amqp_frames_enqueued(s->conn) && !amqp_data_in_buffer(s->conn))
                        break;
                amqp_maybe_release_buffers(s->conn);
                status = amqp_simple_wait_frame_noblock(s->conn, &frame, &tv);
                if (status == AMQP_STATUS_TIMEOUT && !until_confirm)
                        break;
                if (status != AMQP_STATUS_OK) {
                        snprintf(error, size, "%s: %s", until_confirm ? "waiting for a publisher confirm" : "reading",
                                 amqp_error_string2(status));
                        r = -EIO;
                        break;
                }
                r = handle_frame(s, &frame, &inbox, error, size);
                if (r < 0)
                        break;
        }

        /* Once per call, not per frame: a burst's frames came with one recv(), and a wait for a
         * confirm ends at the frame that brought it. */
        if (i > 0) {
                s->last_frame_at = now(CLOCK_MONOTONIC);
                s->probe_sent_at = 0;
        }
        mailbox_post_list(s->events, &inbox);
        return r < 0 ? r : (int) i;
}

static int dead_letter_publish(Session *s, Delivery *d, const DeadLetterReason *reason, bool *ret_ok,
                               char *error, size_t size) {
        amqp_basic_properties_t props = d->properties;
        const amqp_table_t *orig = (props._flags & AMQP_BASIC_HEADERS_FLAG) ? &props.headers : NULL;
        size_t n_orig = orig ? (size_t) orig->num_entries : 0, n = 0;
        _cleanup_free_ amqp_table_entry_t *entries = NULL;
        int status, r;

        entries = calloc(n_orig + 4, sizeof *entries);
        if (!entries)
                return -ENOMEM;
        /* Keep the publisher's headers, and a replay's record (x-transmitter-replay-count, ...), but
         * ours replace any of the same name. */
        for (size_t i = 0; i < n_orig; i++) {
                const amqp_bytes_t *k = &orig->entries[i].key;
                if (dead_letter_header_is_own(k->bytes, k->len))
                        continue;
                entries[n++] = orig->entries[i];
        }
        entries[n++] = (amqp_table_entry_t) {
                .key = amqp_cstring_bytes(DEAD_LETTER_HEADER_REASON),
                .value = { .kind = AMQP_FIELD_KIND_UTF8, .value.bytes = amqp_cstring_bytes(reason->reason) },
        };
        if (reason->http_status > 0)
                entries[n++] = (amqp_table_entry_t) {
                        .key = amqp_cstring_bytes(DEAD_LETTER_HEADER_HTTP_STATUS),
                        .value = { .kind = AMQP_FIELD_KIND_I32, .value.i32 = (int32_t) reason->http_status },
                };
        if (reason->batch_id[0])
                entries[n++] = (amqp_table_entry_t) {
                        .key = amqp_cstring_bytes(DEAD_LETTER_HEADER_BATCH_ID),
                        .value = { .kind = AMQP_FIELD_KIND_UTF8,
                                   .value.bytes = amqp_cstring_bytes(reason->batch_id) },
                };
        /* When, for transmitter dead-letters list and --older-than: the timestamp property is the
         * publisher's, and is often not set at all. */
        entries[n++] = (amqp_table_entry_t) {
                .key = amqp_cstring_bytes(DEAD_LETTER_HEADER_DEAD_LETTERED_AT),
                .value = { .kind = AMQP_FIELD_KIND_TIMESTAMP, .value.u64 = now(CLOCK_REALTIME) / USEC_PER_SEC },
        };
        props.headers = (amqp_table_t) { .num_entries = (int) n, .entries = entries };
        props._flags |= AMQP_BASIC_HEADERS_FLAG;

        s->confirm = CONFIRM_NONE;
        s->confirm_returned = false;
        status = amqp_basic_publish(s->conn, PUBLISH_CHANNEL, amqp_cstring_bytes(s->dead_letter_exchange),
                                    d->routing_key, 1, 0, &props,
                                    (amqp_bytes_t) { .len = d->public.body_size, .bytes = (void *) d->public.body });
        if (status != AMQP_STATUS_OK) {
                snprintf(error, size, "dead-letter publish: %s", amqp_error_string2(status));
                return -EIO;
        }
        r = read_frames(s, true, error, size);
        if (r < 0)
                return r;
        if (s->confirm_returned) {
                /* No queue is bound to the dead-letter exchange (someone deleted <queue>.dead):
                 * rejecting the original would send it there as well, where it would vanish.
                 * A new connection declares the topology again, and the broker redelivers the
                 * original, unacked, to be dead-lettered then. */
                snprintf(error, size, "dead-letter exchange %s routed the message to no queue (was %s deleted?); "
                         "reconnecting to declare it again",
                         s->dead_letter_exchange, s->dead_queue);
                return -ENOENT;
        }
        *ret_ok = s->confirm == CONFIRM_ACK;
        return 0;
}

static int settle(Session *s, const Command *cmd, char *error, size_t size) {
        for (size_t i = 0; i < cmd->n_acks; i++) {
                const AckCommand *a = &cmd->acks[i];
                int status;

                if (a->kind == SETTLE_ACK)
                        status = amqp_basic_ack(s->conn, CONSUME_CHANNEL, a->tag, a->multiple);
                else if (a->kind == SETTLE_RETURN_FAILED)
                        status = amqp_basic_reject(s->conn, CONSUME_CHANNEL, a->tag, 1);
                else
                        status = amqp_basic_nack(s->conn, CONSUME_CHANNEL, a->tag, a->multiple,
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
static int run_commands(Session *s, bool live, char *error, size_t size) {
        int ret = 0;

        for (MailboxItem *i = mailbox_take(s->commands), *next; i; i = next) {
                Command *cmd;
                bool current;
                int r = 0;

                next = i->next;
                if (i == &s->stop)
                        continue;
                cmd = container_of(i, Command, item);
                current = live && ret >= 0 && cmd->epoch == s->epoch;

                switch (cmd->type) {
                case COMMAND_SETTLE:
                        if (current)
                                r = settle(s, cmd, error, size);
                        if (current && r >= 0 && atomic_load(&s->trace))
                                ack_report_begin(s, cmd);
                        break;
                case COMMAND_DEAD_LETTER: {
                        bool ok = false;
                        if (current)
                                r = dead_letter_publish(s, cmd->delivery, &cmd->reason, &ok, error, size);
                        /* A message says the publish did not happen for the connection's sake (the
                         * broker redelivers the original); none, that the broker refused it. */
                        /* The command goes back with its result. */
                        dead_letter_done(s, TAKE_PTR(cmd), ok && r >= 0,
                                         !current ? "the connection to RabbitMQ is gone" : r < 0 ? error : NULL);
                        break;
                }
                case COMMAND_CANCEL:
                        if (live && ret >= 0 && s->consuming) {
                                amqp_basic_cancel(s->conn, CONSUME_CHANNEL, s->consumer_tag);
                                r = check_reply(s, "basic.cancel", error, size);
                                s->consuming = false;
                        }
                        break;
                }
                if (r < 0 && ret >= 0)
                        ret = r;
                free(cmd);
        }
        return ret;
}

/* Why the broker cancelled the consumer, as far as it tells: AMQP's basic.cancel carries no
 * reason, so the queue is looked up. -EPROTO when even that fails. */
static int cancel_reason(Session *s, char *why, size_t why_size, char *error, size_t size) {
        amqp_queue_declare_ok_t *ok;
        amqp_rpc_reply_t reply;
        int r;

        ok = amqp_queue_declare(s->conn, TOPOLOGY_CHANNEL, amqp_cstring_bytes(s->queue), 1, 0, 0, 0, amqp_empty_table);
        reply = amqp_get_rpc_reply(s->conn);
        if (reply.reply_type == AMQP_RESPONSE_NORMAL) {
                snprintf(why, why_size,
                         "queue %s is still there (%" PRIu32 " message(s) ready, %" PRIu32 " consumer(s)): the node "
                         "holding it failed or its mirrored leader moved, or (RabbitMQ 4.3 and later, quorum queues) "
                         "a delivery outlived the consumer timeout",
                         s->queue, ok->message_count, ok->consumer_count);
                return 0;
        }
        if (!rpc_reply_is_channel_close(reply, AMQP_NOT_FOUND)) {
                rpc_reply_format(reply, "queue.declare (passive)", error, size);
                return -EPROTO;
        }
        r = reopen_topology_channel(s, error, size);
        if (r < 0)
                return r;
        snprintf(why, why_size, "queue %s was deleted", s->queue);
        return 0;
}

/* After the broker's basic.cancel: says why, declares the topology again (a deleted queue comes
 * back, empty) and consumes again, on the same connection and channel, so that the deliveries
 * held stay good to settle. */
static int consume_again(Session *s, char *error, size_t size) {
        char why[512];
        int r;

        s->broker_cancelled = false;
        r = cancel_reason(s, why, sizeof why, error, size);
        if (r < 0)
                return r;
        post_event(s, AMQP_EVENT_CANCELLED, s->epoch, true, why);
        r = declare_topology(s, error, size);
        if (r < 0)
                return r;
        return start_consuming(s, error, size);
}

/* Sends a probe after PROBE_AFTER of silence; -ETIMEDOUT once one went unanswered for
 * PROBE_TIMEOUT. Returns how long poll() may wait before the next look. */
static int check_liveness(Session *s, int *ret_wait_ms, char *error, size_t size) {
        usec_t t = now(CLOCK_MONOTONIC), due;

        /* No heartbeats asked for: no liveness check either. */
        if (s->heartbeat_s == 0)
                return 0;
        if (s->blocked) {
                s->last_frame_at = t;
                s->probe_sent_at = 0;
                return 0;
        }
        if (s->probe_sent_at == 0 && t >= s->last_frame_at + PROBE_AFTER) {
                amqp_basic_qos_t qos = { 0 };

                if (amqp_send_method(s->conn, PROBE_CHANNEL, AMQP_BASIC_QOS_METHOD, &qos) != AMQP_STATUS_OK) {
                        snprintf(error, size, "sending a liveness probe failed");
                        return -EIO;
                }
                s->probe_sent_at = t;
        }
        if (s->probe_sent_at != 0 && t >= s->probe_sent_at + PROBE_TIMEOUT) {
                snprintf(error, size, "the broker did not answer for %" PRIu64 " s (node frozen or unreachable?)",
                         (t - s->last_frame_at) / USEC_PER_SEC);
                return -ETIMEDOUT;
        }
        due = s->probe_sent_at != 0 ? s->probe_sent_at + PROBE_TIMEOUT : s->last_frame_at + PROBE_AFTER;
        *ret_wait_ms = (int) MIN((due - MIN(due, t) + USEC_PER_MSEC - 1) / USEC_PER_MSEC, (usec_t) *ret_wait_ms);
        return 0;
}

/* poll() on the socket and the commands: what poll() returns, 0 after EINTR, or -errno (error
 * filled in). While streaming, with the low-water mark (STREAM_WAKE_BYTES), lifted again right
 * after: rabbitmq-c's own waits, for an RPC's reply or a publisher confirm, must end at their
 * first byte, so a mark that cannot be lifted ends the connection. One that cannot be set only
 * costs the wake-ups it would have saved. */
static int poll_broker(Session *s, struct pollfd p[static 2], int wait_ms, char *error, size_t size) {
        usec_t wait_usec = (usec_t) wait_ms * USEC_PER_MSEC;
        bool lowat = s->streaming && wait_usec > 0 &&
                     setsockopt(p[0].fd, SOL_SOCKET, SO_RCVLOWAT, &(int) { STREAM_WAKE_BYTES }, sizeof(int)) >= 0;
        int r;

        if (lowat)
                wait_usec = MIN(wait_usec, STREAM_WAKE_USEC);
        r = ppoll(p, 2,
                  &(struct timespec) { .tv_sec = (time_t) (wait_usec / USEC_PER_SEC),
                                       .tv_nsec = (long) (wait_usec % USEC_PER_SEC) * 1000 },
                  NULL);
        if (r < 0) {
                r = errno == EINTR ? 0 : -errno;
                if (r < 0)
                        snprintf(error, size, "poll: %s", STRERROR(r));
        }
        if (lowat && setsockopt(p[0].fd, SOL_SOCKET, SO_RCVLOWAT, &(int) { 1 }, sizeof(int)) < 0) {
                r = -errno;
                snprintf(error, size, "lifting the socket's low-water mark: %s", STRERROR(r));
        }
        return r;
}

static int session_run(Session *s, char *error, size_t size) {
        /* Wake often enough to send heartbeats on time: rabbitmq-c only does it when called. */
        int idle_ms = s->heartbeat_s > 0 ? (int) MIN(s->heartbeat_s * 1000u / 4, 1000u) : 1000;

        s->last_frame_at = now(CLOCK_MONOTONIC);
        s->probe_sent_at = 0;
        s->blocked = false;
        s->streaming = false;
        for (;;) {
                struct pollfd p[2] = {
                        { .fd = amqp_get_sockfd(s->conn), .events = POLLIN },
                        { .fd = mailbox_fd(s->commands), .events = POLLIN },
                };
                int wait_ms = idle_ms;
                usec_t previous_read_at;
                bool buffered;
                int r;

                r = run_commands(s, true, error, size);
                if (r < 0)
                        return r;
                if (atomic_load(&s->stop_requested))
                        return 0;

                r = check_liveness(s, &wait_ms, error, size);
                if (r < 0)
                        return r;

                buffered = amqp_frames_enqueued(s->conn) || amqp_data_in_buffer(s->conn);
                /* Commands wake it (and are taken at the top); mailbox_take() clears their fd. */
                r = poll_broker(s, p, buffered ? 0 : wait_ms, error, size);
                if (r < 0)
                        return r;
                if (r == 0 && !buffered && !s->streaming)
                        ack_report_flush(s);

                previous_read_at = s->last_frame_at;
                r = read_frames(s, false, error, size);
                if (r < 0)
                        return r;
                s->streaming = r >= STREAM_MIN_FRAMES ||
                               (r > 0 && s->last_frame_at - previous_read_at < STREAM_WAKE_USEC / 4);
                if (s->broker_cancelled) {
                        r = consume_again(s, error, size);
                        if (r < 0)
                                return r;
                }
        }
}

/* Waits out a reconnect backoff, still answering commands. */
static void wait_backoff(Session *s, usec_t delay) {
        usec_t until = now(CLOCK_MONOTONIC) + delay;
        char ignored[8];

        for (;;) {
                usec_t t = now(CLOCK_MONOTONIC);
                struct pollfd p = { .fd = mailbox_fd(s->commands), .events = POLLIN };

                (void) run_commands(s, false, ignored, sizeof ignored);
                if (atomic_load(&s->stop_requested) || t >= until)
                        return;
                (void) poll(&p, 1, (int) ((until - t + USEC_PER_MSEC - 1) / USEC_PER_MSEC));
        }
}

/* One connection at a time, to the URLs of the list in turn (architecture §10): a connect that fails
 * moves on to the next URL at once, and so does a lost connection, so that a dead node costs
 * one attempt and the others are tried before any wait. Only a whole round of failed attempts
 * waits out the backoff before the next. */
static void *session_thread(void *userdata) {
        Session *s = userdata;
        usec_t backoff = RECONNECT_BACKOFF_MIN;
        size_t next = 0, failed = 0;

        /* Shown by top -H, ps -L and /proc/PID/task/TID/comm: which thread spends the CPU. */
        (void) pthread_setname_np(pthread_self(), "amqp");
        while (!atomic_load(&s->stop_requested)) {
                size_t i = next;
                char error[256] = "";
                usec_t since;
                int r;

                next = (i + 1) % s->urls.n;
                r = session_open(s, &s->urls.urls[i], error, sizeof error);
                if (r < 0) {
                        session_close(s);
                        post_connection_event(s, AMQP_EVENT_DISCONNECTED, 0, i, false, error);
                } else {
                        s->epoch++;
                        post_connection_event(s, AMQP_EVENT_CONNECTED, s->epoch, i, true, NULL);
                        since = now(CLOCK_MONOTONIC);

                        r = session_run(s, error, sizeof error);
                        if (r < 0)
                                s->connected = false; /* its socket failed: no clean close to try */
                        session_close(s);
                        post_connection_event(s, AMQP_EVENT_DISCONNECTED, s->epoch, i, r >= 0,
                                              r >= 0 ? "closed" : error);
                        if (now(CLOCK_MONOTONIC) - since >= CONNECTION_STABLE_AFTER) {
                                failed = 0;
                                backoff = RECONNECT_BACKOFF_MIN;
                                continue;
                        }
                }
                if (++failed >= s->urls.n && !atomic_load(&s->stop_requested)) {
                        failed = 0;
                        wait_backoff(s, backoff);
                        backoff = MIN(backoff * 2, RECONNECT_BACKOFF_MAX);
                }
        }

        {
                char ignored[8];
                s->epoch++; /* whatever is still queued is stale now */
                (void) run_commands(s, false, ignored, sizeof ignored);
        }
        return NULL;
}

/* The loop's side of the session. */

static void stop_thread(Session *s) {
        struct timespec deadline;

        if (!s->thread_started)
                return;
        atomic_store(&s->stop_requested, true);
        mailbox_post(s->commands, &s->stop);

        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += (time_t) (STOP_GRACE_USEC / USEC_PER_SEC);
        if (pthread_timedjoin_np(s->thread, NULL, &deadline) == 0) {
                s->thread_started = false;
                return;
        }
        /* Stuck in a blocking send or read towards a frozen broker: break the socket. */
        pthread_mutex_lock(&s->lock);
        if (s->socket_fd >= 0)
                (void) shutdown(s->socket_fd, SHUT_RDWR);
        pthread_mutex_unlock(&s->lock);
        (void) pthread_join(s->thread, NULL);
        s->thread_started = false;
}

int session_new(const AmqpSettings *settings, Mailbox *events, Session **ret) {
        _cleanup_(session_freep) Session *s = NULL;
        int r;

        s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        *s = (Session) {
                .queue_type = settings->queue_type,
                .prefetch = settings->prefetch,
                .heartbeat_s = settings->heartbeat_s,
                .connect_timeout_s = settings->connect_timeout_s,
                .events = events,
                .lock = PTHREAD_MUTEX_INITIALIZER,
                .socket_fd = -1,
                .consumer_tag = amqp_empty_bytes,
        };

        /* The parser the configuration checked the list with. */
        r = broker_url_list_parse(settings->url, &s->urls, NULL, NULL);
        if (r < 0)
                return r;
        s->exchange = strdup(settings->exchange);
        s->queue = strdup(settings->queue);
        s->dead_letter_exchange = strdup(settings->dead_letter_exchange);
        s->instance_id = strdup(settings->instance_id);
        s->ca_file = settings->ca_file ? strdup(settings->ca_file) : NULL;
        if (!s->exchange || !s->queue || !s->dead_letter_exchange || !s->instance_id ||
            (settings->ca_file && !s->ca_file))
                return -ENOMEM;
        if (asprintf(&s->dead_queue, "%s.dead", settings->queue) < 0)
                return -ENOMEM;

        r = mailbox_new(&s->commands);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(s);
        return 0;
}

int session_start(Session *s) {
        int r;

        r = pthread_create(&s->thread, NULL, session_thread, s);
        if (r != 0)
                return -r;
        s->thread_started = true;
        return 0;
}

Session *session_free(Session *s) {
        if (!s)
                return NULL;

        stop_thread(s);

        reading_reset(s);
        event_free(TAKE_PTR(s->ack_report)); /* posted at the thread's last close; this is for safety */
        free(s->headers_scratch);
        /* Commands that came after the thread's last look: their deliveries go back to the
         * broker with the connection. */
        if (s->commands)
                for (MailboxItem *i = mailbox_take(s->commands), *next; i; i = next) {
                        next = i->next;
                        if (i != &s->stop)
                                command_free(container_of(i, Command, item));
                }
        mailbox_free(s->commands);
        pthread_mutex_destroy(&s->lock);
        broker_url_list_done(&s->urls);
        free(s->ca_file);
        free(s->exchange);
        free(s->queue);
        free(s->dead_letter_exchange);
        free(s->dead_queue);
        free(s->instance_id);
        return mfree(s);
}

void session_post(Session *s, Command *cmd) {
        mailbox_post(s->commands, &cmd->item);
}

void session_set_trace(Session *s, bool trace) {
        atomic_store(&s->trace, trace);
}

void session_set_cancelled(Session *s) {
        atomic_store(&s->cancel_requested, true);
}
