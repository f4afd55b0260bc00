/* SPDX-License-Identifier: MIT */
#include <criterion/criterion.h>
#include <inttypes.h>

#include "core/ack-tracker.h"

/* A model of one channel at the broker, with RabbitMQ's semantics (rabbit_channel's
 * collect_acks): a frame's tag must be outstanding, or the channel fails with "unknown
 * delivery tag"; multiple=true settles every outstanding tag up to and including it. It also
 * knows what the client asked for each tag, so it can tell a frame that settles a tag the
 * client has not settled (or with another kind) from a correct one. */
typedef struct Broker {
        size_t n;               /* tags 1..n delivered */
        size_t allocated;
        bool *outstanding;      /* at the broker */
        int *given;             /* kind passed to ack_tracker_settle(), -1 before */
        int *applied;           /* kind the broker settled the tag with, -1 before */
        uint64_t low;           /* no outstanding tag below */
        size_t n_outstanding;
        size_t n_given, n_applied;
        size_t n_frames;
} Broker;

static void broker_init(Broker *b) {
        *b = (Broker) { .low = 1 };
}

static void broker_done(Broker *b) {
        free(b->outstanding);
        free(b->given);
        free(b->applied);
}

static void deliver(AckTracker *t, Broker *b) {
        uint64_t tag = b->n + 1;

        if (tag >= b->allocated) {
                size_t n = MAX(b->allocated * 2, (size_t) 1024);

                b->outstanding = realloc(b->outstanding, n * sizeof(bool));
                b->given = realloc(b->given, n * sizeof(int));
                b->applied = realloc(b->applied, n * sizeof(int));
                cr_assert(b->outstanding && b->given && b->applied);
                b->allocated = n;
        }
        cr_assert_eq(ack_tracker_delivered(t, tag), 0, "delivering %" PRIu64, tag);
        b->n = tag;
        b->outstanding[tag] = true;
        b->given[tag] = -1;
        b->applied[tag] = -1;
        b->n_outstanding++;
}

static void deliver_n(AckTracker *t, Broker *b, size_t n) {
        for (size_t i = 0; i < n; i++)
                deliver(t, b);
}

static void settle(AckTracker *t, Broker *b, uint64_t tag, SettleKind kind) {
        cr_assert_eq(ack_tracker_settle(t, tag, kind), 0, "settling %" PRIu64, tag);
        cr_assert_eq(b->given[tag], -1);
        b->given[tag] = (int) kind;
        b->n_given++;
}

static void settle_range(AckTracker *t, Broker *b, uint64_t first, uint64_t last, SettleKind kind) {
        for (uint64_t tag = first; tag <= last; tag++)
                settle(t, b, tag, kind);
}

static void broker_settle_one(Broker *b, uint64_t tag, SettleKind kind) {
        cr_assert(b->outstanding[tag]);
        cr_assert_neq(b->given[tag], -1, "frame settles tag %" PRIu64 " the client has not settled", tag);
        cr_assert_eq(b->given[tag], (int) kind, "tag %" PRIu64 " given kind %d, settled with %d", tag,
                     b->given[tag], (int) kind);
        cr_assert_eq(b->applied[tag], -1, "tag %" PRIu64 " settled twice", tag);
        b->outstanding[tag] = false;
        b->applied[tag] = (int) kind;
        b->n_outstanding--;
        b->n_applied++;
}

static void broker_apply(Broker *b, const AckCommand *c) {
        cr_assert(c->tag >= 1 && c->tag <= b->n, "frame for undelivered tag %" PRIu64, c->tag);
        cr_assert((unsigned) c->kind < _SETTLE_KIND_MAX);
        cr_assert(b->outstanding[c->tag], "frame for tag %" PRIu64 " not outstanding: channel error",
                  c->tag);
        cr_assert(!(c->multiple && c->kind == SETTLE_RETURN_FAILED), "basic.reject has no multiple flag");

        b->n_frames++;
        if (!c->multiple) {
                broker_settle_one(b, c->tag, c->kind);
                return;
        }
        for (uint64_t tag = b->low; tag <= c->tag; tag++)
                if (b->outstanding[tag])
                        broker_settle_one(b, tag, c->kind);
        while (b->low <= b->n && !b->outstanding[b->low])
                b->low++;
}

