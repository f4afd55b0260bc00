/* SPDX-License-Identifier: MIT */
/* The end of a batch and of its deliveries: the final row, and once PostgreSQL committed it,
 * each delivery settled (architecture §2: nothing is acked that the ledger does not show). The only
 * file that acks, rejects, dead-letters or frees a delivery. */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>

#include "os/log.h"
#include "pipeline/internal.h"

static void count_dead_letter(Pipeline *p, const AmqpDelivery *d) {
        long s = d->dead_letter_status;

        p->stats.events_dead_lettered[d->dead_letter_kind]++;
        if (d->dead_letter_kind == DEAD_LETTER_HTTP)
                p->stats.events_dead_lettered_http[s > 0 && s < PIPELINE_HTTP_STATUS_MAX ? s : 0]++;
}

void delivery_settle(Pipeline *p, AmqpDelivery *d, DeliveryFate fate) {
        static const SettleKind kinds[_FATE_MAX] = {
                [FATE_ACK] = SETTLE_ACK,
                [FATE_REQUEUE] = SETTLE_REQUEUE,
                [FATE_RETURN_FAILED] = SETTLE_RETURN_FAILED,
                [FATE_REJECT] = SETTLE_REJECT,
        };

        /* A delivery of an earlier connection cannot be settled on this one: the broker has
         * requeued it already. */
        if (fate != FATE_DROP && d->epoch == p->epoch && p->epoch != 0) {
                int r = ack_tracker_settle(&p->acks, d->tag, kinds[fate]);
                if (r < 0)
                        log_error_errno(r, "Delivery tag %" PRIu64 " cannot be settled: %s", d->tag, STRERROR(r));
                if (fate == FATE_REQUEUE || fate == FATE_RETURN_FAILED)
                        p->stats.events_requeued++;
                pipeline_schedule(p); /* the acks go out together, after this handler */
        }
        amqp_delivery_free(d);
}

void delivery_dead_letter(Pipeline *p, AmqpDelivery *d, DeadLetterKind kind, long http_status, const char *batch_id) {
        DeadLetterReason reason = { .http_status = http_status };
        int r;

        if (d->epoch != p->epoch || p->epoch == 0) {
                delivery_settle(p, d, FATE_DROP);
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
                log_error_errno(r, "Failed to queue a dead-letter publish, rejecting the message instead: %s",
                                STRERROR(r));
                count_dead_letter(p, d);
                delivery_settle(p, d, FATE_REJECT);
                return;
        }
        /* It comes back through pipeline_dead_lettered(). */
        p->dead_letters_in_flight++;
}

void pipeline_dead_lettered(Pipeline *p, AmqpDelivery *d, bool ok, const char *not_published) {
        p->dead_letters_in_flight--;
        pipeline_schedule(p); /* the stop may wait for it */

        if (d->epoch != p->epoch || p->epoch == 0 || (!ok && !isempty(not_published))) {
                /* Its connection is gone or going: the broker redelivers it, and it is
                 * dead-lettered then. Neither acked nor rejected here. */
                if (!ok && !isempty(not_published))
                        log_warning("Dead-letter publish of delivery %" PRIu64 " did not happen (%s); the broker "
                                    "redelivers the message",
                                    d->tag, not_published);
                delivery_settle(p, d, FATE_DROP);
                return;
        }
        if (!ok)
                log_warning("Dead-letter publish of delivery %" PRIu64 " was not confirmed; rejecting it to the "
                            "queue's dead-letter exchange",
                            d->tag);
        count_dead_letter(p, d);
        delivery_settle(p, d, ok ? FATE_ACK : FATE_REJECT);
}

void pipeline_flush_acks(Pipeline *p) {
        AckCommand commands[64];
        /* Read before the commands are queued, which reads the time again: the timelines and the
         * thread's reports then agree on which command took which ack. */
        usec_t t = now(CLOCK_MONOTONIC);
        size_t n;

        do {
                n = ack_tracker_drain(&p->acks, commands, ELEMENTSOF(commands));
                if (n > 0 && amqp_consumer_settle(p->amqp, p->epoch, commands, n) < 0)
                        /* Unsent acks leave the messages unacked: the broker redelivers them. */
                        log_error("Out of memory queueing %zu ack(s)", n);
                else if (n > 0 && p->timelines)
                        timeline_acks_queued(p, commands, n, t);
        } while (n == ELEMENTSOF(commands));
}

void batch_release_slot(Pipeline *p, Batch *b) {
        if (b->holds_slot) {
                b->holds_slot = false;
                p->slots_used--;
        }
}

void batch_destroy(Pipeline *p, Batch *b) {
        assert(b->n == 0);

        batch_release_slot(p, b);
        if (b->prev)
                b->prev->next = b->next;
        else
                p->batches_head = b->next;
        if (b->next)
                b->next->prev = b->prev;
        else
                p->batches_tail = b->prev;
        free(b->deliveries);
        buffer_done(&b->payload);
        sd_event_source_disable_unref(b->retry_timer);
        free(b);
}

static void on_final_committed(Ledger *l, void *userdata) {
        Batch *b = userdata;
        Pipeline *p = b->pipeline;

        timeline_mark(&b->timeline, TIMELINE_COMMITTED, now(CLOCK_MONOTONIC));
        timeline_batch_settled(p, b);
        for (size_t i = 0; i < b->n; i++)
                switch (b->settlement) {
                case SETTLEMENT_ACK:
                        delivery_settle(p, b->deliveries[i], FATE_ACK);
                        break;
                case SETTLEMENT_REQUEUE:
                        delivery_settle(p, b->deliveries[i], FATE_REQUEUE);
                        break;
                case SETTLEMENT_RETURN_FAILED:
                        delivery_settle(p, b->deliveries[i], FATE_RETURN_FAILED);
                        break;
                case SETTLEMENT_DEAD_LETTER:
                        delivery_dead_letter(p, b->deliveries[i], b->dead_letter, b->final_status, b->id);
                        break;
                default:
                        delivery_settle(p, b->deliveries[i], FATE_DROP);
                        break;
                }
        b->n = 0;
        batch_destroy(p, b);
        pipeline_schedule(p);
}

void batch_finish(Pipeline *p, Batch *b, BatchStatus status, long http_status, const char *error,
                  Settlement settlement, DeadLetterKind dead_letter) {
        _cleanup_free_ char *message = NULL;
        LedgerRecord rec = {
                .status = status,
                .http_status = http_status,
                .at = now(CLOCK_REALTIME),
        };
        int r;

        batch_release_slot(p, b);
        b->retry_timer = sd_event_source_disable_unref(b->retry_timer);
        b->phase = PHASE_SETTLING;
        b->settlement = settlement;
        b->dead_letter = dead_letter;
        timeline_mark(&b->timeline, TIMELINE_FINISHED, now(CLOCK_MONOTONIC));
        b->final_status = http_status;
        if (settlement == SETTLEMENT_REQUEUE && b->expiring)
                p->stats.events_returned_expiring += b->n;

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

        r = ledger_append(p->ledger, &rec, on_final_committed, b);
        if (r < 0)
                /* Only out of memory; without its record the batch is never settled: its messages
                 * stay unacked and are redelivered after the next reconnect. */
                log_error_errno(r, "Failed to queue tracking record for batch %s: %s", rec.batch_id, STRERROR(r));
        /* A freed slot lets the next batch out. */
        pipeline_schedule(p);
}
