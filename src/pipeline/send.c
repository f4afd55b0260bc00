/* SPDX-License-Identifier: MIT */
/* Batches out (architecture §5): the send slots, the circuit breaker, the requests, and carrying out
 * what core/verdict.h decides at every moment of a batch — send, hold, retry, split, finish.
 * Decides nothing itself; the logs and counters of each outcome are written here. */
#include <inttypes.h>
#include <stdio.h>

#include "os/log.h"
#include "pipeline/internal.h"

/* What every verdict on b is told, whatever the moment. */
static VerdictInput batch_input(const Pipeline *p, const Batch *b, BatchMoment moment) {
        return (VerdictInput) {
                .moment = moment,
                .attempt = b->attempt,
                .n_events = b->n,
                .others_got_through = p->stats.http_by_class[2] > b->round_successes,
                .split_blind = b->split_blind,
                .epoch_current = b->epoch == p->epoch && p->epoch != 0,
                .stopping = p->stopping,
                .expiring = b->expiring,
                .delivery_count = b->n == 1 ? b->deliveries[0]->delivery_count : 0,
                .delivery_limit = p->config->rabbitmq_delivery_limit,
                .now_realtime = now(CLOCK_REALTIME),
                .random = random_u64(),
        };
}

void batch_move_to_tail(Pipeline *p, Batch *b) {
        if (!b->next)
                return;
        if (b->prev)
                b->prev->next = b->next;
        else
                p->batches_head = b->next;
        b->next->prev = b->prev;
        b->prev = p->batches_tail;
        b->next = NULL;
        p->batches_tail->next = b;
        p->batches_tail = b;
}

void pipeline_circuit_transition(Pipeline *p, CircuitState old) {
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

static void record_error(Pipeline *p, long http_status, const char *message) {
        p->stats.last_error_at = now(CLOCK_REALTIME);
        p->stats.last_error_status = http_status;
        snprintf(p->stats.last_error, sizeof p->stats.last_error, "%s", message);
        text_sanitize(p->stats.last_error);
}

static void describe_failure(const SenderResult *res, char *buf, size_t size) {
        if (res->http_status == 0)
                snprintf(buf, size, "%s", res->error[0] ? res->error : "no answer");
        else
                snprintf(buf, size, "HTTP %ld%s%.200s", res->http_status, res->body_excerpt_size ? ": " : "",
                         res->body_excerpt);
        text_sanitize(buf);
}

static void batch_split(Pipeline *p, Batch *b, long http_status, bool blind) {
        size_t half = b->n / 2, n = b->n;
        _cleanup_free_ AmqpDelivery **d = TAKE_PTR(b->deliveries);
        Batch *first, *second;

        /* The halves take the deliveries over; the refused batch keeps only its row. */
        b->n = 0;
        p->stats.batches_split++;

        first = batch_form(p, d, half, b->epoch, b);
        second = batch_form(p, d + half, n - half, b->epoch, first ? first : b);
        if (first)
                first->split_blind = blind;
        if (second)
                second->split_blind = blind;

        log_struct(LOG_WARNING,
                   LOG_MESSAGE("Batch %s %s HTTP %ld; splitting %zu events into %s and %s", b->id,
                               retry_classify(http_status) == OUTCOME_PERMANENT ? "refused with"
                               : blind ? "failed on every attempt, nothing else got through either, last"
                                       : "failed on every attempt while others got through, last",
                               http_status, n, first ? first->id : "-", second ? second->id : "-"),
                   LOG_FIELD("BATCH_ID=%s", b->id), LOG_FIELD("HTTP_STATUS=%ld", http_status),
                   LOG_FIELD("EVENT_COUNT=%zu", n), NULL);
}

static int on_retry_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Batch *b = userdata;

        b->retry_timer = sd_event_source_disable_unref(b->retry_timer);
        b->phase = PHASE_READY;
        pipeline_schedule(b->pipeline);
        return 0;
}

static const char *settlement_words(const Verdict *v) {
        switch (v->settlement) {
        case SETTLEMENT_DEAD_LETTER:
                return v->dead_letter == DEAD_LETTER_RETRIES_EXHAUSTED
                               ? "dead-lettering it (retries_exhausted: the broker's delivery limit is near)"
                               : "dead-lettering its events";
        case SETTLEMENT_REQUEUE:
                return "requeueing its events";
        case SETTLEMENT_RETURN_FAILED:
                return "returning it to the queue as a failed delivery";
        default:
                return "the broker redelivers its events";
        }
}

