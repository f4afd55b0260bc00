/* SPDX-License-Identifier: MIT */
#include <inttypes.h>
#include <stdio.h>
#include <sys/uio.h>

#include "amqp/consumer.h"
#include "core/ack-tracker.h"
#include "core/batcher.h"
#include "core/envelope.h"
#include "core/json-check.h"
#include "core/retry.h"
#include "core/telemetry.h"
#include "core/uuid.h"
#include "daemon/pipeline.h"
#include "http/sender.h"
#include "os/log.h"
#include "pg/ledger.h"
#include "util/buffer.h"
#include "version.h"

typedef enum BatchPhase {
        PHASE_WAITING,     /* formed, waiting for a send slot or the circuit */
        PHASE_SENDING,     /* a request is on the wire */
        PHASE_BACKOFF,     /* waiting out the retry delay */
        PHASE_RETRY_READY, /* delay over, waiting for the circuit */
        PHASE_SETTLING,    /* final row appended, waiting for its commit */
} BatchPhase;

/* What happens to a batch's messages once its final row is committed. */
typedef enum Settlement {
        SETTLEMENT_ACK,
        SETTLEMENT_REQUEUE,
        SETTLEMENT_DEAD_LETTER,
        SETTLEMENT_NONE, /* the broker connection they came on is gone: it redelivers them */
} Settlement;

typedef struct Batch {
        Pipeline *pipeline;
        char id[UUID_STRING_MAX];
        uint64_t epoch;
        AmqpDelivery **deliveries;
        size_t n;
        Buffer payload;
        size_t raw_size;
        unsigned attempt;
        uint64_t circuit_period; /* of the attempt on the wire: which circuit state let it out */
        BatchPhase phase;
        bool holds_slot;
        Settlement settlement;
        long final_status;
        sd_event_source *retry_timer;
        struct Batch *prev, *next;
} Batch;

struct Pipeline {
        sd_event *event;
        const Config *config;
        Telemetry *telemetry; /* NULL: none */

        AmqpConsumer *amqp;
        Sender *sender;
        Ledger *ledger;
        Envelope *envelope;

        uint64_t epoch; /* of the current broker connection, 0: none */
        bool broker_connected;
        bool broker_ever_connected;
        char last_broker_error[256];
        AckTracker acks;

        Batcher batcher;
        sd_event_source *batch_timer;
        struct iovec *scratch;
        size_t scratch_size;

        Batch *batches_head, *batches_tail; /* every live batch, oldest first */
        unsigned slots_used;
        size_t dead_letters_in_flight;

        RetryPolicy retry;
        Circuit circuit;
        usec_t circuit_changed_realtime;
        sd_event_source *circuit_timer;

        bool database_ever_connected;
        char last_database_error[256];

        bool stopping;
        sd_event_source *stop_timer;
        void (*stop_done)(Pipeline *p, bool clean, void *userdata);
        void *stop_userdata;

        PipelineStats stats;
};

static void dispatch(Pipeline *p);
static void check_stopped(Pipeline *p);

/* Settling deliveries. */

static void flush_acks(Pipeline *p) {
        AckCommand commands[64];
        size_t n;

        do {
                n = ack_tracker_drain(&p->acks, commands, ELEMENTSOF(commands));
                if (n > 0 && amqp_consumer_settle(p->amqp, p->epoch, commands, n) < 0)
                        /* Unsent acks leave the messages unacked: the broker redelivers them. */
                        log_error("Out of memory queueing %zu ack(s)", n);
        } while (n == ELEMENTSOF(commands));
}

/* Marks one delivery settled and frees it. Deliveries of an earlier connection are only
 * freed: the broker has requeued them already. */
static void settle_delivery(Pipeline *p, AmqpDelivery *d, SettleKind kind) {
        if (d->epoch == p->epoch && p->epoch != 0) {
                int r = ack_tracker_settle(&p->acks, d->tag, kind);
                if (r < 0)
                        log_error_errno(r, "Delivery tag %" PRIu64 " cannot be settled: %s", d->tag, STRERROR(r));
        }
        amqp_delivery_free(d);
}

static void count_dead_letter(Pipeline *p, const AmqpDelivery *d) {
        long s = d->dead_letter_status;

        p->stats.events_dead_lettered[d->dead_letter_kind]++;
        if (d->dead_letter_kind == DEAD_LETTER_HTTP)
                p->stats.events_dead_lettered_http[s > 0 && s < PIPELINE_HTTP_STATUS_MAX ? s : 0]++;
}

