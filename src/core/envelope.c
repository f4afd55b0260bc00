/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <limits.h>
#include <stdio.h>

#ifdef HAVE_LIBDEFLATE
#include <libdeflate.h>
#else
#define ZLIB_CONST /* next_in is then const: the bodies are read, never written */
#include <zlib.h>
#endif

#include "core/envelope.h"

#define ENVELOPE_HEAD "{\"batch_id\":\""
#define ENVELOPE_MIDDLE "\",\"discoveries\":["
#define ENVELOPE_TAIL "]}"
#define CONST_STRLEN(s) (sizeof(s) - 1)
#define ENVELOPE_PREFIX_LEN \
        (CONST_STRLEN(ENVELOPE_HEAD) + UUID_STRING_MAX - 1 + CONST_STRLEN(ENVELOPE_MIDDLE))

static bool level_valid(int level) {
        return level >= 0 && level <= 9;
}

size_t envelope_overhead(size_t n_bodies) {
        return ENVELOPE_PREFIX_LEN + (n_bodies > 0 ? n_bodies - 1 : 0) + CONST_STRLEN(ENVELOPE_TAIL);
}

static void envelope_prefix(char prefix[static ENVELOPE_PREFIX_LEN], const char *batch_id) {
        memcpy(prefix, ENVELOPE_HEAD, CONST_STRLEN(ENVELOPE_HEAD));
        memcpy(prefix + CONST_STRLEN(ENVELOPE_HEAD), batch_id, UUID_STRING_MAX - 1);
        memcpy(prefix + CONST_STRLEN(ENVELOPE_HEAD) + UUID_STRING_MAX - 1, ENVELOPE_MIDDLE,
               CONST_STRLEN(ENVELOPE_MIDDLE));
}

/* The raw envelope's size, after checking what envelope_encode() is given. */
static int envelope_check(const char *batch_id, const struct iovec *bodies, size_t n_bodies, const Buffer *out,
                          size_t *ret_raw) {
        size_t raw;

        if (!out || (n_bodies > 0 && !bodies))
                return -EINVAL;
        /* Checked, not trusted: a quote or backslash in it would break the JSON, and
         * envelope_overhead() counts on its 36 characters. */
        if (uuid_from_string(batch_id, NULL) < 0)
                return -EINVAL;

        raw = envelope_overhead(n_bodies);
        for (size_t i = 0; i < n_bodies; i++) {
                if (bodies[i].iov_len > SIZE_MAX - raw)
                        return -EOVERFLOW;
                raw += bodies[i].iov_len;
        }
        if (raw > ULONG_MAX)
                return -EOVERFLOW; /* zlib's deflateBound() takes an unsigned long */
        *ret_raw = raw;
        return 0;
}

#ifdef HAVE_LIBDEFLATE

/* libdeflate compresses a whole buffer in one call, with better matching than zlib's at less CPU:
 * on the benchmark's events its level N-1 gives about the size of zlib's level N (DESIGN
 * COMPRESSION_LEVEL stays on zlib's scale; transmitter.conf(5) has the table), in 55-65 % of the
 * time. The price is one copy of the raw envelope, about 1 % of the compression's CPU. */
#define RAW_KEEP_MAX (4u * 1024 * 1024) /* a larger assembly buffer is freed after its batch */

struct Envelope {
        struct libdeflate_compressor *compressor;
        int level;
        Buffer raw;
};

int envelope_engine_level(int level) {
        if (!level_valid(level))
                return -EINVAL;
        return level <= 1 ? level : level - 1;
}

const char *envelope_engine(void) {
        return "libdeflate/" LIBDEFLATE_VERSION_STRING;
}

int envelope_new(int level, Envelope **ret) {
        _cleanup_(envelope_freep) Envelope *e = NULL;
        int r;

        if (!level_valid(level) || !ret)
                return -EINVAL;
        e = calloc(1, sizeof(*e));
        if (!e)
                return -ENOMEM;
        r = envelope_set_level(e, level);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(e);
        return 0;
}

Envelope *envelope_free(Envelope *e) {
        if (!e)
                return NULL;
        libdeflate_free_compressor(e->compressor);
        buffer_done(&e->raw);
        return mfree(e);
}

int envelope_set_level(Envelope *e, int level) {
        struct libdeflate_compressor *c;

        if (!e || !level_valid(level))
                return -EINVAL;
        if (e->compressor && level == e->level)
                return 0;
        /* NULL only without memory: the level is valid. The old compressor stays until then. */
        c = libdeflate_alloc_compressor(envelope_engine_level(level));
        if (!c)
                return -ENOMEM;
        libdeflate_free_compressor(e->compressor);
        e->compressor = c;
        e->level = level;
        return 0;
}

