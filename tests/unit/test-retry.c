/* SPDX-License-Identifier: MIT */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <limits.h>

#include "core/retry.h"

#define S(x) ((usec_t) (x) * USEC_PER_SEC)

/* Sun, 06 Nov 1994 08:49:37 GMT, the example date of RFC 9110. */
#define EXAMPLE_DATE ((usec_t) 784111777)

/* The rule of architecture §5 written out independently of retry_classify(). */
static DeliveryOutcome expected_outcome(long s) {
        if (s == 0)
                return OUTCOME_RETRY;
        if (s >= 200 && s < 300)
                return OUTCOME_SENT;
        if (s == 401 || s == 403 || s == 408 || s == 429)
                return OUTCOME_RETRY;
        if (s >= 500 && s < 600 && s != 501 && s != 505)
                return OUTCOME_RETRY;
        return OUTCOME_PERMANENT;
}

Test(retry, classify_every_status) {
        cr_assert_eq(retry_classify(0), OUTCOME_RETRY);
        for (long s = 100; s <= 599; s++)
                cr_assert_eq(retry_classify(s), expected_outcome(s), "status %ld", s);
}

Test(retry, classify_spot_checks) {
        static const struct {
                long status;
                DeliveryOutcome outcome;
        } table[] = {
                { 0, OUTCOME_RETRY },       { 100, OUTCOME_PERMANENT }, { 101, OUTCOME_PERMANENT },
                { 200, OUTCOME_SENT },      { 201, OUTCOME_SENT },      { 202, OUTCOME_SENT },
                { 204, OUTCOME_SENT },      { 299, OUTCOME_SENT },      { 300, OUTCOME_PERMANENT },
                { 301, OUTCOME_PERMANENT }, { 302, OUTCOME_PERMANENT }, { 304, OUTCOME_PERMANENT },
                { 307, OUTCOME_PERMANENT }, { 308, OUTCOME_PERMANENT }, { 400, OUTCOME_PERMANENT },
                { 401, OUTCOME_RETRY },     { 402, OUTCOME_PERMANENT }, { 403, OUTCOME_RETRY },
                { 404, OUTCOME_PERMANENT }, { 405, OUTCOME_PERMANENT }, { 407, OUTCOME_PERMANENT },
                { 408, OUTCOME_RETRY },     { 409, OUTCOME_PERMANENT }, { 410, OUTCOME_PERMANENT },
                { 413, OUTCOME_PERMANENT }, { 422, OUTCOME_PERMANENT }, { 425, OUTCOME_PERMANENT },
                { 429, OUTCOME_RETRY },     { 451, OUTCOME_PERMANENT }, { 499, OUTCOME_PERMANENT },
                { 500, OUTCOME_RETRY },     { 501, OUTCOME_PERMANENT }, { 502, OUTCOME_RETRY },
                { 503, OUTCOME_RETRY },     { 504, OUTCOME_RETRY },     { 505, OUTCOME_PERMANENT },
                { 507, OUTCOME_RETRY },     { 511, OUTCOME_RETRY },     { 599, OUTCOME_RETRY },
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++)
                cr_assert_eq(retry_classify(table[i].status), table[i].outcome, "status %ld",
                             table[i].status);
}

Test(retry, classify_out_of_range) {
        static const long table[] = { -1, -200, 1, 42, 99, 600, 999, 1000, 2000, LONG_MAX, LONG_MIN };

        for (size_t i = 0; i < ELEMENTSOF(table); i++)
                cr_assert_eq(retry_classify(table[i]), OUTCOME_PERMANENT, "status %ld", table[i]);
}

Test(retry, splits_and_auth) {
        for (long s = 0; s <= 700; s++) {
                cr_assert_eq(retry_status_splits(s), s == 400 || s == 413 || s == 422, "status %ld", s);
                cr_assert_eq(retry_status_is_auth(s), s == 401 || s == 403, "status %ld", s);
        }
        /* Every status that splits is a permanent one, every auth status a retriable one. */
        cr_assert_eq(retry_classify(400), OUTCOME_PERMANENT);
        cr_assert_eq(retry_classify(413), OUTCOME_PERMANENT);
        cr_assert_eq(retry_classify(422), OUTCOME_PERMANENT);
}

