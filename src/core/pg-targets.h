/* SPDX-License-Identifier: MIT */
#pragma once

/* Where libpq is to connect, worked out so that it makes no DNS lookup of its own: libpq resolves
 * a host name with a blocking getaddrinfo() inside PQconnectPoll(), i.e. on the event loop, for
 * as long as the DNS server takes. The names are looked up on a thread (host-lookup.h) and given
 * to libpq as hostaddr; the names stay in host, which TLS verify-full and .pgpass match on. */

#include <stdbool.h>
#include <stddef.h>

/* Whether libpq would ask the DNS for host: not empty, not a Unix socket directory, not an
 * IPv4 or IPv6 address. */
bool pg_host_needs_lookup(const char *host);

/* libpq's comma-separated host or port list as an array of n_ret strings (NULL-terminated; an
 * empty list is one empty entry, as libpq reads it). */
int pg_list_split(const char *list, char ***ret, size_t *n_ret);
void pg_list_free(char **list);

/* The host, hostaddr and port lists for PQconnectStartParams() from the connection's host and
 * port lists (port may be NULL): a host that needs a lookup becomes one entry per address in
 * addresses[i] (n_addresses[i] of them; none: the host is left out), every other host one entry
 * with an empty hostaddr (libpq uses the host itself). *ret_port is NULL when port is.
 * -ENOENT when no host is left, -EINVAL when the port list matches neither 1 nor every host. */
int pg_targets_expand(char *const *hosts, size_t n_hosts, const char *port, char *const *const *addresses,
                      const size_t *n_addresses, char **ret_host, char **ret_hostaddr, char **ret_port);

/* The host, hostaddr and port lists (each may be NULL) without their first skip entries: a
 * connection attempt that gave up on entry skip - 1 goes on with the rest, as libpq's own
 * connect_timeout makes a blocking connect do. An entry is one host or hostaddr (both lists, when
 * both are given, have as many); a single port applies to every entry and is kept. A NULL list
 * stays NULL. -ENOENT when no entry is left, -EINVAL when the lists do not pair up. */
int pg_targets_skip(const char *host, const char *hostaddr, const char *port, size_t skip, char **ret_host,
                    char **ret_hostaddr, char **ret_port);
