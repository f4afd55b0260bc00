/* SPDX-License-Identifier: MIT */
#pragma once

/* What the daemon counts about itself, and the ledger's view of its batches: the inputs of
 * /api/v1/stats, /metrics and STATUS=. */

#include "core/circuit.h"
#include "core/dead-letter.h"
#include "util/util.h"

typedef enum BatchStatus {
        BATCH_PENDING,
        BATCH_SENDING,
        BATCH_SENT,
        BATCH_FAILED,
        _BATCH_STATUS_MAX,
} BatchStatus;

const char *batch_status_to_string(BatchStatus s);

typedef struct LedgerTotals {
        uint64_t batches[_BATCH_STATUS_MAX];
        uint64_t events[_BATCH_STATUS_MAX];
        usec_t read_at; /* CLOCK_MONOTONIC; 0: never read */
} LedgerTotals;

/* Dead-lettered after a permanent answer, by HTTP status: [s] for 0 < s < PIPELINE_HTTP_STATUS_MAX,
 * [0] for anything else. Their sum is events_dead_lettered[DEAD_LETTER_HTTP]. */
#define PIPELINE_HTTP_STATUS_MAX 600

/* Counters since start, for /api/v1/stats, /metrics and STATUS=. */
typedef struct PipelineStats {
        uint64_t events_received;
        uint64_t events_redelivered; /* of those, marked redelivered by the broker */
        uint64_t max_delivery_count; /* the highest x-delivery-count seen */
        uint64_t events_sent;
        uint64_t events_dead_lettered[_DEAD_LETTER_KIND_MAX];
        uint64_t events_dead_lettered_http[PIPELINE_HTTP_STATUS_MAX];
        uint64_t events_requeued;
        uint64_t batches_sent;
        uint64_t batches_failed;   /* rows that ended 'failed' */
        uint64_t batches_split;
        uint64_t batches_held;     /* attempts spent while nothing got through: kept, tried again */
        uint64_t events_returned_expiring; /* requeued before the broker's consumer timeout */
        uint64_t bytes_raw;        /* envelopes before compression, of batches formed */
        uint64_t bytes_compressed;
        uint64_t http_requests;
        uint64_t http_by_class[6]; /* 0: no answer, 1..5: 1xx..5xx */
        usec_t last_success_at;    /* CLOCK_REALTIME, 0: never */
        usec_t last_error_at;
        long last_error_status;
        char last_error[256];
        uint64_t broker_reconnects;
        uint64_t broker_cancels;    /* basic.cancel from the broker: consumer cancelled, consumed again */
        uint64_t circuit_opened;
        uint64_t circuit_transitions[_CIRCUIT_STATE_MAX]; /* transitions into each state */
} PipelineStats;
