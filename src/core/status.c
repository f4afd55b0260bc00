/* SPDX-License-Identifier: MIT */
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>

#include "core/status.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(json_object *, json_object_put);

static int emit(json_object *o, Buffer *out) {
        size_t len;
        const char *s = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &len);

        if (!s)
                return -ENOMEM;
        buffer_clear(out);
        return buffer_append(out, s, len);
}

static json_object *time_or_null(usec_t t) {
        char buf[64];
        struct tm tm;
        time_t sec;

        if (t == 0)
                return NULL;
        sec = (time_t) (t / USEC_PER_SEC);
        if (!gmtime_r(&sec, &tm))
                return NULL;
        snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                 tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned) (t % USEC_PER_SEC / USEC_PER_MSEC));
        return json_object_new_string(buf);
}

static json_object *u64(uint64_t v) {
        return json_object_new_uint64(v);
}

static const char *connected(bool b) {
        return b ? "connected" : "disconnected";
}

const char *status_broker_url(const StatusSnapshot *s) {
        if (!s->broker_connected || !s->broker_urls || s->broker_url >= s->n_broker_urls)
                return NULL;
        return s->broker_urls[s->broker_url];
}

bool status_is_ready(const StatusSnapshot *s) {
        /* Half-open is not ready: the destination has not proved itself yet, and between two failed
         * probes of an outage that goes on, a load balancer must not see it flap to 200. */
        return s->broker_connected && s->database_connected && s->schema == SCHEMA_CURRENT &&
               s->circuit == CIRCUIT_CLOSED && !s->stopping;
}

/* "connected", "disconnected", or what is wrong with the schema of a database that answers. */
static const char *database_state(const StatusSnapshot *s) {
        switch (s->schema) {
        case SCHEMA_MISSING:
                return "schema_missing";
        case SCHEMA_OLDER:
                return "schema_older";
        default:
                return connected(s->database_connected);
        }
}

void status_foreach_dead_letter_reason(const PipelineStats *st, StatusReasonCallback callback, void *userdata) {
        for (DeadLetterKind k = 0; k < _DEAD_LETTER_KIND_MAX; k++) {
                if (k == DEAD_LETTER_HTTP)
                        continue; /* counted per status below */
                callback(dead_letter_kind_to_string(k), st->events_dead_lettered[k], userdata);
        }
        /* Only the statuses seen: a label per possible status would be hundreds of series at 0. */
        for (long code = 0; code < PIPELINE_HTTP_STATUS_MAX; code++) {
                char reason[STATUS_REASON_MAX];

                if (st->events_dead_lettered_http[code] == 0)
                        continue;
                if (code == 0)
                        snprintf(reason, sizeof reason, "http_other");
                else
                        snprintf(reason, sizeof reason, "http_%ld", code);
                callback(reason, st->events_dead_lettered_http[code], userdata);
        }
}

int status_health_json(Buffer *out) {
        static const char body[] = "{\"status\":\"healthy\",\"service\":\"transmitter\"}";
        buffer_clear(out);
        return buffer_append(out, body, sizeof body - 1);
}

static void add_string(json_object *array, const char *s) {
        json_object_array_add(array, json_object_new_string(s));
}

static json_object *check(bool ok, const char *state) {
        json_object *o = json_object_new_object();

        json_object_object_add(o, "ok", json_object_new_boolean(ok));
        json_object_object_add(o, "state", json_object_new_string(state));
        return o;
}

int status_ready_json(const StatusSnapshot *s, Buffer *out, unsigned *ret_http_status) {
        _cleanup_(json_object_putp) json_object *o = json_object_new_object();
        json_object *reasons = json_object_new_array(), *checks = json_object_new_object();
        const char *circuit = circuit_state_to_string(s->circuit);
        bool ready = status_is_ready(s);
        char why[512];

        if (!o || !reasons || !checks) {
                json_object_put(reasons);
                json_object_put(checks);
                return -ENOMEM;
        }
        /* The Python service's flat fields first, then each check with its verdict. */
        json_object_object_add(o, "status", json_object_new_string(ready ? "ready" : "not_ready"));
        json_object_object_add(o, "database", json_object_new_string(database_state(s)));
        json_object_object_add(o, "rabbitmq", json_object_new_string(connected(s->broker_connected)));
        json_object_object_add(o, "circuit_breaker", json_object_new_string(circuit));
        json_object_object_add(checks, "rabbitmq", check(s->broker_connected, connected(s->broker_connected)));
        json_object_object_add(checks, "database",
                               check(s->database_connected && s->schema == SCHEMA_CURRENT, database_state(s)));
        json_object_object_add(checks, "circuit_breaker", check(s->circuit == CIRCUIT_CLOSED, circuit));
        json_object_object_add(o, "checks", checks);

        if (s->stopping)
                add_string(reasons, "stopping: shutting down, draining what is in flight");
        if (!s->broker_connected)
                add_string(reasons, s->schema == SCHEMA_CURRENT
                                            ? "rabbitmq: not connected, reconnecting in the background"
                                            : "rabbitmq: not connected yet: consuming waits for the database schema");
        if (s->schema == SCHEMA_MISSING || s->schema == SCHEMA_OLDER) {
                char schema[256];

                schema_describe(s->schema, s->schema_missing, schema, sizeof schema);
                snprintf(why, sizeof why, "database: %s", schema);
                add_string(reasons, why);
        } else if (!s->database_connected)
                add_string(reasons, "database: not connected, reconnecting in the background");
        if (s->circuit == CIRCUIT_OPEN) {
                const PipelineStats *st = s->stats;

                /* The last error is what opened it, or what the last probe got. */
                if (st && st->last_error_at > 0)
                        snprintf(why, sizeof why, "circuit_breaker: open, the destination is failing: %s",
                                 st->last_error);
                else
                        snprintf(why, sizeof why, "circuit_breaker: open, the destination is failing");
                add_string(reasons, why);
        } else if (s->circuit == CIRCUIT_HALF_OPEN)
                add_string(reasons, "circuit_breaker: half_open, probing");
        json_object_object_add(o, "reasons", reasons);

        *ret_http_status = ready ? 200 : 503;
        return emit(o, out);
}

