/* SPDX-License-Identifier: MIT */
#pragma once

/* What the files of the pipeline share, and the rules they keep:
 *   pipeline.c  the Pipeline's life, the broker's and the database's events, the stop;
 *   form.c      deliveries in: validation, the batch being filled, forming and encoding batches;
 *   send.c      batches out: the send slots, the circuit, the requests, and carrying out the
 *               verdict (core/verdict.h) on every moment of a batch;
 *   settle.c    a batch's final row, and settling its deliveries once that row is committed;
 *   timeline.c  BATCH_TIMELINE: where each batch's time went, logged once its ack is out.
 * A delivery enters through pipeline_receive() and leaves through delivery_settle(), once.
 * No handler calls the dispatch or the stop check itself: whoever changes what they depend on
 * calls pipeline_schedule(), and the deferred source "pipeline-work" runs them once, after the
 * handler returned, so no handler ever re-enters another. */

#include <sys/uio.h>

#include "amqp/consumer.h"
#include "core/ack-tracker.h"
#include "core/batcher.h"
#include "core/broker-url.h"
#include "core/circuit.h"
#include "core/envelope.h"
#include "core/retry.h"
#include "core/timeline.h"
#include "core/uuid.h"
#include "core/verdict.h"
#include "http/sender.h"
#include "pg/ledger.h"
#include "pipeline/pipeline.h"
#include "util/buffer.h"

typedef enum BatchPhase {
        PHASE_READY,    /* formed, or its retry delay over: waits for a send slot or the circuit */
        PHASE_SENDING,  /* a request is on the wire */
        PHASE_BACKOFF,  /* waiting out the retry delay (it keeps its send slot) */
        PHASE_SETTLING, /* final row appended, waiting for its commit */
} BatchPhase;

typedef struct Batch {
        Pipeline *pipeline;
        char id[UUID_STRING_MAX];
        uint64_t epoch; /* of the broker connection its deliveries came on */
        AmqpDelivery **deliveries;
        size_t n;
        Buffer payload;
        size_t raw_size;
        unsigned attempt;        /* attempts started in this round */
        unsigned attempts_total; /* in all rounds: the row's retry_count is this minus one */
        uint64_t round_successes; /* 2xx answers the pipeline had when the batch was formed or held */
        bool expiring;           /* a delivery of it nears the broker's consumer timeout */
        bool split_blind;        /* a half of a split made without evidence (core/verdict.h) */
        uint64_t circuit_period; /* of the attempt on the wire: which circuit state let it out */
        BatchPhase phase;
        bool holds_slot;         /* a retry keeps the slot of its first attempt */
        Settlement settlement;   /* SETTLING: what happens to its deliveries at the commit */
        DeadLetterKind dead_letter; /* SETTLEMENT_DEAD_LETTER: the reason */
        long final_status;
        sd_event_source *retry_timer;
        Timeline timeline;
        uint64_t last_tag; /* the highest delivery tag among its events: its ack is the last to go */
        struct Batch *prev, *next;
} Batch;

/* A settled batch's timeline, waiting for the ack of its last event to go out. */
typedef struct TimelineRecord {
        char id[UUID_STRING_MAX];
        uint64_t epoch, last_tag;
        size_t n;
        Timeline timeline;
        struct TimelineRecord *next;
} TimelineRecord;

struct Pipeline {
        sd_event *event;
        const Config *config;
        Telemetry *telemetry;

        AmqpConsumer *amqp;
        Sender *sender;
        Ledger *ledger;
        Envelope *envelope;

        uint64_t epoch; /* of the current broker connection, 0: none */
        bool broker_connected;
        bool broker_ever_connected;
        BrokerUrlList broker_urls;   /* RABBITMQ_URL parsed, for the shown form of each node */
        const char **broker_shown;   /* broker_urls' shown forms, for the status snapshot */
        size_t broker_url;           /* the node of the current connection, or of the last one */
        uint64_t *broker_errors;     /* per node, a hash of the last connect error logged; 0: none */
        AckTracker acks;

        Batcher batcher;
        sd_event_source *batch_timer;
        struct iovec *scratch;
        size_t scratch_size;

        Batch *batches_head, *batches_tail; /* every live batch, oldest first */
        unsigned slots_used;
        size_t dead_letters_in_flight;

