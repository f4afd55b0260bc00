/* SPDX-License-Identifier: MIT */
#pragma once

/* Turns settled deliveries of one AMQP channel into as few ack/nack frames as possible.
 * Delivery tags on a channel are 1, 2, 3, ... in delivery order. A run of settled tags of the
 * same kind starting at the lowest unsettled tag goes out as one frame with multiple=true
 * (basic.reject has no such flag: SETTLE_RETURN_FAILED goes out one frame per tag); settled
 * tags behind an unsettled one go out one by one at once (so a batch stuck in retry does not
 * keep the others' messages unacked). That costs a frame per message whenever a batch finishes
 * before the one below it; holding them 5 or 20 ms for that one's multiple frame instead gained
 * neither events/s nor broker CPU in benchmark runs, and delayed the broker's refill. */

#include "util/util.h"

typedef enum SettleKind {
        SETTLE_ACK,     /* basic.ack */
        SETTLE_REQUEUE, /* basic.nack requeue=true */
        SETTLE_REJECT,  /* basic.nack requeue=false: to the queue's dead-letter exchange */
        SETTLE_RETURN_FAILED, /* basic.reject requeue=true: back to the queue as a failed delivery, which
                               * quorum queues count against their delivery limit on every version
                               * (RabbitMQ 4.3 stopped counting basic.nack) */
        _SETTLE_KIND_MAX,
} SettleKind;

typedef struct AckCommand {
        uint64_t tag;
        bool multiple;
        SettleKind kind;
} AckCommand;

typedef struct AckTracker {
        uint64_t base;    /* lowest tag not yet sent to the broker */
        uint64_t next;    /* next tag expected from the broker */
        uint8_t *states;  /* ring, states[(tag - 1) % capacity] for base <= tag < next */
        size_t capacity;
        size_t n_settled; /* settled, not yet sent */
        size_t n_sent;    /* sent one by one while a lower tag is unsettled (so above base) */
        uint64_t scan_from; /* no tag above base below this one is settled and not yet sent */
} AckTracker;

void ack_tracker_init(AckTracker *t);
void ack_tracker_done(AckTracker *t);
/* A new channel: forgets everything; tags start at 1 again. */
void ack_tracker_reset(AckTracker *t);

/* Registers a delivery; tag must be the next one (-EINVAL otherwise, -ENOMEM). */
int ack_tracker_delivered(AckTracker *t, uint64_t tag);

/* Marks tag settled; -ENOENT if it is not outstanding, -EALREADY if settled already. */
int ack_tracker_settle(AckTracker *t, uint64_t tag, SettleKind kind);

/* Emits the frames now due into out (at most max); returns how many. Call until it returns
 * fewer than max. */
size_t ack_tracker_drain(AckTracker *t, AckCommand *out, size_t max);

/* Outstanding (delivered, not yet sent) tags. */
size_t ack_tracker_outstanding(const AckTracker *t);
