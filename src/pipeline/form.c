/* SPDX-License-Identifier: MIT */
/* Deliveries in, batches out (architecture §4): each message checked once, added to the batch being
 * filled, which is flushed by count, bytes or age, given its id and encoded, and recorded
 * 'pending'. Sends nothing and settles nothing itself: invalid messages and batches that cannot
 * be formed go to settle.c, formed batches wait in the list for send.c. */
#include <inttypes.h>
#include <stdio.h>

#include "core/json-check.h"
#include "os/log.h"
#include "pipeline/internal.h"

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

        (void) batch_id_begin(&idb); /* a failure sticks to the builder: batch_id_end() returns it */
        for (size_t i = 0; i < b->n; i++) {
                const AmqpDelivery *d = b->deliveries[i];
                batch_id_add(&idb, d->event_id, d->event_id_len, d->body, d->body_size);
                p->scratch[i] = (struct iovec) { .iov_base = (void *) d->body, .iov_len = d->body_size };
        }
        /* Without its own id a batch must not go out: the key is what makes a re-formed batch a
         * duplicate the destination can drop. Its events go back to the broker. */
        r = batch_id_end(&idb, &id);
        if (r < 0)
                return r;
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

/* The thread's reading times of the batch's first and last events, and its last tag. */
static void batch_mark_events(Batch *b) {
        usec_t first = USEC_INFINITY, last = 0;

        for (size_t i = 0; i < b->n; i++) {
                const AmqpDelivery *d = b->deliveries[i];

                first = MIN(first, d->received_at);
                last = MAX(last, d->received_at);
                b->last_tag = MAX(b->last_tag, d->tag);
        }
        timeline_mark(&b->timeline, TIMELINE_FIRST_EVENT, first);
        timeline_mark(&b->timeline, TIMELINE_LAST_EVENT, last);
}

Batch *batch_form(Pipeline *p, AmqpDelivery **deliveries, size_t n, uint64_t epoch, Batch *insert_after) {
        _cleanup_free_ Batch *b = NULL;
        LedgerRecord rec = { .status = BATCH_PENDING, .item_count = (unsigned) n };
        usec_t forming = now(CLOCK_MONOTONIC);
        int r;

        b = calloc(1, sizeof *b);
        if (!b) {
                r = -ENOMEM;
                goto fail;
        }
        *b = (Batch) {
                .pipeline = p,
                .epoch = epoch,
                .n = n,
                .phase = PHASE_READY,
                /* Whether others get through while this one fails counts from now: the halves of
                 * a split wait for each other at a half-open circuit. */
                .round_successes = p->stats.http_by_class[2],
        };
        b->deliveries = malloc(n * sizeof *deliveries);
        if (!b->deliveries) {
                r = -ENOMEM;
                goto fail;
        }
        memcpy(b->deliveries, deliveries, n * sizeof *deliveries);
        batch_mark_events(b);
        timeline_mark(&b->timeline, TIMELINE_FORMING, forming);

        r = encode_batch(p, b);
        if (r < 0) {
                log_error_errno(r, "Failed to encode a batch of %zu events: %s", n, STRERROR(r));
                goto fail;
        }

        rec.payload_size = b->payload.size;
        rec.at = now(CLOCK_REALTIME);
        memcpy(rec.batch_id, b->id, sizeof rec.batch_id);
        r = ledger_append(p->ledger, &rec, NULL, NULL);
        if (r < 0)
                /* Only out of memory. The final row will find no row to update; the events are
                 * delivered and settled all the same. */
                log_error_errno(r, "Failed to queue tracking record for batch %s: %s", rec.batch_id, STRERROR(r));

        timeline_mark(&b->timeline, TIMELINE_FORMED, now(CLOCK_MONOTONIC));
        batch_insert_after(p, insert_after, b);
        pipeline_schedule(p);
        return TAKE_PTR(b);

fail:
        if (b) {
                free(b->deliveries);
                buffer_done(&b->payload);
        }
        /* Back to the broker: they come again, in a batch that can be formed then. */
        for (size_t i = 0; i < n; i++)
                delivery_settle(p, deliveries[i], FATE_REQUEUE);
        return NULL;
}

