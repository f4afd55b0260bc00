/* SPDX-License-Identifier: MIT */
#pragma once

/* The flush rules of architecture §4 for the batch being filled: count, bytes of the raw envelope,
 * and age of its first event. It holds opaque items; time is passed in. */

#include "util/util.h"

typedef struct BatchLimits {
        size_t max_events; /* BATCH_SIZE */
        size_t max_bytes;  /* BATCH_MAX_BYTES, of the whole raw envelope */
        usec_t max_age;    /* BATCH_INTERVAL_S */
} BatchLimits;

typedef struct Batcher {
        BatchLimits limits;
        void **items;
        size_t n_items, allocated;
        size_t body_bytes; /* sum of the bodies */
        usec_t first_at;   /* when the first item arrived; USEC_INFINITY when empty */
} Batcher;

void batcher_init(Batcher *b, const BatchLimits *limits);
void batcher_done(Batcher *b);
/* Applies limits from a reload; the items held are kept. */
void batcher_set_limits(Batcher *b, const BatchLimits *limits);

/* A body that can never fit in a batch of its own (dead-lettered "too_large"). */
bool batcher_too_large(const Batcher *b, size_t size);
/* Adding a body of this size would pass max_bytes: flush first. False when empty. */
bool batcher_would_overflow(const Batcher *b, size_t size);
int batcher_add(Batcher *b, void *item, size_t size, usec_t now);
/* Holds max_events items: flush now. */
bool batcher_full(const Batcher *b);
/* When the age rule flushes: first_at + max_age, USEC_INFINITY when empty. */
usec_t batcher_deadline(const Batcher *b);

/* Hands the items over (the caller frees the array) and empties the batcher. */
void batcher_take(Batcher *b, void ***ret_items, size_t *ret_n);
static inline size_t batcher_count(const Batcher *b) {
        return b->n_items;
}
