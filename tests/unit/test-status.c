/* SPDX-License-Identifier: MIT */
#include <criterion/criterion.h>
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>

#include "core/status.h"

/* 2026-12-01T21:34:42.737Z, and a later second */
#define T0 1796160882737000ULL
#define T1 1796160890000001ULL

static PipelineStats stats;
static LedgerTotals totals;

static StatusSnapshot healthy(void) {
        memset(&stats, 0, sizeof stats);
        memset(&totals, 0, sizeof totals);
        return (StatusSnapshot) {
                .version = "9.8.7",
                .instance_id = "gw-1",
                .now_realtime = T1,
                .now_monotonic = 500 * USEC_PER_SEC,
                .uptime = 90 * USEC_PER_SEC + 500000,
                .stats = &stats,
                .broker_connected = true,
                .database_connected = true,
                .schema = SCHEMA_CURRENT,
                .circuit = CIRCUIT_CLOSED,
                .prefetch = 300,
        };
}

static json_object *parse(const Buffer *b) {
        json_object *o;
        _cleanup_free_ char *text = strndup(b->data ? (const char *) b->data : "", b->size);

        cr_assert_not_null(text);
        o = json_tokener_parse(text);
        cr_assert_not_null(o, "not JSON: %s", text);
        cr_assert(json_object_is_type(o, json_type_object), "%s", text);
        return o;
}

/* The member at a dotted path, asserted to exist with the given type. */
static json_object *get(json_object *o, const char *path, json_type type) {
        char buf[256], *save = NULL;
        json_object *v = o;

        snprintf(buf, sizeof buf, "%s", path);
        for (char *k = strtok_r(buf, ".", &save); k; k = strtok_r(NULL, ".", &save)) {
                cr_assert(json_object_is_type(v, json_type_object), "%s: %s is not inside an object", path, k);
                cr_assert(json_object_object_get_ex(v, k, &v), "%s: no member %s in %s", path, k,
                          json_object_to_json_string(o));
        }
        cr_assert(json_object_is_type(v, type), "%s: type %s, wanted %s", path,
                  json_type_to_name(json_object_get_type(v)), json_type_to_name(type));
        return v;
}

static int64_t get_int(json_object *o, const char *path) {
        return json_object_get_int64(get(o, path, json_type_int));
}

static const char *get_str(json_object *o, const char *path) {
        return json_object_get_string(get(o, path, json_type_string));
}

static bool has_reason(json_object *ready, const char *prefix) {
        json_object *reasons = get(ready, "reasons", json_type_array);

        for (size_t i = 0; i < json_object_array_length(reasons); i++) {
                const char *r = json_object_get_string(json_object_array_get_idx(reasons, i));
                if (r && startswith(r, prefix))
                        return true;
        }
        return false;
}

Test(status, health) {
        Buffer b = { 0 };

        cr_assert_eq(status_health_json(&b), 0);
        cr_assert_eq(b.size, strlen("{\"status\":\"healthy\",\"service\":\"transmitter\"}"));
        cr_assert_eq(memcmp(b.data, "{\"status\":\"healthy\",\"service\":\"transmitter\"}", b.size), 0);
        buffer_done(&b);
}

/* Runs /ready on s; returns the parsed body, the status in *code. */
static json_object *ready(const StatusSnapshot *s, unsigned *code) {
        Buffer b = { 0 };
        json_object *o;

        *code = 0;
        cr_assert_eq(status_ready_json(s, &b, code), 0);
        o = parse(&b);
        buffer_done(&b);
        return o;
}

Test(status, ready) {
        StatusSnapshot s = healthy();
        unsigned code;
        json_object *o;

        o = ready(&s, &code);
        cr_assert_eq(code, 200);
        cr_assert(status_is_ready(&s));
        /* The Python service's names and values. */
        cr_assert_str_eq(get_str(o, "status"), "ready");
        cr_assert_str_eq(get_str(o, "database"), "connected");
        cr_assert_str_eq(get_str(o, "rabbitmq"), "connected");
        cr_assert_str_eq(get_str(o, "circuit_breaker"), "closed");
        cr_assert(json_object_get_boolean(get(o, "checks.rabbitmq.ok", json_type_boolean)));
        cr_assert(json_object_get_boolean(get(o, "checks.database.ok", json_type_boolean)));
        cr_assert(json_object_get_boolean(get(o, "checks.circuit_breaker.ok", json_type_boolean)));
        cr_assert_eq(json_object_array_length(get(o, "reasons", json_type_array)), 0);
        json_object_put(o);
}