static void dead_letter(Pipeline *p, AmqpDelivery *d, DeadLetterKind kind, long http_status, const char *batch_id) {
        DeadLetterReason reason = { .http_status = http_status };
        int r;

        if (d->epoch != p->epoch || p->epoch == 0) {
                amqp_delivery_free(d);
                return;
        }
        if (kind == DEAD_LETTER_HTTP)
                snprintf(reason.reason, sizeof reason.reason, "http_%ld", http_status);
        else
                snprintf(reason.reason, sizeof reason.reason, "%s", dead_letter_kind_to_string(kind));
        if (batch_id)
                snprintf(reason.batch_id, sizeof reason.batch_id, "%s", batch_id);

        d->dead_letter_kind = kind;
        d->dead_letter_status = http_status;
        r = amqp_consumer_dead_letter(p->amqp, d, &reason);
        if (r < 0) {
                /* The queue's own dead-letter exchange still catches it. */
                log_error_errno(r, "Failed to queue a dead-letter publish, rejecting the message instead: %s", STRERROR(r));
                count_dead_letter(p, d);
                settle_delivery(p, d, SETTLE_REJECT);
                flush_acks(p);
                return;
        }
        p->dead_letters_in_flight++;
}

static void on_dead_lettered(Pipeline *p, AmqpDelivery *d, bool ok, const char *not_published) {
        p->dead_letters_in_flight--;
        if (d->epoch != p->epoch || p->epoch == 0 || (!ok && !isempty(not_published))) {
                /* Its connection is gone or going: the broker redelivers it, and it is
                 * dead-lettered then. Neither acked nor rejected here. */
                if (!ok && !isempty(not_published))
                        log_warning("Dead-letter publish of delivery %" PRIu64 " did not happen (%s); the broker "
                                    "redelivers the message",
                                    d->tag, not_published);
                amqp_delivery_free(d);
                check_stopped(p);
                return;
        }
        if (!ok)
                log_warning("Dead-letter publish of delivery %" PRIu64 " was not confirmed; rejecting it to the "
                            "queue's dead-letter exchange",
                            d->tag);
        count_dead_letter(p, d);
        settle_delivery(p, d, ok ? SETTLE_ACK : SETTLE_REJECT);
        flush_acks(p);
        check_stopped(p);
}

/* Batches. */

static void batch_unlink(Pipeline *p, Batch *b) {
        if (b->prev)
                b->prev->next = b->next;
        else
                p->batches_head = b->next;
        if (b->next)
                b->next->prev = b->prev;
        else
                p->batches_tail = b->prev;
        b->prev = b->next = NULL;
}

static void batch_insert_after(Pipeline *p, Batch *after, Batch *b) {
        b->prev = after;
        b->next = after ? after->next : p->batches_head;
        if (b->next)
                b->next->prev = b;
        else
                p->batches_tail = b;
        if (after)
                after->next = b;
        else
                p->batches_head = b;
}

static Batch *batch_free(Batch *b) {
        if (!b)
                return NULL;
        for (size_t i = 0; i < b->n; i++)
                amqp_delivery_free(b->deliveries[i]);
        free(b->deliveries);
        buffer_done(&b->payload);
        sd_event_source_disable_unref(b->retry_timer);
        return mfree(b);
}

static void release_slot(Pipeline *p, Batch *b) {
        if (b->holds_slot) {
                b->holds_slot = false;
                p->slots_used--;
        }
}

static void batch_destroy(Pipeline *p, Batch *b) {
        release_slot(p, b);
        batch_unlink(p, b);
        batch_free(b);
}

static int encode_batch(Pipeline *p, Batch *b) {
        BatchIdBuilder idb;
        Uuid id;
        int r;

        if (p->scratch_size < b->n) {
                struct iovec *v = realloc(p->scratch, b->n * sizeof *v);
                if (!v)
                        return -ENOMEM;
                p->scratch = v;
                p->scratch_size = b->n;
        }

        batch_id_begin(&idb);
        for (size_t i = 0; i < b->n; i++) {
                const AmqpDelivery *d = b->deliveries[i];
                batch_id_add(&idb, d->event_id, d->event_id_len, d->body, d->body_size);
                p->scratch[i] = (struct iovec) { .iov_base = (void *) d->body, .iov_len = d->body_size };
        }
        batch_id_end(&idb, &id);
        uuid_to_string(&id, b->id);

        r = envelope_encode(p->envelope, b->id, p->scratch, b->n, &b->payload, &b->raw_size);
        if (r < 0)
                return r;

        p->stats.bytes_raw += b->raw_size;
        p->stats.bytes_compressed += b->payload.size;
        if (p->telemetry)
                telemetry_batch_formed(p->telemetry, b->n, b->payload.size);
        return 0;
}