/* Drains in slices of max, as the caller is told to, applying every frame; returns how many. */
static size_t drain_all(AckTracker *t, Broker *b, size_t max, AckCommand *ret, size_t ret_max) {
        AckCommand buf[16];
        size_t total = 0, n;

        cr_assert(max >= 1 && max <= ELEMENTSOF(buf));
        do {
                n = ack_tracker_drain(t, buf, max);
                cr_assert_leq(n, max);
                for (size_t i = 0; i < n; i++) {
                        broker_apply(b, &buf[i]);
                        if (ret && total < ret_max)
                                ret[total] = buf[i];
                        total++;
                }
        } while (n == max);

        /* What the tracker still holds is exactly what the broker still holds; whatever the
         * client settled has gone out. */
        cr_assert_eq(ack_tracker_outstanding(t), b->n_outstanding);
        cr_assert_eq(b->n_given, b->n_applied);
        return total;
}

#define CMD(t, m, k) ((AckCommand) { .tag = (t), .multiple = (m), .kind = (k) })

/* Drains (in slices of every size from 1 up: the frames must not depend on it) and compares
 * the frames with the expected ones. */
static void expect_frames(AckTracker *t, Broker *b, const AckCommand *want, size_t n_want) {
        AckCommand got[256];
        size_t n;

        n = drain_all(t, b, 16, got, ELEMENTSOF(got));
        cr_assert_eq(n, n_want, "got %zu frames, want %zu", n, n_want);
        for (size_t i = 0; i < n; i++) {
                cr_assert_eq(got[i].tag, want[i].tag, "frame %zu: tag %" PRIu64 ", want %" PRIu64, i,
                             got[i].tag, want[i].tag);
                cr_assert_eq(got[i].multiple, want[i].multiple, "frame %zu (tag %" PRIu64 ")", i,
                             got[i].tag);
                cr_assert_eq(got[i].kind, want[i].kind, "frame %zu (tag %" PRIu64 ")", i, got[i].tag);
        }
}

#define EXPECT(t, b, ...)                                                                    \
        do {                                                                                 \
                const AckCommand _want[] = { __VA_ARGS__ };                                   \
                expect_frames((t), (b), _want, ELEMENTSOF(_want));                          \
        } while (0)

static void expect_nothing(AckTracker *t, Broker *b) {
        expect_frames(t, b, NULL, 0);
}

Test(ack_tracker, empty) {
        AckTracker t;
        AckCommand buf[4];

        ack_tracker_init(&t);
        cr_assert_eq(ack_tracker_outstanding(&t), 0);
        cr_assert_eq(ack_tracker_drain(&t, buf, ELEMENTSOF(buf)), 0);
        cr_assert_eq(ack_tracker_drain(&t, buf, 0), 0);
        ack_tracker_done(&t);
        ack_tracker_done(&t); /* twice is fine */
}

Test(ack_tracker, single) {
        AckTracker t;
        Broker b;

        ack_tracker_init(&t);
        broker_init(&b);
        deliver(&t, &b);
        cr_assert_eq(ack_tracker_outstanding(&t), 1);
        expect_nothing(&t, &b); /* nothing settled: nothing due */
        settle(&t, &b, 1, SETTLE_ACK);
        EXPECT(&t, &b, CMD(1, false, SETTLE_ACK));
        cr_assert_eq(ack_tracker_outstanding(&t), 0);
        expect_nothing(&t, &b);
        ack_tracker_done(&t);
        broker_done(&b);
}

Test(ack_tracker, in_order_batches) {
        AckTracker t;
        Broker b;

        ack_tracker_init(&t);
        broker_init(&b);
        deliver_n(&t, &b, 300);

        settle_range(&t, &b, 1, 100, SETTLE_ACK);
        EXPECT(&t, &b, CMD(100, true, SETTLE_ACK));
        cr_assert_eq(ack_tracker_outstanding(&t), 200);
        settle_range(&t, &b, 101, 200, SETTLE_ACK);
        EXPECT(&t, &b, CMD(200, true, SETTLE_ACK));
        settle_range(&t, &b, 201, 300, SETTLE_ACK);
        EXPECT(&t, &b, CMD(300, true, SETTLE_ACK));
        cr_assert_eq(ack_tracker_outstanding(&t), 0);
        cr_assert_eq(b.n_frames, 3);

        ack_tracker_done(&t);
        broker_done(&b);
}