void pipeline_flush_open_batch(Pipeline *p) {
        _cleanup_free_ void **items = NULL;
        size_t n;

        (void) sd_event_source_set_enabled(p->batch_timer, SD_EVENT_OFF);
        if (batcher_count(&p->batcher) == 0)
                return;
        batcher_take(&p->batcher, &items, &n);
        (void) batch_form(p, (AmqpDelivery **) items, n, p->epoch, p->batches_tail);
}

/* The connection they came on is gone: the broker redelivers them. */
void pipeline_drop_open_batch(Pipeline *p) {
        _cleanup_free_ void **items = NULL;
        size_t n;

        (void) sd_event_source_set_enabled(p->batch_timer, SD_EVENT_OFF);
        batcher_take(&p->batcher, &items, &n);
        for (size_t i = 0; i < n; i++)
                delivery_settle(p, items[i], FATE_DROP);
}

void pipeline_arm_batch_timer(Pipeline *p) {
        usec_t at = batcher_deadline(&p->batcher);

        if (at == USEC_INFINITY)
                return;
        (void) sd_event_source_set_time(p->batch_timer, at);
        (void) sd_event_source_set_enabled(p->batch_timer, SD_EVENT_ONESHOT);
}

/* The reason a message cannot travel in a batch, or _DEAD_LETTER_KIND_MAX when it can. */
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

void pipeline_receive(Pipeline *p, AmqpDelivery *d) {
        DeadLetterKind bad;
        int r;

        if (d->epoch != p->epoch || p->epoch == 0) {
                delivery_settle(p, d, FATE_DROP);
                return;
        }
        r = ack_tracker_delivered(&p->acks, d->tag);
        if (r < 0) {
                /* Not tracked, never acked: the broker redelivers it after the next reconnect. */
                log_error_errno(r, "Delivery tag %" PRIu64 " out of sequence: %s", d->tag, STRERROR(r));
                delivery_settle(p, d, FATE_DROP);
                return;
        }
        p->stats.events_received++;
        p->stats.events_redelivered += d->redelivered;
        p->stats.max_delivery_count = MAX(p->stats.max_delivery_count, (uint64_t) d->delivery_count);
        if (p->telemetry)
                telemetry_delivery_received(p->telemetry, d->delivery_count);

        if (p->stopping) {
                /* Arrived after basic.cancel: give it back for another consumer. */
                delivery_settle(p, d, FATE_REQUEUE);
                return;
        }

        bad = check_delivery(p, d);
        if (bad != _DEAD_LETTER_KIND_MAX) {
                log_struct(LOG_WARNING,
                           LOG_MESSAGE("Dead-lettering a message of %zu bytes (delivery %" PRIu64 "): %s", d->body_size,
                                       d->tag, dead_letter_kind_to_string(bad)),
                           LOG_MESSAGE_ID(MESSAGE_ID_DEAD_LETTERED),
                           LOG_FIELD("REASON=%s", dead_letter_kind_to_string(bad)), NULL);
                delivery_dead_letter(p, d, bad, 0, NULL);
                return;
        }

        if (batcher_would_overflow(&p->batcher, d->body_size))
                pipeline_flush_open_batch(p);
        r = batcher_add(&p->batcher, d, d->body_size, d->received_at);
        if (r < 0) {
                log_error_errno(r, "Failed to add an event to the batch: %s", STRERROR(r));
                delivery_settle(p, d, FATE_REQUEUE);
                return;
        }
        if (batcher_count(&p->batcher) == 1) {
                pipeline_arm_batch_timer(p);
                pipeline_arm_expiry(p);
        }
        if (batcher_full(&p->batcher))
                pipeline_flush_open_batch(p);
}