static void ledger_append_or_log(Pipeline *p, const LedgerRecord *rec, LedgerCommitted committed, void *userdata) {
        int r = ledger_append(p->ledger, rec, committed, userdata);
        if (r < 0)
                /* Only out of memory; without its record the batch is never settled: redelivered later. */
                log_error_errno(r, "Failed to queue tracking record for batch %s: %s", rec->batch_id, STRERROR(r));
}

/* Makes a batch of these deliveries (ownership moves to it) and records it as pending. */
static Batch *batch_form(Pipeline *p, AmqpDelivery **deliveries, size_t n, uint64_t epoch, Batch *insert_after) {
        Batch *b;
        int r;

        b = calloc(1, sizeof *b);
        if (!b)
                goto fail;
        b->deliveries = malloc(n * sizeof *deliveries);
        if (!b->deliveries)
                goto fail;
        memcpy(b->deliveries, deliveries, n * sizeof *deliveries);
        b->n = n;
        b->pipeline = p;
        b->epoch = epoch;
        b->phase = PHASE_WAITING;

        r = encode_batch(p, b);
        if (r < 0) {
                log_error_errno(r, "Failed to encode a batch of %zu events: %s", n, STRERROR(r));
                goto fail;
        }

        {
                LedgerRecord rec = {
                        .status = BATCH_PENDING,
                        .item_count = (unsigned) n,
                        .payload_size = b->payload.size,
                        .at = now(CLOCK_REALTIME),
                };
                memcpy(rec.batch_id, b->id, sizeof rec.batch_id);
                ledger_append_or_log(p, &rec, NULL, NULL);
        }
        batch_insert_after(p, insert_after, b);
        return b;

fail:
        if (b) {
                b->n = 0;
                batch_free(b);
        }
        for (size_t i = 0; i < n; i++)
                settle_delivery(p, deliveries[i], SETTLE_REQUEUE);
        flush_acks(p);
        return NULL;
}

static void on_final_committed(Ledger *l, void *userdata) {
        Batch *b = userdata;
        Pipeline *p = b->pipeline;

        switch (b->settlement) {
        case SETTLEMENT_ACK:
        case SETTLEMENT_REQUEUE:
                for (size_t i = 0; i < b->n; i++)
                        settle_delivery(p, b->deliveries[i], b->settlement == SETTLEMENT_ACK ? SETTLE_ACK : SETTLE_REQUEUE);
                if (b->settlement == SETTLEMENT_REQUEUE)
                        p->stats.events_requeued += b->n;
                b->n = 0;
                flush_acks(p);
                break;
        case SETTLEMENT_DEAD_LETTER:
                for (size_t i = 0; i < b->n; i++)
                        dead_letter(p, b->deliveries[i], DEAD_LETTER_HTTP, b->final_status, b->id);
                b->n = 0;
                break;
        case SETTLEMENT_NONE:
                break;
        }
        batch_destroy(p, b);
        check_stopped(p);
}

/* Writes the batch's final row; its messages are settled once that is committed. */
static void batch_finish(Pipeline *p, Batch *b, BatchStatus status, long http_status, const char *error,
                         Settlement settlement) {
        _cleanup_free_ char *message = NULL;
        LedgerRecord rec = {
                .status = status,
                .http_status = http_status,
                .at = now(CLOCK_REALTIME),
        };

        release_slot(p, b);
        b->retry_timer = sd_event_source_disable_unref(b->retry_timer);
        b->phase = PHASE_SETTLING;
        b->settlement = settlement;
        b->final_status = http_status;

        if (error) {
                message = strndup(error, SENDER_BODY_EXCERPT_MAX);
                if (message)
                        text_sanitize(message);
        }
        rec.error_message = message;
        snprintf(rec.batch_id, sizeof rec.batch_id, "%s", b->id);

        if (status == BATCH_SENT) {
                p->stats.batches_sent++;
                p->stats.events_sent += b->n;
                p->stats.last_success_at = rec.at;
        } else
                p->stats.batches_failed++;

        ledger_append_or_log(p, &rec, on_final_committed, b);
}