Test(retry, outcome_to_string) {
        cr_assert_str_eq(delivery_outcome_to_string(OUTCOME_SENT), "sent");
        cr_assert_str_eq(delivery_outcome_to_string(OUTCOME_RETRY), "retry");
        cr_assert_str_eq(delivery_outcome_to_string(OUTCOME_PERMANENT), "permanent");
        cr_assert_null(delivery_outcome_to_string(_OUTCOME_MAX));
        cr_assert_null(delivery_outcome_to_string((DeliveryOutcome) -1));
}

Test(retry, backoff_schedule) {
        static const struct {
                double multiplier;
                usec_t max_delay;
                unsigned attempt;
                usec_t delay;
        } table[] = {
                /* The defaults: multiplier 2, cap 300 s. */
                { 2, S(300), 0, S(1) },
                { 2, S(300), 1, S(2) },
                { 2, S(300), 2, S(4) },
                { 2, S(300), 3, S(8) },
                { 2, S(300), 4, S(16) },
                { 2, S(300), 5, S(32) },
                { 2, S(300), 6, S(64) },
                { 2, S(300), 7, S(128) },
                { 2, S(300), 8, S(256) },
                { 2, S(300), 9, S(300) },
                { 2, S(300), 10, S(300) },
                { 2, S(300), 63, S(300) },
                { 2, S(300), 64, S(300) },
                { 2, S(300), 65, S(300) },
                { 2, S(300), 1024, S(300) },
                { 2, S(300), 1025, S(300) }, /* 2^1025 is +inf in double */
                { 2, S(300), UINT_MAX, S(300) },
                /* Multiplier 1.5. */
                { 1.5, S(300), 1, 1500000 },
                { 1.5, S(300), 2, 2250000 },
                { 1.5, S(300), 3, 3375000 },
                { 1.5, S(300), 4, 5062500 },
                { 1.5, S(300), 5, 7593750 },
                { 1.5, S(300), 6, 11390625 },
                { 1.5, S(300), 10, 57665039 },
                { 1.5, S(300), 14, 291929260 },
                { 1.5, S(300), 15, S(300) },
                { 1.5, S(300), UINT_MAX, S(300) },
                /* Other caps. */
                { 2, S(10), 3, S(8) },
                { 2, S(10), 4, S(10) },
                { 2, S(8), 3, S(8) },    /* exactly at the cap */
                { 2, S(1), 1, S(1) },
                { 2, 0, 1, 0 },
                { 2, 0, UINT_MAX, 0 },
                { 1.5, 1, 1, 1 },
                /* Multiplier 1: always a second. */
                { 1, S(300), 1, S(1) },
                { 1, S(300), 1000, S(1) },
                { 1, S(300), UINT_MAX, S(1) },
                /* A cap that no delay reaches before usec_t would overflow. */
                { 2, USEC_INFINITY, 10, S(1024) },
                { 2, USEC_INFINITY, 44, S(17592186044416) },
                { 2, USEC_INFINITY, 64, USEC_INFINITY },
                { 2, USEC_INFINITY, UINT_MAX, USEC_INFINITY },
                { 10, USEC_INFINITY, 30, USEC_INFINITY },
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                RetryPolicy p = {
                        .max_attempts = 3,
                        .multiplier = table[i].multiplier,
                        .max_delay = table[i].max_delay,
                };

                /* Without jitter the random value plays no part. */
                cr_assert_eq(retry_backoff(&p, table[i].attempt, 0), table[i].delay,
                             "row %zu: multiplier %g attempt %u: %" PRIu64 " != %" PRIu64, i,
                             table[i].multiplier, table[i].attempt, retry_backoff(&p, table[i].attempt, 0),
                             table[i].delay);
                cr_assert_eq(retry_backoff(&p, table[i].attempt, UINT64_MAX), table[i].delay, "row %zu", i);
        }
}

Test(retry, backoff_monotonic_up_to_cap) {
        RetryPolicy p = { .max_attempts = 3, .multiplier = 1.7, .max_delay = S(3600) };
        usec_t prev = 0;

        for (unsigned k = 1; k < 10000; k++) {
                usec_t d = retry_backoff(&p, k, 0);

                cr_assert_geq(d, prev, "attempt %u", k);
                cr_assert_leq(d, p.max_delay, "attempt %u", k);
                prev = d;
        }
        cr_assert_eq(prev, p.max_delay);
}