Test(status, not_ready) {
        StatusSnapshot s = healthy();
        unsigned code;
        json_object *o;

        s.broker_connected = false;
        o = ready(&s, &code);
        cr_assert_eq(code, 503);
        cr_assert_not(status_is_ready(&s));
        cr_assert_str_eq(get_str(o, "status"), "not_ready");
        cr_assert_str_eq(get_str(o, "rabbitmq"), "disconnected");
        cr_assert_str_eq(get_str(o, "database"), "connected");
        cr_assert_not(json_object_get_boolean(get(o, "checks.rabbitmq.ok", json_type_boolean)));
        cr_assert_str_eq(get_str(o, "checks.rabbitmq.state"), "disconnected");
        cr_assert(json_object_get_boolean(get(o, "checks.database.ok", json_type_boolean)));
        cr_assert(has_reason(o, "rabbitmq: "));
        cr_assert_not(has_reason(o, "database: "));
        cr_assert_eq(json_object_array_length(get(o, "reasons", json_type_array)), 1);
        json_object_put(o);

        s = healthy();
        s.database_connected = false;
        o = ready(&s, &code);
        cr_assert_eq(code, 503);
        cr_assert_str_eq(get_str(o, "database"), "disconnected");
        cr_assert(has_reason(o, "database: "));
        cr_assert_not(has_reason(o, "rabbitmq: "));
        json_object_put(o);

        /* Open: the reason says what the destination answered last. */
        s = healthy();
        s.circuit = CIRCUIT_OPEN;
        stats.last_error_at = T0;
        stats.last_error_status = 503;
        snprintf(stats.last_error, sizeof stats.last_error, "HTTP 503: upstream down");
        o = ready(&s, &code);
        cr_assert_eq(code, 503);
        cr_assert_str_eq(get_str(o, "circuit_breaker"), "open");
        cr_assert_not(json_object_get_boolean(get(o, "checks.circuit_breaker.ok", json_type_boolean)));
        cr_assert(has_reason(o, "circuit_breaker: "));
        cr_assert_not_null(strstr(json_object_to_json_string(o), "HTTP 503: upstream down"));
        json_object_put(o);

        /* Half-open, its probe out: the destination has not proved itself yet (docs/architecture.md §8). */
        s = healthy();
        s.circuit = CIRCUIT_HALF_OPEN;
        o = ready(&s, &code);
        cr_assert_eq(code, 503);
        cr_assert_not(status_is_ready(&s));
        cr_assert_str_eq(get_str(o, "status"), "not_ready");
        cr_assert_str_eq(get_str(o, "circuit_breaker"), "half_open");
        cr_assert_not(json_object_get_boolean(get(o, "checks.circuit_breaker.ok", json_type_boolean)));
        cr_assert_str_eq(get_str(o, "checks.circuit_breaker.state"), "half_open");
        cr_assert_eq(json_object_array_length(get(o, "reasons", json_type_array)), 1);
        cr_assert_str_eq(json_object_get_string(json_object_array_get_idx(get(o, "reasons", json_type_array), 0)),
                         "circuit_breaker: half_open, probing");
        json_object_put(o);

        /* The database answers, without the schema: consuming waits for it (nothing started). */
        s = healthy();
        s.schema = SCHEMA_MISSING;
        s.broker_connected = s.database_connected = false;
        o = ready(&s, &code);
        cr_assert_eq(code, 503);
        cr_assert_not(status_is_ready(&s));
        cr_assert_str_eq(get_str(o, "database"), "schema_missing");
        cr_assert_str_eq(get_str(o, "checks.database.state"), "schema_missing");
        cr_assert_not(json_object_get_boolean(get(o, "checks.database.ok", json_type_boolean)));
        cr_assert_str_eq(json_object_get_string(json_object_array_get_idx(get(o, "reasons", json_type_array), 0)),
                         "rabbitmq: not connected yet: consuming waits for the database schema");
        cr_assert_str_eq(json_object_get_string(json_object_array_get_idx(get(o, "reasons", json_type_array), 1)),
                         "database: schema missing, run transmitter --migrate");
        cr_assert_eq(json_object_array_length(get(o, "reasons", json_type_array)), 2);
        json_object_put(o);

        s.schema = SCHEMA_OLDER;
        s.schema_missing = "002_add_instance_and_indexes.sql";
        o = ready(&s, &code);
        cr_assert_eq(code, 503);
        cr_assert_str_eq(get_str(o, "database"), "schema_older");
        cr_assert(has_reason(o, "database: schema older than this transmitter (002_add_instance_and_indexes.sql not "
                                "applied), run transmitter --migrate"));
        json_object_put(o);

        /* Not reached yet: the schema is unknown, and nothing connects before it is known. */
        s = healthy();
        s.schema = SCHEMA_UNKNOWN;
        s.broker_connected = s.database_connected = false;
        o = ready(&s, &code);
        cr_assert_eq(code, 503);
        cr_assert_str_eq(get_str(o, "database"), "disconnected");
        cr_assert(has_reason(o, "database: not connected, reconnecting in the background"));
        cr_assert(has_reason(o, "rabbitmq: not connected yet: consuming waits for the database schema"));
        json_object_put(o);

        /* Connected both, but a schema that is not current is never ready. */
        s = healthy();
        s.schema = SCHEMA_OLDER;
        cr_assert_not(status_is_ready(&s));

        /* Draining at shutdown: connected, but a load balancer should look elsewhere. */
        s = healthy();
        s.stopping = true;
        o = ready(&s, &code);
        cr_assert_eq(code, 503);
        cr_assert(has_reason(o, "stopping: "));
        json_object_put(o);

        /* Everything down at once: every reason. */
        s = healthy();
        s.broker_connected = s.database_connected = false;
        s.circuit = CIRCUIT_OPEN;
        o = ready(&s, &code);
        cr_assert_eq(code, 503);
        cr_assert_eq(json_object_array_length(get(o, "reasons", json_type_array)), 3);
        json_object_put(o);
}

