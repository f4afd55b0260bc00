/* SPDX-License-Identifier: MIT */
/* retry_after_parse() and retry_delay() (core/retry.c): the Retry-After header of the
 * destination's answer, delta-seconds or an HTTP-date in any of its three forms. The input is the
 * header value; its first bytes also pick a retry policy and an offset for the round trip.
 * Invariants:
 *   - no crash, no undefined behaviour (UBSan halts on an overflow);
 *   - 0 or -EINVAL, and -EINVAL leaves the result alone;
 *   - delta-seconds (digits between blanks) are always accepted, as the number times 10^6 µs,
 *     or USEC_INFINITY where that does not fit;
 *   - an accepted date is one that glibc's strptime() in the C locale reads the same, in the
 *     form it has (IMF-fixdate, RFC 850 with the year's last two digits, asctime), to the same
 *     second; the delay is that date minus now, 0 for a date in the past;
 *   - each of the three forms printed by strftime() for now + an offset of up to 40 years is
 *     accepted, as exactly that offset;
 *   - retry_delay() never passes the cap, and with a usable Retry-After, equals it, capped. */
#include <inttypes.h>
#include <stdio.h>
#include <time.h>

#include "core/retry.h"
#include "fuzz.h"

/* Thursday 2026-12-31 23:59:59 UTC and the epoch: the RFC 850 year window depends on now. */
#define NOW_2026 (UINT64_C(1798761599) * USEC_PER_SEC + 123456)

static const char *const date_formats[] = {
        "%a, %d %b %Y %H:%M:%S GMT", /* IMF-fixdate */
        "%A, %d-%b-%y %H:%M:%S GMT", /* RFC 850 */
        "%a %b %e %H:%M:%S %Y",      /* asctime */
};

static bool is_ows(char c) {
        return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* The value without blanks around it, as the parser sees it. */
static char *trimmed(const char *s) {
        const char *e;

        while (is_ows(*s))
                s++;
        e = s + strlen(s);
        while (e > s && is_ows(e[-1]))
                e--;
        return strndup(s, (size_t) (e - s));
}

/* Delta-seconds by another road: long multiplication on the decimal string. */
static usec_t expected_seconds(const char *digits) {
        uint64_t v = 0;

        for (const char *p = digits; *p; p++)
                if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, (uint64_t) (*p - '0'), &v))
                        return USEC_INFINITY;
        if (v > USEC_INFINITY / USEC_PER_SEC)
                return USEC_INFINITY;
        return (usec_t) v * USEC_PER_SEC;
}

/* An accepted date as strptime() reads it: the seconds since the epoch, the year of an RFC 850
 * date taken from ours (strptime's %y has a window of its own). */
static bool strptime_agrees(const char *v, time_t ours) {
        struct tm ours_tm;

        if (!gmtime_r(&ours, &ours_tm))
                return false;
        for (size_t i = 0; i < ELEMENTSOF(date_formats); i++) {
                struct tm tm = { 0 };
                const char *end = strptime(v, date_formats[i], &tm);

                if (!end || *end)
                        continue;
                if (i == 1) {
                        if ((tm.tm_year + 1900) % 100 != (ours_tm.tm_year + 1900) % 100)
                                continue;
                        tm.tm_year = ours_tm.tm_year;
                }
                tm.tm_isdst = 0;
                if (timegm(&tm) == ours)
                        return true;
        }
        return false;
}