static uint64_t xorshift64(uint64_t *s) {
        uint64_t x = *s;

        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        return *s = x;
}

Test(retry, jitter_bounds) {
        static const usec_t caps[] = { S(300), S(7) + 1, 3, 1, USEC_INFINITY };
        static const double multipliers[] = { 2, 1.5, 1 };
        uint64_t seed = 0x9e3779b97f4a7c15ULL;

        for (size_t c = 0; c < ELEMENTSOF(caps); c++)
                for (size_t m = 0; m < ELEMENTSOF(multipliers); m++)
                        for (unsigned k = 0; k <= 70; k++) {
                                RetryPolicy p = {
                                        .max_attempts = 3,
                                        .multiplier = multipliers[m],
                                        .max_delay = caps[c],
                                };
                                RetryPolicy q = p;
                                usec_t d, lo_seen = USEC_INFINITY, hi_seen = 0;

                                q.jitter = true;
                                d = retry_backoff(&p, k, 0);

                                /* The extremes of the random value included. */
                                cr_assert_geq(retry_backoff(&q, k, 0), d / 2);
                                cr_assert_leq(retry_backoff(&q, k, UINT64_MAX), d);

                                for (unsigned i = 0; i < 300; i++) {
                                        usec_t j = retry_backoff(&q, k, xorshift64(&seed));

                                        cr_assert_geq(j, d / 2, "cap %zu m %g k %u: %" PRIu64, c,
                                                      multipliers[m], k, j);
                                        cr_assert_leq(j, d, "cap %zu m %g k %u: %" PRIu64, c, multipliers[m],
                                                      k, j);
                                        lo_seen = MIN(lo_seen, j);
                                        hi_seen = MAX(hi_seen, j);
                                }

                                /* Spread over the whole range, not stuck at one end. */
                                if (d >= 1000) {
                                        cr_assert_lt(lo_seen, d / 2 + d / 10);
                                        cr_assert_gt(hi_seen, d - d / 10);
                                }
                        }
}

Test(retry, jitter_of_zero) {
        RetryPolicy p = { .max_attempts = 3, .multiplier = 2, .max_delay = 0, .jitter = true };

        cr_assert_eq(retry_backoff(&p, 3, 12345), 0);
        cr_assert_eq(retry_backoff(&p, 3, UINT64_MAX), 0);
}

static usec_t parse_ok(const char *v, usec_t now) {
        usec_t d = 12345;
        int r;

        r = retry_after_parse(v, now, &d);
        cr_assert_eq(r, 0, "\"%s\": %d", v, r);
        return d;
}

static void parse_fails(const char *v, usec_t now) {
        usec_t d = 12345;

        cr_assert_eq(retry_after_parse(v, now, &d), -EINVAL, "\"%s\"", v ? v : "(null)");
        cr_assert_eq(d, 12345, "\"%s\" touched the result", v ? v : "(null)");
}

Test(retry, retry_after_seconds) {
        usec_t now = S(EXAMPLE_DATE);

        cr_assert_eq(parse_ok("0", now), 0);
        cr_assert_eq(parse_ok("1", now), S(1));
        cr_assert_eq(parse_ok("120", now), S(120));
        cr_assert_eq(parse_ok("007", now), S(7));
        cr_assert_eq(parse_ok("86400", now), S(86400));
        /* The clock does not matter for delta-seconds. */
        cr_assert_eq(parse_ok("120", 0), S(120));
}

Test(retry, retry_after_whitespace) {
        usec_t now = S(EXAMPLE_DATE);

        cr_assert_eq(parse_ok(" 120", now), S(120));
        cr_assert_eq(parse_ok("120 ", now), S(120));
        cr_assert_eq(parse_ok("  \t120\t  ", now), S(120));
        cr_assert_eq(parse_ok("120\r\n", now), S(120));
        cr_assert_eq(parse_ok("   Sun, 06 Nov 1994 08:49:37 GMT \t", now - S(10)), S(10));
}