static void log_finish(const Batch *b, const Verdict *v, const SenderResult *res, const char *why) {
        if (v->row == BATCH_SENT) {
                log_struct(LOG_INFO,
                           LOG_MESSAGE("Batch %s sent: %zu events, %zu bytes, HTTP %ld, attempt %u, %" PRIu64 " ms",
                                       b->id, b->n, b->payload.size, res->http_status, b->attempt,
                                       res->duration / USEC_PER_MSEC),
                           LOG_FIELD("BATCH_ID=%s", b->id), LOG_FIELD("EVENT_COUNT=%zu", b->n),
                           LOG_FIELD("PAYLOAD_BYTES=%zu", b->payload.size), LOG_FIELD("HTTP_STATUS=%ld", res->http_status),
                           LOG_FIELD("ATTEMPT=%u", b->attempt),
                           LOG_FIELD("DURATION_MS=%" PRIu64, res->duration / USEC_PER_MSEC), NULL);
                if (v->settlement == SETTLEMENT_NONE)
                        /* Its deliveries cannot be acked on another channel: the broker has them back. */
                        log_struct(LOG_NOTICE,
                                   LOG_MESSAGE("Batch %s was sent after its connection to RabbitMQ was lost; the "
                                               "broker redelivers its %zu events (duplicates)",
                                               b->id, b->n),
                                   LOG_FIELD("BATCH_ID=%s", b->id), LOG_FIELD("EVENT_COUNT=%zu", b->n), NULL);
                return;
        }

        log_struct(LOG_ERR,
                   LOG_MESSAGE("Batch %s failed after %u attempt(s): %s; %s", b->id, b->attempt, why,
                               settlement_words(v)),
                   LOG_MESSAGE_ID(MESSAGE_ID_BATCH_FAILED), LOG_FIELD("BATCH_ID=%s", b->id),
                   LOG_FIELD("HTTP_STATUS=%ld", res->http_status), LOG_FIELD("ATTEMPT=%u", b->attempt),
                   LOG_FIELD("EVENT_COUNT=%zu", b->n), NULL);
}

static void arm_circuit_timer(Pipeline *p) {
        usec_t at = circuit_next_probe(&p->circuit);

        if (at == USEC_INFINITY)
                return;
        (void) sd_event_source_set_time(p->circuit_timer, at);
        (void) sd_event_source_set_enabled(p->circuit_timer, SD_EVENT_ONESHOT);
}

static void batch_start(Pipeline *p, Batch *b);

/* The row's error_message for an answer: the start of the body, or why none came. */
static const char *answer_text(const SenderResult *res) {
        return res->http_status > 0 ? res->body_excerpt : res->error;
}

/* Waits out delay in BACKOFF. Without a timer there is no waiting: its events go back. */
static int back_off(Pipeline *p, Batch *b, usec_t delay, const SenderResult *res, const char *why) {
        int r;

        r = sd_event_add_time_relative(p->event, &b->retry_timer, CLOCK_MONOTONIC, delay, 0, on_retry_timer, b);
        if (r < 0) {
                log_error_errno(r, "Failed to arm the retry timer, requeueing batch %s: %s", b->id, STRERROR(r));
                batch_finish(p, b, BATCH_FAILED, res->http_status, why, SETTLEMENT_REQUEUE, 0);
                return r;
        }
        (void) sd_event_source_set_description(b->retry_timer, "retry-timer");
        b->phase = PHASE_BACKOFF;
        return 0;
}

/* Attempts spent while nothing else got through: the destination is failing, not this batch.
 * Its row says 'failed', its events stay here (returning them would spend their delivery
 * limit), and it tries again in a new round, gated by the circuit, behind the batches that
 * wait already: so that it is not always the probe, and a good batch can close the circuit. */
