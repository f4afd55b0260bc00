/* SPDX-License-Identifier: MIT */
#pragma once

/* The /metrics registry of the daemon: counters mirror PipelineStats (one source of truth),
 * histograms and per-code counts are fed by the pipeline as requests end and batches form. */

#include "core/metrics.h"
#include "core/status.h"
#include "util/buffer.h"

typedef struct Telemetry Telemetry;

int telemetry_new(Telemetry **ret);
Telemetry *telemetry_free(Telemetry *t);
DEFINE_TRIVIAL_CLEANUP_FUNC(Telemetry *, telemetry_free);

/* The registry, for families registered elsewhere (process_stats_register()). */
MetricsRegistry *telemetry_registry(Telemetry *t);

/* http_status 0: no answer. */
void telemetry_request_done(Telemetry *t, long http_status, usec_t duration);
void telemetry_delivery_received(Telemetry *t, unsigned delivery_count);
void telemetry_batch_formed(Telemetry *t, size_t events, size_t compressed_bytes);

/* The exposition text, with counters and gauges taken from the snapshot (status_snapshot_take()). */
int telemetry_format(Telemetry *t, const StatusSnapshot *snapshot, Buffer *out);