Test(retry, retry_after_huge_saturates) {
        /* USEC_INFINITY / USEC_PER_SEC: the largest whole number of seconds usec_t holds. */
        cr_assert_eq(parse_ok("18446744073709", 0), (usec_t) 18446744073709ULL * USEC_PER_SEC);
        cr_assert_eq(parse_ok("18446744073710", 0), USEC_INFINITY);
        cr_assert_eq(parse_ok("18446744073709551615", 0), USEC_INFINITY);
        cr_assert_eq(parse_ok("18446744073709551616", 0), USEC_INFINITY);
        cr_assert_eq(parse_ok("99999999999999999999999999999999999999999999999999999999999999999999999999999"
                              "999999999999999999999999",
                              0),
                     USEC_INFINITY);
}

Test(retry, retry_after_imf_fixdate) {
        usec_t now = S(EXAMPLE_DATE);

        cr_assert_eq(parse_ok("Sun, 06 Nov 1994 08:49:37 GMT", now - S(37)), S(37));
        cr_assert_eq(parse_ok("Sun, 06 Nov 1994 08:49:37 GMT", now - S(3600)), S(3600));
        /* The clock's fraction of a second counts. */
        cr_assert_eq(parse_ok("Sun, 06 Nov 1994 08:49:37 GMT", now - 1500000), 1500000);
        cr_assert_eq(parse_ok("Mon, 07 Nov 1994 08:49:37 GMT", now), S(86400));
        cr_assert_eq(parse_ok("Tue, 01 Jan 2030 00:00:00 GMT", S(1893456000) - S(5)), S(5));
        /* 29 February in a leap year; 2000 is one (divisible by 400). */
        cr_assert_eq(parse_ok("Tue, 29 Feb 2000 00:00:00 GMT", S(951782400) - S(60)), S(60));
        /* A leap second is a valid second; it is the next minute's first. */
        cr_assert_eq(parse_ok("Sun, 06 Nov 1994 08:49:60 GMT", S(EXAMPLE_DATE - 37)), S(60));
        cr_assert_eq(parse_ok("Fri, 31 Dec 9999 23:59:59 GMT", 0), S(253402300799));
}

Test(retry, retry_after_rfc850) {
        usec_t now = S(EXAMPLE_DATE);
        const usec_t y2025 = S(1749945600);     /* 2025-06-15 */
        const usec_t y2099 = S(4070908800);     /* 2099-01-01 */

        cr_assert_eq(parse_ok("Sunday, 06-Nov-94 08:49:37 GMT", now - S(37)), S(37));
        cr_assert_eq(parse_ok("Wednesday, 09-Nov-94 08:49:37 GMT", now), S(3 * 86400));

        /* Two-digit years (RFC 9110 §5.6.7): up to 50 years ahead is ahead, beyond that it is
         * the past century. */
        cr_assert_eq(parse_ok("Wednesday, 01-Jan-70 00:00:00 GMT", y2025), S(3155760000) - y2025);
        cr_assert_eq(parse_ok("Saturday, 01-Jun-75 00:00:00 GMT", y2025), S(3326572800) - y2025);
        cr_assert_eq(parse_ok("Tuesday, 01-Jun-76 00:00:00 GMT", y2025), 0); /* 1976 */
        cr_assert_eq(parse_ok("Tuesday, 01-Jan-30 00:00:00 GMT", y2025), S(1893456000) - y2025);
        cr_assert_eq(parse_ok("Sunday, 15-Jun-25 00:00:10 GMT", y2025), S(10));
        /* Past a century's turn: in 2099, "01" is 2101, not 2001. */
        cr_assert_eq(parse_ok("Tuesday, 01-Mar-01 00:00:00 GMT", y2099), S(4139078400) - y2099);
        /* 1994 seen from 2025 is still 1994. */
        cr_assert_eq(parse_ok("Sunday, 06-Nov-94 08:49:37 GMT", y2025), 0);
}

