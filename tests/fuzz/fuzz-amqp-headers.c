/* SPDX-License-Identifier: MIT */
/* The AMQP message properties and header table a delivery carries, as the broker sends them in
 * a content header frame (the input: its property flags and fields, after class, weight and
 * body size). What the daemon does with them today: rabbitmq-c decodes them
 * (amqp_decode_properties(), the code amqp_simple_wait_frame_noblock() runs), the consumer
 * copies the header table out of the frame pool (amqp_headers_copy(), amqp/headers.c), and a
 * dead-letter publish encodes the properties again with x-transmitter-* headers in place of the
 * publisher's (amqp_encode_properties(); the composition is repeated here from
 * dead_letter_publish() in amqp/session.c). Invariants:
 *   - no crash, leak or undefined behaviour in any of that;
 *   - every table rabbitmq-c decodes is copied (never -EINVAL), and the copy equals it, field by
 *     field, nested tables and arrays included (rabbitmq-c's own amqp_table_clone() refuses an
 *     entry with an empty name: a message carrying one stopped consumption, test_fault_headers.py);
 *   - the properties a dead-letter publish sends encode, and decode again to the same;
 *   - x-delivery-count (amqp_headers_delivery_count(), amqp_header_uint(), amqp/headers.c) reads
 *     as amqp/headers.h says, by a reading written here from that contract, and the same on the
 *     copy as on the decoded table. */
#include <amqp.h>
#include <amqp_framing.h>
#include <inttypes.h>
#include <limits.h>

#include "amqp/headers.h"
#include "fuzz.h"

#define ENCODE_MAX (256 * 1024)

static uint8_t scratch[AMQP_HEADERS_ENCODED_MAX];

static bool value_equal(const amqp_field_value_t *a, const amqp_field_value_t *b);

static bool bytes_equal(amqp_bytes_t a, amqp_bytes_t b) {
        return a.len == b.len && (a.len == 0 || memcmp(a.bytes, b.bytes, a.len) == 0);
}

static bool table_equal(const amqp_table_t *a, const amqp_table_t *b) {
        if (a->num_entries != b->num_entries)
                return false;
        for (int i = 0; i < a->num_entries; i++)
                if (!bytes_equal(a->entries[i].key, b->entries[i].key) ||
                    !value_equal(&a->entries[i].value, &b->entries[i].value))
                        return false;
        return true;
}

static bool value_equal(const amqp_field_value_t *a, const amqp_field_value_t *b) {
        if (a->kind != b->kind)
                return false;
        switch (a->kind) {
        case AMQP_FIELD_KIND_BOOLEAN:
                return !a->value.boolean == !b->value.boolean;
        case AMQP_FIELD_KIND_I8:
        case AMQP_FIELD_KIND_U8:
                return a->value.u8 == b->value.u8;
        case AMQP_FIELD_KIND_I16:
        case AMQP_FIELD_KIND_U16:
                return a->value.u16 == b->value.u16;
        case AMQP_FIELD_KIND_I32:
        case AMQP_FIELD_KIND_U32:
                return a->value.u32 == b->value.u32;
        case AMQP_FIELD_KIND_I64:
        case AMQP_FIELD_KIND_U64:
        case AMQP_FIELD_KIND_TIMESTAMP:
                return a->value.u64 == b->value.u64;
        case AMQP_FIELD_KIND_F32:
                return memcmp(&a->value.f32, &b->value.f32, sizeof(float)) == 0;
        case AMQP_FIELD_KIND_F64:
                return memcmp(&a->value.f64, &b->value.f64, sizeof(double)) == 0;
        case AMQP_FIELD_KIND_DECIMAL:
                return a->value.decimal.decimals == b->value.decimal.decimals &&
                       a->value.decimal.value == b->value.decimal.value;
        case AMQP_FIELD_KIND_UTF8:
        case AMQP_FIELD_KIND_BYTES:
                return bytes_equal(a->value.bytes, b->value.bytes);
        case AMQP_FIELD_KIND_ARRAY:
                if (a->value.array.num_entries != b->value.array.num_entries)
                        return false;
                for (int i = 0; i < a->value.array.num_entries; i++)
                        if (!value_equal(&a->value.array.entries[i], &b->value.array.entries[i]))
                                return false;
                return true;
        case AMQP_FIELD_KIND_TABLE:
                return table_equal(&a->value.table, &b->value.table);
        case AMQP_FIELD_KIND_VOID:
                return true;
        default:
                return false;
        }
}

/* The properties a dead-letter publish sends: every field as it came, the header table without
 * x-transmitter-* entries and with ours appended (amqp/session.c, dead_letter_publish()). */
