/* SPDX-License-Identifier: MIT */
#include <criterion/criterion.h>
#include <stdio.h>
#include <zlib.h>

#include "core/envelope.h"

#define BATCH_ID "2ed6657d-e927-568b-95e1-2665a8aea6a2"

/* Inflates one gzip member (15 + 32: zlib or gzip, detected) and insists that it is all there is. */
static uint8_t *gunzip(const Buffer *in, size_t *ret_size) {
        z_stream z = { 0 };
        size_t cap = MAX(in->size * 4, (size_t) 1024), n = 0;
        uint8_t *out = malloc(cap);
        int r;

        cr_assert(out);
        cr_assert_eq(inflateInit2(&z, 15 + 32), Z_OK);
        z.next_in = in->data;
        z.avail_in = (uInt) in->size;
        for (;;) {
                if (n == cap) {
                        cap *= 2;
                        out = realloc(out, cap);
                        cr_assert(out);
                }
                z.next_out = out + n;
                z.avail_out = (uInt) (cap - n);
                r = inflate(&z, Z_NO_FLUSH);
                n = cap - z.avail_out;
                if (r == Z_STREAM_END)
                        break;
                cr_assert(r == Z_OK || (r == Z_BUF_ERROR && z.avail_out == 0), "inflate: %d %s", r,
                          strempty(z.msg));
        }
        cr_assert_eq(z.avail_in, 0, "bytes after the gzip member");
        inflateEnd(&z);
        *ret_size = n;
        return out;
}

/* The envelope as it should come out, assembled the obvious way. */
static char *expected_json(const char *batch_id, const struct iovec *bodies, size_t n, size_t *ret_size) {
        Buffer b = { 0 };

        cr_assert_eq(buffer_append(&b, "{\"batch_id\":\"", 13), 0);
        cr_assert_eq(buffer_append(&b, batch_id, strlen(batch_id)), 0);
        cr_assert_eq(buffer_append(&b, "\",\"discoveries\":[", 17), 0);
        for (size_t i = 0; i < n; i++) {
                if (i > 0)
                        cr_assert_eq(buffer_append(&b, ",", 1), 0);
                cr_assert_eq(buffer_append(&b, bodies[i].iov_base, bodies[i].iov_len), 0);
        }
        cr_assert_eq(buffer_append(&b, "]}", 2), 0);
        *ret_size = b.size;
        return (char *) b.data;
}

/* Encodes, decodes, compares byte for byte; returns the compressed size. */
static size_t roundtrip(Envelope *e, const char *batch_id, const struct iovec *bodies, size_t n) {
        Buffer out = { 0 };
        size_t raw = 0, got_size, want_size, sum = 0, compressed;
        uint8_t *got;
        char *want;

        cr_assert_eq(envelope_encode(e, batch_id, bodies, n, &out, &raw), 0);
        cr_assert_geq(out.size, 18, "no room for gzip's header and trailer");
        cr_expect(out.data[0] == 0x1f && out.data[1] == 0x8b && out.data[2] == 8, "not a gzip member");

        got = gunzip(&out, &got_size);
        want = expected_json(batch_id, bodies, n, &want_size);
        cr_assert_eq(got_size, want_size, "decoded %zu bytes, want %zu", got_size, want_size);
        cr_assert(memcmp(got, want, want_size) == 0, "decoded envelope differs");

        for (size_t i = 0; i < n; i++)
                sum += bodies[i].iov_len;
        cr_expect_eq(raw, want_size);
        cr_expect_eq(raw, envelope_overhead(n) + sum);

        compressed = out.size;
        free(got);
        free(want);
        buffer_done(&out);
        return compressed;
}

/* Bodies in heap blocks of their exact size, so AddressSanitizer catches a read past one. */
static struct iovec body_dup(const char *s, size_t n) {
        void *p = malloc(MAX(n, (size_t) 1));

        cr_assert(p);
        memcpy(p, s, n);
        return (struct iovec) { .iov_base = p, .iov_len = n };
}

static void bodies_free(struct iovec *v, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(v[i].iov_base);
        free(v);
}

Test(envelope, overhead) {
        static const char empty[] = "{\"batch_id\":\"" BATCH_ID "\",\"discoveries\":[]}";

        cr_expect_eq(envelope_overhead(0), strlen(empty));
        cr_expect_eq(envelope_overhead(1), strlen(empty));
        cr_expect_eq(envelope_overhead(2), strlen(empty) + 1);
        cr_expect_eq(envelope_overhead(100), strlen(empty) + 99);
}