static void record_error(Pipeline *p, long http_status, const char *message) {
        p->stats.last_error_at = now(CLOCK_REALTIME);
        p->stats.last_error_status = http_status;
        snprintf(p->stats.last_error, sizeof p->stats.last_error, "%s", message);
        text_sanitize(p->stats.last_error);
}

static void circuit_transition(Pipeline *p, CircuitState old) {
        CircuitState s = p->circuit.state;
        char field[64];

        if (s == old)
                return;
        p->circuit_changed_realtime = now(CLOCK_REALTIME);
        p->stats.circuit_transitions[s]++;
        snprintf(field, sizeof field, "CIRCUIT_STATE=%s", circuit_state_to_string(s));

        switch (s) {
        case CIRCUIT_OPEN:
                p->stats.circuit_opened++;
                log_struct(LOG_ERR,
                           LOG_MESSAGE("Circuit breaker opened (%s); no request for %us",
                                       old == CIRCUIT_HALF_OPEN ? "probe failed" : "too many consecutive failures",
                                       p->config->circuit_reset_timeout_s),
                           LOG_MESSAGE_ID(MESSAGE_ID_CIRCUIT_OPENED), field, NULL);
                break;
        case CIRCUIT_HALF_OPEN:
                log_struct(LOG_INFO, LOG_MESSAGE("Circuit breaker half-open: sending one probe request"), field, NULL);
                break;
        case CIRCUIT_CLOSED:
                log_struct(LOG_NOTICE, LOG_MESSAGE("Circuit breaker closed: the destination answers again"),
                           LOG_MESSAGE_ID(MESSAGE_ID_CIRCUIT_CLOSED), field, NULL);
                break;
        default:
                break;
        }
}

static void batch_split(Pipeline *p, Batch *b, long http_status) {
        size_t half = b->n / 2;
        AmqpDelivery **d = b->deliveries;
        size_t n = b->n;
        Batch *first, *second;

        /* The halves take the deliveries over; the refused batch keeps only its row. */
        b->deliveries = NULL;
        b->n = 0;
        p->stats.batches_split++;

        first = batch_form(p, d, half, b->epoch, b);
        second = batch_form(p, d + half, n - half, b->epoch, first ? first : b);
        free(d);

        log_struct(LOG_WARNING,
                   LOG_MESSAGE("Batch %s refused with HTTP %ld; splitting %zu events into %s and %s", b->id, http_status, n,
                               first ? first->id : "-", second ? second->id : "-"),
                   LOG_FIELD("BATCH_ID=%s", b->id), LOG_FIELD("HTTP_STATUS=%ld", http_status),
                   LOG_FIELD("EVENT_COUNT=%zu", n), NULL);
}

static int on_retry_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Batch *b = userdata;

        b->retry_timer = sd_event_source_disable_unref(b->retry_timer);
        b->phase = PHASE_RETRY_READY;
        dispatch(b->pipeline);
        return 0;
}

static void describe_failure(const SenderResult *res, char *buf, size_t size) {
        if (res->http_status == 0)
                snprintf(buf, size, "%s", res->error[0] ? res->error : "no answer");
        else
                snprintf(buf, size, "HTTP %ld%s%.200s", res->http_status, res->body_excerpt_size ? ": " : "",
                         res->body_excerpt);
        text_sanitize(buf);
}

