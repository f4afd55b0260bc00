/* SPDX-License-Identifier: MIT */
#include <stdio.h>

#include "core/telemetry.h"

struct Telemetry {
        MetricsRegistry *registry;
        Metric *events_received, *events_redelivered, *events_sent, *events_dead_lettered, *batches, *http_requests, *payload_bytes,
                *reconnects, *circuit_transitions, *circuit_state, *in_flight, *pending, *unacked, *prefetch, *ledger_backlog, *up,
                *request_duration, *batch_events, *batch_bytes, *delivery_count, *consumer_timeout_returns, *broker_connected,
                *broker_cancels;
};

static const double duration_bounds[] = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60 };
static const double event_bounds[] = { 1, 10, 50, 100, 250, 500, 1000, 5000, 10000 };
static const double delivery_count_bounds[] = { 0, 1, 2, 3, 5, 10, 20, 50, 100 };
static const double byte_bounds[] = { 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216 };

void telemetry_request_done(Telemetry *t, long http_status, usec_t duration) {
        char code[16];

        if (http_status > 0)
                snprintf(code, sizeof code, "%ld", http_status);
        else
                snprintf(code, sizeof code, "none");
        (void) metric_counter_add(t->http_requests, code, 1);
        metric_histogram_observe(t->request_duration, (double) duration / USEC_PER_SEC);
}

void telemetry_delivery_received(Telemetry *t, unsigned delivery_count) {
        metric_histogram_observe(t->delivery_count, (double) delivery_count);
}

void telemetry_batch_formed(Telemetry *t, size_t events, size_t compressed_bytes) {
        metric_histogram_observe(t->batch_events, (double) events);
        metric_histogram_observe(t->batch_bytes, (double) compressed_bytes);
}

typedef struct DeclareContext {
        Metric *metric;
        int r;
} DeclareContext;

static void declare_reason(const char *reason, uint64_t count, void *userdata) {
        DeclareContext *ctx = userdata;
        int r = metric_declare(ctx->metric, reason);

        if (r < 0 && ctx->r >= 0)
                ctx->r = r;
}

static void set_reason(const char *reason, uint64_t count, void *userdata) {
        MetricSeries *s;

        if (metric_series(userdata, reason, &s) >= 0)
                metric_series_set(s, (double) count);
}

MetricsRegistry *telemetry_registry(Telemetry *t) {
        return t->registry;
}

