/* SPDX-License-Identifier: MIT */
#pragma once

/* What the daemon reads from a message's header table, which any publisher (and the broker)
 * fills: it must take whatever it finds. Private to src/amqp. Pure: no connection, no thread;
 * tests/fuzz/fuzz-amqp-headers.c drives it with every table rabbitmq-c decodes. */

#include <amqp.h>
#include <stdbool.h>

#include "util/util.h"

/* The largest header table a frame can carry: a content header frame holds the whole of it,
 * and frames are at most this large (the consumer asks for this frame_max, 128 KiB). */
#define AMQP_HEADERS_ENCODED_MAX 131072U

/* Copies a header table decoded from a frame into pool, so that it outlives the frame. It goes
 * through rabbitmq-c's own encoder and decoder, so that whatever the decoder accepted is copied:
 * amqp_table_clone() refuses an entry with an empty name, which RabbitMQ passes on. scratch holds
 * AMQP_HEADERS_ENCODED_MAX bytes to encode into. -EINVAL for a table that does not encode again
 * (none that came from the decoder, as far as fuzzing found), -ENOMEM. */
int amqp_headers_copy(const amqp_table_t *from, amqp_table_t *to, amqp_pool_t *pool, uint8_t *scratch);

/* The value of an integer header, any of AMQP's integer kinds; -ENOENT when the table has no
 * such key, -EINVAL when its value is no non-negative integer. The first entry of that name
 * counts. */
int amqp_header_uint(const amqp_table_t *headers, const char *key, uint64_t *ret);

/* x-delivery-count, which quorum queues set on a message they had back (returned, requeued,
 * or its consumer gone): 0 when absent or unreadable, capped at UINT_MAX. */
unsigned amqp_headers_delivery_count(const amqp_table_t *headers);

/* Whether a peer's properties table (the broker's, from connection.start) announces the capability
 * name with a boolean true in its "capabilities" table. */
bool amqp_properties_capability(const amqp_table_t *properties, const char *name);