static void hold_for_new_round(Pipeline *p, Batch *b, const Verdict *v, const SenderResult *res, const char *why) {
        _cleanup_free_ char *message = strndup(answer_text(res), SENDER_BODY_EXCERPT_MAX);
        LedgerRecord rec = {
                .status = BATCH_FAILED,
                .http_status = res->http_status,
                .at = now(CLOCK_REALTIME),
        };
        int r;

        log_struct(LOG_ERR,
                   LOG_MESSAGE("Batch %s failed after %u attempt(s): %s; nothing else gets through, so its %zu "
                               "events stay here and it tries again in %" PRIu64 " ms",
                               b->id, b->attempt, why, b->n, v->delay / USEC_PER_MSEC),
                   LOG_MESSAGE_ID(MESSAGE_ID_BATCH_FAILED), LOG_FIELD("BATCH_ID=%s", b->id),
                   LOG_FIELD("HTTP_STATUS=%ld", res->http_status), LOG_FIELD("ATTEMPT=%u", b->attempt),
                   LOG_FIELD("EVENT_COUNT=%zu", b->n), NULL);

        if (message)
                text_sanitize(message);
        rec.error_message = message;
        memcpy(rec.batch_id, b->id, sizeof rec.batch_id);
        r = ledger_append(p->ledger, &rec, NULL, NULL);
        if (r < 0)
                log_error_errno(r, "Failed to queue tracking record for batch %s: %s", rec.batch_id, STRERROR(r));
        p->stats.batches_failed++;
        p->stats.batches_held++;

        b->attempt = 0;
        b->round_successes = p->stats.http_by_class[2];
        batch_release_slot(p, b);
        batch_move_to_tail(p, b);
        (void) back_off(p, b, v->delay, res, why);
}

/* Carries out a verdict on a batch after an answer (res) or without one (res NULL). */
static void carry_out(Pipeline *p, Batch *b, const Verdict *v, const SenderResult *res) {
        char why[512] = "";

        if (res && v->outcome != OUTCOME_SENT) {
                describe_failure(res, why, sizeof why);
                record_error(p, res->http_status, why);
        }

        switch (v->action) {
        case VERDICT_SEND:
                batch_start(p, b);
                return;

        case VERDICT_HOLD:
                if (b->phase == PHASE_READY)
                        arm_circuit_timer(p);
                return;

        case VERDICT_RETRY:
                if (v->new_round) {
                        hold_for_new_round(p, b, v, res, why);
                        return;
                }
                /* Behind the others: a batch that keeps failing is not always the circuit's probe. */
                batch_move_to_tail(p, b);
                log_struct(retry_status_is_auth(res->http_status) ? LOG_ERR : LOG_WARNING,
                           LOG_MESSAGE("Batch %s attempt %u/%u failed: %s%s; retrying in %" PRIu64 " ms", b->id,
                                       b->attempt, p->retry.max_attempts, why,
                                       retry_status_is_auth(res->http_status)
                                               ? " (the destination refuses the token: fix it and reload)"
                                               : "",
                                       v->delay / USEC_PER_MSEC),
                           LOG_FIELD("BATCH_ID=%s", b->id), LOG_FIELD("HTTP_STATUS=%ld", res->http_status),
                           LOG_FIELD("ATTEMPT=%u", b->attempt), LOG_FIELD("EVENT_COUNT=%zu", b->n), NULL);
                (void) back_off(p, b, v->delay, res, why);
                return;

        case VERDICT_SPLIT:
                batch_split(p, b, res->http_status, v->blind);
                batch_finish(p, b, BATCH_FAILED, res->http_status, res->body_excerpt, SETTLEMENT_NONE, 0);
                return;

        case VERDICT_FINISH:
                if (!res) {
                        batch_finish(p, b, v->row, 0, v->why, v->settlement, v->dead_letter);
                        return;
                }
                log_finish(b, v, res, why);
                batch_finish(p, b, v->row, res->http_status, v->row == BATCH_SENT ? NULL : answer_text(res),
                             v->settlement, v->dead_letter);
                return;

        default:
                return;
        }
}

