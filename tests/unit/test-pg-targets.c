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

Test(pg_targets, skip) {
        static const struct {
                const char *host, *hostaddr, *port;
                size_t skip;
                int r;
                const char *ret_host, *ret_hostaddr, *ret_port;
        } cases[] = {
                /* Nothing skipped: the lists as they are. */
                { "a,b", NULL, "1,2", 0, 0, "a,b", NULL, "1,2" },
                /* Per-host ports follow their host; a single port is everybody's. */
                { "a,b,c", NULL, "1,2,3", 1, 0, "b,c", NULL, "2,3" },
                { "a,b,c", NULL, "5432", 2, 0, "c", NULL, "5432" },
                { "a,b", NULL, NULL, 1, 0, "b", NULL, NULL },
                /* pg-targets' expansion: a name per address, hostaddr alongside. */
                { "db,db,sb", "10.0.0.1,fd00::1,10.0.0.2", "1,1,2", 2, 0, "sb", "10.0.0.2", "2" },
                /* Addresses only, and an empty hostaddr entry (libpq uses the host). */
                { NULL, "10.0.0.1,10.0.0.2", "1", 1, 0, NULL, "10.0.0.2", "1" },
                { "a,b", ",", "1,2", 1, 0, "b", "", "2" },
                /* Nothing left. */
                { "a,b", NULL, "1,2", 2, -ENOENT, NULL, NULL, NULL },
                { "", NULL, NULL, 1, -ENOENT, NULL, NULL, NULL },
                { NULL, NULL, NULL, 0, -ENOENT, NULL, NULL, NULL },
                /* Lists that do not pair up: libpq refuses them too. */
                { "a,b", "10.0.0.1", NULL, 1, -EINVAL, NULL, NULL, NULL },
                { "a,b,c", NULL, "1,2", 1, -EINVAL, NULL, NULL, NULL },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *host = NULL, *hostaddr = NULL, *port = NULL;
                int r = pg_targets_skip(cases[i].host, cases[i].hostaddr, cases[i].port, cases[i].skip, &host,
                                        &hostaddr, &port);

                cr_expect_eq(r, cases[i].r, "case %zu: %d", i, r);
                if (r < 0)
                        continue;
#define EXPECT_LIST(got, want)                                                   \
        do {                                                                     \
                if (want)                                                        \
                        cr_expect_str_eq(got, want, "case %zu", i);              \
                else                                                             \
                        cr_expect_null(got, "case %zu", i);                      \
        } while (0)
                EXPECT_LIST(host, cases[i].ret_host);
                EXPECT_LIST(hostaddr, cases[i].ret_hostaddr);
                EXPECT_LIST(port, cases[i].ret_port);
#undef EXPECT_LIST
        }
}