Test(ack_tracker, out_of_order_batches) {
        AckTracker t;
        Broker b;
        AckCommand want[100];

        ack_tracker_init(&t);
        broker_init(&b);
        deliver_n(&t, &b, 200);

        /* The second batch comes back first: its tags go out one by one at once, not held
         * back by the first batch (in retry, say). */
        settle_range(&t, &b, 101, 200, SETTLE_ACK);
        for (size_t i = 0; i < 100; i++)
                want[i] = CMD(101 + i, false, SETTLE_ACK);
        expect_frames(&t, &b, want, ELEMENTSOF(want));
        cr_assert_eq(ack_tracker_outstanding(&t), 100);

        /* Then the first: one multiple frame, passing over the tags already sent. */
        settle_range(&t, &b, 1, 100, SETTLE_ACK);
        EXPECT(&t, &b, CMD(100, true, SETTLE_ACK));
        cr_assert_eq(ack_tracker_outstanding(&t), 0);
        cr_assert_eq(t.base, 201);

        ack_tracker_done(&t);
        broker_done(&b);
}

Test(ack_tracker, run_spans_sent_tags) {
        AckTracker t;
        Broker b;

        ack_tracker_init(&t);
        broker_init(&b);
        deliver_n(&t, &b, 5);

        settle(&t, &b, 3, SETTLE_ACK);
        EXPECT(&t, &b, CMD(3, false, SETTLE_ACK));
        settle(&t, &b, 1, SETTLE_ACK);
        settle(&t, &b, 2, SETTLE_ACK);
        settle(&t, &b, 4, SETTLE_ACK);
        EXPECT(&t, &b, CMD(4, true, SETTLE_ACK));
        cr_assert_eq(ack_tracker_outstanding(&t), 1);
        settle(&t, &b, 5, SETTLE_ACK);
        EXPECT(&t, &b, CMD(5, false, SETTLE_ACK));

        ack_tracker_done(&t);
        broker_done(&b);
}

Test(ack_tracker, run_of_one_around_sent_tag) {
        AckTracker t;
        Broker b;

        ack_tracker_init(&t);
        broker_init(&b);
        deliver_n(&t, &b, 6);

        settle(&t, &b, 2, SETTLE_REJECT);
        EXPECT(&t, &b, CMD(2, false, SETTLE_REJECT));
        /* 1 then 2 (sent) then 3 unsettled: one tag of the run is left at the broker. */
        settle(&t, &b, 1, SETTLE_ACK);
        EXPECT(&t, &b, CMD(1, false, SETTLE_ACK));
        cr_assert_eq(t.base, 3);

        /* 3 and 5 acked around a sent 4: one multiple frame whose tag (5) is still
         * outstanding. */
        settle(&t, &b, 4, SETTLE_ACK);
        EXPECT(&t, &b, CMD(4, false, SETTLE_ACK));
        settle(&t, &b, 3, SETTLE_ACK);
        settle(&t, &b, 5, SETTLE_ACK);
        EXPECT(&t, &b, CMD(5, true, SETTLE_ACK));
        cr_assert_eq(ack_tracker_outstanding(&t), 1);

        ack_tracker_done(&t);
        broker_done(&b);
}

Test(ack_tracker, trailing_sent_tags_are_not_the_frame_tag) {
        AckTracker t;
        Broker b;

        ack_tracker_init(&t);
        broker_init(&b);
        deliver_n(&t, &b, 6);

        /* 3..5 sent one by one; then 1, 2: the frame's tag is 2, not 5 (not outstanding any
         * more, which RabbitMQ answers with a channel error). */
        settle_range(&t, &b, 3, 5, SETTLE_ACK);
        EXPECT(&t, &b, CMD(3, false, SETTLE_ACK), CMD(4, false, SETTLE_ACK), CMD(5, false, SETTLE_ACK));
        settle_range(&t, &b, 1, 2, SETTLE_ACK);
        EXPECT(&t, &b, CMD(2, true, SETTLE_ACK));
        cr_assert_eq(t.base, 6);
        cr_assert_eq(ack_tracker_outstanding(&t), 1);

        ack_tracker_done(&t);
        broker_done(&b);
}

