/* SPDX-License-Identifier: MIT */
#include <criterion/criterion.h>

#include "core/broker-url.h"
#include "util/util.h"

static const struct good {
        const char *in;
        bool tls;
        const char *user, *password, *host;
        unsigned port;
        const char *vhost;
} good[] = {
        /* The product's default: "amqp://host/" is the default vhost "/", as operators mean it. */
        { "amqp://discovery:discovery@localhost:5672/", false, "discovery", "discovery", "localhost", 5672, "/" },
        /* No path: "/" too; no userinfo: rabbitmq-c's guest/guest; default ports by scheme. */
        { "amqp://h", false, "guest", "guest", "h", 5672, "/" },
        { "amqps://h", true, "guest", "guest", "h", 5671, "/" },
        { "amqps://u:p@h:5999/prod", true, "u", "p", "h", 5999, "prod" },
        /* A user without ':' keeps the default password, as rabbitmq-c does. */
        { "amqp://u@h/", false, "u", "guest", "h", 5672, "/" },
        { "amqp://:@h/", false, "", "", "h", 5672, "/" },
        /* IPv6 in brackets, with and without a port. */
        { "amqp://u:p@[::1]:5673/v", false, "u", "p", "::1", 5673, "v" },
        { "amqp://[2001:db8::7]", false, "guest", "guest", "2001:db8::7", 5672, "/" },
        { "amqp://[fe80::1%25eth0]:1/", false, "guest", "guest", "fe80::1%eth0", 1, "/" },
        /* Percent-encoding everywhere: the vhost "/" spelled out, and every reserved character. */
        { "amqp://h/%2F", false, "guest", "guest", "h", 5672, "/" },
        { "amqp://h/%2fabc", false, "guest", "guest", "h", 5672, "/abc" },
        { "amqp://us%40er:p%3Aa%2Fs%3Fs%23w%25o%2Cr%40d@h/v%20h", false, "us@er", "p:a/s?s#w%o,r@d", "h", 5672,
          "v h" },
        /* UTF-8, raw and encoded (rabbitmq-c refuses the encoded one). */
        { "amqp://j%C3%BCrgen:m\xc3\xbcnchen@h/", false, "j\xc3\xbcrgen", "m\xc3\xbcnchen", "h", 5672, "/" },
        { "amqp://u:p@h:65535", false, "u", "p", "h", 65535, "/" },
        { "amqp://u:p@h:%35%36%37%32/", false, "u", "p", "h", 5672, "/" },
};

Test(broker_url, good) {
        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                BrokerUrl u = { 0 };
                const char *problem = NULL;

                cr_assert_eq(broker_url_parse(good[i].in, strlen(good[i].in), &u, &problem), 0, "%s: %s",
                             good[i].in, strempty(problem));
                cr_expect_eq(u.tls, good[i].tls, "%s", good[i].in);
                cr_expect_str_eq(u.user, good[i].user, "%s", good[i].in);
                cr_expect_str_eq(u.password, good[i].password, "%s", good[i].in);
                cr_expect_str_eq(u.host, good[i].host, "%s", good[i].in);
                cr_expect_eq(u.port, good[i].port, "%s", good[i].in);
                cr_expect_str_eq(u.vhost, good[i].vhost, "%s", good[i].in);
                broker_url_done(&u);
                cr_expect_null(u.password);
        }
}

static const struct bad {
        const char *in, *problem;
} bad[] = {
        { "", "empty" },
        { "http://h/", "not an amqp:// or amqps:// URL" },
        { "AMQP://h/", "not an amqp:// or amqps:// URL" },
        { "amqp:/h", "not an amqp:// or amqps:// URL" },
        { "amqp://", "no host" },
        { "amqp://u:p@/", "no host" },
        { "amqp://u:p@:5672/", "no host" },
        { "amqp://h:/", "a port that is not 1-65535" },
        { "amqp://h:0/", "a port that is not 1-65535" },
        { "amqp://h:65536/", "a port that is not 1-65535" },
        { "amqp://h:+5/", "a port that is not 1-65535" },
        { "amqp://h:5672x/", "a port that is not 1-65535" },
        { "amqp://::1/", "more than one ':' after the host (an IPv6 address goes in brackets: [::1])" },
        { "amqp://[::1/", "a '[' without an IPv6 address and ']' after it" },
        { "amqp://[]:5672/", "a '[' without an IPv6 address and ']' after it" },
        { "amqp://[::1]x:5672/", "something between the ']' of the IPv6 address and the ':' of the port" },
        { "amqp://h[1]/", "a '[' or ']' that does not enclose an IPv6 address" },
        { "amqp://u:a:b@h/", "a ':' in the password, write it as %3A" },
        { "amqp://u:p@ss@h/", "an '@' in the user name or password, write it as %40" },
        { "amqp://u:pa/ss@h/", "a '/' in the user name or password or an '@' in the vhost, write them as %2F, %40" },
        { "amqp://u:pa?ss@h/", "a '?' or '#' in the URL (no query is read; in a password write them as %3F, %23)" },
        { "amqp://h/?heartbeat=10", "a '?' or '#' in the URL (no query is read; in a password write them as %3F, %23)" },
        { "amqp://h/a/b", "a '/', ':' or '@' in the vhost, write them as %2F, %3A, %40" },
        { "amqp://h//", "a '/', ':' or '@' in the vhost, write them as %2F, %3A, %40" },
        { "amqp://h/a:b", "a '/', ':' or '@' in the vhost, write them as %2F, %3A, %40" },
        /* rabbitmq-c refuses a bracket outside an IPv6 host (found by fuzz-broker-url). */
        { "amqp://h/[v", "a '[' or ']' in the vhost, write them as %5B, %5D" },
        { "amqp://u:p@[::1]:1/v]", "a '[' or ']' in the vhost, write them as %5B, %5D" },
        { "amqp://u:p%zz@h/", "a '%' not followed by two hex digits, write a '%' itself as %25" },
        { "amqp://u:p%4@h/", "a '%' not followed by two hex digits, write a '%' itself as %25" },
        { "amqp://h/v%", "a '%' not followed by two hex digits, write a '%' itself as %25" },
        { "amqp://u:p%00x@h/", "\"%00\" (a NUL byte) in the URL" },
        { "amqp://u:p w@h/", "a space or control character in the URL, write a space as %20" },
        { "amqp://h/\t", "a space or control character in the URL, write a space as %20" },
};

