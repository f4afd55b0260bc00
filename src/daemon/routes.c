/* SPDX-License-Identifier: MIT */
#include "daemon/routes.h"
#include "version.h"

/* /api/v1/stats reads the PostgreSQL totals at most this often: a scrape every few hundred ms
 * must not become a table scan each time. */
#define TOTALS_MAX_AGE (2 * USEC_PER_SEC)

void status_snapshot_take(const ApiContext *ctx, StatusSnapshot *ret) {
        Pipeline *p = ctx->pipeline;
        const Config *c = *ctx->config;
        const SchemaWatch *schema = ctx->schema ? *ctx->schema : NULL;
        usec_t monotonic = now(CLOCK_MONOTONIC);
        size_t n_broker_urls;
        const char *const *broker_urls = pipeline_broker_urls(p, &n_broker_urls);

        *ret = (StatusSnapshot) {
                .version = TRANSMITTER_VERSION,
                .instance_id = c->instance_id,
                .now_realtime = now(CLOCK_REALTIME),
                .now_monotonic = monotonic,
                .uptime = monotonic - ctx->started_at,
                .stopping = ctx->stopping && *ctx->stopping,
                .stats = pipeline_stats(p),
                .broker_connected = pipeline_broker_connected(p),
                .broker_urls = broker_urls,
                .n_broker_urls = n_broker_urls,
                .broker_url = pipeline_broker_url(p),
                .database_connected = pipeline_database_connected(p),
                .database_reconnects = pipeline_database_reconnects(p),
                .schema = schema ? schema_watch_state(schema) : SCHEMA_CURRENT,
                .schema_missing = schema ? schema_watch_missing(schema) : NULL,
                .circuit = pipeline_circuit_state(p),
                .circuit_changed_at = pipeline_circuit_changed_at(p),
                .in_flight = pipeline_in_flight(p),
                .pending_events = pipeline_pending_events(p),
                .unacked = pipeline_unacked(p),
                .prefetch = config_prefetch(c),
                .ledger_backlog = pipeline_ledger_backlog(p),
        };
}

/* Out of memory half-way through a body: a whole error instead of a truncated document. */
static void fail(ApiResponse *r) {
        static const char body[] = "{\"error\":\"internal_error\",\"status\":500}";

        r->status = 500;
        r->content_type = "application/json";
        buffer_clear(&r->body);
        (void) buffer_append(&r->body, body, sizeof body - 1);
}

static void route_health(void *userdata, ApiResponse *r) {
        if (status_health_json(&r->body) < 0)
                fail(r);
}

static void route_ready(void *userdata, ApiResponse *r) {
        StatusSnapshot s;

        status_snapshot_take(userdata, &s);
        if (status_ready_json(&s, &r->body, &r->status) < 0)
                fail(r);
}

static void route_stats(void *userdata, ApiResponse *r) {
        const ApiContext *ctx = userdata;
        StatusSnapshot s;

        status_snapshot_take(ctx, &s);
        s.totals = pipeline_ledger_totals(ctx->pipeline, TOTALS_MAX_AGE);
        if (status_stats_json(&s, &r->body) < 0)
                fail(r);
}

static void route_metrics(void *userdata, ApiResponse *r) {
        const ApiContext *ctx = userdata;
        StatusSnapshot s;

        status_snapshot_take(ctx, &s);
        r->content_type = "text/plain; version=0.0.4; charset=utf-8";
        if (telemetry_format(ctx->telemetry, &s, &r->body) < 0)
                fail(r); /* not half an exposition: missing series would read as resets */
}

const ApiRoute api_routes[] = {
        { "/health", route_health },
        { "/ready", route_ready },
        { "/api/v1/stats", route_stats },
        { "/metrics", route_metrics },
        { NULL, NULL },
};
