/* SPDX-License-Identifier: MIT */
#pragma once

/* The dead-letter queue as `transmitter dead-letters` uses it: a blocking rabbitmq-c client on
 * the caller's thread (a command line tool may wait; the daemon's consumer.c may not). It owns
 * one connection with two channels and touches nothing else of consumer.c.
 *
 * Messages are fetched one at a time with basic.get and stay unacknowledged until the end, when
 * those the tool left alone are handed back (basic.nack, requeue) one by one in the order they
 * came: a classic queue puts each back at its old place, a quorum queue requeues them in that
 * order. Interrupted (a crash, kill -9, a lost connection), the broker requeues them itself:
 * nothing is lost, but a quorum queue may then change their order. A replayed message is acked only after the broker confirmed its republish,
 * and the next basic.get answers only after the broker handled that ack: however the tool is
 * interrupted, at most one message is both republished and still dead. */

#include <amqp.h>

#include "core/dead-letter-entry.h"
#include "core/dead-letter-report.h"

typedef struct DeadLetterQueue DeadLetterQueue;

typedef struct DeadLetterQueueSettings {
        const char *url;              /* RABBITMQ_URL; never shown: messages name host and port */
        const char *ca_file;          /* trust anchors for amqps:// */
        const char *queue;            /* the dead-letter queue, <RABBITMQ_QUEUE>.dead */
        unsigned heartbeat_s;
        unsigned connect_timeout_s;
        const char *instance_id;      /* part of the connection name shown by the broker */
} DeadLetterQueueSettings;

typedef struct DeadLetterMessage {
        uint64_t tag;
        bool redelivered;
        amqp_bytes_t routing_key;     /* owned */
        amqp_message_t message;       /* properties and body */
        DeadLetterHeaders headers;    /* points into message */
} DeadLetterMessage;

DeadLetterMessage *dead_letter_message_free(DeadLetterMessage *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(DeadLetterMessage *, dead_letter_message_free);

/* Connects, logs in and looks the queue up (passively: it never creates it). ret_count: the
 * messages ready in it now, the most a run reads, so that one that a replay sends back into it
 * (refused again) is not read a second time. On failure error holds one line. */
int dead_letter_queue_open(const DeadLetterQueueSettings *s, DeadLetterQueue **ret, uint64_t *ret_count, char *error,
                           size_t size);
/* Hands back every message not acked, in order, and closes the connection. */
DeadLetterQueue *dead_letter_queue_free(DeadLetterQueue *q);
DEFINE_TRIVIAL_CLEANUP_FUNC(DeadLetterQueue *, dead_letter_queue_free);

/* The next message, unacked. Returns 1 and the message, 0 when the queue has no more. */
int dead_letter_queue_get(DeadLetterQueue *q, DeadLetterMessage **ret, char *error, size_t size);

/* Republishes m to exchange with its routing key, properties and body, the x-transmitter-*
 * headers renamed (dead_letter_replay_header()) and DEAD_LETTER_HEADER_REPLAY_COUNT set to
 * replay_count, mandatory, and waits for the broker's confirm. Returns 0 when confirmed,
 * -EHOSTUNREACH when no queue is bound for the routing key, -EREMOTEIO when the broker nacked
 * it, another negative errno when the connection failed (then the queue is unusable). */
int dead_letter_queue_republish(DeadLetterQueue *q, const DeadLetterMessage *m, const char *exchange,
                                uint64_t replay_count, char *error, size_t size);

/* Acks (removes) m. */
int dead_letter_queue_ack(DeadLetterQueue *q, const DeadLetterMessage *m, char *error, size_t size);

/* The properties and headers of m as text, for show. Free with dead_letter_fields_free(). */
int dead_letter_message_fields(const DeadLetterMessage *m, DeadLetterField **ret_properties, size_t *ret_n_properties,
                               DeadLetterField **ret_headers, size_t *ret_n_headers);
void dead_letter_fields_free(DeadLetterField *f, size_t n);
