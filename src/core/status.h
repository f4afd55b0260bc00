/* SPDX-License-Identifier: MIT */
#pragma once

/* What the daemon tells about itself: the bodies of /health, /ready and /api/v1/stats and the
 * one-line STATUS= for systemd, from a snapshot of its state. Pure. */

#include "core/circuit.h"
#include "core/schema.h"
#include "core/stats.h"
#include "util/buffer.h"

typedef struct StatusSnapshot {
        const char *version;
        const char *instance_id;
        usec_t now_realtime;
        usec_t now_monotonic;
        usec_t uptime;
        bool stopping;             /* SIGTERM received: draining, no longer ready */
        const PipelineStats *stats;
        bool broker_connected;
        /* RABBITMQ_URL's nodes as shown (BrokerUrl.shown: passwords hidden), and which of them
         * the connection is to while broker_connected. */
        const char *const *broker_urls;
        size_t n_broker_urls;
        size_t broker_url;
        bool database_connected;
        uint64_t database_reconnects;
        SchemaState schema;        /* consuming starts once it is SCHEMA_CURRENT */
        const char *schema_missing; /* SCHEMA_OLDER: the first migration not applied */
        CircuitState circuit;
        usec_t circuit_changed_at; /* CLOCK_REALTIME */
        unsigned in_flight;
        size_t pending_events;
        size_t unacked;
        unsigned prefetch;
        size_t ledger_backlog;
        const LedgerTotals *totals; /* NULL or read_at 0: not read yet; read_at is CLOCK_MONOTONIC */
} StatusSnapshot;

/* Ready: broker and database connected, the database's schema current, the circuit closed (not
 * open, and not half_open with its probe out: docs/architecture.md §8), and not stopping. */
bool status_is_ready(const StatusSnapshot *s);

int status_health_json(Buffer *out);
/* Returns the HTTP status to answer with: 200 or 503. */
int status_ready_json(const StatusSnapshot *s, Buffer *out, unsigned *ret_http_status);
int status_stats_json(const StatusSnapshot *s, Buffer *out);
/* The node in use as shown, NULL when not connected. */
const char *status_broker_url(const StatusSnapshot *s);

/* e.g. "sent 1532 batches / 153200 events, circuit closed, broker connected, database connected,
 * in flight 1, broker at amqp://gw:***@10.0.0.2:5672/" */
void status_line(const StatusSnapshot *s, char *buf, size_t size);

/* The dead-letter counts by the x-transmitter-reason the messages carry: each fixed reason
 * ("empty", "not_json", ...) always, then "http_<status>" for each status that refused any,
 * in increasing order. Where the pipeline does not count by status, the destination's
 * refusals are one reason, "http". The same names label /metrics. */
#define STATUS_REASON_MAX 32
typedef void (*StatusReasonCallback)(const char *reason, uint64_t count, void *userdata);
void status_foreach_dead_letter_reason(const PipelineStats *st, StatusReasonCallback callback, void *userdata);
