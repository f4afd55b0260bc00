/* SPDX-License-Identifier: MIT */
#pragma once

/* A growable byte buffer. */

#include "util/util.h"

typedef struct Buffer {
        uint8_t *data;
        size_t size;
        size_t allocated;
} Buffer;

/* Makes room for at least extra more bytes; -ENOMEM on failure. */
int buffer_reserve(Buffer *b, size_t extra);
int buffer_append(Buffer *b, const void *data, size_t size);
static inline void buffer_clear(Buffer *b) {
        b->size = 0;
}
void buffer_done(Buffer *b);