Test(retry, retry_after_asctime) {
        usec_t now = S(EXAMPLE_DATE);

        cr_assert_eq(parse_ok("Sun Nov  6 08:49:37 1994", now - S(37)), S(37));
        cr_assert_eq(parse_ok("Sun Nov 06 08:49:37 1994", now - S(37)), S(37));
        cr_assert_eq(parse_ok("Wed Nov 16 08:49:37 1994", now), S(10 * 86400));
        cr_assert_eq(parse_ok("Tue Jan  1 00:00:00 2030", S(1893456000) - S(2)), S(2));
}

Test(retry, retry_after_past) {
        usec_t now = S(EXAMPLE_DATE);

        cr_assert_eq(parse_ok("Sun, 06 Nov 1994 08:49:37 GMT", now), 0);          /* exactly now */
        cr_assert_eq(parse_ok("Sun, 06 Nov 1994 08:49:37 GMT", now + 1), 0);
        cr_assert_eq(parse_ok("Sun, 06 Nov 1994 08:49:36 GMT", now), 0);
        cr_assert_eq(parse_ok("Thu, 01 Jan 1970 00:00:00 GMT", now), 0);
        cr_assert_eq(parse_ok("Mon, 01 Jan 1900 00:00:00 GMT", now), 0);           /* before the epoch */
        cr_assert_eq(parse_ok("Mon, 01 Jan 0001 00:00:00 GMT", now), 0);
        cr_assert_eq(parse_ok("Sunday, 06-Nov-94 08:49:36 GMT", now), 0);
        cr_assert_eq(parse_ok("Sun Nov  6 08:49:36 1994", now), 0);
}

Test(retry, retry_after_invalid_dates) {
        static const char *const table[] = {
                "Wed, 30 Feb 1994 08:49:37 GMT", /* no such day */
                "Tue, 29 Feb 1994 08:49:37 GMT", /* not a leap year */
                "Mon, 29 Feb 2100 08:49:37 GMT", /* divisible by 100, not by 400 */
                "Thu, 31 Apr 1994 08:49:37 GMT",
                "Sun, 32 Jan 1994 08:49:37 GMT",
                "Sun, 00 Nov 1994 08:49:37 GMT",
                "Sun, 06 Nov 1994 25:49:37 GMT", /* hour 25 */
                "Sun, 06 Nov 1994 24:00:00 GMT",
                "Sun, 06 Nov 1994 08:60:37 GMT",
                "Sun, 06 Nov 1994 08:49:61 GMT",
                "Sun, 06 Foo 1994 08:49:37 GMT", /* no such month */
                "Sunday, 30-Feb-94 08:49:37 GMT",
                "Sunday, 06-Nov-94 25:49:37 GMT",
                "Sun Feb 30 08:49:37 1994",
                "Sun Nov  6 25:49:37 1994",
                "Sun Nov  0 08:49:37 1994",
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++)
                parse_fails(table[i], S(EXAMPLE_DATE));
}

Test(retry, retry_after_garbage) {
        static const char *const table[] = {
                "",
                " ",
                " \t\r\n",
                "-1",
                "+5",
                "5s",
                "1.5",
                "1 2",
                "0x10",
                "abc",
                "120 seconds",
                "Sun, 06 Nov 1994 08:49:37 UTC",     /* only GMT */
                "Sun, 06 Nov 1994 08:49:37",         /* no zone */
                "Sun, 06 Nov 1994 08:49:37 GMT x",   /* trailing junk */
                "Sun, 06 Nov 1994 08:49:37 GMTx",
                "sun, 06 nov 1994 08:49:37 gmt",     /* HTTP-date is case-sensitive */
                "Sun, 6 Nov 1994 08:49:37 GMT",      /* IMF-fixdate has two-digit days */
                "Sun,06 Nov 1994 08:49:37 GMT",
                "Sun,  06 Nov 1994 08:49:37 GMT",
                "Sun, 06 Nov 94 08:49:37 GMT",       /* two-digit year in IMF-fixdate */
                "Sun, 06 Nov 01994 08:49:37 GMT",
                "Sun, 06 Nov 1994 8:49:37 GMT",
                "Sun, 06 Nov 1994 08:49 GMT",
                "Sun, 06-Nov-94 08:49:37 GMT",       /* RFC 850 needs the long day name */
                "Sunday, 06 Nov 1994 08:49:37 GMT",  /* and its own date form */
                "Sunday, 06-Nov-1994 08:49:37 GMT",
                "Sunday, 6-Nov-94 08:49:37 GMT",
                "Sun Nov 6 08:49:37 1994",           /* asctime pads a one-digit day with a space */
                "Sun Nov   6 08:49:37 1994",
                "Sun Nov  6 08:49:37 94",
                "Sun Nov  6 08:49:37 1994 GMT",
                "Sun  Nov  6 08:49:37 1994",
                "Foo, 06 Nov 1994 08:49:37 GMT",     /* no such day */
                "Sun",
                "Sun,",
                "Sun, ",
                "Sunday",
                "GMT",
                "Sun, 06 Nov 1994 08:49:37 GMT Sun, 06 Nov 1994 08:49:37 GMT",
                "Sun, 06 Nov 1994 08:49:37 GMT                                                  x",
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++)
                parse_fails(table[i], S(EXAMPLE_DATE));
        parse_fails(NULL, S(EXAMPLE_DATE));
}

