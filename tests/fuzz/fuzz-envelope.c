/* SPDX-License-Identifier: MIT */
/* envelope_encode() (core/envelope.c): message bodies in, the gzip member the destination gets
 * out. The input is the bodies, separated by NUL bytes (which no JSON body holds); its first byte
 * picks the compression level and the batch id. Only bodies that pass json_check_event() are
 * encoded, as in the daemon. One Envelope serves every input, its level changed between them, as
 * the daemon's is on a reload. Invariants:
 *   - no crash, leak or undefined behaviour;
 *   - gunzip (zlib, inflate with gzip framing) gives exactly {"batch_id":"<id>","discoveries":[
 *     <body>,<body>,...]} with the bodies byte for byte, and nothing after the gzip member;
 *     the reported raw size is its length; envelope_overhead() the bytes around the bodies;
 *   - json-c's strict parser reads the whole envelope as an object with exactly those two keys,
 *     "discoveries" an array of as many elements as bodies, each equal (json_object_equal) to
 *     json-c's reading of that body on its own. */
#include <json-c/json.h>
#include <zlib.h>

#include "core/envelope.h"
#include "core/json-check.h"
#include "fuzz.h"

#define BODIES_MAX 1024

static Envelope *envelope;

static void gunzip(const uint8_t *data, size_t size, const Buffer *in, Buffer *out) {
        z_stream z = { 0 };
        int r;

        FUZZ_CHECK(inflateInit2(&z, 15 + 16) == Z_OK, data, size, "inflateInit2() failed");
        z.next_in = in->data;
        z.avail_in = (uInt) in->size;
        for (;;) {
                if (buffer_reserve(out, 65536) < 0)
                        abort();
                z.next_out = out->data + out->size;
                z.avail_out = (uInt) (out->allocated - out->size);
                r = inflate(&z, Z_NO_FLUSH);
                out->size = (size_t) (z.next_out - out->data);
                if (r == Z_STREAM_END)
                        break;
                FUZZ_CHECK(r == Z_OK || (r == Z_BUF_ERROR && z.avail_out == 0), data, size,
                           "gunzip failed: %d (%s)", r, strempty(z.msg));
        }
        FUZZ_CHECK(z.avail_in == 0, data, size, "%u bytes after the gzip member", z.avail_in);
        (void) inflateEnd(&z);
}

static json_object *parse_strict(const void *text, size_t size) {
        struct json_tokener *tok = json_tokener_new_ex(JSON_CHECK_MAX_DEPTH + 8);
        json_object *o;

        if (!tok)
                abort();
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
        o = json_tokener_parse_ex(tok, text, (int) size);
        if (json_tokener_get_error(tok) != json_tokener_success || json_tokener_get_parse_end(tok) != size) {
                json_object_put(o);
                o = NULL;
        }
        json_tokener_free(tok);
        return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_free_ struct iovec *bodies = NULL;
        _cleanup_(buffer_done) Buffer out = { 0 }, plain = { 0 }, expected = { 0 };
        json_object *doc, *discoveries, *batch_id;
        char id[UUID_STRING_MAX];
        size_t n = 0, raw = 0;
        Uuid u;
        int level, r;

        if (size < 1 || size > 1024 * 1024)
                return 0;
        if (!envelope && envelope_new(6, &envelope) < 0)
                abort();
        level = data[0] % 10;
        FUZZ_CHECK(envelope_set_level(envelope, level) == 0, data, size, "envelope_set_level(%d) failed", level);
        uuid5(&UUID_NAMESPACE_TRANSMITTER, data, size, &u);
        uuid_to_string(&u, id);

        bodies = calloc(BODIES_MAX, sizeof(struct iovec));
        if (!bodies)
                abort();
        for (const uint8_t *p = data + 1, *end = data + size; p <= end && n < BODIES_MAX;) {
                const uint8_t *nul = memchr(p, '\0', (size_t) (end - p));
                const uint8_t *e = nul ? nul : end;

                if (json_check_event(p, (size_t) (e - p), NULL) == JSON_CHECK_OK)
                        bodies[n++] = (struct iovec) { .iov_base = (void *) p, .iov_len = (size_t) (e - p) };
                p = e + 1;
        }

        r = envelope_encode(envelope, id, bodies, n, &out, &raw);
        FUZZ_CHECK(r == 0, data, size, "envelope_encode() failed: %d", r);

        /* What the envelope must be, assembled here the plain way. */
        if (buffer_append(&expected, "{\"batch_id\":\"", 13) < 0 || buffer_append(&expected, id, strlen(id)) < 0 ||
            buffer_append(&expected, "\",\"discoveries\":[", 17) < 0)
                abort();
        for (size_t i = 0; i < n; i++)
                if ((i > 0 && buffer_append(&expected, ",", 1) < 0) ||
                    buffer_append(&expected, bodies[i].iov_base, bodies[i].iov_len) < 0)
                        abort();
        if (buffer_append(&expected, "]}", 2) < 0)
                abort();

        gunzip(data, size, &out, &plain);
        FUZZ_CHECK(plain.size == expected.size && memcmp(plain.data, expected.data, plain.size) == 0, data, size,
                   "the envelope is not the bodies: %zu bytes, expected %zu", plain.size, expected.size);
        FUZZ_CHECK(raw == plain.size, data, size, "raw size %zu, the envelope has %zu", raw, plain.size);
        {
                size_t body_bytes = 0;

                for (size_t i = 0; i < n; i++)
                        body_bytes += bodies[i].iov_len;
                FUZZ_CHECK(raw == envelope_overhead(n) + body_bytes, data, size, "overhead %zu + bodies %zu != %zu",
                           envelope_overhead(n), body_bytes, raw);
        }

        doc = parse_strict(plain.data, plain.size);
        FUZZ_CHECK(doc && json_object_is_type(doc, json_type_object), data, size, "json-c cannot read the envelope");
        FUZZ_CHECK(json_object_object_length(doc) == 2 && json_object_object_get_ex(doc, "batch_id", &batch_id) &&
                           json_object_object_get_ex(doc, "discoveries", &discoveries),
                   data, size, "the envelope's keys are not batch_id and discoveries");
        FUZZ_CHECK(json_object_is_type(batch_id, json_type_string) && streq(json_object_get_string(batch_id), id),
                   data, size, "batch_id is not %s", id);
        FUZZ_CHECK(json_object_is_type(discoveries, json_type_array) && json_object_array_length(discoveries) == n,
                   data, size, "discoveries does not hold %zu events", n);
        for (size_t i = 0; i < n; i++) {
                json_object *alone = parse_strict(bodies[i].iov_base, bodies[i].iov_len);

                FUZZ_CHECK(alone, data, size, "json-c cannot read body %zu on its own", i);
                FUZZ_CHECK(json_object_equal(alone, json_object_array_get_idx(discoveries, i)), data, size,
                           "body %zu reads otherwise inside the envelope", i);
                json_object_put(alone);
        }
        json_object_put(doc);
        return 0;
}