static bool bytes_field_equal(const amqp_basic_properties_t *a, const amqp_basic_properties_t *b, amqp_flags_t flag,
                              amqp_bytes_t x, amqp_bytes_t y) {
        return !(a->_flags & flag) || bytes_equal(x, y);
}

/* The flag bits of basic's properties: rabbitmq-c keeps the continuation bit of a flags word
 * (bit 0) in _flags as it came, and encodes it from the fields present. */
#define BASIC_PROPERTY_FLAGS                                                                             \
        (AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_CONTENT_ENCODING_FLAG | AMQP_BASIC_HEADERS_FLAG |      \
         AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_PRIORITY_FLAG | AMQP_BASIC_CORRELATION_ID_FLAG |      \
         AMQP_BASIC_REPLY_TO_FLAG | AMQP_BASIC_EXPIRATION_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG |             \
         AMQP_BASIC_TIMESTAMP_FLAG | AMQP_BASIC_TYPE_FLAG | AMQP_BASIC_USER_ID_FLAG |                     \
         AMQP_BASIC_APP_ID_FLAG | AMQP_BASIC_CLUSTER_ID_FLAG)

static bool properties_equal(const amqp_basic_properties_t *a, const amqp_basic_properties_t *b) {
        if ((a->_flags & BASIC_PROPERTY_FLAGS) != (b->_flags & BASIC_PROPERTY_FLAGS))
                return false;
        return bytes_field_equal(a, b, AMQP_BASIC_CONTENT_TYPE_FLAG, a->content_type, b->content_type) &&
               bytes_field_equal(a, b, AMQP_BASIC_CONTENT_ENCODING_FLAG, a->content_encoding, b->content_encoding) &&
               (!(a->_flags & AMQP_BASIC_HEADERS_FLAG) || table_equal(&a->headers, &b->headers)) &&
               (!(a->_flags & AMQP_BASIC_DELIVERY_MODE_FLAG) || a->delivery_mode == b->delivery_mode) &&
               (!(a->_flags & AMQP_BASIC_PRIORITY_FLAG) || a->priority == b->priority) &&
               bytes_field_equal(a, b, AMQP_BASIC_CORRELATION_ID_FLAG, a->correlation_id, b->correlation_id) &&
               bytes_field_equal(a, b, AMQP_BASIC_REPLY_TO_FLAG, a->reply_to, b->reply_to) &&
               bytes_field_equal(a, b, AMQP_BASIC_EXPIRATION_FLAG, a->expiration, b->expiration) &&
               bytes_field_equal(a, b, AMQP_BASIC_MESSAGE_ID_FLAG, a->message_id, b->message_id) &&
               (!(a->_flags & AMQP_BASIC_TIMESTAMP_FLAG) || a->timestamp == b->timestamp) &&
               bytes_field_equal(a, b, AMQP_BASIC_TYPE_FLAG, a->type, b->type) &&
               bytes_field_equal(a, b, AMQP_BASIC_USER_ID_FLAG, a->user_id, b->user_id) &&
               bytes_field_equal(a, b, AMQP_BASIC_APP_ID_FLAG, a->app_id, b->app_id) &&
               bytes_field_equal(a, b, AMQP_BASIC_CLUSTER_ID_FLAG, a->cluster_id, b->cluster_id);
}

/* amqp_header_uint() as amqp/headers.h describes it: the first entry of that name; any integer
 * kind (and a timestamp) that is not negative; -ENOENT without one, -EINVAL for another value. */
static int expected_uint(const amqp_table_t *t, const char *key, uint64_t *ret) {
        for (int i = 0; i < t->num_entries; i++) {
                const amqp_field_value_t *v = &t->entries[i].value;
                int64_t x;

                if (!bytes_equal(t->entries[i].key, amqp_cstring_bytes(key)))
                        continue;
                switch (v->kind) {
                case AMQP_FIELD_KIND_U8: *ret = v->value.u8; return 0;
                case AMQP_FIELD_KIND_U16: *ret = v->value.u16; return 0;
                case AMQP_FIELD_KIND_U32: *ret = v->value.u32; return 0;
                case AMQP_FIELD_KIND_U64:
                case AMQP_FIELD_KIND_TIMESTAMP: *ret = v->value.u64; return 0;
                case AMQP_FIELD_KIND_I8: x = v->value.i8; break;
                case AMQP_FIELD_KIND_I16: x = v->value.i16; break;
                case AMQP_FIELD_KIND_I32: x = v->value.i32; break;
                case AMQP_FIELD_KIND_I64: x = v->value.i64; break;
                default: return -EINVAL;
                }
                if (x < 0)
                        return -EINVAL;
                *ret = (uint64_t) x;
                return 0;
        }
        return -ENOENT;
}