        RetryPolicy retry;
        Circuit circuit;
        usec_t circuit_changed_realtime;
        sd_event_source *circuit_timer;

        bool database_ever_connected;
        char last_database_error[256];

        sd_event_source *work; /* deferred: dispatch, acks, stop check */
        sd_event_source *expiry_timer; /* the oldest delivery nears the broker's consumer timeout */
        bool expiry_episode;   /* deliveries were returned at the last expiry check */

        TimelineRecord *timelines; /* BATCH_TIMELINE: settled batches whose ack is not out yet */

        bool stopping;
        sd_event_source *stop_timer;
        void (*stop_done)(Pipeline *p, bool clean, void *userdata);
        void *stop_userdata;

        PipelineStats stats;
};

/* How a delivery leaves the pipeline. */
typedef enum DeliveryFate {
        FATE_ACK,
        FATE_REQUEUE, /* basic.nack requeue=true: another consumer, or we, take it again */
        FATE_RETURN_FAILED, /* basic.reject requeue=true: the same, counted as a failed delivery */
        FATE_REJECT,  /* basic.nack requeue=false: to the queue's own dead-letter exchange */
        FATE_DROP,    /* neither: its connection is gone (the broker has it back), or it was never tracked */
        _FATE_MAX,
} DeliveryFate;

/* pipeline.c */
void pipeline_schedule(Pipeline *p);

/* form.c */
void pipeline_receive(Pipeline *p, AmqpDelivery *d);
void pipeline_flush_open_batch(Pipeline *p);
void pipeline_drop_open_batch(Pipeline *p);
void pipeline_arm_batch_timer(Pipeline *p);
/* Makes a batch of these deliveries (they move to it), records it 'pending' and puts it after
 * insert_after (NULL: first). On failure the deliveries are requeued and NULL returned. */
Batch *batch_form(Pipeline *p, AmqpDelivery **deliveries, size_t n, uint64_t epoch, Batch *insert_after);

/* expire.c */
int pipeline_expiry_new(Pipeline *p);
/* Due when the oldest delivery held reaches the hold limit; call when one arrives. */
void pipeline_arm_expiry(Pipeline *p);
/* When the oldest delivery held (not yet marked to go back) arrived, CLOCK_MONOTONIC;
 * USEC_INFINITY when none is held. */
usec_t pipeline_oldest_held(const Pipeline *p);

/* send.c */
void pipeline_dispatch(Pipeline *p);
/* Batches waiting out a retry delay, after the connection was lost or the stop began. */
void pipeline_review_backoff(Pipeline *p);
void pipeline_circuit_transition(Pipeline *p, CircuitState old);
void batch_move_to_tail(Pipeline *p, Batch *b);
int pipeline_on_circuit_timer(sd_event_source *s, uint64_t usec, void *userdata);

/* settle.c */
void delivery_settle(Pipeline *p, AmqpDelivery *d, DeliveryFate fate);
void delivery_dead_letter(Pipeline *p, AmqpDelivery *d, DeadLetterKind kind, long http_status, const char *batch_id);
void pipeline_dead_lettered(Pipeline *p, AmqpDelivery *d, bool ok, const char *not_published);
void pipeline_flush_acks(Pipeline *p);
/* Writes the batch's final row; its deliveries are settled once that is committed (dead-lettered
 * with reason dead_letter when settlement is SETTLEMENT_DEAD_LETTER). */
void batch_finish(Pipeline *p, Batch *b, BatchStatus status, long http_status, const char *error,
                  Settlement settlement, DeadLetterKind dead_letter);
void batch_release_slot(Pipeline *p, Batch *b);
/* Unlinks and frees a batch whose deliveries were all settled. */
void batch_destroy(Pipeline *p, Batch *b);

/* timeline.c */
/* The batch's deliveries were just settled: its timeline waits for their ack to go out. */
void timeline_batch_settled(Pipeline *p, const Batch *b);
/* These acks were handed to the AMQP thread at t. */
void timeline_acks_queued(Pipeline *p, const AckCommand *commands, size_t n, usec_t t);
/* The thread wrote an ack command to the socket: the timelines it completes are logged. */
void timeline_acks_sent(Pipeline *p, uint64_t epoch, const AmqpAckReport *report);
/* The broker connection is gone, or the pipeline: what waits is logged as far as it got. */
void timeline_flush(Pipeline *p);
