/* SPDX-License-Identifier: MIT */
#include <criterion/criterion.h>

#include "core/batcher.h"
#include "core/envelope.h"

#define S(x) ((usec_t) (x) * USEC_PER_SEC)

/* The raw envelope as architecture §3 has it: {"batch_id":"<36>","discoveries":[b1,b2,...]} */
static size_t wire_overhead(size_t n) {
        return strlen("{\"batch_id\":\"") + 36 + strlen("\",\"discoveries\":[") + (n > 0 ? n - 1 : 0) +
               strlen("]}");
}

static int items[1000];

Test(batcher, overhead_matches_wire_format) {
        /* The batcher's byte limit is only right if envelope_overhead() counts what the
         * encoder writes. */
        cr_assert_eq(wire_overhead(1), 68);
        for (size_t n = 0; n < 1000; n++)
                cr_assert_eq(envelope_overhead(n), wire_overhead(n), "n = %zu", n);
}

Test(batcher, init_empty) {
        BatchLimits l = { .max_events = 10, .max_bytes = 1000, .max_age = S(60) };
        Batcher b;

        batcher_init(&b, &l);
        cr_assert_eq(batcher_count(&b), 0);
        cr_assert_eq(b.body_bytes, 0);
        cr_assert_eq(b.first_at, USEC_INFINITY);
        cr_assert_eq(batcher_deadline(&b), USEC_INFINITY);
        cr_assert_not(batcher_full(&b));
        cr_assert_not(batcher_would_overflow(&b, 0));
        cr_assert_not(batcher_would_overflow(&b, SIZE_MAX)); /* empty: never, the body goes alone */
        batcher_done(&b);
        batcher_done(&b);
}

Test(batcher, count) {
        BatchLimits l = { .max_events = 3, .max_bytes = 1 << 20, .max_age = S(60) };
        Batcher b;

        batcher_init(&b, &l);
        cr_assert_eq(batcher_add(&b, &items[0], 10, S(1)), 0);
        cr_assert_not(batcher_full(&b));
        cr_assert_eq(batcher_add(&b, &items[1], 10, S(2)), 0);
        cr_assert_not(batcher_full(&b));
        cr_assert_eq(batcher_add(&b, &items[2], 10, S(3)), 0);
        cr_assert(batcher_full(&b));
        cr_assert_eq(batcher_count(&b), 3);
        cr_assert_eq(b.body_bytes, 30);
        batcher_done(&b);
        cr_assert_eq(batcher_count(&b), 0);
}

Test(batcher, count_of_one) {
        BatchLimits l = { .max_events = 1, .max_bytes = 1 << 20, .max_age = S(60) };
        Batcher b;

        batcher_init(&b, &l);
        cr_assert_not(batcher_full(&b));
        cr_assert_eq(batcher_add(&b, &items[0], 10, S(1)), 0);
        cr_assert(batcher_full(&b));
        batcher_done(&b);
}

Test(batcher, bytes_exact_boundary) {
        /* Room for exactly two bodies of 60 + 40 bytes in the envelope. */
        BatchLimits l = { .max_events = 100, .max_bytes = wire_overhead(2) + 100, .max_age = S(60) };
        Batcher b;

        batcher_init(&b, &l);
        cr_assert_not(batcher_would_overflow(&b, 60));
        cr_assert_eq(batcher_add(&b, &items[0], 60, S(1)), 0);
        cr_assert_not(batcher_would_overflow(&b, 40)); /* exactly max_bytes: fits */
        cr_assert(batcher_would_overflow(&b, 41));     /* one byte over */
        cr_assert(batcher_would_overflow(&b, SIZE_MAX));
        cr_assert_eq(batcher_add(&b, &items[1], 40, S(2)), 0);
        cr_assert_eq(b.body_bytes, 100);
        /* Full to the byte: even an empty body would need a comma. */
        cr_assert(batcher_would_overflow(&b, 0));
        cr_assert_not(batcher_full(&b));
        batcher_done(&b);
}

