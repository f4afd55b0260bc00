/* SPDX-License-Identifier: MIT */
#pragma once

/* The routes of the HTTP API (architecture §8), and the snapshot of the daemon's state that they and
 * STATUS= are made from. */

#include "api/server.h"
#include "core/config.h"
#include "core/status.h"
#include "core/telemetry.h"
#include "pg/schema-watch.h"
#include "pipeline/pipeline.h"

typedef struct ApiContext {
        Pipeline *pipeline;
        Telemetry *telemetry;
        const Config *const *config; /* the running configuration; replaced on reload */
        usec_t started_at;           /* CLOCK_MONOTONIC */
        const bool *stopping;        /* true once shutdown began: /ready answers 503; NULL: never */
        SchemaWatch *const *schema;  /* the schema check; NULL (or *NULL): the schema counts as current */
} ApiContext;

/* The routes' userdata is an ApiContext. */
extern const ApiRoute api_routes[];

void status_snapshot_take(const ApiContext *ctx, StatusSnapshot *ret);