static void on_response(Sender *s, const SenderResult *res, void *userdata) {
        Batch *b = userdata;
        Pipeline *p = b->pipeline;
        CircuitState old = p->circuit.state;
        DeliveryOutcome outcome = retry_classify(res->http_status);
        usec_t t = now(CLOCK_MONOTONIC);
        char why[512];

        p->stats.http_requests++;
        p->stats.http_by_class[res->http_status >= 100 && res->http_status < 600 ? res->http_status / 100 : 0]++;
        if (p->telemetry)
                telemetry_request_done(p->telemetry, res->http_status, res->duration);

        (void) circuit_record(&p->circuit, b->circuit_period, outcome == OUTCOME_SENT, t);
        circuit_transition(p, old);

        if (outcome == OUTCOME_SENT) {
                log_struct(LOG_INFO,
                           LOG_MESSAGE("Batch %s sent: %zu events, %zu bytes, HTTP %ld, attempt %u, %" PRIu64 " ms",
                                       b->id, b->n, b->payload.size, res->http_status, b->attempt,
                                       res->duration / USEC_PER_MSEC),
                           LOG_FIELD("BATCH_ID=%s", b->id), LOG_FIELD("EVENT_COUNT=%zu", b->n),
                           LOG_FIELD("PAYLOAD_BYTES=%zu", b->payload.size), LOG_FIELD("HTTP_STATUS=%ld", res->http_status),
                           LOG_FIELD("ATTEMPT=%u", b->attempt),
                           LOG_FIELD("DURATION_MS=%" PRIu64, res->duration / USEC_PER_MSEC), NULL);
                if (b->epoch != p->epoch)
                        /* Its deliveries cannot be acked on another channel: the broker has them back. */
                        log_struct(LOG_NOTICE,
                                   LOG_MESSAGE("Batch %s was sent after its connection to RabbitMQ was lost; the "
                                               "broker redelivers its %zu events (duplicates)",
                                               b->id, b->n),
                                   LOG_FIELD("BATCH_ID=%s", b->id), LOG_FIELD("EVENT_COUNT=%zu", b->n), NULL);
                batch_finish(p, b, BATCH_SENT, res->http_status, NULL,
                             b->epoch == p->epoch ? SETTLEMENT_ACK : SETTLEMENT_NONE);
                dispatch(p);
                return;
        }

        describe_failure(res, why, sizeof why);
        record_error(p, res->http_status, why);

        if (outcome == OUTCOME_RETRY && b->epoch == p->epoch && !p->stopping && b->attempt < p->retry.max_attempts) {
                usec_t delay = retry_delay(&p->retry, b->attempt, res->retry_after[0] ? res->retry_after : NULL,
                                           now(CLOCK_REALTIME), random_u64());
                int r;

                log_struct(retry_status_is_auth(res->http_status) ? LOG_ERR : LOG_WARNING,
                           LOG_MESSAGE("Batch %s attempt %u/%u failed: %s%s; retrying in %" PRIu64 " ms", b->id,
                                       b->attempt, p->retry.max_attempts, why,
                                       retry_status_is_auth(res->http_status)
                                               ? " (the destination refuses the token: fix it and reload)"
                                               : "",
                                       delay / USEC_PER_MSEC),
                           LOG_FIELD("BATCH_ID=%s", b->id), LOG_FIELD("HTTP_STATUS=%ld", res->http_status),
                           LOG_FIELD("ATTEMPT=%u", b->attempt), LOG_FIELD("EVENT_COUNT=%zu", b->n), NULL);

                b->phase = PHASE_BACKOFF;
                r = sd_event_add_time_relative(p->event, &b->retry_timer, CLOCK_MONOTONIC, delay, 0, on_retry_timer, b);
                if (r >= 0) {
                        (void) sd_event_source_set_description(b->retry_timer, "retry-timer");
                        dispatch(p);
                        return;
                }
                log_error_errno(r, "Failed to arm the retry timer: %s", STRERROR(r));
        }

        if (outcome == OUTCOME_PERMANENT && retry_status_splits(res->http_status) && b->n > 1 && b->epoch == p->epoch) {
                batch_split(p, b, res->http_status);
                batch_finish(p, b, BATCH_FAILED, res->http_status, res->body_excerpt, SETTLEMENT_NONE);
                dispatch(p);
                return;
        }

        {
                Settlement settlement = b->epoch != p->epoch       ? SETTLEMENT_NONE
                                        : outcome == OUTCOME_PERMANENT ? SETTLEMENT_DEAD_LETTER
                                                                       : SETTLEMENT_REQUEUE;

                log_struct(LOG_ERR,
                           LOG_MESSAGE("Batch %s failed after %u attempt(s): %s; %s", b->id, b->attempt, why,
                                       settlement == SETTLEMENT_DEAD_LETTER ? "dead-lettering its events"
                                       : settlement == SETTLEMENT_REQUEUE   ? "requeueing its events"
                                                                            : "the broker redelivers its events"),
                           LOG_MESSAGE_ID(MESSAGE_ID_BATCH_FAILED), LOG_FIELD("BATCH_ID=%s", b->id),
                           LOG_FIELD("HTTP_STATUS=%ld", res->http_status), LOG_FIELD("ATTEMPT=%u", b->attempt),
                           LOG_FIELD("EVENT_COUNT=%zu", b->n), NULL);
                batch_finish(p, b, BATCH_FAILED, res->http_status,
                             res->http_status > 0 ? res->body_excerpt : res->error, settlement);
        }
        dispatch(p);
}

