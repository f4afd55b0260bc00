/* SPDX-License-Identifier: MIT */
#pragma once

/* Host names resolved on a thread of their own: getaddrinfo() blocks for as long as the DNS
 * server takes (seconds when it does not answer), which the event loop must never wait for. */

#include <systemd/sd-event.h>

#include "util/util.h"

#define HOST_LOOKUP_ADDRESSES_MAX 8

typedef struct HostLookup HostLookup;
/* Called once, from the event loop, when every name has an answer. An empty name is skipped
 * (no addresses, no error), so that callers can keep their indices. */
typedef void (*HostLookupDone)(HostLookup *lookup, void *userdata);

int host_lookup_start(sd_event *e, const char *const *names, size_t n, HostLookupDone done, void *userdata,
                      HostLookup **ret);
/* The numeric addresses found for names[i] (at most HOST_LOOKUP_ADDRESSES_MAX, none when the
 * lookup failed: then host_lookup_error() says why). */
char *const *host_lookup_addresses(const HostLookup *l, size_t i, size_t *n_ret);
const char *host_lookup_error(const HostLookup *l, size_t i);
/* Before done, the lookup is abandoned: done is never called, the thread finishes on its own. */
HostLookup *host_lookup_free(HostLookup *l);
DEFINE_TRIVIAL_CLEANUP_FUNC(HostLookup *, host_lookup_free);
