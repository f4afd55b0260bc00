/* SPDX-License-Identifier: MIT */
#include <arpa/inet.h>

#include "core/pg-targets.h"
#include "util/util.h"

bool pg_host_needs_lookup(const char *host) {
        unsigned char addr[sizeof(struct in6_addr)];

        if (isempty(host) || host[0] == '/' || host[0] == '@')
                return false;
        return inet_pton(AF_INET, host, addr) != 1 && inet_pton(AF_INET6, host, addr) != 1;
}

void pg_list_free(char **list) {
        if (!list)
                return;
        for (char **p = list; *p; p++)
                free(*p);
        free(list);
}

int pg_list_split(const char *list, char ***ret, size_t *n_ret) {
        size_t n = 1, i = 0;
        char **l;

        for (const char *p = list; *p; p++)
                n += *p == ',';
        l = calloc(n + 1, sizeof *l);
        if (!l)
                return -ENOMEM;
        for (const char *p = list;; i++) {
                size_t len = strcspn(p, ",");

                l[i] = strndup(p, len);
                if (!l[i]) {
                        pg_list_free(l);
                        return -ENOMEM;
                }
                if (!p[len])
                        break;
                p += len + 1;
        }
        *ret = l;
        *n_ret = n;
        return 0;
}

/* Appends item to the comma-separated list *list (NULL: none yet). */
static int list_add(char **list, const char *item) {
        size_t old = *list ? strlen(*list) : 0, len = strlen(item);
        char *n = realloc(*list, old + !!*list + len + 1);

        if (!n)
                return -ENOMEM;
        if (*list)
                n[old++] = ',';
        memcpy(n + old, item, len + 1);
        *list = n;
        return 0;
}

int pg_targets_expand(char *const *hosts, size_t n_hosts, const char *port, char *const *const *addresses,
                      const size_t *n_addresses, char **ret_host, char **ret_hostaddr, char **ret_port) {
        _cleanup_free_ char *host = NULL, *hostaddr = NULL, *ports = NULL;
        char **port_list = NULL;
        size_t n_ports = 0;
        int r = 0;

        if (port) {
                r = pg_list_split(port, &port_list, &n_ports);
                if (r < 0)
                        return r;
                if (n_ports != 1 && n_ports != n_hosts) {
                        pg_list_free(port_list);
                        return -EINVAL;
                }
        }

        for (size_t i = 0; i < n_hosts && r >= 0; i++) {
                bool lookup = pg_host_needs_lookup(hosts[i]);
                size_t n = lookup ? n_addresses[i] : 1;

                for (size_t j = 0; j < n && r >= 0; j++) {
                        if ((r = list_add(&host, hosts[i])) < 0 ||
                            (r = list_add(&hostaddr, lookup ? addresses[i][j] : "")) < 0)
                                break;
                        if (n_ports > 1)
                                r = list_add(&ports, port_list[i]);
                }
        }
        if (r >= 0 && n_ports == 1 && host)
                r = list_add(&ports, port_list[0]);
        pg_list_free(port_list);
        if (r < 0)
                return r;
        if (!host)
                return -ENOENT;

        *ret_host = TAKE_PTR(host);
        *ret_hostaddr = TAKE_PTR(hostaddr);
        *ret_port = TAKE_PTR(ports);
        return 0;
}

static size_t list_count(const char *list) {
        size_t n = 1;

        for (const char *p = list; *p; p++)
                n += *p == ',';
        return n;
}

/* The entries of list from skip on, or NULL for a NULL list. */
static int list_tail(const char *list, size_t skip, char **ret) {
        const char *p = list;

        if (!list) {
                *ret = NULL;
                return 0;
        }
        for (size_t i = 0; i < skip; i++) {
                p = strchr(p, ',');
                if (!p)
                        return -ENOENT;
                p++;
        }
        *ret = strdup(p);
        return *ret ? 0 : -ENOMEM;
}

int pg_targets_skip(const char *host, const char *hostaddr, const char *port, size_t skip, char **ret_host,
                    char **ret_hostaddr, char **ret_port) {
        _cleanup_free_ char *h = NULL, *a = NULL, *p = NULL;
        size_t n_host = host ? list_count(host) : 0, n_addr = hostaddr ? list_count(hostaddr) : 0;
        size_t n = MAX(n_host, n_addr), n_port = port ? list_count(port) : 0;
        int r;

        if ((n_host > 0 && n_addr > 0 && n_host != n_addr) || (n_port > 1 && n_port != n))
                return -EINVAL;
        if (skip >= n)
                return -ENOENT;
        if ((r = list_tail(host, skip, &h)) < 0 || (r = list_tail(hostaddr, skip, &a)) < 0 ||
            (r = list_tail(port, n_port > 1 ? skip : 0, &p)) < 0)
                return r;
        *ret_host = TAKE_PTR(h);
        *ret_hostaddr = TAKE_PTR(a);
        *ret_port = TAKE_PTR(p);
        return 0;
}
