/* SPDX-License-Identifier: MIT */
#pragma once

/* The one place that decides what happens to a delivery (DESIGN §2): in from the broker,
 * into the batch being filled, out through the sender, and settled (ack, requeue,
 * dead-letter) only once the ledger has committed the batch's final row. */

#include <systemd/sd-event.h>

#include "circuit.h"
#include "config.h"

typedef struct Pipeline Pipeline;

typedef enum DeadLetterKind {
        DEAD_LETTER_EMPTY,
        DEAD_LETTER_NOT_JSON,
        DEAD_LETTER_NOT_OBJECT,
        DEAD_LETTER_INVALID_UTF8,
        DEAD_LETTER_TOO_LARGE,
        DEAD_LETTER_HTTP, /* refused by the destination with a permanent status */
        _DEAD_LETTER_KIND_MAX,
} DeadLetterKind;

const char *dead_letter_kind_to_string(DeadLetterKind k);

/* Dead-lettered after a permanent answer, by HTTP status: [s] for 0 < s < PIPELINE_HTTP_STATUS_MAX,
 * [0] for anything else. Their sum is events_dead_lettered[DEAD_LETTER_HTTP]. */
#define PIPELINE_HTTP_STATUS_MAX 600

/* Counters since start, for /api/v1/stats, /metrics and STATUS=. */
typedef struct PipelineStats {
        uint64_t events_received;
        uint64_t events_sent;
        uint64_t events_dead_lettered[_DEAD_LETTER_KIND_MAX];
        uint64_t events_dead_lettered_http[PIPELINE_HTTP_STATUS_MAX];
        uint64_t events_requeued;
        uint64_t batches_sent;
        uint64_t batches_failed;   /* rows that ended 'failed' */
        uint64_t batches_split;
        uint64_t bytes_raw;        /* envelopes before compression, of batches formed */
        uint64_t bytes_compressed;
        uint64_t http_requests;
        uint64_t http_by_class[6]; /* 0: no answer, 1..5: 1xx..5xx */
        usec_t last_success_at;    /* CLOCK_REALTIME, 0: never */
        usec_t last_error_at;
        long last_error_status;
        char last_error[256];
        uint64_t broker_reconnects;
        uint64_t circuit_opened;
        uint64_t circuit_transitions[_CIRCUIT_STATE_MAX]; /* transitions into each state */
} PipelineStats;

/* Hooks for what watches the pipeline (metrics, STATUS=); any may be NULL. */
typedef struct PipelineObserver {
        void (*request_done)(void *userdata, long http_status, usec_t duration);
        void (*batch_formed)(void *userdata, size_t events, size_t raw_bytes, size_t compressed_bytes);
        void (*batch_done)(void *userdata, const char *outcome);
        void (*state_changed)(void *userdata);
        void *userdata;
} PipelineObserver;

int pipeline_new(sd_event *e, const Config *config, const PipelineObserver *observer, Pipeline **ret);
Pipeline *pipeline_free(Pipeline *p);
DEFINE_TRIVIAL_CLEANUP_FUNC(Pipeline *, pipeline_free);

/* Connects to the broker and the database in the background. */
int pipeline_start(Pipeline *p);

/* Applies what a reload may change: token, batch, retry, circuit, compression, timeouts.
 * config must stay valid while the pipeline uses it. */
int pipeline_reconfigure(Pipeline *p, const Config *config);

/* Stops consuming, sends the open batch and waits for what is in flight; calls done (once)
 * when nothing is left, or when timeout passed. */
void pipeline_stop(Pipeline *p, usec_t timeout, void (*done)(Pipeline *p, bool clean, void *userdata),
                   void *userdata);

const PipelineStats *pipeline_stats(const Pipeline *p);
bool pipeline_broker_connected(const Pipeline *p);
bool pipeline_database_connected(const Pipeline *p);
uint64_t pipeline_database_reconnects(const Pipeline *p);
CircuitState pipeline_circuit_state(const Pipeline *p);
usec_t pipeline_circuit_changed_at(const Pipeline *p); /* CLOCK_REALTIME */
unsigned pipeline_in_flight(const Pipeline *p);        /* batches holding a send slot */
size_t pipeline_pending_events(const Pipeline *p);     /* events held, not yet settled */
size_t pipeline_unacked(const Pipeline *p);            /* deliveries not yet acked: the prefetch window in use */
size_t pipeline_ledger_backlog(const Pipeline *p);
struct LedgerTotals;
const struct LedgerTotals *pipeline_ledger_totals(Pipeline *p, usec_t max_age);
