/* SPDX-License-Identifier: MIT */
/* The broker's consumer timeout (architecture §12): RabbitMQ closes the channel of a delivery
 * left unacked longer than consumer_timeout and requeues everything on it. The daemon returns
 * deliveries itself before that: one timer, due when the oldest delivery held reaches the hold
 * limit, marks the batches that hold such deliveries; their verdicts send them back. */
#include <inttypes.h>

#include "os/log.h"
#include "pipeline/internal.h"

usec_t pipeline_oldest_held(const Pipeline *p) {
        usec_t oldest = batcher_count(&p->batcher) > 0 ? ((AmqpDelivery *) p->batcher.items[0])->received_at
                                                        : USEC_INFINITY;

        for (const Batch *b = p->batches_head; b; b = b->next)
                if (b->n > 0 && !b->expiring)
                        oldest = MIN(oldest, b->deliveries[0]->received_at);
        return oldest;
}

static usec_t hold_limit(const Pipeline *p) {
        return consumer_timeout_hold_limit((usec_t) p->config->rabbitmq_consumer_timeout_s * USEC_PER_SEC,
                                           (usec_t) p->config->request_timeout_s * USEC_PER_SEC);
}

void pipeline_arm_expiry(Pipeline *p) {
        usec_t limit = hold_limit(p), oldest;

        if (limit == USEC_INFINITY) {
                (void) sd_event_source_set_enabled(p->expiry_timer, SD_EVENT_OFF);
                return;
        }
        oldest = pipeline_oldest_held(p);
        if (oldest == USEC_INFINITY) {
                (void) sd_event_source_set_enabled(p->expiry_timer, SD_EVENT_OFF);
                return;
        }
        (void) sd_event_source_set_time(p->expiry_timer, oldest + limit);
        (void) sd_event_source_set_enabled(p->expiry_timer, SD_EVENT_ONESHOT);
}

static int on_expiry_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Pipeline *p = userdata;
        usec_t limit = hold_limit(p), t = now(CLOCK_MONOTONIC);
        size_t events = 0;

        if (limit == USEC_INFINITY)
                return 0;

        /* The batch being filled first: formed now, it is marked below with the others. */
        if (batcher_count(&p->batcher) > 0 &&
            ((AmqpDelivery *) p->batcher.items[0])->received_at + limit <= t)
                pipeline_flush_open_batch(p);

        for (Batch *b = p->batches_head; b; b = b->next)
                if (b->n > 0 && !b->expiring && b->deliveries[0]->received_at + limit <= t) {
                        b->expiring = true;
                        events += b->n;
                }

        if (events > 0 && !p->expiry_episode)
                /* Once per episode: a long outage returns the same events again and again. */
                log_struct(LOG_WARNING,
                           LOG_MESSAGE("%zu event(s) held for %" PRIu64 " s come near the broker's consumer timeout "
                                       "(RABBITMQ_CONSUMER_TIMEOUT_S=%u): returning those not on the wire to the "
                                       "queue",
                                       events, limit / USEC_PER_SEC, p->config->rabbitmq_consumer_timeout_s),
                           LOG_FIELD("EVENT_COUNT=%zu", events), NULL);
        p->expiry_episode = events > 0;

        /* Batches that wait go back now; those on the wire when their answer comes. */
        pipeline_review_backoff(p);
        pipeline_schedule(p);
        pipeline_arm_expiry(p);
        return 0;
}

int pipeline_expiry_new(Pipeline *p) {
        int r;

        r = sd_event_add_time(p->event, &p->expiry_timer, CLOCK_MONOTONIC, USEC_INFINITY, USEC_PER_SEC,
                              on_expiry_timer, p);
        if (r < 0)
                return r;
        (void) sd_event_source_set_enabled(p->expiry_timer, SD_EVENT_OFF);
        (void) sd_event_source_set_description(p->expiry_timer, "expiry-timer");
        return 0;
}
