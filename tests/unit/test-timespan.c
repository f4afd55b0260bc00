/* SPDX-License-Identifier: MIT */
#include <criterion/criterion.h>

#include "core/timespan.h"

#define S(x) ((usec_t) (x) * USEC_PER_SEC)

static usec_t parse_ok(const char *s) {
        usec_t t = 12345;
        int r = parse_timespan(s, &t);

        cr_assert_eq(r, 0, "parse_timespan(\"%s\") = %d", s, r);
        return t;
}

static void parse_fails(const char *s, int error) {
        usec_t t = 12345;
        int r = parse_timespan(s, &t);

        cr_assert_eq(r, error, "parse_timespan(\"%s\") = %d, wanted %d", s, r, error);
        cr_assert_eq(t, 12345, "\"%s\": the result is untouched on failure", s);
}

Test(timespan, units) {
        cr_assert_eq(parse_ok("45s"), S(45));
        cr_assert_eq(parse_ok("90m"), S(90 * 60));
        cr_assert_eq(parse_ok("2h"), S(7200));
        cr_assert_eq(parse_ok("7d"), S(7 * 86400));
        cr_assert_eq(parse_ok("2w"), S(14 * 86400));
        cr_assert_eq(parse_ok("1h30m"), S(5400));
        cr_assert_eq(parse_ok("1d2h3m4s"), S(86400 + 7200 + 180 + 4));
        cr_assert_eq(parse_ok("30m1h"), S(5400), "terms in any order add up");
        cr_assert_eq(parse_ok("0"), 0);
        cr_assert_eq(parse_ok("0h"), 0);
}

Test(timespan, bare_number_is_seconds) {
        cr_assert_eq(parse_ok("3600"), S(3600));
        cr_assert_eq(parse_ok("007"), S(7));
}

Test(timespan, refused) {
        parse_fails("", -EINVAL);
        parse_fails("h", -EINVAL);
        parse_fails("2x", -EINVAL);
        parse_fails("2H", -EINVAL);
        parse_fails("-2h", -EINVAL);
        parse_fails("1.5h", -EINVAL);
        parse_fails("2 h", -EINVAL);
        parse_fails(" 2h", -EINVAL);
        parse_fails("2h ", -EINVAL);
        parse_fails("1h30", -EINVAL); /* 1h and 30 what? */
        parse_fails("2hh", -EINVAL);
        parse_fails("2ms", -EINVAL);
}

Test(timespan, overflow) {
        parse_fails("99999999999999999999999s", -ERANGE);
        parse_fails("18446744073709551615s", -ERANGE);
        parse_fails("100000000w", -ERANGE);
        parse_fails("30000000w30000000w", -ERANGE);
        cr_assert_eq(parse_ok("1000000w"), S(1000000ULL * 7 * 86400));
}

Test(timespan, format) {
        char buf[TIMESPAN_MAX];

        cr_assert_str_eq(format_timespan(buf, 0), "0s");
        cr_assert_str_eq(format_timespan(buf, 999999), "0s");
        cr_assert_str_eq(format_timespan(buf, S(45)), "45s");
        cr_assert_str_eq(format_timespan(buf, S(60)), "1m");
        cr_assert_str_eq(format_timespan(buf, S(750)), "12m30s");
        cr_assert_str_eq(format_timespan(buf, S(3 * 3600 + 12 * 60 + 59)), "3h12m", "two units, rounded down");
        cr_assert_str_eq(format_timespan(buf, S(3600 + 5)), "1h", "no zero minutes, seconds dropped");
        cr_assert_str_eq(format_timespan(buf, S(2 * 86400 + 4 * 3600)), "2d4h");
        cr_assert_str_eq(format_timespan(buf, S(16 * 86400)), "16d", "days, not weeks");
        cr_assert_str_eq(format_timespan(buf, USEC_INFINITY), "213503982d8h");
}

Test(timespan, round_trip) {
        static const char *const spans[] = { "45s", "12m30s", "3h12m", "2d4h", "16d", "1m", "1h" };
        char buf[TIMESPAN_MAX];

        for (size_t i = 0; i < ELEMENTSOF(spans); i++)
                cr_assert_str_eq(format_timespan(buf, parse_ok(spans[i])), spans[i]);
}

Test(timespan, timestamps) {
        char buf[TIMESTAMP_MAX];
        /* 2026-12-01T21:34:42.737Z */
        usec_t t = 1796160882737000ULL;

        cr_assert_str_eq(format_timestamp(buf, t, false), "2026-12-01 21:34:42 UTC");
        cr_assert_str_eq(format_timestamp(buf, t, true), "2026-12-01T21:34:42Z");
        cr_assert_str_eq(format_timestamp(buf, 0, false), "-");
        cr_assert_str_eq(format_timestamp(buf, 0, true), "");
}