Test(envelope, no_bodies) {
        _cleanup_(envelope_freep) Envelope *e = NULL;
        static const char want[] = "{\"batch_id\":\"" BATCH_ID "\",\"discoveries\":[]}";
        Buffer out = { 0 };
        size_t raw, n;
        uint8_t *got;

        cr_assert_eq(envelope_new(6, &e), 0);
        cr_assert_eq(envelope_encode(e, BATCH_ID, NULL, 0, &out, &raw), 0);
        cr_expect_eq(raw, strlen(want));
        got = gunzip(&out, &n);
        cr_assert_eq(n, strlen(want));
        cr_expect(memcmp(got, want, n) == 0);
        free(got);

        /* ret_raw_size may be NULL. */
        cr_assert_eq(envelope_encode(e, BATCH_ID, NULL, 0, &out, NULL), 0);
        buffer_done(&out);
}

Test(envelope, one_and_many) {
        _cleanup_(envelope_freep) Envelope *e = NULL;
        struct iovec *v = calloc(1000, sizeof(*v));

        cr_assert(v);
        cr_assert_eq(envelope_new(6, &e), 0);
        for (size_t i = 0; i < 1000; i++) {
                char body[256];
                int len = snprintf(body, sizeof(body),
                                   "{\"specversion\":\"1.0\",\"id\":\"event-%zu\",\"source\":\"/scanner/%zu\","
                                   "\"type\":\"discovery.found\",\"data\":{\"n\":%zu,\"ok\":%s}}",
                                   i, i % 7, i * i, i % 2 ? "true" : "false");
                v[i] = body_dup(body, (size_t) len);
        }
        roundtrip(e, BATCH_ID, v, 1);
        roundtrip(e, BATCH_ID, v, 2);
        roundtrip(e, BATCH_ID, v, 100);
        roundtrip(e, BATCH_ID, v, 1000);
        bodies_free(v, 1000);
}

Test(envelope, unicode) {
        _cleanup_(envelope_freep) Envelope *e = NULL;
        static const char *const b[] = {
                "{\"id\":\"ü-1\",\"data\":\"Grüße, 日本語, ελληνικά, 😀🚀👍🏽\"}",
                "{\"id\":\"\\u00fc-2\",\"data\":\"\\ud83d\\ude00 \xf4\x8f\xbf\xbf\"}",
                "{\"id\":\"3\",\"data\":\"\xef\xbb\xbf BOM inside\"}",
        };
        struct iovec v[ELEMENTSOF(b)];

        cr_assert_eq(envelope_new(6, &e), 0);
        for (size_t i = 0; i < ELEMENTSOF(b); i++)
                v[i] = body_dup(b[i], strlen(b[i]));
        roundtrip(e, BATCH_ID, v, ELEMENTSOF(b));
        for (size_t i = 0; i < ELEMENTSOF(b); i++)
                free(v[i].iov_base);
}

static uint64_t rng = UINT64_C(0x853c49e6748fea9b);

static uint64_t rnd(void) {
        rng ^= rng >> 12;
        rng ^= rng << 25;
        rng ^= rng >> 27;
        return rng * UINT64_C(2685821657736338717);
}

/* A JSON object of about size bytes whose string is random letters: poorly compressible, so that the
 * output comes close to deflateBound(). */
static struct iovec big_body(size_t size, bool random) {
        char *p = malloc(size);
        size_t n = 0;

        cr_assert(p && size > 32);
        n += (size_t) sprintf(p, "{\"id\":\"big-%zu\",\"data\":\"", size);
        while (n < size - 2) {
                char c = random ? (char) ('A' + rnd() % 58) : (char) ('a' + n % 26);
                p[n++] = c == '\\' ? 'x' : c;
        }
        p[n++] = '"';
        p[n++] = '}';
        return (struct iovec) { .iov_base = p, .iov_len = n };
}

Test(envelope, large_bodies) {
        _cleanup_(envelope_freep) Envelope *e = NULL;
        struct iovec v[4];

        cr_assert_eq(envelope_new(6, &e), 0);
        v[0] = big_body(3 * 1024 * 1024, true);
        v[1] = big_body(5 * 1024 * 1024, false);
        v[2] = big_body(64, true);
        v[3] = big_body(2 * 1024 * 1024 + 17, true);
        roundtrip(e, BATCH_ID, v, 4);

        /* Incompressible at every level, stored blocks included. */
        for (int level = 0; level <= 9; level++) {
                cr_assert_eq(envelope_set_level(e, level), 0);
                roundtrip(e, BATCH_ID, v, 1);
        }
        for (size_t i = 0; i < 4; i++)
                free(v[i].iov_base);
}