static void check_value(const uint8_t *data, size_t size, const char *v, usec_t now) {
        _cleanup_free_ char *t = trimmed(v);
        usec_t d = 4242;
        int r;

        if (!t)
                abort();
        r = retry_after_parse(v, now, &d);
        FUZZ_CHECK(r == 0 || r == -EINVAL, data, size, "retry_after_parse() returned %d", r);
        if (r < 0) {
                FUZZ_CHECK(d == 4242, data, size, "a refused value changed the result");
                FUZZ_CHECK(*t == '\0' || strspn(t, "0123456789") != strlen(t), data, size,
                           "delta-seconds refused");
                return;
        }
        if (*t >= '0' && *t <= '9') {
                FUZZ_CHECK(strspn(t, "0123456789") == strlen(t), data, size, "not digits, but accepted");
                FUZZ_CHECK(d == expected_seconds(t), data, size, "delta-seconds give %" PRIu64 " µs", d);
                return;
        }
        /* A date. Only one after now tells which second it named. */
        if (d > 0) {
                time_t when = (time_t) ((now + d) / USEC_PER_SEC);

                FUZZ_CHECK((now + d) % USEC_PER_SEC == 0, data, size, "a date that is not a whole second");
                FUZZ_CHECK(strptime_agrees(t, when), data, size,
                           "accepted as %lld s since the epoch, which strptime() does not read there",
                           (long long) when);
        }
}

/* strftime() with date_formats[i], spelled out as literals for -Wformat-nonliteral. */
static size_t format_date(size_t i, const struct tm *tm, char *buf, size_t size) {
        switch (i) {
        case 0:
                return strftime(buf, size, "%a, %d %b %Y %H:%M:%S GMT", tm);
        case 1: {
                /* %y spelled out: gcc's -Wformat-y2k objects to it. */
                size_t n = strftime(buf, size, "%A, %d-%b-", tm);
                int k = n > 0 ? snprintf(buf + n, size - n, "%02d", (tm->tm_year + 1900) % 100) : -1;

                if (k != 2)
                        return 0;
                n += 2;
                return n + strftime(buf + n, size - n, " %H:%M:%S GMT", tm);
        }
        default:
                return strftime(buf, size, "%a %b %e %H:%M:%S %Y", tm);
        }
}

static void check_round_trip(const uint8_t *data, size_t size, usec_t now, uint32_t offset_s) {
        time_t when = (time_t) (now / USEC_PER_SEC) + 1 + offset_s;
        struct tm tm;

        if (!gmtime_r(&when, &tm))
                abort();
        for (size_t i = 0; i < ELEMENTSOF(date_formats); i++) {
                char buf[64];
                usec_t d = 0;
                int r;

                if (format_date(i, &tm, buf, sizeof(buf)) == 0)
                        abort();
                r = retry_after_parse(buf, now, &d);
                FUZZ_CHECK(r == 0, data, size, "\"%s\" refused (%d)", buf, r);
                FUZZ_CHECK(d == (usec_t) when * USEC_PER_SEC - now, data, size, "\"%s\" gives %" PRIu64 " µs", buf,
                           d);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_free_ char *v = NULL;
        uint32_t seed = 0;
        RetryPolicy p;
        usec_t d, d2;

        if (size > 256)
                return 0;
        v = fuzz_strndup(data, size);
        for (size_t i = 0; i < size && i < 4; i++)
                seed = seed << 8 | data[i];

        check_value(data, size, v, NOW_2026);
        check_value(data, size, v, 0);
        check_value(data, size, v, (usec_t) seed * USEC_PER_SEC * 37);
        /* Up to 40 years ahead, within the RFC 850 window of 50. */
        check_round_trip(data, size, NOW_2026, seed % (40U * 366U * 86400U));
        check_round_trip(data, size, 0, seed % (40U * 366U * 86400U));

        p = (RetryPolicy) {
                .max_attempts = 1 + seed % 100,
                .multiplier = 1.0 + (double) (seed % 5900) / 100.0,
                .max_delay = (usec_t) (1 + seed % 86400) * USEC_PER_SEC,
                .jitter = seed & 1,
        };
        d = retry_delay(&p, 1 + (seed >> 8) % 200, v, NOW_2026, (uint64_t) seed * 0x9e3779b97f4a7c15ULL);
        FUZZ_CHECK(d <= p.max_delay, data, size, "delay %" PRIu64 " past the cap %" PRIu64, d, p.max_delay);
        if (retry_after_parse(v, NOW_2026, &d2) == 0)
                FUZZ_CHECK(d == MIN(d2, p.max_delay), data, size, "retry_delay() ignored a usable Retry-After");
        return 0;
}