static json_object *stats_json(const StatusSnapshot *s) {
        Buffer b = { 0 };
        json_object *o;

        cr_assert_eq(status_stats_json(s, &b), 0);
        o = parse(&b);
        buffer_done(&b);
        return o;
}

Test(status, stats_fresh) {
        StatusSnapshot s = healthy();
        json_object *o = stats_json(&s);

        cr_assert_str_eq(get_str(o, "service"), "transmitter");
        cr_assert_str_eq(get_str(o, "version"), "9.8.7");
        cr_assert_str_eq(get_str(o, "instance"), "gw-1");
        cr_assert_float_eq(json_object_get_double(get(o, "uptime_seconds", json_type_double)), 90.5, 1e-9);
        /* now - uptime */
        cr_assert_str_eq(get_str(o, "started_at"), "2026-12-01T21:33:19.500Z");
        cr_assert(json_object_get_boolean(get(o, "ready", json_type_boolean)));
        cr_assert_eq(get_int(o, "pending_items"), 0);
        cr_assert_eq(get_int(o, "batches_sent"), 0);
        cr_assert_eq(get_int(o, "batches_failed"), 0);
        /* Nothing happened yet: nulls, not zeros that look like a time or a ratio. */
        get(o, "last_success_at", json_type_null);
        get(o, "last_error", json_type_null);
        get(o, "bytes.compression_ratio", json_type_null);
        get(o, "circuit_breaker.since", json_type_null);
        get(o, "database.totals", json_type_null);
        /* Every fixed dead-letter reason, at 0. */
        cr_assert_eq(get_int(o, "events.dead_lettered.total"), 0);
        cr_assert_eq(get_int(o, "events.dead_lettered.by_reason.empty"), 0);
        cr_assert_eq(get_int(o, "events.dead_lettered.by_reason.not_json"), 0);
        cr_assert_eq(get_int(o, "events.dead_lettered.by_reason.not_object"), 0);
        cr_assert_eq(get_int(o, "events.dead_lettered.by_reason.invalid_utf8"), 0);
        cr_assert_eq(get_int(o, "events.dead_lettered.by_reason.too_large"), 0);
        cr_assert_float_eq(json_object_get_double(get(o, "prefetch.utilization", json_type_double)), 0.0, 1e-12);
        json_object_put(o);

        /* A totals object that was never read is no totals either. */
        s.totals = &totals;
        o = stats_json(&s);
        get(o, "database.totals", json_type_null);
        json_object_put(o);
}