Test(envelope, levels) {
        struct iovec *v = calloc(100, sizeof(*v));
        size_t sizes[10], raw;

        cr_assert(v);
        for (size_t i = 0; i < 100; i++) {
                char body[200];
                int len = snprintf(body, sizeof(body),
                                   "{\"id\":\"event-%zu\",\"type\":\"discovery.found\",\"n\":%zu}", i, i);
                v[i] = body_dup(body, (size_t) len);
        }
        raw = envelope_overhead(100);
        for (size_t i = 0; i < 100; i++)
                raw += v[i].iov_len;

        for (int level = 0; level <= 9; level++) {
                _cleanup_(envelope_freep) Envelope *e = NULL;

                cr_assert_eq(envelope_new(level, &e), 0);
                sizes[level] = roundtrip(e, BATCH_ID, v, 100);
        }
        cr_expect_gt(sizes[0], raw, "level 0 stores: larger than the input");
        /* No ordering between 1 and 9 is promised (deflate_fast can win on short repetitive input),
         * only that they compress. */
        for (int level = 1; level <= 9; level++)
                cr_expect_lt(sizes[level], raw / 3, "level %d: %zu of %zu", level, sizes[level], raw);
        cr_log_info("100 small events, %zu bytes raw: level 0 %zu, 1 %zu, 6 %zu, 9 %zu", raw, sizes[0], sizes[1],
                    sizes[6], sizes[9]);

        /* Changing the level of a live Envelope gives what a fresh one at that level gives. */
        {
                _cleanup_(envelope_freep) Envelope *e = NULL;

                cr_assert_eq(envelope_new(6, &e), 0);
                for (int level = 9; level >= 0; level--) {
                        cr_assert_eq(envelope_set_level(e, level), 0);
                        cr_expect_eq(roundtrip(e, BATCH_ID, v, 100), sizes[level], "level %d", level);
                        cr_assert_eq(envelope_set_level(e, level), 0); /* unchanged: a no-op */
                        cr_expect_eq(roundtrip(e, BATCH_ID, v, 100), sizes[level], "level %d again", level);
                }
        }
        bodies_free(v, 100);
}

Test(envelope, bad_arguments) {
        _cleanup_(envelope_freep) Envelope *e = NULL;
        struct iovec v = { .iov_base = (void *) "{}", .iov_len = 2 };
        Buffer out = { 0 };

        cr_expect_eq(envelope_new(-1, &e), -EINVAL);
        cr_expect_eq(envelope_new(10, &e), -EINVAL);
        cr_expect_null(e);
        cr_assert_eq(envelope_new(1, &e), 0);
        cr_expect_eq(envelope_set_level(e, -1), -EINVAL);
        cr_expect_eq(envelope_set_level(e, 10), -EINVAL);

        cr_expect_eq(envelope_encode(e, NULL, &v, 1, &out, NULL), -EINVAL);
        cr_expect_eq(envelope_encode(e, "", &v, 1, &out, NULL), -EINVAL);
        cr_expect_eq(envelope_encode(e, "not-a-uuid", &v, 1, &out, NULL), -EINVAL);
        cr_expect_eq(envelope_encode(e, BATCH_ID "x", &v, 1, &out, NULL), -EINVAL);
        cr_expect_eq(envelope_encode(e, "2ed6657d-e927-568b-95e1-2665a8aea6a\"", &v, 1, &out, NULL), -EINVAL);
        cr_expect_eq(envelope_encode(e, BATCH_ID, NULL, 1, &out, NULL), -EINVAL);
        cr_expect_eq(envelope_encode(e, BATCH_ID, &v, 1, NULL, NULL), -EINVAL);
        cr_expect_eq(out.size, 0);

        /* Still fine afterwards; upper case ids are passed through as given. */
        roundtrip(e, BATCH_ID, &v, 1);
        roundtrip(e, "2ED6657D-E927-568B-95E1-2665A8AEA6A2", &v, 1);
        cr_expect_null(envelope_free(NULL));
        buffer_done(&out);
}

/* One Envelope, many batches: each decodes alone (deflateReset leaves nothing of the one before),
 * and the same batch compresses to the same bytes every time. */