Test(batcher, bytes_count_the_commas) {
        /* max_bytes leaves room for the bodies but not for all the separators. */
        BatchLimits l = { .max_events = 100, .max_bytes = wire_overhead(1) + 10, .max_age = S(60) };
        Batcher b;

        batcher_init(&b, &l);
        for (unsigned i = 0; i < 5; i++) {
                cr_assert_not(batcher_would_overflow(&b, 1), "body %u", i);
                cr_assert_eq(batcher_add(&b, &items[i], 1, S(1)), 0);
        }
        /* 5 bodies of 1 byte, 4 commas: 9 of the 10 bytes. Another body needs 2. */
        cr_assert_eq(wire_overhead(5) + 5, wire_overhead(1) + 9);
        cr_assert(batcher_would_overflow(&b, 1));
        cr_assert_not(batcher_would_overflow(&b, 0));
        batcher_done(&b);
}

Test(batcher, too_large) {
        BatchLimits l = { .max_events = 100, .max_bytes = wire_overhead(1) + 100, .max_age = S(60) };
        Batcher b;

        batcher_init(&b, &l);
        cr_assert_not(batcher_too_large(&b, 0));
        cr_assert_not(batcher_too_large(&b, 100)); /* alone, it fits exactly */
        cr_assert(batcher_too_large(&b, 101));
        cr_assert(batcher_too_large(&b, SIZE_MAX));
        cr_assert(batcher_too_large(&b, SIZE_MAX - wire_overhead(1) + 1)); /* would wrap */

        /* It does not depend on what the batch holds. */
        cr_assert_eq(batcher_add(&b, &items[0], 90, S(1)), 0);
        cr_assert_not(batcher_too_large(&b, 100));
        cr_assert(batcher_too_large(&b, 101));
        /* ... while would_overflow does. */
        cr_assert(batcher_would_overflow(&b, 100));
        batcher_done(&b);

        /* A limit below the bare envelope: nothing fits. */
        l.max_bytes = wire_overhead(1) - 1;
        batcher_init(&b, &l);
        cr_assert(batcher_too_large(&b, 0));
        batcher_done(&b);
        l.max_bytes = 0;
        batcher_init(&b, &l);
        cr_assert(batcher_too_large(&b, 0));
        batcher_done(&b);
}

Test(batcher, would_overflow_does_not_wrap) {
        BatchLimits l = { .max_events = 100, .max_bytes = SIZE_MAX, .max_age = S(60) };
        Batcher b;

        batcher_init(&b, &l);
        cr_assert_eq(batcher_add(&b, &items[0], SIZE_MAX / 2, S(1)), 0);
        cr_assert_not(batcher_would_overflow(&b, 1));
        cr_assert(batcher_would_overflow(&b, SIZE_MAX / 2 + 1));
        cr_assert(batcher_would_overflow(&b, SIZE_MAX));
        batcher_done(&b);
}

Test(batcher, age_deadline) {
        BatchLimits l = { .max_events = 100, .max_bytes = 1 << 20, .max_age = S(60) };
        Batcher b;

        batcher_init(&b, &l);
        cr_assert_eq(batcher_deadline(&b), USEC_INFINITY);
        cr_assert_eq(batcher_add(&b, &items[0], 10, S(1000)), 0);
        cr_assert_eq(b.first_at, S(1000));
        cr_assert_eq(batcher_deadline(&b), S(1060));
        /* Later events do not push it back: the age is the first event's. */
        cr_assert_eq(batcher_add(&b, &items[1], 10, S(1030)), 0);
        cr_assert_eq(batcher_add(&b, &items[2], 10, S(1059)), 0);
        cr_assert_eq(batcher_deadline(&b), S(1060));
        batcher_done(&b);
        cr_assert_eq(batcher_deadline(&b), USEC_INFINITY);
}

Test(batcher, age_deadline_saturates) {
        BatchLimits l = { .max_events = 100, .max_bytes = 1 << 20, .max_age = USEC_INFINITY - 5 };
        Batcher b;

        batcher_init(&b, &l);
        cr_assert_eq(batcher_add(&b, &items[0], 10, S(1000)), 0);
        cr_assert_eq(batcher_deadline(&b), USEC_INFINITY);
        batcher_done(&b);

        l.max_age = 0;
        batcher_init(&b, &l);
        cr_assert_eq(batcher_add(&b, &items[0], 10, S(1000)), 0);
        cr_assert_eq(batcher_deadline(&b), S(1000)); /* due at once */
        batcher_done(&b);
}