Test(ack_tracker, kind_change_after_sent_tag) {
        AckTracker t;
        Broker b;

        ack_tracker_init(&t);
        broker_init(&b);
        deliver_n(&t, &b, 4);

        settle(&t, &b, 2, SETTLE_ACK);
        EXPECT(&t, &b, CMD(2, false, SETTLE_ACK));
        settle(&t, &b, 1, SETTLE_REQUEUE);
        settle(&t, &b, 3, SETTLE_ACK);
        EXPECT(&t, &b, CMD(1, false, SETTLE_REQUEUE), CMD(3, false, SETTLE_ACK));

        ack_tracker_done(&t);
        broker_done(&b);
}

Test(ack_tracker, mixed_kinds) {
        AckTracker t;
        Broker b;

        ack_tracker_init(&t);
        broker_init(&b);
        deliver_n(&t, &b, 40);

        settle_range(&t, &b, 1, 10, SETTLE_ACK);
        settle_range(&t, &b, 11, 20, SETTLE_REQUEUE);
        settle_range(&t, &b, 21, 30, SETTLE_ACK);
        EXPECT(&t, &b, CMD(10, true, SETTLE_ACK), CMD(20, true, SETTLE_REQUEUE), CMD(30, true, SETTLE_ACK));
        cr_assert_eq(ack_tracker_outstanding(&t), 10);

        /* Alternating kinds: one frame each, none multiple. */
        settle(&t, &b, 31, SETTLE_ACK);
        settle(&t, &b, 32, SETTLE_REJECT);
        settle(&t, &b, 33, SETTLE_ACK);
        settle(&t, &b, 34, SETTLE_REQUEUE);
        EXPECT(&t, &b, CMD(31, false, SETTLE_ACK), CMD(32, false, SETTLE_REJECT), CMD(33, false, SETTLE_ACK),
               CMD(34, false, SETTLE_REQUEUE));

        ack_tracker_done(&t);
        broker_done(&b);
}

/* basic.reject has no multiple flag: a run of failed returns goes out one frame per tag, even at
 * the bottom of the window, and the kinds around it still run together. */
Test(ack_tracker, return_failed_one_by_one) {
        AckTracker t;
        Broker b;

        ack_tracker_init(&t);
        broker_init(&b);
        deliver_n(&t, &b, 10);

        settle_range(&t, &b, 1, 3, SETTLE_RETURN_FAILED);
        settle_range(&t, &b, 4, 6, SETTLE_ACK);
        EXPECT(&t, &b, CMD(1, false, SETTLE_RETURN_FAILED), CMD(2, false, SETTLE_RETURN_FAILED),
               CMD(3, false, SETTLE_RETURN_FAILED), CMD(6, true, SETTLE_ACK));

        /* Behind an unsettled tag (7): one by one anyway. */
        settle(&t, &b, 8, SETTLE_RETURN_FAILED);
        settle(&t, &b, 9, SETTLE_RETURN_FAILED);
        EXPECT(&t, &b, CMD(8, false, SETTLE_RETURN_FAILED), CMD(9, false, SETTLE_RETURN_FAILED));
        /* Then the acks run over the tags sent. */
        settle(&t, &b, 7, SETTLE_ACK);
        settle(&t, &b, 10, SETTLE_ACK);
        EXPECT(&t, &b, CMD(10, true, SETTLE_ACK));
        cr_assert_eq(ack_tracker_outstanding(&t), 0);

        ack_tracker_done(&t);
        broker_done(&b);
}

