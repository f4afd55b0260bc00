/* SPDX-License-Identifier: MIT */
#pragma once

/* What the daemon reads from a message's header table, which any publisher (and the broker)
 * fills: it must take whatever it finds. Private to src/amqp. */

#include <amqp.h>
#include <stdbool.h>

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