Test(batcher, take_resets) {
        BatchLimits l = { .max_events = 2000, .max_bytes = SIZE_MAX, .max_age = S(60) };
        void **taken;
        size_t n;
        Batcher b;

        batcher_init(&b, &l);
        /* Past any initial allocation: the order is kept. */
        for (size_t i = 0; i < ELEMENTSOF(items); i++)
                cr_assert_eq(batcher_add(&b, &items[i], i, S(100) + i), 0);
        cr_assert_eq(batcher_count(&b), ELEMENTSOF(items));
        cr_assert_eq(b.body_bytes, ELEMENTSOF(items) * (ELEMENTSOF(items) - 1) / 2);

        batcher_take(&b, &taken, &n);
        cr_assert_eq(n, ELEMENTSOF(items));
        for (size_t i = 0; i < n; i++)
                cr_assert_eq(taken[i], &items[i], "item %zu", i);
        free(taken);

        cr_assert_eq(batcher_count(&b), 0);
        cr_assert_eq(b.body_bytes, 0);
        cr_assert_eq(b.first_at, USEC_INFINITY);
        cr_assert_eq(batcher_deadline(&b), USEC_INFINITY);
        cr_assert_not(batcher_full(&b));
        cr_assert_not(batcher_would_overflow(&b, 10));

        /* The next batch starts its own clock. */
        cr_assert_eq(batcher_add(&b, &items[7], 5, S(500)), 0);
        cr_assert_eq(batcher_deadline(&b), S(560));
        cr_assert_eq(b.body_bytes, 5);
        batcher_take(&b, &taken, &n);
        cr_assert_eq(n, 1);
        cr_assert_eq(taken[0], &items[7]);
        free(taken);

        /* Taking from an empty batcher hands over nothing. */
        batcher_take(&b, &taken, &n);
        cr_assert_eq(n, 0);
        free(taken);
        batcher_done(&b);
}

Test(batcher, set_limits_keeps_items) {
        BatchLimits l = { .max_events = 10, .max_bytes = 1 << 20, .max_age = S(60) };
        BatchLimits l2 = { .max_events = 2, .max_bytes = wire_overhead(3) + 30, .max_age = S(5) };
        Batcher b;

        batcher_init(&b, &l);
        cr_assert_eq(batcher_add(&b, &items[0], 10, S(100)), 0);
        cr_assert_eq(batcher_add(&b, &items[1], 10, S(101)), 0);
        cr_assert_not(batcher_full(&b));
        cr_assert_eq(batcher_deadline(&b), S(160));

        batcher_set_limits(&b, &l2);
        cr_assert_eq(batcher_count(&b), 2);
        cr_assert_eq(b.body_bytes, 20);
        cr_assert(batcher_full(&b));
        cr_assert_eq(batcher_deadline(&b), S(105));
        cr_assert_not(batcher_would_overflow(&b, 10));
        cr_assert(batcher_would_overflow(&b, 11));
        batcher_done(&b);
}

Test(batcher, flush_loop) {
        /* The caller's loop as the pipeline runs it: too_large → dead-letter; would_overflow →
         * flush first; add; full → flush. No flushed batch passes either limit. */
        BatchLimits l = { .max_events = 7, .max_bytes = wire_overhead(1) + 200, .max_age = S(60) };
        uint64_t s = 42;
        size_t flushed = 0, dead = 0, added = 0;
        Batcher b;

        batcher_init(&b, &l);
        for (unsigned i = 0; i < 100000; i++) {
                size_t size;
                void **taken;
                size_t n;

                s = s * 6364136223846793005ULL + 1442695040888963407ULL;
                size = (size_t) (s >> 33) % 230;

                if (batcher_too_large(&b, size)) {
                        cr_assert_gt(size, 200);
                        dead++;
                        continue;
                }
                cr_assert_leq(size, 200);
                if (batcher_would_overflow(&b, size)) {
                        cr_assert_gt(envelope_overhead(batcher_count(&b) + 1) + b.body_bytes + size,
                                     l.max_bytes);
                        batcher_take(&b, &taken, &n);
                        free(taken);
                        flushed++;
                }
                cr_assert_eq(batcher_add(&b, &items[i % ELEMENTSOF(items)], size, S(i)), 0);
                added++;
                cr_assert_leq(envelope_overhead(batcher_count(&b)) + b.body_bytes, l.max_bytes);
                cr_assert_leq(batcher_count(&b), l.max_events);
                if (batcher_full(&b)) {
                        batcher_take(&b, &taken, &n);
                        cr_assert_eq(n, l.max_events);
                        free(taken);
                        flushed++;
                }
        }
        cr_assert_gt(dead, 0);
        cr_assert_gt(flushed, 0);
        cr_assert_gt(added, 0);
        batcher_done(&b);
}
