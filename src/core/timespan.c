/* SPDX-License-Identifier: MIT */
#include <stdio.h>

#include "core/timespan.h"

static const struct {
        char unit;
        usec_t usec;
} units[] = {
        { 'w', 7 * 24 * 3600 * USEC_PER_SEC },
        { 'd', 24 * 3600 * USEC_PER_SEC },
        { 'h', 3600 * USEC_PER_SEC },
        { 'm', 60 * USEC_PER_SEC },
        { 's', USEC_PER_SEC },
};

static usec_t unit_usec(char c) {
        for (size_t i = 0; i < ELEMENTSOF(units); i++)
                if (units[i].unit == c)
                        return units[i].usec;
        return 0;
}

int parse_timespan(const char *s, usec_t *ret) {
        usec_t total = 0;
        const char *p = s;
        bool terms = false;

        if (isempty(s))
                return -EINVAL;
        while (*p) {
                uint64_t n = 0;
                usec_t mult;

                if (*p < '0' || *p > '9')
                        return -EINVAL;
                for (; *p >= '0' && *p <= '9'; p++) {
                        if (n > (UINT64_MAX - (uint64_t) (*p - '0')) / 10)
                                return -ERANGE;
                        n = n * 10 + (uint64_t) (*p - '0');
                }
                if (*p == '\0') {
                        /* A bare number is seconds, but "1h30" is a typo rather than 1h and 30 s. */
                        if (terms)
                                return -EINVAL;
                        mult = USEC_PER_SEC;
                } else {
                        mult = unit_usec(*p);
                        if (mult == 0)
                                return -EINVAL;
                        p++;
                }
                if (n > (USEC_INFINITY - 1 - total) / mult)
                        return -ERANGE;
                total += n * mult;
                terms = true;
        }
        *ret = total;
        return 0;
}

char *format_timespan(char buf[static TIMESPAN_MAX], usec_t t) {
        usec_t sec = t / USEC_PER_SEC;
        size_t i;

        for (i = 0; i + 1 < ELEMENTSOF(units); i++)
                if (sec * USEC_PER_SEC >= units[i].usec)
                        break;
        {
                usec_t big = units[i].usec / USEC_PER_SEC, n = sec / big, rest = sec % big;

                /* Weeks read worse than days: "16d", not "2w2d". */
                if (units[i].unit == 'w') {
                        i++;
                        big = units[i].usec / USEC_PER_SEC;
                        n = sec / big;
                        rest = sec % big;
                }
                if (i + 1 < ELEMENTSOF(units) && rest / (units[i + 1].usec / USEC_PER_SEC) > 0)
                        snprintf(buf, TIMESPAN_MAX, "%llu%c%llu%c", (unsigned long long) n, units[i].unit,
                                 (unsigned long long) (rest / (units[i + 1].usec / USEC_PER_SEC)),
                                 units[i + 1].unit);
                else
                        snprintf(buf, TIMESPAN_MAX, "%llu%c", (unsigned long long) n, units[i].unit);
        }
        return buf;
}

char *format_timestamp(char buf[static TIMESTAMP_MAX], usec_t t, bool iso) {
        time_t sec = (time_t) (t / USEC_PER_SEC);
        struct tm tm;

        if (t == 0 || !gmtime_r(&sec, &tm)) {
                snprintf(buf, TIMESTAMP_MAX, "%s", iso ? "" : "-");
                return buf;
        }
        snprintf(buf, TIMESTAMP_MAX, iso ? "%04d-%02d-%02dT%02d:%02d:%02dZ" : "%04d-%02d-%02d %02d:%02d:%02d UTC",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        return buf;
}
