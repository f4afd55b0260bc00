/* SPDX-License-Identifier: MIT */
/* The Pipeline itself: its life (new, start, reconfigure, stop, free), the broker's and the
 * database's events, and the deferred work that lets batches out, sends the acks and checks
 * whether a stop is done. The data path is in form.c, send.c and settle.c (internal.h). */
#include <inttypes.h>
#include <stdio.h>

#include "os/log.h"
#include "pipeline/internal.h"
#include "version.h"

static void check_stopped(Pipeline *p);

void pipeline_schedule(Pipeline *p) {
        (void) sd_event_source_set_enabled(p->work, SD_EVENT_ONESHOT);
}

static int on_work(sd_event_source *s, void *userdata) {
        Pipeline *p = userdata;

        pipeline_dispatch(p);
        pipeline_flush_acks(p);
        check_stopped(p);
        return 0;
}

static int on_batch_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        pipeline_flush_open_batch(userdata);
        return 0;
}

/* The broker connection they came on is gone: whatever is not on the wire yet is dropped
 * (the broker redelivers it); requests on the wire finish, but are not acked. */
static void abandon_epoch(Pipeline *p) {
        pipeline_drop_open_batch(p);
        pipeline_review_backoff(p);
        /* Batches ready to go are finished by the next dispatch. */
        pipeline_schedule(p);
        ack_tracker_reset(&p->acks);
        timeline_flush(p);
}

static const char *broker_shown(const Pipeline *p, size_t index) {
        return index < p->broker_urls.n ? p->broker_urls.urls[index].shown : "?";
}

/* FNV-1a: connect errors are told apart by a hash, never kept (they may name hosts at length). */
static uint64_t message_hash(const char *m) {
        uint64_t h = UINT64_C(0xcbf29ce484222325);

        for (; *m; m++)
                h = (h ^ (uint8_t) *m) * UINT64_C(0x100000001b3);
        return h | 1; /* never 0, which means "none" */
}

static void on_broker_connected(Pipeline *p, const AmqpEvent *ev) {
        const char *url = broker_shown(p, ev->url_index);

        p->epoch = ev->epoch;
        ack_tracker_reset(&p->acks);
        timeline_flush(p);
        p->broker_connected = true;
        p->broker_url = ev->url_index;
        memset(p->broker_errors, 0, p->broker_urls.n * sizeof p->broker_errors[0]);
        if (p->broker_ever_connected) {
                p->stats.broker_reconnects++;
                log_struct(LOG_NOTICE, LOG_MESSAGE("Connection to RabbitMQ regained at %s", url),
                           LOG_MESSAGE_ID(MESSAGE_ID_BROKER_REGAINED), LOG_FIELD("BROKER_URL=%s", url), NULL);
        } else
                log_struct(LOG_INFO,
                           LOG_MESSAGE("Connected to RabbitMQ at %s, consuming from %s (prefetch %u)", url,
                                       p->config->rabbitmq_queue, config_prefetch(p->config)),
                           LOG_FIELD("BROKER_URL=%s", url), NULL);
        p->broker_ever_connected = true;
}

static void on_broker_disconnected(Pipeline *p, const AmqpEvent *ev) {
        const char *url = broker_shown(p, ev->url_index), *message = strempty(ev->message);

        if (ev->epoch != 0 && ev->epoch == p->epoch) {
                p->epoch = 0;
                p->broker_connected = false;
                if (!p->stopping)
                        log_struct(LOG_WARNING,
                                   LOG_MESSAGE("Connection to RabbitMQ lost at %s: %s%s", url, message,
                                               p->broker_urls.n > 1 ? "; trying the next URL" : ""),
                                   LOG_MESSAGE_ID(MESSAGE_ID_BROKER_LOST), LOG_FIELD("BROKER_URL=%s", url), NULL);
                abandon_epoch(p);
        } else if (ev->url_index < p->broker_urls.n && p->broker_errors[ev->url_index] != message_hash(message)) {
                /* Each node's each distinct reason once, not every attempt of a long outage. */
                log_struct(LOG_WARNING,
                           LOG_MESSAGE("Cannot connect to RabbitMQ at %s (retrying in the background): %s", url,
                                       message),
                           LOG_FIELD("BROKER_URL=%s", url), NULL);
                p->broker_errors[ev->url_index] = message_hash(message);
        }
}

