/* SPDX-License-Identifier: MIT */
#pragma once

/* What the daemon tells about itself: the bodies of /health, /ready and /api/v1/stats and the
 * one-line STATUS= for systemd, from a snapshot of its state. Pure. */

#include "buffer.h"
#include "circuit.h"
#include "ledger.h"
#include "pipeline.h"

typedef struct StatusSnapshot {
        const char *version;
        const char *instance_id;
        usec_t now_realtime;
        usec_t uptime;
        const PipelineStats *stats;
        bool broker_connected;
        bool database_connected;
        uint64_t database_reconnects;
        CircuitState circuit;
        usec_t circuit_changed_at; /* CLOCK_REALTIME */
        unsigned in_flight;
        size_t pending_events;
        size_t unacked;
        unsigned prefetch;
        size_t ledger_backlog;
        const LedgerTotals *totals; /* NULL: not read yet */
} StatusSnapshot;

/* Ready: broker and database connected and the circuit not open. */
bool status_is_ready(const StatusSnapshot *s);

int status_health_json(Buffer *out);
/* Returns the HTTP status to answer with: 200 or 503. */
int status_ready_json(const StatusSnapshot *s, Buffer *out, unsigned *ret_http_status);
int status_stats_json(const StatusSnapshot *s, Buffer *out);
/* e.g. "sent 1532 batches / 153200 events, circuit closed, broker connected, database connected, in flight 1" */
void status_line(const StatusSnapshot *s, char *buf, size_t size);