int telemetry_new(Telemetry **ret) {
        _cleanup_(telemetry_freep) Telemetry *t = NULL;
        MetricsRegistry *reg;
        int r;

        t = calloc(1, sizeof *t);
        if (!t)
                return -ENOMEM;
        r = metrics_registry_new(&t->registry);
        if (r < 0)
                return r;
        reg = t->registry;

        if ((r = metrics_counter_new(reg, "transmitter_events_received_total",
                                     "Messages received from RabbitMQ.", NULL, &t->events_received)) < 0 ||
            (r = metrics_counter_new(reg, "transmitter_events_redelivered_total",
                                     "Messages received that the broker had delivered before (redelivered flag).",
                                     NULL, &t->events_redelivered)) < 0 ||
            (r = metrics_counter_new(reg, "transmitter_events_sent_total",
                                     "Events delivered to the destination (answered 2xx).", NULL, &t->events_sent)) < 0 ||
            (r = metrics_counter_new(reg, "transmitter_events_dead_lettered_total",
                                     "Messages dead-lettered, by reason.", "reason", &t->events_dead_lettered)) < 0 ||
            (r = metrics_counter_new(reg, "transmitter_batches_total", "Batches finished, by outcome.", "outcome",
                                     &t->batches)) < 0 ||
            (r = metrics_counter_new(reg, "transmitter_http_requests_total",
                                     "Requests to the destination, by HTTP status (none: no answer).", "code",
                                     &t->http_requests)) < 0 ||
            (r = metrics_counter_new(reg, "transmitter_payload_bytes_total",
                                     "Bytes of batch bodies, before (raw) and after (compressed) gzip.", "stage",
                                     &t->payload_bytes)) < 0 ||
            (r = metrics_counter_new(reg, "transmitter_reconnects_total", "Reconnections, by peer.", "peer",
                                     &t->reconnects)) < 0 ||
            (r = metrics_counter_new(reg, "transmitter_circuit_transitions_total",
                                     "Circuit breaker transitions, by the state entered.", "state",
                                     &t->circuit_transitions)) < 0 ||
            (r = metrics_gauge_new(reg, "transmitter_circuit_state",
                                   "Circuit breaker state: 0 closed, 1 open, 2 half_open.", NULL, &t->circuit_state)) < 0 ||
            (r = metrics_gauge_new(reg, "transmitter_in_flight_batches",
                                   "Batches holding a send slot (on the wire or waiting to retry).", NULL,
                                   &t->in_flight)) < 0 ||
            (r = metrics_gauge_new(reg, "transmitter_pending_events", "Events held in memory, not yet settled.", NULL,
                                   &t->pending)) < 0 ||
            (r = metrics_gauge_new(reg, "transmitter_unacked_messages",
                                   "Deliveries not yet acked: the part of the prefetch window in use.", NULL,
                                   &t->unacked)) < 0 ||
            (r = metrics_gauge_new(reg, "transmitter_prefetch_messages",
                                   "The prefetch window: the most deliveries the broker hands over unacked.", NULL,
                                   &t->prefetch)) < 0 ||
            (r = metrics_gauge_new(reg, "transmitter_ledger_backlog_records",
                                   "Batch records waiting for PostgreSQL to commit them.", NULL, &t->ledger_backlog)) < 0 ||
            (r = metrics_gauge_new(reg, "transmitter_up", "Whether the connection to a peer is up.", "peer", &t->up)) < 0 ||
            (r = metrics_counter_new(reg, "transmitter_broker_consumer_cancels_total",
                                     "Times the broker cancelled the consumer (basic.cancel: queue deleted, its node "
                                     "gone, consumer timeout); each time it consumed again.",
                                     NULL, &t->broker_cancels)) < 0 ||
            (r = metrics_gauge_new(reg, "transmitter_broker_connected_info",
                                   "The RabbitMQ node in use: 1 for the URL of RABBITMQ_URL connected to, 0 for the "
                                   "others of the list (passwords hidden).",
                                   "url", &t->broker_connected)) < 0 ||
            (r = metrics_histogram_new(reg, "transmitter_http_request_duration_seconds",
                                       "Duration of requests to the destination.", duration_bounds,
                                       ELEMENTSOF(duration_bounds), &t->request_duration)) < 0 ||
            (r = metrics_histogram_new(reg, "transmitter_message_returns",
                                       "How often each message received had been returned to the queue before "
                                       "(its x-delivery-count; quorum queues, 0 otherwise).",
                                       delivery_count_bounds, ELEMENTSOF(delivery_count_bounds),
                                       &t->delivery_count)) < 0 ||
            (r = metrics_counter_new(reg, "transmitter_consumer_timeout_returns_total",
                                     "Messages returned to the queue before the broker's consumer timeout.", NULL,
                                     &t->consumer_timeout_returns)) < 0 ||
            (r = metrics_histogram_new(reg, "transmitter_batch_events", "Events per batch formed.", event_bounds,
                                       ELEMENTSOF(event_bounds), &t->batch_events)) < 0 ||
            (r = metrics_histogram_new(reg, "transmitter_batch_bytes", "Compressed bytes per batch formed.",
                                       byte_bounds, ELEMENTSOF(byte_bounds), &t->batch_bytes)) < 0)
                return r;

        {
                /* The fixed reasons at 0 from the start; per-status ones appear when first seen. */
                static const PipelineStats zero;
                DeclareContext ctx = { .metric = t->events_dead_lettered };

                status_foreach_dead_letter_reason(&zero, declare_reason, &ctx);
                if (ctx.r < 0)
                        return ctx.r;
        }
        if ((r = metric_declare(t->batches, "sent")) < 0 || (r = metric_declare(t->batches, "failed")) < 0 ||
            (r = metric_declare(t->batches, "split")) < 0 || (r = metric_declare(t->batches, "held")) < 0 || (r = metric_declare(t->payload_bytes, "raw")) < 0 ||
            (r = metric_declare(t->payload_bytes, "compressed")) < 0 ||
            (r = metric_declare(t->reconnects, "rabbitmq")) < 0 ||
            (r = metric_declare(t->reconnects, "postgresql")) < 0 || (r = metric_declare(t->up, "rabbitmq")) < 0 ||
            (r = metric_declare(t->up, "postgresql")) < 0)
                return r;
        for (CircuitState c = 0; c < _CIRCUIT_STATE_MAX; c++)
                if ((r = metric_declare(t->circuit_transitions, circuit_state_to_string(c))) < 0)
                        return r;

        *ret = TAKE_PTR(t);
        return 0;
}