Test(ack_tracker, requeue_and_reject_runs) {
        AckTracker t;
        Broker b;

        ack_tracker_init(&t);
        broker_init(&b);
        deliver_n(&t, &b, 150);

        /* An exhausted batch is requeued as one frame, a dead-lettered one rejected as one. */
        settle_range(&t, &b, 1, 50, SETTLE_REQUEUE);
        EXPECT(&t, &b, CMD(50, true, SETTLE_REQUEUE));
        settle_range(&t, &b, 51, 100, SETTLE_REJECT);
        EXPECT(&t, &b, CMD(100, true, SETTLE_REJECT));
        /* A requeue run behind an unsettled tag: one by one. */
        settle_range(&t, &b, 102, 104, SETTLE_REQUEUE);
        EXPECT(&t, &b, CMD(102, false, SETTLE_REQUEUE), CMD(103, false, SETTLE_REQUEUE),
               CMD(104, false, SETTLE_REQUEUE));
        settle(&t, &b, 101, SETTLE_REQUEUE);
        settle_range(&t, &b, 105, 150, SETTLE_REQUEUE);
        EXPECT(&t, &b, CMD(150, true, SETTLE_REQUEUE));
        cr_assert_eq(ack_tracker_outstanding(&t), 0);

        ack_tracker_done(&t);
        broker_done(&b);
}

Test(ack_tracker, stuck_lowest_tag) {
        AckTracker t;
        Broker b;
        AckCommand want[100];

        ack_tracker_init(&t);
        broker_init(&b);

        /* Tag 1 waits (its batch in retry) while 2000 batches behind it complete: each one's
         * tags go out at once, one by one. */
        deliver(&t, &b);
        for (unsigned batch = 0; batch < 2000; batch++) {
                uint64_t first = b.n + 1;

                deliver_n(&t, &b, 100);
                settle_range(&t, &b, first, first + 99, SETTLE_ACK);
                for (size_t i = 0; i < 100; i++)
                        want[i] = CMD(first + i, false, SETTLE_ACK);
                expect_frames(&t, &b, want, ELEMENTSOF(want));
                cr_assert_eq(ack_tracker_outstanding(&t), 1);
        }
        settle(&t, &b, 1, SETTLE_REQUEUE);
        EXPECT(&t, &b, CMD(1, false, SETTLE_REQUEUE));
        cr_assert_eq(t.base, b.n + 1);

        ack_tracker_done(&t);
        broker_done(&b);
}

Test(ack_tracker, settle_below_last_scan) {
        AckTracker t;
        Broker b;

        ack_tracker_init(&t);
        broker_init(&b);
        deliver_n(&t, &b, 10);

        settle(&t, &b, 8, SETTLE_ACK);
        EXPECT(&t, &b, CMD(8, false, SETTLE_ACK));
        /* Lower than where the last drain stopped looking. */
        settle(&t, &b, 3, SETTLE_REJECT);
        EXPECT(&t, &b, CMD(3, false, SETTLE_REJECT));
        settle(&t, &b, 9, SETTLE_ACK);
        settle(&t, &b, 5, SETTLE_ACK);
        EXPECT(&t, &b, CMD(5, false, SETTLE_ACK), CMD(9, false, SETTLE_ACK));
        settle_range(&t, &b, 1, 2, SETTLE_ACK);
        settle(&t, &b, 4, SETTLE_ACK);
        EXPECT(&t, &b, CMD(4, true, SETTLE_ACK));
        cr_assert_eq(t.base, 6);
        cr_assert_eq(ack_tracker_outstanding(&t), 3);

        ack_tracker_done(&t);
        broker_done(&b);
}