Test(broker_url, bad) {
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                BrokerUrl u = { 0 };
                const char *problem = NULL;

                cr_expect_eq(broker_url_parse(bad[i].in, strlen(bad[i].in), &u, &problem), -EINVAL, "%s",
                             bad[i].in);
                cr_expect_str_eq(strempty(problem), bad[i].problem, "%s", bad[i].in);
                cr_expect_null(u.host, "%s: nothing is returned", bad[i].in);
        }
}

Test(broker_url, parses_only_n_bytes) {
        BrokerUrl u = { 0 };

        cr_assert_eq(broker_url_parse("amqp://h1/,amqp://h2/", 10, &u, NULL), 0);
        cr_expect_str_eq(u.host, "h1");
        cr_expect_str_eq(u.vhost, "/");
        broker_url_done(&u);
        /* Ends inside a percent-encoding: refused, not read past n. */
        cr_expect_eq(broker_url_parse("amqp://h/%2F", 11, &u, NULL), -EINVAL);
}

Test(broker_url, list) {
        BrokerUrlList l = { 0 };
        size_t index = 99;
        const char *problem = NULL;

        cr_assert_eq(broker_url_list_parse("amqp://a:1@h1:5672/, amqp://b:2@h2:5673/v ,\tamqp://[::1]", &l, &index,
                                           &problem),
                     0);
        cr_assert_eq(l.n, 3);
        cr_expect_str_eq(l.urls[0].user, "a");
        cr_expect_str_eq(l.urls[0].host, "h1");
        cr_expect_str_eq(l.urls[1].password, "2");
        cr_expect_eq(l.urls[1].port, 5673);
        cr_expect_str_eq(l.urls[1].vhost, "v");
        cr_expect_str_eq(l.urls[2].host, "::1");
        cr_expect_eq(l.urls[2].port, 5672);
        broker_url_list_done(&l);
        cr_expect_null(l.urls);

        /* One URL is a list of one. */
        cr_assert_eq(broker_url_list_parse("amqps://h/", &l, NULL, NULL), 0);
        cr_expect_eq(l.n, 1);
        cr_expect(l.urls[0].tls);
        broker_url_list_done(&l);
}

static const struct bad_list {
        const char *in;
        size_t index;
        const char *problem;
} bad_lists[] = {
        { "", 0, "empty" },
        { " ", 0, "empty" },
        { ",amqp://h/", 0, "an empty item" },
        { "amqp://h/,", 1, "an empty item" },
        { "amqp://h/,,amqp://h2/", 1, "an empty item" },
        { "amqp://h/, ,amqp://h2/", 1, "an empty item" },
        { "amqp://h1/,amqps://h2/", 1, "amqp:// and amqps:// mixed" },
        { "amqps://h1/,amqps://h2/,amqp://h3/", 2, "amqp:// and amqps:// mixed" },
        { "amqp://h1/,amqp://h2:99999/", 1, "a port that is not 1-65535" },
        { "amqp://h1/,nope", 1, "not an amqp:// or amqps:// URL" },
        { "amqp://h1/,amqp://h 2/", 1, "a space or control character in the URL, write a space as %20" },
        /* One URL with a ',' in its password, not two URLs. */
        { "amqp://u:pa,ss@h/", 0, "a ',' in the user name or password, write it as %2C" },
};

Test(broker_url, bad_lists) {
        for (size_t i = 0; i < ELEMENTSOF(bad_lists); i++) {
                BrokerUrlList l = { 0 };
                size_t index = 99;
                const char *problem = NULL;

                cr_expect_eq(broker_url_list_parse(bad_lists[i].in, &l, &index, &problem), -EINVAL, "%s",
                             bad_lists[i].in);
                cr_expect_eq(index, bad_lists[i].index, "%s: index %zu", bad_lists[i].in, index);
                cr_expect_str_eq(strempty(problem), bad_lists[i].problem, "%s", bad_lists[i].in);
                cr_expect_null(l.urls);
        }
}

