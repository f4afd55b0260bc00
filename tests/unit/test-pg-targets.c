/* SPDX-License-Identifier: MIT */
#include <criterion/criterion.h>

#include "core/pg-targets.h"
#include "util/util.h"

Test(pg_targets, needs_lookup) {
        cr_expect(pg_host_needs_lookup("db.example.net"));
        cr_expect(pg_host_needs_lookup("localhost"));
        cr_expect_not(pg_host_needs_lookup("10.1.2.3"));
        cr_expect_not(pg_host_needs_lookup("::1"));
        cr_expect_not(pg_host_needs_lookup("fe80::1:2"));
        cr_expect_not(pg_host_needs_lookup("/run/postgresql"));
        cr_expect_not(pg_host_needs_lookup("@abstract"));
        cr_expect_not(pg_host_needs_lookup(""));
        cr_expect_not(pg_host_needs_lookup(NULL));
}

Test(pg_targets, split) {
        char **l = NULL;
        size_t n = 0;

        cr_assert_eq(pg_list_split("a,,b", &l, &n), 0);
        cr_assert_eq(n, 3);
        cr_expect_str_eq(l[0], "a");
        cr_expect_str_eq(l[1], "");
        cr_expect_str_eq(l[2], "b");
        cr_expect_null(l[3]);
        pg_list_free(l);

        cr_assert_eq(pg_list_split("", &l, &n), 0);
        cr_assert_eq(n, 1);
        cr_expect_str_eq(l[0], "");
        pg_list_free(l);
}

struct expansion {
        const char *hosts, *port;
        const char *addresses[3][3]; /* per host, NULL-terminated */
        int r;
        const char *host, *hostaddr, *ports;
};

static const struct expansion expansions[] = {
        /* One name, two addresses: one entry each, the name kept for TLS and .pgpass. */
        { "db", "5433", { { "10.0.0.1", "fd00::1" } }, 0, "db,db", "10.0.0.1,fd00::1", "5433" },
        /* No port: libpq's default stays. */
        { "db", NULL, { { "10.0.0.1" } }, 0, "db", "10.0.0.1", NULL },
        /* Addresses and socket directories need no lookup: empty hostaddr, libpq uses the host. */
        { "db,10.0.0.9,/run/postgresql", "1,2,3", { { "10.0.0.1" }, { NULL }, { NULL } }, 0, "db,10.0.0.9,/run/postgresql",
          "10.0.0.1,,", "1,2,3" },
        /* Per-host ports follow their host's addresses. */
        { "a,b", "1,2", { { "10.0.0.1", "10.0.0.2" }, { "10.0.0.3" } }, 0, "a,a,b", "10.0.0.1,10.0.0.2,10.0.0.3",
          "1,1,2" },
        /* A host nothing was found for is left out; the standby is still tried. */
        { "primary,standby", "1,2", { { NULL }, { "10.0.0.3" } }, 0, "standby", "10.0.0.3", "2" },
        /* Nothing left. */
        { "a,b", NULL, { { NULL }, { NULL } }, -ENOENT, NULL, NULL, NULL },
        /* A port list that fits neither one nor every host: libpq's own complaint is better. */
        { "a,b,c", "1,2", { { "10.0.0.1" }, { "10.0.0.2" }, { "10.0.0.3" } }, -EINVAL, NULL, NULL, NULL },
};

Test(pg_targets, expand) {
        for (size_t c = 0; c < ELEMENTSOF(expansions); c++) {
                const struct expansion *e = &expansions[c];
                _cleanup_free_ char *host = NULL, *hostaddr = NULL, *port = NULL;
                char **hosts = NULL, *const *addresses[3];
                size_t n_hosts = 0, n_addresses[3];
                int r;

                cr_assert_eq(pg_list_split(e->hosts, &hosts, &n_hosts), 0);
                for (size_t i = 0; i < n_hosts; i++) {
                        addresses[i] = (char *const *) e->addresses[i];
                        for (n_addresses[i] = 0; n_addresses[i] < 3 && e->addresses[i][n_addresses[i]];)
                                n_addresses[i]++;
                }
                r = pg_targets_expand(hosts, n_hosts, e->port, addresses, n_addresses, &host, &hostaddr, &port);
                cr_expect_eq(r, e->r, "%s: %d", e->hosts, r);
                if (r == 0) {
                        cr_expect_str_eq(host, e->host, "%s", e->hosts);
                        cr_expect_str_eq(hostaddr, e->hostaddr, "%s", e->hosts);
                        if (e->ports)
                                cr_expect_str_eq(port, e->ports, "%s", e->hosts);
                        else
                                cr_expect_null(port, "%s", e->hosts);
                }
                pg_list_free(hosts);
        }
}