Test(ack_tracker, drain_in_small_slices) {
        AckTracker t;
        Broker b;
        AckCommand buf[2];
        size_t n;

        ack_tracker_init(&t);
        broker_init(&b);
        deliver_n(&t, &b, 12);
        settle_range(&t, &b, 1, 3, SETTLE_ACK);
        settle_range(&t, &b, 4, 6, SETTLE_REJECT);
        settle_range(&t, &b, 7, 8, SETTLE_ACK);
        settle_range(&t, &b, 10, 12, SETTLE_REQUEUE);

        n = ack_tracker_drain(&t, buf, 1);
        cr_assert_eq(n, 1);
        cr_assert_eq(buf[0].tag, 3);
        broker_apply(&b, &buf[0]);
        n = ack_tracker_drain(&t, buf, 2);
        cr_assert_eq(n, 2);
        cr_assert_eq(buf[0].tag, 6);
        cr_assert_eq(buf[1].tag, 8);
        broker_apply(&b, &buf[0]);
        broker_apply(&b, &buf[1]);
        /* Behind unsettled 9: 10, 11, 12 one by one. */
        n = ack_tracker_drain(&t, buf, 2);
        cr_assert_eq(n, 2);
        cr_assert_eq(buf[0].tag, 10);
        cr_assert_eq(buf[1].tag, 11);
        broker_apply(&b, &buf[0]);
        broker_apply(&b, &buf[1]);
        n = ack_tracker_drain(&t, buf, 2);
        cr_assert_eq(n, 1);
        cr_assert_eq(buf[0].tag, 12);
        cr_assert_not(buf[0].multiple);
        broker_apply(&b, &buf[0]);
        cr_assert_eq(ack_tracker_drain(&t, buf, 2), 0);
        cr_assert_eq(ack_tracker_outstanding(&t), 1);

        ack_tracker_done(&t);
        broker_done(&b);
}

Test(ack_tracker, errors) {
        AckTracker t;
        Broker b;

        ack_tracker_init(&t);
        broker_init(&b);

        cr_assert_eq(ack_tracker_delivered(&t, 0), -EINVAL);
        cr_assert_eq(ack_tracker_delivered(&t, 2), -EINVAL);
        cr_assert_eq(ack_tracker_settle(&t, 1, SETTLE_ACK), -ENOENT);
        deliver_n(&t, &b, 3);
        cr_assert_eq(ack_tracker_delivered(&t, 3), -EINVAL); /* again */
        cr_assert_eq(ack_tracker_delivered(&t, 5), -EINVAL); /* a gap */
        cr_assert_eq(ack_tracker_settle(&t, 0, SETTLE_ACK), -ENOENT);
        cr_assert_eq(ack_tracker_settle(&t, 4, SETTLE_ACK), -ENOENT);
        cr_assert_eq(ack_tracker_settle(&t, UINT64_MAX, SETTLE_ACK), -ENOENT);
        cr_assert_eq(ack_tracker_settle(&t, 1, _SETTLE_KIND_MAX), -EINVAL);
        cr_assert_eq(ack_tracker_settle(&t, 1, (SettleKind) -1), -EINVAL);

        settle(&t, &b, 2, SETTLE_ACK);
        cr_assert_eq(ack_tracker_settle(&t, 2, SETTLE_ACK), -EALREADY);
        cr_assert_eq(ack_tracker_settle(&t, 2, SETTLE_REJECT), -EALREADY);
        EXPECT(&t, &b, CMD(2, false, SETTLE_ACK));
        /* Sent: no longer outstanding. */
        cr_assert_eq(ack_tracker_settle(&t, 2, SETTLE_ACK), -ENOENT);
        settle(&t, &b, 1, SETTLE_ACK);
        EXPECT(&t, &b, CMD(1, false, SETTLE_ACK));
        cr_assert_eq(ack_tracker_settle(&t, 1, SETTLE_ACK), -ENOENT); /* below base */
        cr_assert_eq(ack_tracker_outstanding(&t), 1);
        /* Nothing failed changed anything. */
        deliver(&t, &b);
        cr_assert_eq(b.n, 4);

        ack_tracker_done(&t);
        broker_done(&b);
}

Test(ack_tracker, ring_growth) {
        AckTracker t;
        Broker b;

        ack_tracker_init(&t);
        broker_init(&b);

        /* Far past the initial capacity with nothing settled. */
        deliver_n(&t, &b, 10000);
        cr_assert_geq(t.capacity, 10000);
        cr_assert_eq(ack_tracker_outstanding(&t), 10000);
        for (uint64_t tag = 10000; tag >= 1; tag--)
                settle(&t, &b, tag, SETTLE_ACK);
        EXPECT(&t, &b, CMD(10000, true, SETTLE_ACK));
        cr_assert_eq(ack_tracker_outstanding(&t), 0);

        ack_tracker_done(&t);
        broker_done(&b);
}

