/* SPDX-License-Identifier: MIT */
#include <math.h>

#include "core/retry.h"

DeliveryOutcome retry_classify(long http_status) {
        /* No HTTP answer at all: the request may never have reached the destination. */
        if (http_status == 0)
                return OUTCOME_RETRY;

        if (http_status >= 200 && http_status <= 299)
                return OUTCOME_SENT;

        switch (http_status) {
        case 401:
        case 403: /* a token problem: fixed by the operator and a reload, not by dropping data */
        case 408:
        case 429:
                return OUTCOME_RETRY;
        case 501: /* Not Implemented and HTTP Version Not Supported do not change by waiting */
        case 505:
                return OUTCOME_PERMANENT;
        default:
                break;
        }

        if (http_status >= 500 && http_status <= 599)
                return OUTCOME_RETRY;

        /* Every other 4xx, 3xx (redirects are never followed), 1xx (never a final answer) and
         * anything outside 100-599, which no conforming server sends. */
        return OUTCOME_PERMANENT;
}

static const char *const delivery_outcome_table[_OUTCOME_MAX] = {
        [OUTCOME_SENT] = "sent",
        [OUTCOME_RETRY] = "retry",
        [OUTCOME_PERMANENT] = "permanent",
};

const char *delivery_outcome_to_string(DeliveryOutcome o) {
        if ((unsigned) o >= _OUTCOME_MAX)
                return NULL;
        return delivery_outcome_table[o];
}

bool retry_status_splits(long http_status) {
        return http_status == 400 || http_status == 413 || http_status == 422;
}

bool retry_status_is_auth(long http_status) {
        return http_status == 401 || http_status == 403;
}

usec_t retry_backoff(const RetryPolicy *p, unsigned attempt, uint64_t random_value) {
        usec_t delay, lo, span;
        double d;

        /* In double, so that a big attempt number or multiplier gives +inf (and so the cap)
         * instead of wrapping around an integer. */
        d = pow(p->multiplier, (double) attempt) * (double) USEC_PER_SEC;
        if (isnan(d) || d >= (double) p->max_delay)
                delay = p->max_delay;
        else if (d <= 0)
                delay = 0;
        else
                /* d < max_delay <= 2^64 here, and adding 0.5 cannot reach 2^64 (the spacing of
                 * doubles up there is far above 0.5), so the conversion is defined. */
                delay = MIN((usec_t) (d + 0.5), p->max_delay);

        if (!p->jitter || delay == 0)
                return delay;

        /* Uniform over [delay/2, delay]. span <= 2^63 + 1, so it cannot overflow; the modulo
         * bias is below span/2^64, nothing next to the scale of a retry wait. */
        lo = delay / 2;
        span = delay - lo + 1;
        return lo + random_value % span;
}

/* RFC 9110 §5.6.1 uses OWS (SP / HTAB); CR and LF are accepted as well because a header value
 * may reach us with its line ending still attached. */
