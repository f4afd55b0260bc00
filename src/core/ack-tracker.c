/* SPDX-License-Identifier: MIT */
#include <assert.h>

#include "core/ack-tracker.h"

/* A tag's state in the ring: unsettled, settled with kind k (1 + k), or already sent to the
 * broker one by one while a lower tag was still unsettled. */
enum {
        TAG_UNSETTLED = 0,
        TAG_SENT = 0xff,
};

#define ACK_TRACKER_INITIAL_CAPACITY 64

static uint8_t tag_settled(SettleKind kind) {
        return (uint8_t) (1 + kind);
}

static bool state_is_settled(uint8_t s) {
        return s != TAG_UNSETTLED && s != TAG_SENT;
}

/* basic.reject settles one tag: it has no multiple flag. */
static bool kind_coalesces(uint8_t s) {
        return s != tag_settled(SETTLE_RETURN_FAILED);
}

static uint8_t *slot(const AckTracker *t, uint64_t tag) {
        return &t->states[(tag - 1) % t->capacity];
}

void ack_tracker_init(AckTracker *t) {
        *t = (AckTracker) {
                .base = 1,
                .next = 1,
        };
}

void ack_tracker_done(AckTracker *t) {
        free(t->states);
        ack_tracker_init(t);
}

void ack_tracker_reset(AckTracker *t) {
        /* The ring is kept: the new channel will need as much room as the old one did. */
        t->base = t->next = 1;
        t->n_settled = t->n_sent = 0;
        t->scan_from = 0;
}

static int ack_tracker_grow(AckTracker *t) {
        size_t n;
        uint8_t *s;

        if (t->capacity == 0)
                n = ACK_TRACKER_INITIAL_CAPACITY;
        else if (t->capacity > SIZE_MAX / 2)
                return -ENOMEM;
        else
                n = t->capacity * 2;

        s = malloc(n);
        if (!s)
                return -ENOMEM;

        /* Positions depend on the capacity, so each live tag moves; doubling keeps that
         * amortised O(1) per tag. */
        for (uint64_t tag = t->base; tag < t->next; tag++)
                s[(tag - 1) % n] = *slot(t, tag);

        free(t->states);
        t->states = s;
        t->capacity = n;
        return 0;
}

int ack_tracker_delivered(AckTracker *t, uint64_t tag) {
        int r;

        /* The broker numbers deliveries 1, 2, 3, ... per channel; anything else means the
         * caller lost track (or the channel changed without a reset). */
        if (tag != t->next)
                return -EINVAL;

        if (t->next - t->base >= t->capacity) {
                r = ack_tracker_grow(t);
                if (r < 0)
                        return r;
        }

        *slot(t, tag) = TAG_UNSETTLED;
        t->next++;
        return 0;
}

int ack_tracker_settle(AckTracker *t, uint64_t tag, SettleKind kind) {
        uint8_t *s;

        if ((unsigned) kind >= _SETTLE_KIND_MAX)
                return -EINVAL;
        if (tag < t->base || tag >= t->next)
                return -ENOENT;

        s = slot(t, tag);
        if (*s == TAG_SENT)
                return -ENOENT;
        if (*s != TAG_UNSETTLED)
                return -EALREADY;

        *s = tag_settled(kind);
        t->n_settled++;
        if (tag < t->scan_from)
                t->scan_from = tag;
        return 0;
}

/* Keeps base on a tag the broker still has outstanding: tags sent one by one are passed. */
static void ack_tracker_skip_sent(AckTracker *t) {
        while (t->base < t->next && *slot(t, t->base) == TAG_SENT) {
                assert(t->n_sent > 0);
                t->n_sent--;
                t->base++;
        }
}

size_t ack_tracker_drain(AckTracker *t, AckCommand *out, size_t max) {
        size_t n = 0;

        /* From the bottom: a multiple=true frame for tag T settles every tag <= T the broker
         * still has, so it may only go out when all of base..T are settled with the same kind
         * or were sent already (the broker no longer has those). T itself must be one the
         * broker still has: RabbitMQ fails the channel for a multiple frame whose tag is
         * unknown. */
        while (n < max && t->base < t->next) {
                uint8_t s = *slot(t, t->base);
                uint64_t last = t->base;
                size_t count = 0, sent = 0, sent_seen = 0;

                assert(s != TAG_SENT);
                if (s == TAG_UNSETTLED)
                        break;

                for (uint64_t tag = t->base; tag < t->next; tag++) {
                        uint8_t x = *slot(t, tag);

                        if (x == s) {
                                last = tag;
                                count++;
                                /* Sent tags inside the run leave the window with it. */
                                sent = sent_seen;
                                if (!kind_coalesces(s))
                                        break;
                        } else if (x == TAG_SENT)
                                sent_seen++;
                        else
                                break;
                }

                out[n++] = (AckCommand) {
                        .tag = last,
                        .multiple = count > 1,
                        .kind = (SettleKind) (s - 1),
                };

                assert(t->n_settled >= count && t->n_sent >= sent);
                t->n_settled -= count;
                t->n_sent -= sent;
                t->base = last + 1;
                ack_tracker_skip_sent(t);
        }

        /* The lowest tag is unsettled (a batch in retry, say): what is settled behind it goes
         * out one frame each instead of waiting for it. While that tag stays unsettled, the
         * window keeps growing with sent tags; scan_from keeps each drain from walking them all
         * again. */
        uint64_t tag = MAX(t->base + 1, t->scan_from);
        for (; n < max && t->n_settled > 0 && tag < t->next; tag++) {
                uint8_t *s = slot(t, tag);

                if (!state_is_settled(*s))
                        continue;

                out[n++] = (AckCommand) {
                        .tag = tag,
                        .multiple = false,
                        .kind = (SettleKind) (*s - 1),
                };
                *s = TAG_SENT;
                t->n_settled--;
                t->n_sent++;
        }
        t->scan_from = tag;

        return n;
}

size_t ack_tracker_outstanding(const AckTracker *t) {
        return (size_t) (t->next - t->base) - t->n_sent;
}