static void check_delivery_count(const uint8_t *data, size_t size, const amqp_table_t *t) {
        uint64_t want = 0, got = 0;
        int r = expected_uint(t, "x-delivery-count", &want), q = amqp_header_uint(t, "x-delivery-count", &got);
        unsigned count = amqp_headers_delivery_count(t);

        FUZZ_CHECK(q == r && (r < 0 || got == want), data, size,
                   "amqp_header_uint(): %d %" PRIu64 ", by its contract %d %" PRIu64, q, got, r, want);
        FUZZ_CHECK(count == (r < 0 ? 0 : want > UINT_MAX ? UINT_MAX : (unsigned) want), data, size,
                   "amqp_headers_delivery_count() gives %u", count);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        amqp_pool_t pool, copy_pool, again_pool;
        amqp_basic_properties_t *p = NULL, *again = NULL, out;
        amqp_table_t copy = amqp_empty_table;
        _cleanup_free_ amqp_table_entry_t *entries = NULL;
        _cleanup_free_ uint8_t *encoded = NULL;
        size_t n = 0;
        int r;

        if (size > 64 * 1024)
                return 0;
        init_amqp_pool(&pool, 4096);
        init_amqp_pool(&copy_pool, 512);
        init_amqp_pool(&again_pool, 4096);

        r = amqp_decode_properties(AMQP_BASIC_CLASS, &pool, (amqp_bytes_t) { .len = size, .bytes = (void *) data },
                                   (void **) &p);
        if (r < 0)
                goto finish;

        /* The copy the consumer makes. */
        if (p->_flags & AMQP_BASIC_HEADERS_FLAG) {
                r = amqp_headers_copy(&p->headers, &copy, &copy_pool, scratch);
                FUZZ_CHECK(r == 0, data, size, "amqp_headers_copy() failed: %s", STRERROR(r));
                FUZZ_CHECK(table_equal(&p->headers, &copy), data, size, "the copy of the headers differs");
                check_delivery_count(data, size, &p->headers);
                check_delivery_count(data, size, &copy);
                FUZZ_CHECK(amqp_headers_delivery_count(&p->headers) == amqp_headers_delivery_count(&copy), data,
                           size, "x-delivery-count reads otherwise in the copy");
                p->headers = copy; /* what the delivery keeps */
        }

        /* The dead-letter publish: ours replace the publisher's x-transmitter-* headers. */
        out = *p;
        entries = calloc((size_t) ((p->_flags & AMQP_BASIC_HEADERS_FLAG) ? p->headers.num_entries : 0) + 3,
                         sizeof(*entries));
        if (!entries)
                abort();
        for (int i = 0; (p->_flags & AMQP_BASIC_HEADERS_FLAG) && i < p->headers.num_entries; i++) {
                const amqp_bytes_t *k = &p->headers.entries[i].key;

                if (k->len >= 14 && memcmp(k->bytes, "x-transmitter-", 14) == 0)
                        continue;
                entries[n++] = p->headers.entries[i];
        }
        entries[n++] = (amqp_table_entry_t) {
                .key = amqp_cstring_bytes("x-transmitter-reason"),
                .value = { .kind = AMQP_FIELD_KIND_UTF8, .value.bytes = amqp_cstring_bytes("http_400") },
        };
        entries[n++] = (amqp_table_entry_t) {
                .key = amqp_cstring_bytes("x-transmitter-http-status"),
                .value = { .kind = AMQP_FIELD_KIND_I32, .value.i32 = 400 },
        };
        out.headers = (amqp_table_t) { .num_entries = (int) n, .entries = entries };
        out._flags |= AMQP_BASIC_HEADERS_FLAG;

        encoded = malloc(ENCODE_MAX);
        if (!encoded)
                abort();
        r = amqp_encode_properties(AMQP_BASIC_CLASS, &out, (amqp_bytes_t) { .len = ENCODE_MAX, .bytes = encoded });
        FUZZ_CHECK(r >= 0, data, size, "amqp_encode_properties() failed: %d", r);
        r = amqp_decode_properties(AMQP_BASIC_CLASS, &again_pool,
                                   (amqp_bytes_t) { .len = (size_t) r, .bytes = encoded }, (void **) &again);
        FUZZ_CHECK(r >= 0, data, size, "the encoded properties do not decode: %d", r);
        FUZZ_CHECK(properties_equal(&out, again), data, size, "the properties changed on their way through encoding");

finish:
        empty_amqp_pool(&pool);
        empty_amqp_pool(&copy_pool);
        empty_amqp_pool(&again_pool);
        return 0;
}