static bool is_ws(char c) {
        return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static bool is_digit(char c) {
        return c >= '0' && c <= '9';
}

/* Exactly n digits. */
static bool parse_digits(const char **p, unsigned n, int *ret) {
        int v = 0;

        for (unsigned i = 0; i < n; i++) {
                if (!is_digit((*p)[i]))
                        return false;
                v = v * 10 + ((*p)[i] - '0');
        }
        *p += n;
        *ret = v;
        return true;
}

static bool parse_literal(const char **p, const char *lit) {
        const char *q = startswith(*p, lit);

        if (!q)
                return false;
        *p = q;
        return true;
}

/* The index of the name at *p, or -1. Case-sensitive, as RFC 9110 §5.6.7 says. */
static int parse_name(const char **p, const char *const *names, size_t n_names) {
        for (size_t i = 0; i < n_names; i++)
                if (parse_literal(p, names[i]))
                        return (int) i;
        return -1;
}

static const char *const day_names[7] = { "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun" };
static const char *const day_names_long[7] = {
        "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday",
};
static const char *const month_names[12] = {
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
};

static bool parse_month(const char **p, int *ret) {
        int m = parse_name(p, month_names, ELEMENTSOF(month_names));

        if (m < 0)
                return false;
        *ret = m;
        return true;
}

/* hour ":" minute ":" second */
static bool parse_time_of_day(const char **p, struct tm *tm) {
        return parse_digits(p, 2, &tm->tm_hour) && parse_literal(p, ":") &&
               parse_digits(p, 2, &tm->tm_min) && parse_literal(p, ":") &&
               parse_digits(p, 2, &tm->tm_sec);
}

static bool is_leap_year(int y) {
        return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int month, int year) {
        static const int days[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };

        return month == 1 && is_leap_year(year) ? 29 : days[month];
}

/* RFC 9110 §5.6.7: a two-digit year that would lie more than 50 years in the future is the
 * most recent past year with those digits. Taking the year from the window
 * (current - 50, current + 50] does that, and stays right past the turn of a century. */
static int rfc850_year(int yy, int current_year) {
        int y = current_year - current_year % 100 + yy;

        if (y > current_year + 50)
                y -= 100;
        else if (y <= current_year - 50)
                y += 100;
        return y;
}

/* IMF-fixdate:  Sun, 06 Nov 1994 08:49:37 GMT
 * RFC 850:      Sunday, 06-Nov-94 08:49:37 GMT
 * asctime:      Sun Nov  6 08:49:37 1994
 * By hand, not with strptime(): that one follows the locale and accepts much that is not an
 * HTTP-date. The day name is checked for form only; the date alone says when. */
static int parse_http_date(const char *s, int current_year, time_t *ret) {
        struct tm tm = { 0 };
        const char *p = s;
        int year;

        if (parse_name(&p, day_names_long, ELEMENTSOF(day_names_long)) >= 0) {
                int yy;

                if (!(parse_literal(&p, ", ") && parse_digits(&p, 2, &tm.tm_mday) &&
                      parse_literal(&p, "-") && parse_month(&p, &tm.tm_mon) && parse_literal(&p, "-") &&
                      parse_digits(&p, 2, &yy) && parse_literal(&p, " ") && parse_time_of_day(&p, &tm) &&
                      parse_literal(&p, " GMT")))
                        return -EINVAL;
                year = rfc850_year(yy, current_year);
        } else if (parse_name(&p, day_names, ELEMENTSOF(day_names)) >= 0) {
                if (parse_literal(&p, ", ")) {
                        if (!(parse_digits(&p, 2, &tm.tm_mday) && parse_literal(&p, " ") &&
                              parse_month(&p, &tm.tm_mon) && parse_literal(&p, " ") &&
                              parse_digits(&p, 4, &year) && parse_literal(&p, " ") &&
                              parse_time_of_day(&p, &tm) && parse_literal(&p, " GMT")))
                                return -EINVAL;
                } else if (parse_literal(&p, " ")) {
                        if (!(parse_month(&p, &tm.tm_mon) && parse_literal(&p, " ")))
                                return -EINVAL;
                        /* date3: 2DIGIT or SP 1DIGIT */
                        if (!(parse_digits(&p, 2, &tm.tm_mday) ||
                              (parse_literal(&p, " ") && parse_digits(&p, 1, &tm.tm_mday))))
                                return -EINVAL;
                        if (!(parse_literal(&p, " ") && parse_time_of_day(&p, &tm) &&
                              parse_literal(&p, " ") && parse_digits(&p, 4, &year)))
                                return -EINVAL;
                } else
                        return -EINVAL;
        } else
                return -EINVAL;

        if (*p != '\0')
                return -EINVAL;

        /* Second 60 is a leap second (RFC 9110 allows it); timegm() folds it into the next
         * minute. */
        if (tm.tm_mday < 1 || tm.tm_mday > days_in_month(tm.tm_mon, year) || tm.tm_hour > 23 ||
            tm.tm_min > 59 || tm.tm_sec > 60)
                return -EINVAL;

        tm.tm_year = year - 1900;
        tm.tm_isdst = 0;
        *ret = timegm(&tm);
        return 0;
}

int retry_after_parse(const char *value, usec_t now_realtime, usec_t *ret_delay) {
        char buf[64];
        const char *b, *e;
        struct tm now_tm;
        time_t now_s, t;
        size_t n;
        int r;

        if (!value)
                return -EINVAL;

        b = value;
        while (is_ws(*b))
                b++;
        e = b + strlen(b);
        while (e > b && is_ws(e[-1]))
                e--;
        if (b == e)
                return -EINVAL;

        if (is_digit(*b)) {
                const usec_t max_seconds = USEC_INFINITY / USEC_PER_SEC;
                usec_t seconds = 0;

                /* Saturates: a value past what usec_t holds means "very long", and the caller
                 * caps it at max_delay anyway. */
                for (const char *p = b; p < e; p++) {
                        if (!is_digit(*p))
                                return -EINVAL;
                        if (seconds <= max_seconds)
                                seconds = seconds * 10 + (usec_t) (*p - '0');
                }
                *ret_delay = seconds > max_seconds ? USEC_INFINITY : seconds * USEC_PER_SEC;
                return 0;
        }

        /* The longest HTTP-date (RFC 850 with "Wednesday") has 33 characters. */
        n = (size_t) (e - b);
        if (n >= sizeof(buf))
                return -EINVAL;
        memcpy(buf, b, n);
        buf[n] = '\0';

        now_s = (time_t) (now_realtime / USEC_PER_SEC);
        if (!gmtime_r(&now_s, &now_tm))
                return -EINVAL;

        r = parse_http_date(buf, now_tm.tm_year + 1900, &t);
        if (r < 0)
                return r;

        /* Dates before 1970 are in the past too; validated fields keep t within years 0-9999,
         * so t * USEC_PER_SEC fits. */
        if (t <= 0 || (usec_t) t * USEC_PER_SEC <= now_realtime)
                *ret_delay = 0;
        else
                *ret_delay = (usec_t) t * USEC_PER_SEC - now_realtime;
        return 0;
}

usec_t retry_delay(const RetryPolicy *p, unsigned attempt, const char *retry_after, usec_t now_realtime,
                   uint64_t random_value) {
        usec_t d;

        /* The destination said when: no jitter on top of it. An unusable value is as good as
         * none. */
        if (retry_after && retry_after_parse(retry_after, now_realtime, &d) >= 0)
                return MIN(d, p->max_delay);

        return MIN(retry_backoff(p, attempt, random_value), p->max_delay);
}