static bool batch_start(Pipeline *p, Batch *b) {
        LedgerRecord rec = {
                .status = BATCH_SENDING,
                .at = now(CLOCK_REALTIME),
        };
        int r;

        b->attempt++;
        rec.retries = b->attempt > 1;
        memcpy(rec.batch_id, b->id, sizeof rec.batch_id);
        ledger_append_or_log(p, &rec, NULL, NULL);
        r = sender_post(p->sender, b->id, b->payload.data, b->payload.size, on_response, b);
        if (r < 0) {
                log_error_errno(r, "Failed to start the request for batch %s: %s", b->id, STRERROR(r));
                /* No answer will come: if it was the probe, the next batch may be one. */
                circuit_abandon(&p->circuit, b->circuit_period);
                batch_finish(p, b, BATCH_FAILED, 0, "request could not be started",
                             b->epoch == p->epoch ? SETTLEMENT_REQUEUE : SETTLEMENT_NONE);
                return false;
        }
        b->phase = PHASE_SENDING;
        return true;
}

static void arm_circuit_timer(Pipeline *p) {
        usec_t at = circuit_next_probe(&p->circuit);

        if (at == USEC_INFINITY)
                return;
        (void) sd_event_source_set_time(p->circuit_timer, at);
        (void) sd_event_source_set_enabled(p->circuit_timer, SD_EVENT_ONESHOT);
}

/* Lets out what may leave now: batches whose retry delay is over first (they hold their
 * slot), then new ones while slots are free. While the circuit is open nothing leaves and
 * no attempt is spent. */
static void dispatch(Pipeline *p) {
        for (int pass = 0; pass < 2; pass++)
                for (Batch *b = p->batches_head, *next; b; b = next) {
                        BatchPhase want = pass == 0 ? PHASE_RETRY_READY : PHASE_WAITING;
                        CircuitState old = p->circuit.state;
                        bool allowed;

                        next = b->next;
                        if (b->phase != want)
                                continue;
                        if (b->epoch != p->epoch) {
                                batch_finish(p, b, BATCH_FAILED, 0, "broker connection lost before sending",
                                             SETTLEMENT_NONE);
                                continue;
                        }
                        if (want == PHASE_WAITING && p->slots_used >= p->config->max_in_flight)
                                return;

                        allowed = circuit_allow(&p->circuit, now(CLOCK_MONOTONIC));
                        circuit_transition(p, old);
                        if (!allowed) {
                                if (p->stopping) {
                                        batch_finish(p, b, BATCH_FAILED, 0, "shutting down while the circuit is open",
                                                     SETTLEMENT_REQUEUE);
                                        continue;
                                }
                                arm_circuit_timer(p);
                                return;
                        }
                        b->circuit_period = circuit_period(&p->circuit);
                        if (want == PHASE_WAITING) {
                                b->holds_slot = true;
                                p->slots_used++;
                        }
                        /* batch_start may finish (and free) b, but never next. */
                        (void) batch_start(p, b);
                }
}

static int on_circuit_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        dispatch(userdata);
        return 0;
}

/* The batch being filled. */

static void flush_open_batch(Pipeline *p) {
        void **items;
        size_t n;

        (void) sd_event_source_set_enabled(p->batch_timer, SD_EVENT_OFF);
        if (batcher_count(&p->batcher) == 0)
                return;
        batcher_take(&p->batcher, &items, &n);
        (void) batch_form(p, (AmqpDelivery **) items, n, p->epoch, p->batches_tail);
        free(items);
        dispatch(p);
}

static int on_batch_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        flush_open_batch(userdata);
        return 0;
}

static void arm_batch_timer(Pipeline *p) {
        usec_t at = batcher_deadline(&p->batcher);

        if (at == USEC_INFINITY)
                return;
        (void) sd_event_source_set_time(p->batch_timer, at);
        (void) sd_event_source_set_enabled(p->batch_timer, SD_EVENT_ONESHOT);
}