static void add_reason(const char *reason, uint64_t count, void *userdata) {
        json_object_object_add(userdata, reason, json_object_new_uint64(count));
}

int status_stats_json(const StatusSnapshot *s, Buffer *out) {
        _cleanup_(json_object_putp) json_object *o = json_object_new_object();
        const PipelineStats *st = s->stats;
        json_object *events, *dead, *by_reason, *batches, *bytes, *http, *by_class, *prefetch, *circuit, *broker, *db;
        uint64_t dead_total = 0;

        if (!o)
                return -ENOMEM;

        json_object_object_add(o, "service", json_object_new_string("transmitter"));
        json_object_object_add(o, "version", json_object_new_string(s->version));
        json_object_object_add(o, "instance", json_object_new_string(s->instance_id));
        json_object_object_add(o, "started_at", time_or_null(s->now_realtime - s->uptime));
        json_object_object_add(o, "uptime_seconds", json_object_new_double((double) s->uptime / USEC_PER_SEC));
        json_object_object_add(o, "ready", json_object_new_boolean(status_is_ready(s)));
        json_object_object_add(o, "stopping", json_object_new_boolean(s->stopping));

        /* The Python service's three fields, same names and meaning. */
        json_object_object_add(o, "pending_items", u64(s->pending_events));
        json_object_object_add(o, "batches_sent", u64(st->batches_sent));
        json_object_object_add(o, "batches_failed", u64(st->batches_failed));

        events = json_object_new_object();
        json_object_object_add(events, "received", u64(st->events_received));
        json_object_object_add(events, "redelivered", u64(st->events_redelivered));
        json_object_object_add(events, "max_delivery_count", u64(st->max_delivery_count));
        json_object_object_add(events, "returned_before_consumer_timeout", u64(st->events_returned_expiring));
        json_object_object_add(events, "sent", u64(st->events_sent));
        json_object_object_add(events, "requeued", u64(st->events_requeued));
        dead = json_object_new_object();
        by_reason = json_object_new_object();
        for (DeadLetterKind k = 0; k < _DEAD_LETTER_KIND_MAX; k++)
                dead_total += st->events_dead_lettered[k];
        status_foreach_dead_letter_reason(st, add_reason, by_reason);
        json_object_object_add(dead, "total", u64(dead_total));
        json_object_object_add(dead, "by_reason", by_reason);
        json_object_object_add(events, "dead_lettered", dead);
        json_object_object_add(events, "pending", u64(s->pending_events));
        json_object_object_add(o, "events", events);

        batches = json_object_new_object();
        json_object_object_add(batches, "sent", u64(st->batches_sent));
        json_object_object_add(batches, "failed", u64(st->batches_failed));
        json_object_object_add(batches, "split", u64(st->batches_split));
        json_object_object_add(batches, "held", u64(st->batches_held));
        json_object_object_add(batches, "in_flight", u64(s->in_flight));
        json_object_object_add(o, "batches", batches);

        bytes = json_object_new_object();
        json_object_object_add(bytes, "raw", u64(st->bytes_raw));
        json_object_object_add(bytes, "compressed", u64(st->bytes_compressed));
        json_object_object_add(bytes, "compression_ratio",
                               st->bytes_compressed > 0
                                       ? json_object_new_double((double) st->bytes_raw / (double) st->bytes_compressed)
                                       : NULL);
        json_object_object_add(o, "bytes", bytes);

        http = json_object_new_object();
        json_object_object_add(http, "requests", u64(st->http_requests));
        by_class = json_object_new_object();
        json_object_object_add(by_class, "no_answer", u64(st->http_by_class[0]));
        for (int c = 1; c <= 5; c++) {
                char name[8];
                snprintf(name, sizeof name, "%dxx", c);
                json_object_object_add(by_class, name, u64(st->http_by_class[c]));
        }
        json_object_object_add(http, "by_class", by_class);
        json_object_object_add(o, "http", http);

        prefetch = json_object_new_object();
        json_object_object_add(prefetch, "window", u64(s->prefetch));
        json_object_object_add(prefetch, "in_use", u64(s->unacked));
        json_object_object_add(prefetch, "utilization",
                               s->prefetch > 0 ? json_object_new_double((double) s->unacked / s->prefetch) : NULL);
        json_object_object_add(o, "prefetch", prefetch);

        circuit = json_object_new_object();
        json_object_object_add(circuit, "state", json_object_new_string(circuit_state_to_string(s->circuit)));
        json_object_object_add(circuit, "since", time_or_null(s->circuit_changed_at));
        json_object_object_add(circuit, "opened_total", u64(st->circuit_opened));
        {
                json_object *transitions = json_object_new_object();
                for (CircuitState c = 0; c < _CIRCUIT_STATE_MAX; c++)
                        json_object_object_add(transitions, circuit_state_to_string(c), u64(st->circuit_transitions[c]));
                json_object_object_add(circuit, "transitions", transitions);
        }
        json_object_object_add(o, "circuit_breaker", circuit);

        json_object_object_add(o, "last_success_at", time_or_null(st->last_success_at));
        if (st->last_error_at > 0) {
                json_object *e = json_object_new_object();
                json_object_object_add(e, "at", time_or_null(st->last_error_at));
                json_object_object_add(e, "http_status",
                                       st->last_error_status > 0 ? json_object_new_int64(st->last_error_status) : NULL);
                json_object_object_add(e, "message", json_object_new_string(st->last_error));
                json_object_object_add(o, "last_error", e);
        } else
                json_object_object_add(o, "last_error", NULL);

        broker = json_object_new_object();
        json_object_object_add(broker, "state", json_object_new_string(connected(s->broker_connected)));
        json_object_object_add(broker, "url",
                               status_broker_url(s) ? json_object_new_string(status_broker_url(s)) : NULL);
        json_object_object_add(broker, "reconnects", u64(st->broker_reconnects));
        json_object_object_add(broker, "consumer_cancels", u64(st->broker_cancels));
        json_object_object_add(o, "rabbitmq", broker);

        db = json_object_new_object();
        json_object_object_add(db, "state", json_object_new_string(connected(s->database_connected)));
        json_object_object_add(db, "schema", json_object_new_string(schema_state_to_string(s->schema)));
        json_object_object_add(db, "reconnects", u64(s->database_reconnects));
        json_object_object_add(db, "backlog", u64(s->ledger_backlog));
        if (s->totals && s->totals->read_at > 0) {
                json_object *totals = json_object_new_object(), *tb = json_object_new_object(),
                            *te = json_object_new_object();
                for (BatchStatus b = 0; b < _BATCH_STATUS_MAX; b++) {
                        json_object_object_add(tb, batch_status_to_string(b), u64(s->totals->batches[b]));
                        json_object_object_add(te, batch_status_to_string(b), u64(s->totals->events[b]));
                }
                json_object_object_add(totals, "batches", tb);
                json_object_object_add(totals, "events", te);
                /* Read in the background at most every couple of seconds; older while the
                 * database is away. */
                usec_t age = s->now_monotonic > s->totals->read_at ? s->now_monotonic - s->totals->read_at : 0;
                json_object_object_add(totals, "age_seconds", json_object_new_double((double) age / USEC_PER_SEC));
                json_object_object_add(db, "totals", totals);
        } else
                json_object_object_add(db, "totals", NULL);
        json_object_object_add(o, "database", db);

        return emit(o, out);
}

void status_line(const StatusSnapshot *s, char *buf, size_t size) {
        const char *url = status_broker_url(s);

        if (s->schema == SCHEMA_MISSING || s->schema == SCHEMA_OLDER) {
                char schema[256];

                schema_describe(s->schema, s->schema_missing, schema, sizeof schema);
                snprintf(buf, size, "consuming nothing: database %s", schema);
                return;
        }
        /* The node last: the fixed part reads the same whichever node it is. */
        snprintf(buf, size,
                 "sent %" PRIu64 " batches / %" PRIu64 " events, circuit %s, broker %s, database %s, in flight %u%s%s",
                 s->stats->batches_sent, s->stats->events_sent, circuit_state_to_string(s->circuit),
                 connected(s->broker_connected), connected(s->database_connected), s->in_flight,
                 url ? ", broker at " : "", strempty(url));
}