size_t envelope_compress_bound(Envelope *e, size_t raw_size) {
        return libdeflate_gzip_compress_bound(e->compressor, raw_size);
}

int envelope_encode(Envelope *e, const char *batch_id, const struct iovec *bodies, size_t n_bodies,
                    Buffer *out, size_t *ret_raw_size) {
        char prefix[ENVELOPE_PREFIX_LEN];
        size_t raw, n;
        int r;

        if (!e)
                return -EINVAL;
        r = envelope_check(batch_id, bodies, n_bodies, out, &raw);
        if (r < 0)
                return r;

        buffer_clear(&e->raw);
        r = buffer_reserve(&e->raw, raw);
        if (r < 0)
                return r;
        envelope_prefix(prefix, batch_id);
        (void) buffer_append(&e->raw, prefix, sizeof(prefix));
        for (size_t i = 0; i < n_bodies; i++) {
                if (i > 0)
                        (void) buffer_append(&e->raw, ",", 1);
                (void) buffer_append(&e->raw, bodies[i].iov_base, bodies[i].iov_len);
        }
        (void) buffer_append(&e->raw, ENVELOPE_TAIL, CONST_STRLEN(ENVELOPE_TAIL));
        assert(e->raw.size == raw);

        /* One allocation (none once out is large enough): the bound covers the whole member. */
        buffer_clear(out);
        r = buffer_reserve(out, libdeflate_gzip_compress_bound(e->compressor, raw));
        if (r < 0)
                return r;
        n = libdeflate_gzip_compress(e->compressor, e->raw.data, raw, out->data, out->allocated);
        if (e->raw.allocated > RAW_KEEP_MAX)
                buffer_done(&e->raw);
        if (n == 0)
                return -EIO; /* within the bound it cannot run out of room */
        out->size = n;
        if (ret_raw_size)
                *ret_raw_size = raw;
        return 0;
}

#else /* zlib */

/* gzip (windowBits 15 + 16) rather than a zlib stream: the body travels as Content-Encoding: gzip.
 * memLevel 8 is zlib's default: 9 buys next to nothing on JSON and costs another 128 KiB. */
#define ENVELOPE_WINDOW_BITS (15 + 16)
#define ENVELOPE_MEM_LEVEL 8

/* The bodies are compressed where they lie: the raw envelope is never assembled in memory. */
struct Envelope {
        z_stream z; /* kept across batches: deflateInit2() allocates ~270 KiB, deflateReset() nothing */
        int level;
        bool initialized;
};

static int zlib_to_errno(int z) {
        switch (z) {
        case Z_MEM_ERROR:
                return -ENOMEM;
        case Z_STREAM_ERROR:
                return -EINVAL;
        default:
                return -EIO;
        }
}

static int envelope_stream_init(Envelope *e) {
        int r;

        e->z = (z_stream) { .zalloc = Z_NULL, .zfree = Z_NULL, .opaque = Z_NULL };
        r = deflateInit2(&e->z, e->level, Z_DEFLATED, ENVELOPE_WINDOW_BITS, ENVELOPE_MEM_LEVEL,
                         Z_DEFAULT_STRATEGY);
        if (r != Z_OK)
                return zlib_to_errno(r);
        e->initialized = true;
        return 0;
}

static void envelope_stream_done(Envelope *e) {
        if (e->initialized)
                (void) deflateEnd(&e->z);
        e->initialized = false;
}

int envelope_new(int level, Envelope **ret) {
        _cleanup_(envelope_freep) Envelope *e = NULL;
        int r;

        if (!level_valid(level) || !ret)
                return -EINVAL;

        e = calloc(1, sizeof(*e));
        if (!e)
                return -ENOMEM;
        e->level = level;

        r = envelope_stream_init(e);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(e);
        return 0;
}

Envelope *envelope_free(Envelope *e) {
        if (!e)
                return NULL;
        envelope_stream_done(e);
        return mfree(e);
}

int envelope_set_level(Envelope *e, int level) {
        int r;

        if (!e || !level_valid(level))
                return -EINVAL;
        if (level == e->level && e->initialized)
                return 0;

        e->level = level;
        if (e->initialized) {
                /* Reset first: deflateParams() on a stream holding data would have to flush it. */
                r = deflateReset(&e->z);
                if (r == Z_OK)
                        r = deflateParams(&e->z, level, Z_DEFAULT_STRATEGY);
                if (r == Z_OK)
                        return 0;
                envelope_stream_done(e);
        }
        /* Start over with the new level; should that fail, envelope_encode() tries once more. */
        return envelope_stream_init(e);
}

