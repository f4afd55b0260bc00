/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <limits.h>
#include <string.h>

#include "amqp/headers.h"

static const amqp_field_value_t *table_get(const amqp_table_t *t, const char *key) {
        size_t len = strlen(key);

        if (!t || t->num_entries <= 0 || !t->entries)
                return NULL;
        for (int i = 0; i < t->num_entries; i++)
                if (t->entries[i].key.len == len && (len == 0 || memcmp(t->entries[i].key.bytes, key, len) == 0))
                        return &t->entries[i].value;
        return NULL;
}

int amqp_header_uint(const amqp_table_t *headers, const char *key, uint64_t *ret) {
        const amqp_field_value_t *v = table_get(headers, key);
        int64_t s;

        if (!v)
                return -ENOENT;
        switch (v->kind) {
        case AMQP_FIELD_KIND_U8:
                *ret = v->value.u8;
                return 0;
        case AMQP_FIELD_KIND_U16:
                *ret = v->value.u16;
                return 0;
        case AMQP_FIELD_KIND_U32:
                *ret = v->value.u32;
                return 0;
        case AMQP_FIELD_KIND_U64:
        case AMQP_FIELD_KIND_TIMESTAMP:
                *ret = v->value.u64;
                return 0;
        case AMQP_FIELD_KIND_I8:
                s = v->value.i8;
                break;
        case AMQP_FIELD_KIND_I16:
                s = v->value.i16;
                break;
        case AMQP_FIELD_KIND_I32:
                s = v->value.i32;
                break;
        case AMQP_FIELD_KIND_I64:
                s = v->value.i64;
                break;
        default:
                return -EINVAL;
        }
        if (s < 0)
                return -EINVAL;
        *ret = (uint64_t) s;
        return 0;
}

unsigned amqp_headers_delivery_count(const amqp_table_t *headers) {
        uint64_t v;

        if (amqp_header_uint(headers, "x-delivery-count", &v) < 0)
                return 0;
        return v > UINT_MAX ? UINT_MAX : (unsigned) v;
}

bool amqp_properties_capability(const amqp_table_t *properties, const char *name) {
        const amqp_field_value_t *caps = table_get(properties, "capabilities"), *v;

        if (!caps || caps->kind != AMQP_FIELD_KIND_TABLE)
                return false;
        v = table_get(&caps->value.table, name);
        return v && v->kind == AMQP_FIELD_KIND_BOOLEAN && v->value.boolean;
}

int amqp_headers_copy(const amqp_table_t *from, amqp_table_t *to, amqp_pool_t *pool, uint8_t *scratch) {
        size_t encoded_size = 0, offset = 0;
        void *copy;

        /* rabbitmq-c's encoder takes a non-const table; it does not write to it. */
        if (amqp_encode_table((amqp_bytes_t) { .len = AMQP_HEADERS_ENCODED_MAX, .bytes = scratch },
                              (amqp_table_t *) from, &encoded_size) != AMQP_STATUS_OK)
                return -EINVAL;

        /* The decoded strings point into the encoded bytes: those live in the pool too. */
        copy = amqp_pool_alloc(pool, MAX(encoded_size, (size_t) 1));
        if (!copy)
                return -ENOMEM;
        memcpy(copy, scratch, encoded_size);
        switch (amqp_decode_table((amqp_bytes_t) { .len = encoded_size, .bytes = copy }, pool, to, &offset)) {
        case AMQP_STATUS_OK:
                return 0;
        case AMQP_STATUS_NO_MEMORY:
                return -ENOMEM;
        default:
                return -EINVAL;
        }
}
