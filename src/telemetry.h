/* SPDX-License-Identifier: MIT */
#pragma once

/* The /metrics registry of the daemon: counters mirror PipelineStats (one source of truth),
 * histograms and per-code counts are fed by the pipeline's observer hooks. */

#include "buffer.h"
#include "pipeline.h"
#include "status.h"

typedef struct Telemetry Telemetry;

int telemetry_new(Telemetry **ret);
Telemetry *telemetry_free(Telemetry *t);
DEFINE_TRIVIAL_CLEANUP_FUNC(Telemetry *, telemetry_free);

/* Hooks to pass to pipeline_new(). */
void telemetry_observer(Telemetry *t, PipelineObserver *ret);

/* The exposition text, with counters and gauges taken from the snapshot (status_snapshot_take()). */
int telemetry_format(Telemetry *t, const StatusSnapshot *snapshot, Buffer *out);