/* Makes room when deflate ran out of output. deflateBound() says it never does in this use; this keeps
 * us correct should a zlib build think otherwise. */
static int envelope_grow(z_stream *z, Buffer *out) {
        int r;

        out->size = (size_t) (z->next_out - out->data);
        r = buffer_reserve(out, MAX(out->allocated, (size_t) 4096));
        if (r < 0)
                return r;
        z->next_out = out->data + out->size;
        z->avail_out = (uInt) MIN(out->allocated - out->size, (size_t) UINT_MAX);
        return 0;
}

/* Pushes one piece through deflate. avail_in is a uInt, so a piece beyond 4 GiB goes in slices. */
static int envelope_deflate(z_stream *z, Buffer *out, const void *data, size_t size, int flush) {
        const uint8_t *p = data;

        for (;;) {
                uInt chunk = (uInt) MIN(size, (size_t) UINT_MAX);
                int f = chunk == size ? flush : Z_NO_FLUSH, r;

                if (chunk == 0 && f == Z_NO_FLUSH)
                        return 0; /* nothing to do, and deflate() would call it Z_BUF_ERROR */
                if (z->avail_out == 0) {
                        r = envelope_grow(z, out);
                        if (r < 0)
                                return r;
                }

                z->next_in = p;
                z->avail_in = chunk;
                r = deflate(z, f);
                if (r != Z_OK && r != Z_STREAM_END && r != Z_BUF_ERROR)
                        return zlib_to_errno(r);
                p += chunk - z->avail_in;
                size -= chunk - z->avail_in;

                if (r == Z_STREAM_END)
                        return 0;
                if (z->avail_out != 0) {
                        /* Output space left over, so all input was taken (or deflate is stuck). */
                        if (z->avail_in != 0 || r == Z_BUF_ERROR)
                                return -EIO;
                        if (f == Z_NO_FLUSH && size == 0)
                                return 0;
                }
        }
}

int envelope_engine_level(int level) {
        return level_valid(level) ? level : -EINVAL;
}

const char *envelope_engine(void) {
        return "zlib/" ZLIB_VERSION;
}

size_t envelope_compress_bound(Envelope *e, size_t raw_size) {
        if (!e->initialized && envelope_stream_init(e) < 0)
                return 0;
        /* A finished stream counts its gzip trailer as written already: ask as envelope_encode() does. */
        if (deflateReset(&e->z) != Z_OK)
                return 0;
        return deflateBound(&e->z, (uLong) raw_size);
}

int envelope_encode(Envelope *e, const char *batch_id, const struct iovec *bodies, size_t n_bodies,
                    Buffer *out, size_t *ret_raw_size) {
        char prefix[ENVELOPE_PREFIX_LEN];
        size_t raw;
        z_stream *z;
        int r;

        if (!e)
                return -EINVAL;
        r = envelope_check(batch_id, bodies, n_bodies, out, &raw);
        if (r < 0)
                return r;

        if (!e->initialized) {
                r = envelope_stream_init(e);
                if (r < 0)
                        return r;
        } else {
                /* At the start, not the end: a batch that failed half-way leaves nothing behind. */
                r = deflateReset(&e->z);
                if (r != Z_OK)
                        return zlib_to_errno(r);
        }
        z = &e->z;

        /* One allocation (none once out is large enough): deflateBound() covers the whole member, gzip
         * header and trailer included, when the input is given with Z_NO_FLUSH and ended with Z_FINISH. */
        buffer_clear(out);
        r = buffer_reserve(out, deflateBound(z, (uLong) raw));
        if (r < 0)
                return r;
        z->next_out = out->data;
        z->avail_out = (uInt) MIN(out->allocated, (size_t) UINT_MAX);

        envelope_prefix(prefix, batch_id);

        r = envelope_deflate(z, out, prefix, sizeof(prefix), Z_NO_FLUSH);
        for (size_t i = 0; r >= 0 && i < n_bodies; i++) {
                if (i > 0)
                        r = envelope_deflate(z, out, ",", 1, Z_NO_FLUSH);
                if (r >= 0)
                        r = envelope_deflate(z, out, bodies[i].iov_base, bodies[i].iov_len, Z_NO_FLUSH);
        }
        if (r >= 0)
                r = envelope_deflate(z, out, ENVELOPE_TAIL, CONST_STRLEN(ENVELOPE_TAIL), Z_FINISH);
        if (r < 0) {
                buffer_clear(out);
                return r;
        }

        out->size = (size_t) (z->next_out - out->data);
        if (ret_raw_size)
                *ret_raw_size = raw;
        return 0;
}

#endif
