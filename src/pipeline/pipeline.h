/* SPDX-License-Identifier: MIT */
#pragma once

/* The data path (docs/architecture.md §2): deliveries in from the broker, into the batch being
 * filled, out through the sender, and settled (ack, requeue, dead-letter) only once the ledger
 * has committed the batch's final row. What happens to a batch is decided by core/verdict.h;
 * the pipeline carries it out. */

#include <systemd/sd-event.h>

#include "core/circuit.h"
#include "core/config.h"
#include "core/stats.h"
#include "core/telemetry.h"

typedef struct Pipeline Pipeline;

/* telemetry (may be NULL) is fed each request's and each batch's figures; it must outlive the pipeline. */
int pipeline_new(sd_event *e, const Config *config, Telemetry *telemetry, Pipeline **ret);
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
/* RABBITMQ_URL's nodes as shown (passwords hidden), and the index of the one in use. */
const char *const *pipeline_broker_urls(const Pipeline *p, size_t *ret_n);
size_t pipeline_broker_url(const Pipeline *p);
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