Test(status, stats_busy) {
        StatusSnapshot s = healthy();
        _unused_ json_object *by_reason;
        json_object *o;

        stats = (PipelineStats) {
                .events_received = 1234,
                .events_redelivered = 34,
                .events_sent = 1100,
                .events_requeued = 7,
                .max_delivery_count = 4,
                .events_returned_expiring = 9,
                .batches_sent = 11,
                .batches_failed = 2,
                .batches_split = 3,
                .batches_held = 2,
                .bytes_raw = 1000000,
                .bytes_compressed = 160000,
                .http_requests = 16,
                .http_by_class = { [0] = 1, [2] = 11, [4] = 3, [5] = 1 },
                .last_success_at = T0,
                .last_error_at = T1,
                .last_error_status = 400,
                .broker_reconnects = 4,
                .broker_cancels = 1,
                .circuit_opened = 1,
        };
        snprintf(stats.last_error, sizeof stats.last_error, "HTTP 400: {\"error\":\"bad \\\"event\\\"\"}");
        stats.events_dead_lettered[DEAD_LETTER_NOT_JSON] = 5;
        stats.events_dead_lettered[DEAD_LETTER_TOO_LARGE] = 1;
        stats.events_dead_lettered[DEAD_LETTER_HTTP] = 3;
#ifdef PIPELINE_HTTP_STATUS_MAX
        stats.events_dead_lettered_http[400] = 2;
        stats.events_dead_lettered_http[422] = 1;
#endif
        totals = (LedgerTotals) {
                .batches = { [BATCH_PENDING] = 1, [BATCH_SENDING] = 2, [BATCH_SENT] = 11, [BATCH_FAILED] = 2 },
                .events = { [BATCH_PENDING] = 100, [BATCH_SENDING] = 200, [BATCH_SENT] = 1100, [BATCH_FAILED] = 3 },
                .read_at = s.now_monotonic - 1500 * USEC_PER_MSEC,
        };
        s.totals = &totals;
        s.pending_events = 42;
        s.in_flight = 2;
        s.unacked = 150;
        s.circuit = CIRCUIT_HALF_OPEN;
        s.circuit_changed_at = T0;
        s.database_reconnects = 6;
        s.ledger_backlog = 9;

        o = stats_json(&s);
        cr_assert_eq(get_int(o, "pending_items"), 42);
        cr_assert_eq(get_int(o, "batches_sent"), 11);
        cr_assert_eq(get_int(o, "batches_failed"), 2);
        cr_assert_eq(get_int(o, "events.received"), 1234);
        cr_assert_eq(get_int(o, "events.redelivered"), 34);
        cr_assert_eq(get_int(o, "events.sent"), 1100);
        cr_assert_eq(get_int(o, "events.requeued"), 7);
        cr_assert_eq(get_int(o, "events.max_delivery_count"), 4);
        cr_assert_eq(get_int(o, "events.returned_before_consumer_timeout"), 9);
        cr_assert_eq(get_int(o, "batches.held"), 2);
        cr_assert_eq(get_int(o, "events.pending"), 42);
        cr_assert_eq(get_int(o, "events.dead_lettered.total"), 9);
        cr_assert_eq(get_int(o, "events.dead_lettered.by_reason.not_json"), 5);
        cr_assert_eq(get_int(o, "events.dead_lettered.by_reason.too_large"), 1);
#ifdef PIPELINE_HTTP_STATUS_MAX
        /* By the x-transmitter-reason the messages carry, only the statuses seen. */
        cr_assert_eq(get_int(o, "events.dead_lettered.by_reason.http_400"), 2);
        cr_assert_eq(get_int(o, "events.dead_lettered.by_reason.http_422"), 1);
        by_reason = get(o, "events.dead_lettered.by_reason", json_type_object);
        cr_assert_not(json_object_object_get_ex(by_reason, "http_413", NULL));
        cr_assert_not(json_object_object_get_ex(by_reason, "http", NULL));
#else
        cr_assert_eq(get_int(o, "events.dead_lettered.by_reason.http"), 3);
#endif
        cr_assert_eq(get_int(o, "batches.sent"), 11);
        cr_assert_eq(get_int(o, "batches.failed"), 2);
        cr_assert_eq(get_int(o, "batches.split"), 3);
        cr_assert_eq(get_int(o, "batches.in_flight"), 2);
        cr_assert_eq(get_int(o, "bytes.raw"), 1000000);
        cr_assert_eq(get_int(o, "bytes.compressed"), 160000);
        cr_assert_float_eq(json_object_get_double(get(o, "bytes.compression_ratio", json_type_double)), 6.25, 1e-9);
        cr_assert_eq(get_int(o, "http.requests"), 16);
        cr_assert_eq(get_int(o, "http.by_class.no_answer"), 1);
        cr_assert_eq(get_int(o, "http.by_class.2xx"), 11);
        cr_assert_eq(get_int(o, "http.by_class.4xx"), 3);
        cr_assert_eq(get_int(o, "http.by_class.5xx"), 1);
        cr_assert_eq(get_int(o, "prefetch.window"), 300);
        cr_assert_eq(get_int(o, "prefetch.in_use"), 150);
        cr_assert_float_eq(json_object_get_double(get(o, "prefetch.utilization", json_type_double)), 0.5, 1e-12);
        cr_assert_str_eq(get_str(o, "circuit_breaker.state"), "half_open");
        cr_assert_str_eq(get_str(o, "circuit_breaker.since"), "2026-12-01T21:34:42.737Z");
        cr_assert_eq(get_int(o, "circuit_breaker.opened_total"), 1);
        cr_assert_str_eq(get_str(o, "last_success_at"), "2026-12-01T21:34:42.737Z");
        cr_assert_str_eq(get_str(o, "last_error.at"), "2026-12-01T21:34:50.000Z");
        cr_assert_eq(get_int(o, "last_error.http_status"), 400);
        /* Quotes and backslashes of a response body survive as JSON. */
        cr_assert_str_eq(get_str(o, "last_error.message"), "HTTP 400: {\"error\":\"bad \\\"event\\\"\"}");
        cr_assert_str_eq(get_str(o, "rabbitmq.state"), "connected");
        cr_assert_eq(get_int(o, "rabbitmq.reconnects"), 4);
        cr_assert_eq(get_int(o, "rabbitmq.consumer_cancels"), 1);
        cr_assert_str_eq(get_str(o, "database.state"), "connected");
        cr_assert_str_eq(get_str(o, "database.schema"), "current");
        cr_assert_eq(get_int(o, "database.reconnects"), 6);
        cr_assert_eq(get_int(o, "database.backlog"), 9);
        cr_assert_eq(get_int(o, "database.totals.batches.pending"), 1);
        cr_assert_eq(get_int(o, "database.totals.batches.sending"), 2);
        cr_assert_eq(get_int(o, "database.totals.batches.sent"), 11);
        cr_assert_eq(get_int(o, "database.totals.batches.failed"), 2);
        cr_assert_eq(get_int(o, "database.totals.events.sent"), 1100);
        cr_assert_eq(get_int(o, "database.totals.events.failed"), 3);
        cr_assert_float_eq(json_object_get_double(get(o, "database.totals.age_seconds", json_type_double)), 1.5,
                           1e-9);
        json_object_put(o);

        /* A transport error has no status: null, not 0. */
        stats.last_error_status = 0;
        s.broker_connected = false;
        o = stats_json(&s);
        get(o, "last_error.http_status", json_type_null);
        cr_assert_str_eq(get_str(o, "rabbitmq.state"), "disconnected");
        cr_assert_not(json_object_get_boolean(get(o, "ready", json_type_boolean)));
        json_object_put(o);
}