/* basic.cancel from the broker: the thread declares the topology and consumes again on the same
 * channel, so nothing held is lost; this only says so, with what might explain it. */
static void on_broker_cancelled(Pipeline *p, const AmqpEvent *ev) {
        const char *url = broker_shown(p, p->broker_url);
        usec_t oldest = pipeline_oldest_held(p), t = now(CLOCK_MONOTONIC);
        char held[128] = "";

        if (ev->epoch != p->epoch || p->stopping)
                return;
        /* A consumer timeout shorter than RABBITMQ_CONSUMER_TIMEOUT_S shows here. */
        if (oldest != USEC_INFINITY)
                snprintf(held, sizeof held, "; the oldest delivery held arrived %" PRIu64 " s ago",
                         (t - MIN(oldest, t)) / USEC_PER_SEC);
        log_struct(LOG_WARNING,
                   LOG_MESSAGE("RabbitMQ at %s cancelled the consumer of %s: %s%s; declaring the topology and "
                               "consuming again",
                               url, p->config->rabbitmq_queue, strempty(ev->message), held),
                   LOG_FIELD("BROKER_URL=%s", url), NULL);
        p->stats.broker_cancels++;
}

static void on_amqp_event(AmqpConsumer *c, AmqpEvent *ev, void *userdata) {
        Pipeline *p = userdata;

        switch (ev->type) {
        case AMQP_EVENT_DELIVERY:
                pipeline_receive(p, ev->delivery);
                break;

        case AMQP_EVENT_DEAD_LETTERED:
                pipeline_dead_lettered(p, ev->delivery, ev->ok, ev->message);
                break;

        case AMQP_EVENT_CONNECTED:
                on_broker_connected(p, ev);
                break;

        case AMQP_EVENT_DISCONNECTED:
                on_broker_disconnected(p, ev);
                pipeline_schedule(p);
                break;

        case AMQP_EVENT_WARNING:
                log_warning("RabbitMQ: %s", strempty(ev->message));
                break;

        case AMQP_EVENT_CANCELLED:
                on_broker_cancelled(p, ev);
                break;

        case AMQP_EVENT_ACKS_SENT:
                timeline_acks_sent(p, ev->epoch, &ev->ack_report);
                break;

        default:
                break;
        }
}

static void on_ledger_state(Ledger *l, bool connected, const char *message, void *userdata) {
        Pipeline *p = userdata;

        if (connected) {
                if (p->database_ever_connected)
                        log_struct(LOG_NOTICE, LOG_MESSAGE("Connection to PostgreSQL regained"),
                                   LOG_MESSAGE_ID(MESSAGE_ID_DATABASE_REGAINED), NULL);
                else
                        log_info("Connected to PostgreSQL");
                p->database_ever_connected = true;
                p->last_database_error[0] = '\0';
        } else if (message && streq(message, p->last_database_error))
                /* Each distinct reason once, not every attempt of a long outage. */
                log_debug("PostgreSQL still unavailable: %s", message);
        else if (message) {
                if (p->database_ever_connected && ledger_reconnects(l) > 0 && !p->stopping)
                        log_struct(LOG_WARNING, LOG_MESSAGE("PostgreSQL unavailable: %s", message),
                                   LOG_MESSAGE_ID(MESSAGE_ID_DATABASE_LOST), NULL);
                else
                        log_warning("Cannot connect to PostgreSQL (retrying in the background): %s", message);
                snprintf(p->last_database_error, sizeof p->last_database_error, "%s", message);
        }
}

/* Shutdown. */