static DeadLetterKind check_delivery(Pipeline *p, AmqpDelivery *d) {
        JsonEventId id;

        if (d->body_size == 0)
                return DEAD_LETTER_EMPTY;
        if (batcher_too_large(&p->batcher, d->body_size))
                return DEAD_LETTER_TOO_LARGE;

        switch (json_check_event(d->body, d->body_size, &id)) {
        case JSON_CHECK_OK:
                d->event_id = id.id;
                d->event_id_len = id.id_len;
                return _DEAD_LETTER_KIND_MAX;
        case JSON_CHECK_EMPTY:
                return DEAD_LETTER_EMPTY;
        case JSON_CHECK_INVALID_UTF8:
                return DEAD_LETTER_INVALID_UTF8;
        case JSON_CHECK_NOT_OBJECT:
                return DEAD_LETTER_NOT_OBJECT;
        default:
                return DEAD_LETTER_NOT_JSON;
        }
}

static void on_delivery(Pipeline *p, AmqpDelivery *d) {
        DeadLetterKind bad;
        int r;

        if (d->epoch != p->epoch || p->epoch == 0) {
                amqp_delivery_free(d);
                return;
        }
        r = ack_tracker_delivered(&p->acks, d->tag);
        if (r < 0) {
                /* Not tracked, never acked: the broker redelivers it after the next reconnect. */
                log_error_errno(r, "Delivery tag %" PRIu64 " out of sequence: %s", d->tag, STRERROR(r));
                amqp_delivery_free(d);
                return;
        }
        p->stats.events_received++;
        p->stats.events_redelivered += d->redelivered;

        if (p->stopping) {
                /* Arrived after basic.cancel: give it back for another consumer. */
                p->stats.events_requeued++;
                settle_delivery(p, d, SETTLE_REQUEUE);
                flush_acks(p);
                return;
        }

        bad = check_delivery(p, d);
        if (bad != _DEAD_LETTER_KIND_MAX) {
                log_struct(LOG_WARNING,
                           LOG_MESSAGE("Dead-lettering a message of %zu bytes (delivery %" PRIu64 "): %s", d->body_size,
                                       d->tag, dead_letter_kind_to_string(bad)),
                           LOG_MESSAGE_ID(MESSAGE_ID_DEAD_LETTERED),
                           LOG_FIELD("REASON=%s", dead_letter_kind_to_string(bad)), NULL);
                dead_letter(p, d, bad, 0, NULL);
                return;
        }

        if (batcher_would_overflow(&p->batcher, d->body_size))
                flush_open_batch(p);
        r = batcher_add(&p->batcher, d, d->body_size, d->received_at);
        if (r < 0) {
                log_error_errno(r, "Failed to add an event to the batch: %s", STRERROR(r));
                settle_delivery(p, d, SETTLE_REQUEUE);
                flush_acks(p);
                return;
        }
        if (batcher_count(&p->batcher) == 1)
                arm_batch_timer(p);
        if (batcher_full(&p->batcher))
                flush_open_batch(p);
}

/* The broker connection they came on is gone: whatever is not on the wire yet is dropped
 * (the broker redelivers it); requests on the wire finish, but are not acked. */
static void abandon_epoch(Pipeline *p) {
        void **items;
        size_t n;

        (void) sd_event_source_set_enabled(p->batch_timer, SD_EVENT_OFF);
        batcher_take(&p->batcher, &items, &n);
        for (size_t i = 0; i < n; i++)
                amqp_delivery_free(items[i]);
        free(items);

        for (Batch *b = p->batches_head, *next; b; b = next) {
                next = b->next;
                if (b->phase == PHASE_WAITING || b->phase == PHASE_BACKOFF || b->phase == PHASE_RETRY_READY)
                        batch_finish(p, b, BATCH_FAILED, 0, "broker connection lost before sending", SETTLEMENT_NONE);
        }
        ack_tracker_reset(&p->acks);
}

