/* SPDX-License-Identifier: MIT */
#pragma once

/* The RabbitMQ adapter. rabbitmq-c 0.11 blocks in login, in reading a message body and in
 * some sends (architecture §11), so the connection lives on a thread of its own (amqp/session.c).
 * The thread and the event loop talk only through two mailboxes (util/mailbox.h): events
 * (deliveries, connection changes, dead-letter results) go to the loop, commands (acks,
 * nacks, dead-letter publishes, cancel) go to the thread. No rabbitmq-c type shows here.
 *
 * Every connection has an epoch. A delivery carries the epoch it arrived on; commands for
 * an earlier epoch are dropped by the thread, so nothing is ever acked on a newer channel
 * than it was delivered on: the broker has already requeued it. */

#include <systemd/sd-event.h>

#include "core/ack-tracker.h"
#include "core/config.h"
#include "util/util.h"

typedef struct AmqpConsumer AmqpConsumer;

/* A message as the pipeline sees it. It is the head of one allocation that also holds the
 * body and what a dead-letter publish needs again (amqp/mail.h); only amqp_delivery_free()
 * frees it. */
typedef struct AmqpDelivery {
        uint64_t epoch;
        uint64_t tag;
        bool redelivered;
        unsigned delivery_count; /* x-delivery-count: how often the broker had it back (quorum queues), 0: none */
        const void *body;
        size_t body_size;
        usec_t received_at; /* CLOCK_MONOTONIC */
        const char *event_id; /* the CloudEvents id inside body, set by the pipeline; NULL: none */
        size_t event_id_len;
        int dead_letter_kind; /* the pipeline's reason while the delivery is being dead-lettered */
        long dead_letter_status; /* and the HTTP status behind it, 0: none */
} AmqpDelivery;

typedef enum AmqpEventType {
        AMQP_EVENT_CONNECTED,     /* epoch, url_index */
        AMQP_EVENT_DISCONNECTED,  /* epoch (0: a connect attempt failed), url_index, message */
        AMQP_EVENT_DELIVERY,      /* delivery, owned by the handler from now on */
        AMQP_EVENT_DEAD_LETTERED, /* delivery handed back; ok: the broker confirmed the publish */
        AMQP_EVENT_WARNING,       /* message: something the operator should see, e.g. queue arguments */
        AMQP_EVENT_CANCELLED,     /* epoch, message: the broker cancelled the consumer, and why as far as it
                                   * tells; the thread declares the topology and consumes again */
        AMQP_EVENT_ACKS_SENT,     /* ack_report: an ack command on the wire (amqp_consumer_set_trace()) */
        _AMQP_EVENT_TYPE_MAX,
} AmqpEventType;

/* The way of one ack command out (BATCH_TIMELINE), in CLOCK_MONOTONIC. */
typedef struct AmqpAckReport {
        usec_t queued_at;   /* amqp_consumer_settle() */
        usec_t sent_at;     /* the thread wrote its last frame */
        usec_t refilled_at; /* the thread read the next delivery; 0: none came within its idle wait */
} AmqpAckReport;

typedef struct AmqpEvent {
        AmqpEventType type;
        uint64_t epoch;
        AmqpDelivery *delivery;
        bool ok;
        const char *message; /* NULL for deliveries; valid until the handler returns */
        size_t url_index;    /* CONNECTED, DISCONNECTED: the URL of RABBITMQ_URL's list (0-based) the
                              * connection or the connect attempt was to */
        AmqpAckReport ack_report;
} AmqpEvent;

AmqpDelivery *amqp_delivery_free(AmqpDelivery *d);
DEFINE_TRIVIAL_CLEANUP_FUNC(AmqpDelivery *, amqp_delivery_free);

/* The event of a delivery or of a dead-letter result is part of its delivery: the handler
 * reads what it needs before it frees the delivery. message stays valid until the handler
 * returns. */
typedef void (*AmqpEventHandler)(AmqpConsumer *c, AmqpEvent *event, void *userdata);

typedef struct AmqpSettings {
        const char *url;      /* RABBITMQ_URL: one or more URLs, checked by the configuration */
        const char *ca_file;  /* amqps:// trust anchors */
        const char *exchange;
        const char *queue;
        const char *dead_letter_exchange;
        QueueType queue_type;
        unsigned prefetch;
        unsigned heartbeat_s;
        unsigned connect_timeout_s;
        const char *instance_id; /* shown as the connection name in the broker's UI */
} AmqpSettings;

/* Why a message is dead-lettered, carried as x-transmitter-* headers. */
typedef struct DeadLetterReason {
        char reason[32];   /* x-transmitter-reason: "not_json", "too_large", "http_400", ... */
        long http_status;  /* x-transmitter-http-status, 0: none */
        char batch_id[37]; /* x-transmitter-batch-id, "": none */
} DeadLetterReason;

int amqp_consumer_new(sd_event *e, const AmqpSettings *settings, AmqpEventHandler handler, void *userdata,
                      AmqpConsumer **ret);
/* Stops the thread and closes the connection: whatever is unacked goes back to the queue. */
AmqpConsumer *amqp_consumer_free(AmqpConsumer *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(AmqpConsumer *, amqp_consumer_free);

int amqp_consumer_start(AmqpConsumer *c);

/* Sends acks/nacks for deliveries of epoch. */
int amqp_consumer_settle(AmqpConsumer *c, uint64_t epoch, const AckCommand *commands, size_t n);

/* Republishes the delivery to the dead-letter exchange with the reason headers, under
 * publisher confirms. Once this returned 0, the delivery always comes back in an
 * AMQP_EVENT_DEAD_LETTERED event (sending it back needs no memory); the caller then acks it
 * (ok), rejects it (refused by the broker), or leaves it to the broker (not published because
 * the connection ends: it is redelivered). The caller must not touch the delivery meanwhile. */
int amqp_consumer_dead_letter(AmqpConsumer *c, AmqpDelivery *d, const DeadLetterReason *reason);

/* Stops consuming (basic.cancel); deliveries already on the way may still arrive. */
int amqp_consumer_cancel(AmqpConsumer *c);

/* Report each ack command's way out in an AMQP_EVENT_ACKS_SENT event, or stop doing so. */
void amqp_consumer_set_trace(AmqpConsumer *c, bool trace);