typedef struct Seen {
        char reasons[64][STATUS_REASON_MAX];
        uint64_t counts[64];
        size_t n;
} Seen;

static void collect(const char *reason, uint64_t count, void *userdata) {
        Seen *s = userdata;

        cr_assert_lt(s->n, ELEMENTSOF(s->reasons));
        cr_assert_lt(strlen(reason), STATUS_REASON_MAX);
        snprintf(s->reasons[s->n], STATUS_REASON_MAX, "%s", reason);
        s->counts[s->n++] = count;
}

Test(status, dead_letter_reasons) {
        PipelineStats st = { 0 };
        Seen seen = { 0 };

        st.events_dead_lettered[DEAD_LETTER_EMPTY] = 1;
        st.events_dead_lettered[DEAD_LETTER_RETRIES_EXHAUSTED] = 4;
        st.events_dead_lettered[DEAD_LETTER_HTTP] = 6;
#ifdef PIPELINE_HTTP_STATUS_MAX
        st.events_dead_lettered_http[413] = 1;
        st.events_dead_lettered_http[400] = 2;
        st.events_dead_lettered_http[0] = 3;
#endif
        status_foreach_dead_letter_reason(&st, collect, &seen);

        /* The fixed reasons first, always, in the pipeline's order. */
        cr_assert_str_eq(seen.reasons[0], "empty");
        cr_assert_eq(seen.counts[0], 1);
        cr_assert_str_eq(seen.reasons[1], "not_json");
        cr_assert_eq(seen.counts[1], 0);
        cr_assert_str_eq(seen.reasons[4], "too_large");
        cr_assert_str_eq(seen.reasons[5], "retries_exhausted");
        cr_assert_eq(seen.counts[5], 4);
#ifdef PIPELINE_HTTP_STATUS_MAX
        cr_assert_eq(seen.n, 9);
        cr_assert_str_eq(seen.reasons[6], "http_other");
        cr_assert_eq(seen.counts[6], 3);
        cr_assert_str_eq(seen.reasons[7], "http_400");
        cr_assert_eq(seen.counts[7], 2);
        cr_assert_str_eq(seen.reasons[8], "http_413");
        cr_assert_eq(seen.counts[8], 1);
#else
        cr_assert_eq(seen.n, 7);
        cr_assert_str_eq(seen.reasons[6], "http");
        cr_assert_eq(seen.counts[6], 6);
#endif
}