Telemetry *telemetry_free(Telemetry *t) {
        if (!t)
                return NULL;
        metrics_registry_free(t->registry);
        return mfree(t);
}

static void set(Metric *m, const char *label, double v) {
        (void) metric_gauge_set(m, label, v);
}

static void set_counter(Metric *m, const char *label, uint64_t v) {
        MetricSeries *s;

        if (metric_series(m, label, &s) >= 0)
                metric_series_set(s, (double) v);
}

int telemetry_format(Telemetry *t, const StatusSnapshot *snap, Buffer *out) {
        const PipelineStats *st = snap->stats;

        /* Counters are copies of PipelineStats, so that /metrics, /api/v1/stats and STATUS= can
         * never disagree; only the per-code requests and the histograms live here. */
        set_counter(t->events_received, NULL, st->events_received);
        set_counter(t->events_redelivered, NULL, st->events_redelivered);
        set_counter(t->events_sent, NULL, st->events_sent);
        status_foreach_dead_letter_reason(st, set_reason, t->events_dead_lettered);
        set_counter(t->batches, "sent", st->batches_sent);
        set_counter(t->batches, "failed", st->batches_failed);
        set_counter(t->batches, "split", st->batches_split);
        set_counter(t->batches, "held", st->batches_held);
        set_counter(t->consumer_timeout_returns, NULL, st->events_returned_expiring);
        set_counter(t->payload_bytes, "raw", st->bytes_raw);
        set_counter(t->payload_bytes, "compressed", st->bytes_compressed);
        set_counter(t->reconnects, "rabbitmq", st->broker_reconnects);
        set_counter(t->broker_cancels, NULL, st->broker_cancels);
        set_counter(t->reconnects, "postgresql", snap->database_reconnects);
        for (CircuitState c = 0; c < _CIRCUIT_STATE_MAX; c++)
                set_counter(t->circuit_transitions, circuit_state_to_string(c), st->circuit_transitions[c]);

        set(t->circuit_state, NULL, (double) snap->circuit);
        set(t->in_flight, NULL, snap->in_flight);
        set(t->pending, NULL, (double) snap->pending_events);
        set(t->unacked, NULL, (double) snap->unacked);
        set(t->prefetch, NULL, snap->prefetch);
        set(t->ledger_backlog, NULL, (double) snap->ledger_backlog);
        set(t->up, "rabbitmq", snap->broker_connected);
        /* A series per URL of the list, fixed at start: a node given up on reads 0, not stale 1. */
        for (size_t i = 0; i < snap->n_broker_urls; i++)
                set(t->broker_connected, snap->broker_urls[i], snap->broker_connected && i == snap->broker_url);
        set(t->up, "postgresql", snap->database_connected);

        buffer_clear(out);
        return metrics_format(t->registry, out);
}