Test(broker_url, too_many) {
        char text[70 * 10 + 1] = "";
        BrokerUrlList l = { 0 };
        const char *problem = NULL;

        for (int i = 0; i < 65; i++)
                strcat(text, i ? ",amqp://h/" : "amqp://h/");
        cr_expect_eq(broker_url_list_parse(text, &l, NULL, &problem), -EINVAL);
        cr_expect_str_eq(strempty(problem), "more than 64 URLs");
}

Test(broker_url, list_item) {
        _cleanup_free_ char *a = broker_url_list_item("amqp://h1/ ,  amqp://h2/", 1);
        _cleanup_free_ char *b = broker_url_list_item("amqp://h1/,,x", 1);

        cr_expect_str_eq(a, "amqp://h2/");
        cr_expect_str_eq(b, "");
        cr_expect_null(broker_url_list_item("amqp://h1/", 1));
}

/* Each URL of a list is shown as written, blanks around it dropped, its password hidden. */
Test(broker_url, shown) {
        _cleanup_(broker_url_list_done) BrokerUrlList l = { 0 };

        cr_assert_eq(broker_url_list_parse(" amqp://u:Secret1@h1:5673/%2F , amqp://h2/prod,amqp://v@h3/", &l, NULL,
                                           NULL),
                     0);
        cr_assert_eq(l.n, 3);
        cr_expect_str_eq(l.urls[0].shown, "amqp://u:***@h1:5673/%2F");
        cr_expect_str_eq(l.urls[1].shown, "amqp://h2/prod");
        cr_expect_str_eq(l.urls[2].shown, "amqp://v@h3/");
}

/* Whatever an operator writes, good or bad, its redacted form shows no password: neither whole
 * nor, where it holds separators, any of its pieces. */
Test(broker_url, redaction_never_shows_a_password) {
        static const struct {
                const char *url;
                const char *secrets[3];
        } cases[] = {
                { "amqp://u:Secret1@h/", { "Secret1" } },
                { "amqp://u:Secret1@h1/,amqp://v:Secret2@h2:5673/prod", { "Secret1", "Secret2" } },
                { "amqps://u:Secret1@h1/ , amqps://v:Secret2@[::1]:5671/", { "Secret1", "Secret2" } },
                { "amqp://u:Sec,ret1@h/", { "Sec", "ret1" } },
                { "amqp://u:Sec,amqp://ret1@h/", { "Sec", "ret1" } },
                { "amqp://u:Sec/ret1@h1/,amqp://v:Secret2@h2/", { "Sec", "ret1", "Secret2" } },
                { "amqp://u:Sec@ret1@h/,amqp://h2/", { "Sec", "ret1" } },
                { "amqp://u:Sec#ret1@h/", { "Sec", "ret1" } },
                { "amqp://u:Sec?ret1@h/", { "Sec", "ret1" } },
                { "amqp://u:Sec%zzret1@h/", { "Sec", "ret1" } },
                { "amqp://u:Secret1", { "Secret1" } },
                { "amqp://u:Secret1,amqp://h2/", { "Secret1" } },
                { "amqp://h1/,amqp://u:Secret2", { "Secret2" } },
                { "amqp//u:Secret1@h/", { "Secret1" } },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *shown = url_redact(cases[i].url);
                BrokerUrlList l = { 0 };
                size_t index = 0;

                cr_assert_not_null(shown);
                for (size_t j = 0; j < ELEMENTSOF(cases[i].secrets) && cases[i].secrets[j]; j++)
                        cr_expect_null(strstr(shown, cases[i].secrets[j]), "%s shown as %s", cases[i].url, shown);

                /* And the item a configuration error names. */
                if (broker_url_list_parse(cases[i].url, &l, &index, NULL) < 0) {
                        _cleanup_free_ char *item = broker_url_list_item(cases[i].url, index);
                        _cleanup_free_ char *item_shown = item ? url_redact(item) : NULL;

                        for (size_t j = 0; item_shown && j < ELEMENTSOF(cases[i].secrets) && cases[i].secrets[j]; j++)
                                cr_expect_null(strstr(item_shown, cases[i].secrets[j]), "%s: item %zu shown as %s",
                                               cases[i].url, index + 1, item_shown);
                } else {
                        /* And each URL of a good list as logs, stats and metrics show it. */
                        for (size_t k = 0; k < l.n; k++)
                                for (size_t j = 0; j < ELEMENTSOF(cases[i].secrets) && cases[i].secrets[j]; j++)
                                        cr_expect_null(strstr(l.urls[k].shown, cases[i].secrets[j]),
                                                       "%s: URL %zu shown as %s", cases[i].url, k + 1, l.urls[k].shown);
                        broker_url_list_done(&l);
                }
        }
}