Test(ack_tracker, ring_growth_while_wrapped) {
        AckTracker t;
        Broker b;
        size_t cap;

        ack_tracker_init(&t);
        broker_init(&b);

        /* Slide a small window over many tags, so the live part of the ring wraps around its
         * end, then grow it: the live tags must move to their new places intact. */
        for (unsigned round = 0; round < 100; round++) {
                uint64_t first = b.n + 1;

                deliver_n(&t, &b, 37);
                settle_range(&t, &b, first, first + 29, SETTLE_ACK);
                /* Leaves 7 per round: settle the previous round's leftovers behind. */
                if (round > 0)
                        settle_range(&t, &b, first - 7, first - 1, SETTLE_REJECT);
                else
                        cr_assert_eq(drain_all(&t, &b, 16, NULL, 0), 1);
                if (round > 0)
                        cr_assert_eq(drain_all(&t, &b, 16, NULL, 0), 2);
        }
        cap = t.capacity;
        cr_assert_eq(ack_tracker_outstanding(&t), 7);
        cr_assert_neq((t.base - 1) % cap, 0, "window does not wrap; the test proves nothing");

        {
                uint64_t first = t.base, last;

                /* Every kind of state in the live part when it moves: unsettled, settled
                 * and not sent, sent. */
                settle(&t, &b, first + 2, SETTLE_REJECT);
                cr_assert_eq(drain_all(&t, &b, 16, NULL, 0), 1);
                settle(&t, &b, first + 4, SETTLE_REQUEUE);
                settle(&t, &b, first + 5, SETTLE_ACK);

                deliver_n(&t, &b, 5 * cap);
                cr_assert_gt(t.capacity, cap);
                last = b.n;
                /* Interleaved kinds, settled from the top down: every state must have
                 * survived the move for the frames to come out right. */
                for (uint64_t tag = last; tag >= first; tag--)
                        if (b.given[tag] == -1)
                                settle(&t, &b, tag, (tag / 10) % 2 ? SETTLE_ACK : SETTLE_REQUEUE);
                drain_all(&t, &b, 16, NULL, 0);
                cr_assert_eq(ack_tracker_outstanding(&t), 0);
                cr_assert_eq(t.base, last + 1);
        }

        ack_tracker_done(&t);
        broker_done(&b);
}

Test(ack_tracker, reset) {
        AckTracker t;
        Broker b;
        AckCommand buf[4];
        size_t cap;

        ack_tracker_init(&t);
        broker_init(&b);
        deliver_n(&t, &b, 200);
        settle_range(&t, &b, 1, 50, SETTLE_ACK);
        settle_range(&t, &b, 60, 70, SETTLE_ACK);
        drain_all(&t, &b, 16, NULL, 0);
        settle_range(&t, &b, 80, 90, SETTLE_ACK); /* settled, never sent */
        cap = t.capacity;

        /* A new channel: the old tags mean nothing on it. */
        ack_tracker_reset(&t);
        cr_assert_eq(ack_tracker_outstanding(&t), 0);
        cr_assert_eq(ack_tracker_drain(&t, buf, ELEMENTSOF(buf)), 0);
        cr_assert_eq(ack_tracker_settle(&t, 85, SETTLE_ACK), -ENOENT);
        cr_assert_eq(ack_tracker_delivered(&t, 201), -EINVAL);
        cr_assert_eq(t.capacity, cap);
        broker_done(&b);

        broker_init(&b);
        deliver_n(&t, &b, 3);
        settle(&t, &b, 3, SETTLE_ACK);
        EXPECT(&t, &b, CMD(3, false, SETTLE_ACK));
        settle_range(&t, &b, 1, 2, SETTLE_ACK);
        EXPECT(&t, &b, CMD(2, true, SETTLE_ACK));
        cr_assert_eq(ack_tracker_outstanding(&t), 0);

        /* done leaves it as init does: usable again. */
        ack_tracker_done(&t);
        cr_assert_null(t.states);
        cr_assert_eq(ack_tracker_delivered(&t, 1), 0);
        cr_assert_eq(ack_tracker_outstanding(&t), 1);
        ack_tracker_done(&t);
        broker_done(&b);
}

static uint64_t rnd(uint64_t *s) {
        /* splitmix64: good enough, and the same everywhere for a given seed. */
        uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
}

static size_t rnd_below(uint64_t *s, size_t n) {
        return (size_t) (rnd(s) % n);
}