/* The node in use, as the pipeline shows it (BrokerUrl.shown, passwords hidden already): in the
 * stats, and in the STATUS= line; nothing while not connected. */
Test(status, broker_url) {
        static const char *const urls[] = { "amqp://gw:***@10.0.0.1:5672/", "amqp://gw:***@10.0.0.2:5672/" };
        StatusSnapshot s = healthy();
        char line[256];
        json_object *o;

        o = stats_json(&s);
        get(o, "rabbitmq.url", json_type_null);
        json_object_put(o);

        s.broker_urls = urls;
        s.n_broker_urls = 2;
        s.broker_url = 1;
        cr_assert_str_eq(status_broker_url(&s), urls[1]);
        o = stats_json(&s);
        cr_assert_str_eq(get_str(o, "rabbitmq.url"), "amqp://gw:***@10.0.0.2:5672/");
        cr_assert_str_eq(get_str(o, "rabbitmq.state"), "connected");
        json_object_put(o);
        status_line(&s, line, sizeof line);
        cr_assert_str_eq(line, "sent 0 batches / 0 events, circuit closed, broker connected, database connected, "
                               "in flight 0, broker at amqp://gw:***@10.0.0.2:5672/");

        s.broker_connected = false;
        cr_assert_null(status_broker_url(&s));
        o = stats_json(&s);
        get(o, "rabbitmq.url", json_type_null);
        cr_assert_str_eq(get_str(o, "rabbitmq.state"), "disconnected");
        json_object_put(o);
        status_line(&s, line, sizeof line);
        cr_assert_str_eq(line, "sent 0 batches / 0 events, circuit closed, broker disconnected, "
                               "database connected, in flight 0");

        /* An index past the list (none yet) shows nothing rather than reading past it. */
        s.broker_connected = true;
        s.broker_url = 2;
        cr_assert_null(status_broker_url(&s));
}

Test(status, line) {
        StatusSnapshot s = healthy();
        char line[256];

        stats.batches_sent = 1532;
        stats.events_sent = 153200;
        s.in_flight = 1;
        s.database_connected = false;
        status_line(&s, line, sizeof line);
        cr_assert_str_eq(line, "sent 1532 batches / 153200 events, circuit closed, broker connected, "
                               "database disconnected, in flight 1");

        /* Cut to the buffer, terminated. */
        status_line(&s, line, 12);
        cr_assert_str_eq(line, "sent 1532 b");

        /* systemctl status says why nothing moves. */
        s.schema = SCHEMA_MISSING;
        status_line(&s, line, sizeof line);
        cr_assert_str_eq(line, "consuming nothing: database schema missing, run transmitter --migrate");
}