static void check_stopped(Pipeline *p) {
        void (*done)(Pipeline *, bool, void *);

        if (!p->stopping || !p->stop_done)
                return;
        if (p->batches_head || batcher_count(&p->batcher) > 0 || p->dead_letters_in_flight > 0 ||
            ledger_backlog(p->ledger) > 0)
                return;
        done = p->stop_done;
        p->stop_done = NULL;
        p->stop_timer = sd_event_source_disable_unref(p->stop_timer);
        done(p, true, p->stop_userdata);
}

static int on_stop_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Pipeline *p = userdata;
        void (*done)(Pipeline *, bool, void *) = p->stop_done;
        size_t held = pipeline_pending_events(p);

        p->stop_done = NULL;
        p->stop_timer = sd_event_source_disable_unref(p->stop_timer);
        log_warning("Shutdown timeout: %zu event(s) still unsettled go back to the queue", held);
        if (done)
                done(p, false, p->stop_userdata);
        return 0;
}

void pipeline_stop(Pipeline *p, usec_t timeout, void (*done)(Pipeline *p, bool clean, void *userdata),
                   void *userdata) {
        int r;

        if (p->stopping)
                return;
        p->stopping = true;
        p->stop_done = done;
        p->stop_userdata = userdata;

        (void) amqp_consumer_cancel(p->amqp);

        pipeline_review_backoff(p);
        pipeline_flush_open_batch(p);
        /* Even without an open batch: batches waiting for an open circuit go back now, not
         * at the shutdown timeout. */
        pipeline_schedule(p);

        r = sd_event_add_time_relative(p->event, &p->stop_timer, CLOCK_MONOTONIC, timeout, 0, on_stop_timer, p);
        if (r < 0)
                log_error_errno(r, "Failed to arm the shutdown timer: %s", STRERROR(r));
        else
                (void) sd_event_source_set_description(p->stop_timer, "stop-timer");
}

/* Setup. */

static void apply_config(Pipeline *p, const Config *c) {
        p->config = c;
        batcher_set_limits(&p->batcher, &(BatchLimits) {
                                                .max_events = c->batch_size,
                                                .max_bytes = c->batch_max_bytes,
                                                .max_age = (usec_t) c->batch_interval_s * USEC_PER_SEC,
                                        });
        p->retry = (RetryPolicy) {
                .max_attempts = c->retry_max_attempts,
                .multiplier = c->retry_backoff_multiplier,
                .max_delay = (usec_t) c->retry_max_delay_s * USEC_PER_SEC,
                .jitter = c->retry_jitter,
        };
        circuit_configure(&p->circuit, c->circuit_failure_threshold, (usec_t) c->circuit_reset_timeout_s * USEC_PER_SEC);
}

int pipeline_reconfigure(Pipeline *p, const Config *c) {
        int r;

        apply_config(p, c);
        amqp_consumer_set_trace(p->amqp, c->batch_timeline);
        if (!c->batch_timeline)
                timeline_flush(p);
        pipeline_arm_batch_timer(p);
        if (batcher_full(&p->batcher))
                pipeline_flush_open_batch(p);
        pipeline_arm_expiry(p);

        r = envelope_set_level(p->envelope, c->compression_level);
        if (r < 0)
                return r;
        r = sender_set_token(p->sender, c->auth_token);
        if (r < 0)
                return r;
        sender_set_timeouts(p->sender, (usec_t) c->request_timeout_s * USEC_PER_SEC,
                            (usec_t) c->connect_timeout_s * USEC_PER_SEC);
        r = sender_set_max_connections(p->sender, c->max_in_flight);
        if (r < 0)
                return r;
        pipeline_schedule(p);
        return 0;
}

