/* SPDX-License-Identifier: MIT */
#include "core/batcher.h"
#include "core/envelope.h"

void batcher_init(Batcher *b, const BatchLimits *limits) {
        *b = (Batcher) {
                .limits = *limits,
                .first_at = USEC_INFINITY,
        };
}

void batcher_done(Batcher *b) {
        /* The items are the caller's; only the array is ours. */
        b->items = mfree(b->items);
        b->n_items = b->allocated = 0;
        b->body_bytes = 0;
        b->first_at = USEC_INFINITY;
}

void batcher_set_limits(Batcher *b, const BatchLimits *limits) {
        /* A batch already over new, lower limits is flushed by the caller's next check of
         * batcher_full()/batcher_deadline(), not dropped here. */
        b->limits = *limits;
}

/* Whether overhead + a + c passes max_bytes, without overflowing size_t on the way. */
static bool exceeds(size_t max_bytes, size_t overhead, size_t a, size_t c) {
        if (overhead > max_bytes)
                return true;
        max_bytes -= overhead;
        if (a > max_bytes)
                return true;
        max_bytes -= a;
        return c > max_bytes;
}

bool batcher_too_large(const Batcher *b, size_t size) {
        return exceeds(b->limits.max_bytes, envelope_overhead(1), 0, size);
}

bool batcher_would_overflow(const Batcher *b, size_t size) {
        if (b->n_items == 0)
                return false;
        return exceeds(b->limits.max_bytes, envelope_overhead(b->n_items + 1), b->body_bytes, size);
}

int batcher_add(Batcher *b, void *item, size_t size, usec_t now) {
        if (b->n_items >= b->allocated) {
                size_t n = b->allocated ? b->allocated * 2 : 16;
                void **p;

                if (b->allocated > SIZE_MAX / 2 / sizeof(void *))
                        return -ENOMEM;
                p = realloc(b->items, n * sizeof(void *));
                if (!p)
                        return -ENOMEM;
                b->items = p;
                b->allocated = n;
        }

        if (b->n_items == 0)
                b->first_at = now;
        b->items[b->n_items++] = item;
        b->body_bytes = size > SIZE_MAX - b->body_bytes ? SIZE_MAX : b->body_bytes + size;
        return 0;
}

bool batcher_full(const Batcher *b) {
        /* Never "full" while empty, whatever max_events says: an empty batch is not sent. */
        return b->n_items > 0 && b->n_items >= b->limits.max_events;
}

usec_t batcher_deadline(const Batcher *b) {
        if (b->n_items == 0)
                return USEC_INFINITY;
        if (b->limits.max_age > USEC_INFINITY - b->first_at)
                return USEC_INFINITY;
        return b->first_at + b->limits.max_age;
}

void batcher_take(Batcher *b, void ***ret_items, size_t *ret_n) {
        *ret_items = b->items;
        *ret_n = b->n_items;

        b->items = NULL;
        b->n_items = b->allocated = 0;
        b->body_bytes = 0;
        b->first_at = USEC_INFINITY;
}