Test(retry, retry_after_embedded_nul_ends_value) {
        /* Whatever follows a NUL is not part of the C string: "12" is what is seen. */
        cr_assert_eq(parse_ok("12\0garbage", 0), S(12));
}

Test(retry, delay_uses_retry_after_capped) {
        RetryPolicy p = { .max_attempts = 5, .multiplier = 2, .max_delay = S(300) };
        usec_t now = S(EXAMPLE_DATE);

        cr_assert_eq(retry_delay(&p, 1, "10", now, 0), S(10));
        cr_assert_eq(retry_delay(&p, 1, "0", now, 0), 0);
        cr_assert_eq(retry_delay(&p, 1, "300", now, 0), S(300));
        cr_assert_eq(retry_delay(&p, 1, "301", now, 0), S(300));
        cr_assert_eq(retry_delay(&p, 1, "99999999999999999999999", now, 0), S(300));
        cr_assert_eq(retry_delay(&p, 1, "Sun, 06 Nov 1994 08:50:07 GMT", now - S(37), 0), S(67));
        cr_assert_eq(retry_delay(&p, 1, "Mon, 07 Nov 1994 08:49:37 GMT", now, 0), S(300));
        /* A past date means "now", not "fall back to the backoff". */
        cr_assert_eq(retry_delay(&p, 3, "Sun, 06 Nov 1994 08:49:37 GMT", now + S(1), 0), 0);

        /* Retry-After beats the backoff even when shorter, and takes no jitter. */
        p.jitter = true;
        cr_assert_eq(retry_delay(&p, 8, "10", now, 0), S(10));
        cr_assert_eq(retry_delay(&p, 8, "10", now, UINT64_MAX), S(10));
}

Test(retry, delay_falls_back_to_backoff) {
        RetryPolicy p = { .max_attempts = 5, .multiplier = 2, .max_delay = S(300) };
        usec_t now = S(EXAMPLE_DATE);

        cr_assert_eq(retry_delay(&p, 1, NULL, now, 0), S(2));
        cr_assert_eq(retry_delay(&p, 3, NULL, now, 0), S(8));
        cr_assert_eq(retry_delay(&p, 3, "", now, 0), S(8));
        cr_assert_eq(retry_delay(&p, 3, "soon", now, 0), S(8));
        cr_assert_eq(retry_delay(&p, 3, "Wed, 30 Feb 1994 08:49:37 GMT", now, 0), S(8));
        cr_assert_eq(retry_delay(&p, 20, NULL, now, 0), S(300));
        cr_assert_eq(retry_delay(&p, UINT_MAX, NULL, now, 0), S(300));

        p.jitter = true;
        for (uint64_t r = 0; r < 1000; r++) {
                usec_t d = retry_delay(&p, 3, NULL, now, r * 0x9e3779b97f4a7c15ULL);

                cr_assert_geq(d, S(4));
                cr_assert_leq(d, S(8));
        }
        for (uint64_t r = 0; r < 1000; r++) {
                usec_t d = retry_delay(&p, 30, "garbage", now, r * 0x9e3779b97f4a7c15ULL);

                cr_assert_geq(d, S(150));
                cr_assert_leq(d, S(300));
        }
}