int pipeline_new(sd_event *e, const Config *c, Telemetry *telemetry, Pipeline **ret) {
        _cleanup_(pipeline_freep) Pipeline *p = NULL;
        _cleanup_free_ char *user_agent = NULL;
        usec_t t = now(CLOCK_MONOTONIC);
        int r;

        p = calloc(1, sizeof *p);
        if (!p)
                return -ENOMEM;
        p->event = sd_event_ref(e);
        p->telemetry = telemetry;
        ack_tracker_init(&p->acks);
        batcher_init(&p->batcher, &(BatchLimits) { .max_events = c->batch_size, .max_bytes = c->batch_max_bytes });
        circuit_init(&p->circuit, c->circuit_failure_threshold, (usec_t) c->circuit_reset_timeout_s * USEC_PER_SEC, t);
        p->circuit_changed_realtime = now(CLOCK_REALTIME);
        apply_config(p, c);

        /* The list the configuration checked; the AMQP thread parses it the same way. */
        r = broker_url_list_parse(c->rabbitmq_url, &p->broker_urls, NULL, NULL);
        if (r < 0)
                return r;
        p->broker_shown = calloc(p->broker_urls.n, sizeof p->broker_shown[0]);
        p->broker_errors = calloc(p->broker_urls.n, sizeof p->broker_errors[0]);
        if (!p->broker_shown || !p->broker_errors)
                return -ENOMEM;
        for (size_t i = 0; i < p->broker_urls.n; i++)
                p->broker_shown[i] = p->broker_urls.urls[i].shown;

        r = envelope_new(c->compression_level, &p->envelope);
        if (r < 0)
                return r;

        if (asprintf(&user_agent, "transmitter/%s", TRANSMITTER_VERSION) < 0)
                return -ENOMEM;
        r = sender_new(e,
                       &(SenderSettings) {
                               .url = c->destination_url,
                               .ca_file = c->tls_ca_file,
                               .cert_file = c->tls_cert_file,
                               .key_file = c->tls_key_file,
                               .allow_insecure_http = c->allow_insecure_http,
                               .request_timeout = (usec_t) c->request_timeout_s * USEC_PER_SEC,
                               .connect_timeout = (usec_t) c->connect_timeout_s * USEC_PER_SEC,
                               .max_connections = c->max_in_flight,
                               .user_agent = user_agent,
                       },
                       &p->sender);
        if (r < 0)
                return r;
        r = sender_set_token(p->sender, c->auth_token);
        if (r < 0)
                return r;

        r = ledger_new(e,
                       &(LedgerSettings) {
                               .url = c->database_url,
                               .instance_id = c->instance_id,
                               .destination_url = c->destination_url,
                               .connect_timeout = (usec_t) c->connect_timeout_s * USEC_PER_SEC,
                       },
                       on_ledger_state, p, &p->ledger);
        if (r < 0)
                return r;

        r = amqp_consumer_new(e,
                              &(AmqpSettings) {
                                      .url = c->rabbitmq_url,
                                      .ca_file = c->rabbitmq_ca_file,
                                      .exchange = c->rabbitmq_exchange,
                                      .queue = c->rabbitmq_queue,
                                      .dead_letter_exchange = c->rabbitmq_dead_letter_exchange,
                                      .queue_type = c->rabbitmq_queue_type,
                                      .prefetch = config_prefetch(c),
                                      .heartbeat_s = c->rabbitmq_heartbeat_s,
                                      .connect_timeout_s = c->connect_timeout_s,
                                      .instance_id = c->instance_id,
                              },
                              on_amqp_event, p, &p->amqp);
        if (r < 0)
                return r;
        amqp_consumer_set_trace(p->amqp, c->batch_timeline);

        /* 1 ms, not sd-event's default 250 ms: a lone event waits the interval (DESIGN §4), no longer. */
        r = sd_event_add_time(e, &p->batch_timer, CLOCK_MONOTONIC, USEC_INFINITY, USEC_PER_MSEC, on_batch_timer, p);
        if (r < 0)
                return r;
        (void) sd_event_source_set_enabled(p->batch_timer, SD_EVENT_OFF);
        (void) sd_event_source_set_description(p->batch_timer, "batch-timer");

        r = sd_event_add_time(e, &p->circuit_timer, CLOCK_MONOTONIC, USEC_INFINITY, 0, pipeline_on_circuit_timer, p);
        if (r < 0)
                return r;
        (void) sd_event_source_set_enabled(p->circuit_timer, SD_EVENT_OFF);
        (void) sd_event_source_set_description(p->circuit_timer, "circuit-timer");

        r = pipeline_expiry_new(p);
        if (r < 0)
                return r;

        r = sd_event_add_defer(e, &p->work, on_work, p);
        if (r < 0)
                return r;
        (void) sd_event_source_set_enabled(p->work, SD_EVENT_OFF);
        (void) sd_event_source_set_description(p->work, "pipeline-work");

        *ret = TAKE_PTR(p);
        return 0;
}