static SettleKind rnd_kind(uint64_t *s) {
        size_t x = rnd_below(s, 10);

        return x < 6 ? SETTLE_ACK : x < 8 ? SETTLE_REQUEUE : x < 9 ? SETTLE_REJECT : SETTLE_RETURN_FAILED;
}

/* The pool of delivered, unsettled tags, for picking one at random. */
typedef struct Pool {
        uint64_t *tags;
        size_t *pos; /* by tag */
        size_t n;
} Pool;

static void pool_add(Pool *p, uint64_t tag) {
        p->pos[tag] = p->n;
        p->tags[p->n++] = tag;
}

static void pool_remove(Pool *p, uint64_t tag) {
        size_t i = p->pos[tag];

        p->tags[i] = p->tags[--p->n];
        p->pos[p->tags[i]] = i;
}

static void random_run(uint64_t seed) {
        uint64_t s = seed;
        size_t total = 1 + rnd_below(&s, 3000), window = 1 + rnd_below(&s, 600);
        AckTracker t;
        Broker b;
        Pool pool = {
                .tags = calloc(total + 1, sizeof(uint64_t)),
                .pos = calloc(total + 2, sizeof(size_t)),
        };

        cr_assert(pool.tags && pool.pos);
        ack_tracker_init(&t);
        broker_init(&b);

        while (b.n < total || pool.n > 0) {
                size_t action = rnd_below(&s, 100);

                if (action < 25 && b.n < total) {
                        /* A prefetch-like window bounds what is unsettled, as the broker does. */
                        size_t n = 1 + rnd_below(&s, 100);

                        n = MIN(n, total - b.n); /* MIN() evaluates twice: not on rnd() */

                        for (size_t i = 0; i < n && pool.n < window; i++) {
                                deliver(&t, &b);
                                pool_add(&pool, b.n);
                        }
                } else if (action < 65 && pool.n > 0) {
                        /* A batch completes: a run of unsettled tags from a random one, one kind. */
                        uint64_t tag = pool.tags[rnd_below(&s, pool.n)];
                        size_t len = 1 + rnd_below(&s, 120);
                        SettleKind kind = rnd_kind(&s);

                        for (; tag <= b.n && len > 0; tag++, len--) {
                                if (b.given[tag] != -1)
                                        break;
                                settle(&t, &b, tag, kind);
                                pool_remove(&pool, tag);
                        }
                } else if (action < 75 && pool.n > 0) {
                        /* A lone event settles (dead-lettered at once, say). */
                        uint64_t tag = pool.tags[rnd_below(&s, pool.n)];

                        settle(&t, &b, tag, rnd_kind(&s));
                        pool_remove(&pool, tag);
                } else if (action < 80 && b.n > 0) {
                        /* A second settle of a settled tag is refused, whichever side it is on. */
                        uint64_t tag = 1 + rnd_below(&s, b.n);
                        int want = b.given[tag] == -1 ? 0 : b.applied[tag] == -1 ? -EALREADY : -ENOENT;

                        if (want != 0)
                                cr_assert_eq(ack_tracker_settle(&t, tag, SETTLE_ACK), want,
                                             "tag %" PRIu64, tag);
                } else
                        drain_all(&t, &b, 1 + rnd_below(&s, 8), NULL, 0);
        }

        drain_all(&t, &b, 1 + rnd_below(&s, 16), NULL, 0);

        cr_assert_eq(b.n, total);
        cr_assert_eq(b.n_outstanding, 0, "seed %" PRIu64, seed);
        cr_assert_eq(ack_tracker_outstanding(&t), 0);
        for (uint64_t tag = 1; tag <= total; tag++) {
                cr_assert_neq(b.given[tag], -1);
                cr_assert_eq(b.applied[tag], b.given[tag], "seed %" PRIu64 " tag %" PRIu64, seed, tag);
        }
        cr_assert_leq(b.n_frames, total);

        ack_tracker_done(&t);
        broker_done(&b);
        free(pool.tags);
        free(pool.pos);
}

Test(ack_tracker, randomized_against_broker_model) {
        for (uint64_t seed = 1; seed <= 300; seed++)
                random_run(seed);
}
