/* SPDX-License-Identifier: MIT */
/* The header table reader of src/amqp: x-delivery-count in each integer kind AMQP has, and the
 * tables a publisher could send instead. */
#include <criterion/criterion.h>
#include <errno.h>
#include <limits.h>

#include "amqp/headers.h"

static amqp_table_entry_t entry(const char *key, amqp_field_value_t value) {
        return (amqp_table_entry_t) { .key = amqp_cstring_bytes(key), .value = value };
}

static unsigned count_of(amqp_field_value_t value) {
        amqp_table_entry_t e[2] = { entry("x-first-death-reason", (amqp_field_value_t) {
                                                  .kind = AMQP_FIELD_KIND_UTF8,
                                                  .value.bytes = amqp_cstring_bytes("rejected") }),
                                    entry("x-delivery-count", value) };
        amqp_table_t t = { .num_entries = 2, .entries = e };

        return amqp_headers_delivery_count(&t);
}

Test(amqp_headers, delivery_count_kinds) {
        /* RabbitMQ sends a long (I64); any integer kind is read. */
        cr_expect_eq(count_of((amqp_field_value_t) { .kind = AMQP_FIELD_KIND_I64, .value.i64 = 3 }), 3);
        cr_expect_eq(count_of((amqp_field_value_t) { .kind = AMQP_FIELD_KIND_I32, .value.i32 = 19 }), 19);
        cr_expect_eq(count_of((amqp_field_value_t) { .kind = AMQP_FIELD_KIND_I16, .value.i16 = 2 }), 2);
        cr_expect_eq(count_of((amqp_field_value_t) { .kind = AMQP_FIELD_KIND_I8, .value.i8 = 1 }), 1);
        cr_expect_eq(count_of((amqp_field_value_t) { .kind = AMQP_FIELD_KIND_U8, .value.u8 = 200 }), 200);
        cr_expect_eq(count_of((amqp_field_value_t) { .kind = AMQP_FIELD_KIND_U16, .value.u16 = 7 }), 7);
        cr_expect_eq(count_of((amqp_field_value_t) { .kind = AMQP_FIELD_KIND_U32, .value.u32 = 70000 }), 70000);
        cr_expect_eq(count_of((amqp_field_value_t) { .kind = AMQP_FIELD_KIND_U64, .value.u64 = 5 }), 5);
        /* Capped, not wrapped. */
        cr_expect_eq(count_of((amqp_field_value_t) { .kind = AMQP_FIELD_KIND_I64, .value.i64 = INT64_MAX }), UINT_MAX);
}

Test(amqp_headers, delivery_count_garbage) {
        amqp_table_t empty = amqp_empty_table;

        /* Negative, text, a float, a nested table: no count (0), never a crash. */
        cr_expect_eq(count_of((amqp_field_value_t) { .kind = AMQP_FIELD_KIND_I64, .value.i64 = -4 }), 0);
        cr_expect_eq(count_of((amqp_field_value_t) { .kind = AMQP_FIELD_KIND_UTF8,
                                                      .value.bytes = amqp_cstring_bytes("12") }),
                     0);
        cr_expect_eq(count_of((amqp_field_value_t) { .kind = AMQP_FIELD_KIND_F64, .value.f64 = 2.0 }), 0);
        cr_expect_eq(count_of((amqp_field_value_t) { .kind = AMQP_FIELD_KIND_TABLE, .value.table = empty }), 0);
        cr_expect_eq(amqp_headers_delivery_count(&empty), 0);
        cr_expect_eq(amqp_headers_delivery_count(NULL), 0);
}

Test(amqp_headers, key_match) {
        amqp_table_entry_t e[3] = {
                entry("x-delivery-coun", (amqp_field_value_t) { .kind = AMQP_FIELD_KIND_I64, .value.i64 = 9 }),
                entry("x-delivery-count", (amqp_field_value_t) { .kind = AMQP_FIELD_KIND_I64, .value.i64 = 4 }),
                entry("x-delivery-count", (amqp_field_value_t) { .kind = AMQP_FIELD_KIND_I64, .value.i64 = 8 }),
        };
        amqp_table_t t = { .num_entries = 3, .entries = e };
        uint64_t v;

        /* A prefix is another key; the first of two entries of the name counts. */
        cr_expect_eq(amqp_headers_delivery_count(&t), 4);
        cr_expect_eq(amqp_header_uint(&t, "x-delivery", &v), -ENOENT);
        cr_expect_eq(amqp_header_uint(&t, "x-delivery-coun", &v), 0);
        cr_expect_eq(v, 9);
}

/* The broker's capabilities, from its connection.start properties: RabbitMQ 4.3.7 and later
 * announce accept_consumer_cancel_ok. */
Test(amqp_headers, capability) {
        amqp_table_entry_t caps[2] = {
                entry("publisher_confirms", (amqp_field_value_t) { .kind = AMQP_FIELD_KIND_BOOLEAN, .value.boolean = 1 }),
                entry("accept_consumer_cancel_ok",
                      (amqp_field_value_t) { .kind = AMQP_FIELD_KIND_BOOLEAN, .value.boolean = 1 }),
        };
        amqp_table_entry_t props[2] = {
                entry("product", (amqp_field_value_t) { .kind = AMQP_FIELD_KIND_UTF8,
                                                        .value.bytes = amqp_cstring_bytes("RabbitMQ") }),
                entry("capabilities", (amqp_field_value_t) { .kind = AMQP_FIELD_KIND_TABLE,
                                                             .value.table = { .num_entries = 2, .entries = caps } }),
        };
        amqp_table_t t = { .num_entries = 2, .entries = props };

        cr_expect(amqp_properties_capability(&t, "accept_consumer_cancel_ok"));
        cr_expect(amqp_properties_capability(&t, "publisher_confirms"));
        cr_expect_not(amqp_properties_capability(&t, "consumer_cancel_notify"));
        /* false, or not a boolean: not announced. */
        caps[1].value.value.boolean = 0;
        cr_expect_not(amqp_properties_capability(&t, "accept_consumer_cancel_ok"));
        caps[1].value = (amqp_field_value_t) { .kind = AMQP_FIELD_KIND_UTF8, .value.bytes = amqp_cstring_bytes("true") };
        cr_expect_not(amqp_properties_capability(&t, "accept_consumer_cancel_ok"));
        /* No capabilities table, or none at all. */
        props[1].value = (amqp_field_value_t) { .kind = AMQP_FIELD_KIND_I32, .value.i32 = 1 };
        cr_expect_not(amqp_properties_capability(&t, "publisher_confirms"));
        cr_expect_not(amqp_properties_capability(NULL, "publisher_confirms"));
}