int pipeline_start(Pipeline *p) {
        int r;

        r = ledger_start(p->ledger);
        if (r < 0)
                return r;
        return amqp_consumer_start(p->amqp);
}

Pipeline *pipeline_free(Pipeline *p) {
        if (!p)
                return NULL;

        /* The consumer first: its thread sends the acks already queued, then closes the
         * connection, which returns everything else to the queue. */
        p->amqp = amqp_consumer_free(p->amqp);

        /* What is still held goes back to the broker with the connection, closed above. */
        while (p->batches_head) {
                Batch *b = p->batches_head;

                for (size_t i = 0; i < b->n; i++)
                        delivery_settle(p, b->deliveries[i], FATE_DROP);
                b->n = 0;
                batch_destroy(p, b);
        }
        pipeline_drop_open_batch(p);
        batcher_done(&p->batcher);
        ack_tracker_done(&p->acks);
        timeline_flush(p);

        sender_free(p->sender);
        ledger_free(p->ledger);
        envelope_free(p->envelope);
        free(p->scratch);
        free(p->broker_shown);
        free(p->broker_errors);
        broker_url_list_done(&p->broker_urls);
        sd_event_source_disable_unref(p->batch_timer);
        sd_event_source_disable_unref(p->circuit_timer);
        sd_event_source_disable_unref(p->stop_timer);
        sd_event_source_disable_unref(p->work);
        sd_event_source_disable_unref(p->expiry_timer);
        sd_event_unref(p->event);
        return mfree(p);
}

const PipelineStats *pipeline_stats(const Pipeline *p) {
        return &p->stats;
}

bool pipeline_broker_connected(const Pipeline *p) {
        return p->broker_connected;
}

const char *const *pipeline_broker_urls(const Pipeline *p, size_t *ret_n) {
        *ret_n = p->broker_urls.n;
        return p->broker_shown;
}

size_t pipeline_broker_url(const Pipeline *p) {
        return p->broker_url;
}

bool pipeline_database_connected(const Pipeline *p) {
        return ledger_is_connected(p->ledger);
}

uint64_t pipeline_database_reconnects(const Pipeline *p) {
        return ledger_reconnects(p->ledger);
}

CircuitState pipeline_circuit_state(const Pipeline *p) {
        return p->circuit.state;
}

usec_t pipeline_circuit_changed_at(const Pipeline *p) {
        return p->circuit_changed_realtime;
}

unsigned pipeline_in_flight(const Pipeline *p) {
        return p->slots_used;
}

size_t pipeline_pending_events(const Pipeline *p) {
        size_t n = batcher_count(&p->batcher) + p->dead_letters_in_flight;

        for (const Batch *b = p->batches_head; b; b = b->next)
                n += b->n;
        return n;
}

size_t pipeline_unacked(const Pipeline *p) {
        return ack_tracker_outstanding(&p->acks);
}

size_t pipeline_ledger_backlog(const Pipeline *p) {
        return ledger_backlog(p->ledger);
}

const LedgerTotals *pipeline_ledger_totals(Pipeline *p, usec_t max_age) {
        return ledger_totals(p->ledger, max_age);
}