static void on_response(Sender *s, const SenderResult *res, void *userdata) {
        Batch *b = userdata;
        Pipeline *p = b->pipeline;
        CircuitState old = p->circuit.state;
        VerdictInput in;
        Verdict v;

        p->stats.http_requests++;
        p->stats.http_by_class[res->http_status >= 100 && res->http_status < 600 ? res->http_status / 100 : 0]++;
        if (p->telemetry)
                telemetry_request_done(p->telemetry, res->http_status, res->duration);

        (void) circuit_record(&p->circuit, b->circuit_period, retry_classify(res->http_status) == OUTCOME_SENT,
                              now(CLOCK_MONOTONIC));
        pipeline_circuit_transition(p, old);

        in = batch_input(p, b, BATCH_MOMENT_ANSWERED);
        in.http_status = res->http_status;
        in.retry_after = res->retry_after[0] ? res->retry_after : NULL;
        v = verdict_decide(&in, &p->retry);
        carry_out(p, b, &v, res);
        pipeline_schedule(p);
}

static void batch_start(Pipeline *p, Batch *b) {
        LedgerRecord rec = {
                .status = BATCH_SENDING,
                .at = now(CLOCK_REALTIME),
        };
        int r;

        b->attempt++;
        b->attempts_total++;
        if (b->attempts_total == 1)
                timeline_mark(&b->timeline, TIMELINE_REQUEST, now(CLOCK_MONOTONIC));
        rec.retries = b->attempts_total > 1;
        memcpy(rec.batch_id, b->id, sizeof rec.batch_id);
        r = ledger_append(p->ledger, &rec, NULL, NULL);
        if (r < 0)
                log_error_errno(r, "Failed to queue tracking record for batch %s: %s", rec.batch_id, STRERROR(r));

        r = sender_post(p->sender, b->id, b->payload.data, b->payload.size, on_response, b);
        if (r < 0) {
                VerdictInput in = batch_input(p, b, BATCH_MOMENT_UNSTARTED);
                Verdict v = verdict_decide(&in, &p->retry);

                log_error_errno(r, "Failed to start the request for batch %s: %s", b->id, STRERROR(r));
                /* No answer will come: if it was the probe, the next batch may be one. */
                circuit_abandon(&p->circuit, b->circuit_period);
                carry_out(p, b, &v, NULL);
                return;
        }
        b->phase = PHASE_SENDING;
}

/* Lets out what may leave now: batches whose retry delay is over first (they hold their
 * slot), then new ones while slots are free. While the circuit is open nothing leaves and
 * no attempt is spent. */
void pipeline_dispatch(Pipeline *p) {
        for (int pass = 0; pass < 2; pass++)
                for (Batch *b = p->batches_head, *next; b; b = next) {
                        bool retry = pass == 0;
                        usec_t t = now(CLOCK_MONOTONIC);
                        CircuitState old;
                        VerdictInput in;
                        Verdict v;

                        next = b->next;
                        if (b->phase != PHASE_READY || b->holds_slot != retry)
                                continue;

                        in = batch_input(p, b, BATCH_MOMENT_READY);
                        in.circuit_lets_out = circuit_would_allow(&p->circuit, t);
                        v = verdict_decide(&in, &p->retry);
                        if (v.action == VERDICT_HOLD) {
                                /* Nothing may leave; the rest still hear their verdict, as one
                                 * may be due back at the broker. */
                                arm_circuit_timer(p);
                                continue;
                        }
                        if (v.action == VERDICT_SEND) {
                                if (!b->holds_slot) {
                                        if (p->slots_used >= p->config->max_in_flight)
                                                return;
                                        b->holds_slot = true;
                                        p->slots_used++;
                                }
                                old = p->circuit.state;
                                (void) circuit_allow(&p->circuit, t);
                                pipeline_circuit_transition(p, old);
                                b->circuit_period = circuit_period(&p->circuit);
                        }
                        /* May finish b, never next. */
                        carry_out(p, b, &v, NULL);
                }
}

void pipeline_review_backoff(Pipeline *p) {
        for (Batch *b = p->batches_head, *next; b; b = next) {
                VerdictInput in;
                Verdict v;

                next = b->next;
                if (b->phase != PHASE_BACKOFF)
                        continue;
                in = batch_input(p, b, BATCH_MOMENT_BACKING_OFF);
                v = verdict_decide(&in, &p->retry);
                carry_out(p, b, &v, NULL);
        }
}

int pipeline_on_circuit_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        pipeline_schedule(userdata);
        return 0;
}