static void on_amqp_event(AmqpConsumer *c, AmqpEvent *ev, void *userdata) {
        Pipeline *p = userdata;

        switch (ev->type) {
        case AMQP_EVENT_DELIVERY:
                on_delivery(p, ev->delivery);
                break;

        case AMQP_EVENT_DEAD_LETTERED:
                on_dead_lettered(p, ev->delivery, ev->ok, ev->message);
                break;

        case AMQP_EVENT_CONNECTED:
                p->epoch = ev->epoch;
                ack_tracker_reset(&p->acks);
                p->broker_connected = true;
                p->last_broker_error[0] = '\0';
                if (p->broker_ever_connected) {
                        p->stats.broker_reconnects++;
                        log_struct(LOG_NOTICE, LOG_MESSAGE("Connection to RabbitMQ regained"),
                                   LOG_MESSAGE_ID(MESSAGE_ID_BROKER_REGAINED), NULL);
                } else
                        log_info("Connected to RabbitMQ, consuming from %s (prefetch %u)", p->config->rabbitmq_queue,
                                 config_prefetch(p->config));
                p->broker_ever_connected = true;
                break;

        case AMQP_EVENT_DISCONNECTED:
                if (ev->epoch != 0 && ev->epoch == p->epoch) {
                        p->epoch = 0;
                        p->broker_connected = false;
                        if (!p->stopping)
                                log_struct(LOG_WARNING, LOG_MESSAGE("Connection to RabbitMQ lost: %s", strempty(ev->message)),
                                           LOG_MESSAGE_ID(MESSAGE_ID_BROKER_LOST), NULL);
                        abandon_epoch(p);
                } else if (!streq(strempty(ev->message), p->last_broker_error)) {
                        /* Each distinct reason once, not every attempt of a long outage. */
                        log_warning("Cannot connect to RabbitMQ (retrying in the background): %s", strempty(ev->message));
                        snprintf(p->last_broker_error, sizeof p->last_broker_error, "%s", strempty(ev->message));
                }
                check_stopped(p);
                break;

        case AMQP_EVENT_WARNING:
                log_warning("RabbitMQ: %s", strempty(ev->message));
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

        /* What waits for a retry goes back to the broker now rather than at the timeout. */
        for (Batch *b = p->batches_head, *next; b; b = next) {
                next = b->next;
                if (b->phase == PHASE_BACKOFF || b->phase == PHASE_RETRY_READY)
                        batch_finish(p, b, BATCH_FAILED, 0, "shutting down before the retry",
                                     b->epoch == p->epoch ? SETTLEMENT_REQUEUE : SETTLEMENT_NONE);
        }
        flush_open_batch(p);
        /* Even without an open batch: batches waiting for an open circuit go back now, not
         * at the shutdown timeout. */
        dispatch(p);

        r = sd_event_add_time_relative(p->event, &p->stop_timer, CLOCK_MONOTONIC, timeout, 0, on_stop_timer, p);
        if (r < 0)
                log_error_errno(r, "Failed to arm the shutdown timer: %s", STRERROR(r));
        check_stopped(p);
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
        arm_batch_timer(p);
        if (batcher_full(&p->batcher))
                flush_open_batch(p);

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
        dispatch(p);
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

        r = sd_event_add_time(e, &p->batch_timer, CLOCK_MONOTONIC, USEC_INFINITY, 0, on_batch_timer, p);
        if (r < 0)
                return r;
        (void) sd_event_source_set_enabled(p->batch_timer, SD_EVENT_OFF);
        (void) sd_event_source_set_description(p->batch_timer, "batch-timer");

        r = sd_event_add_time(e, &p->circuit_timer, CLOCK_MONOTONIC, USEC_INFINITY, 0, on_circuit_timer, p);
        if (r < 0)
                return r;
        (void) sd_event_source_set_enabled(p->circuit_timer, SD_EVENT_OFF);
        (void) sd_event_source_set_description(p->circuit_timer, "circuit-timer");

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

        while (p->batches_head)
                batch_destroy(p, p->batches_head);
        {
                void **items;
                size_t n;
                batcher_take(&p->batcher, &items, &n);
                for (size_t i = 0; i < n; i++)
                        amqp_delivery_free(items[i]);
                free(items);
        }
        batcher_done(&p->batcher);
        ack_tracker_done(&p->acks);

        sender_free(p->sender);
        ledger_free(p->ledger);
        envelope_free(p->envelope);
        free(p->scratch);
        sd_event_source_disable_unref(p->batch_timer);
        sd_event_source_disable_unref(p->circuit_timer);
        sd_event_source_disable_unref(p->stop_timer);
        sd_event_unref(p->event);
        return mfree(p);
}

const PipelineStats *pipeline_stats(const Pipeline *p) {
        return &p->stats;
}

bool pipeline_broker_connected(const Pipeline *p) {
        return p->broker_connected;
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
