/* SPDX-License-Identifier: MIT */
#include "util/buffer.h"

int buffer_reserve(Buffer *b, size_t extra) {
        size_t want, n;
        uint8_t *p;

        if (extra > SIZE_MAX - b->size)
                return -ENOMEM;
        want = b->size + extra;
        if (want <= b->allocated)
                return 0;
        n = MAX(want, b->allocated * 2);
        n = MAX(n, (size_t) 256);
        p = realloc(b->data, n);
        if (!p)
                return -ENOMEM;
        b->data = p;
        b->allocated = n;
        return 0;
}

int buffer_append(Buffer *b, const void *data, size_t size) {
        int r;

        if (size == 0)
                return 0;
        r = buffer_reserve(b, size);
        if (r < 0)
                return r;
        memcpy(b->data + b->size, data, size);
        b->size += size;
        return 0;
}

void buffer_done(Buffer *b) {
        b->data = mfree(b->data);
        b->size = b->allocated = 0;
}