Test(envelope, reuse) {
        _cleanup_(envelope_freep) Envelope *e = NULL;
        struct iovec *v = calloc(300, sizeof(*v));
        Buffer first = { 0 }, again = { 0 };
        char id[UUID_STRING_MAX];

        cr_assert(v);
        for (size_t i = 0; i < 300; i++) {
                char body[300];
                int len = snprintf(body, sizeof(body), "{\"id\":\"e-%zu\",\"blob\":\"%0*zu\"}", i,
                                   (int) (i % 200), i);
                v[i] = body_dup(body, (size_t) len);
        }
        cr_assert_eq(envelope_new(6, &e), 0);
        cr_assert_eq(envelope_encode(e, BATCH_ID, v, 50, &first, NULL), 0);

        for (unsigned k = 0; k < 500; k++) {
                size_t off = rnd() % 300, n = rnd() % (300 - off + 1);
                Uuid u;

                cr_assert_eq(uuid5(&UUID_NAMESPACE_DNS, &k, sizeof(k), &u), 0);
                roundtrip(e, uuid_to_string(&u, id), v + off, n);
        }

        cr_assert_eq(envelope_encode(e, BATCH_ID, v, 50, &again, NULL), 0);
        cr_assert_eq(again.size, first.size);
        cr_expect(memcmp(again.data, first.data, first.size) == 0, "same batch, different bytes");

        /* The steady state: a Buffer large enough is reused, not reallocated. */
        {
                uint8_t *data = again.data;
                size_t allocated = again.allocated;

                for (unsigned k = 0; k < 100; k++) {
                        cr_assert_eq(envelope_encode(e, BATCH_ID, v, 50, &again, NULL), 0);
                        cr_assert_eq(again.data, data);
                        cr_assert_eq(again.allocated, allocated);
                }
        }
        buffer_done(&first);
        buffer_done(&again);
        bodies_free(v, 300);
}

/* One allocation per batch: out gets exactly the engine's bound (or the Buffer minimum), and the
 * engine never needs more. */
Test(envelope, single_allocation) {
        static const int levels[] = { 0, 1, 6, 9 };
        struct iovec v[3];

        v[0] = big_body(1024 * 1024, true);
        v[1] = big_body(100, false);
        v[2] = big_body(300 * 1024, false);
        for (size_t l = 0; l < ELEMENTSOF(levels); l++) {
                _cleanup_(envelope_freep) Envelope *e = NULL;

                cr_assert_eq(envelope_new(levels[l], &e), 0);
                for (size_t n = 0; n <= 3; n++) {
                        Buffer out = { 0 };
                        size_t raw;

                        cr_assert_eq(envelope_encode(e, BATCH_ID, v, n, &out, &raw), 0);
                        cr_expect_eq(out.allocated, MAX(envelope_compress_bound(e, raw), (size_t) 256),
                                     "level %d, %zu bodies: allocated %zu", levels[l], n, out.allocated);
                        cr_expect_leq(out.size, out.allocated);
                        buffer_done(&out);
                }
        }
        for (size_t i = 0; i < 3; i++)
                free(v[i].iov_base);
}

/* COMPRESSION_LEVEL keeps zlib's scale whatever the engine: the operator's number means the same size. */
Test(envelope, engine_levels) {
        bool libdeflate = strncmp(envelope_engine(), "libdeflate/", 11) == 0;

        cr_assert(libdeflate || strncmp(envelope_engine(), "zlib/", 5) == 0, "%s", envelope_engine());
        cr_log_info("engine: %s", envelope_engine());
        cr_expect_eq(envelope_engine_level(0), 0, "0 stores");
        cr_expect_eq(envelope_engine_level(1), 1);
        for (int level = 2; level <= 9; level++)
                cr_expect_eq(envelope_engine_level(level), libdeflate ? level - 1 : level, "level %d", level);
        cr_expect_eq(envelope_engine_level(-1), -EINVAL);
        cr_expect_eq(envelope_engine_level(10), -EINVAL);
}

/* Bodies are spliced verbatim, whatever they are: that they are JSON is json_check_event()'s job. */
Test(envelope, verbatim) {
        _cleanup_(envelope_freep) Envelope *e = NULL;
        struct iovec v[4] = {
                body_dup("{}", 2),
                body_dup("", 0),
                body_dup(" {\"a\" : [ 1 ,2 ] }\n", 19),
                body_dup("{\"nul\":\"\\u0000\"}", 16),
        };

        cr_assert_eq(envelope_new(6, &e), 0);
        roundtrip(e, BATCH_ID, v, 4);
        for (size_t i = 0; i < 4; i++)
                free(v[i].iov_base);
}
