/* SPDX-License-Identifier: MIT */
#pragma once

/* Durations and times as an operator types and reads them on a command line: "2h", "90m",
 * "1h30m", "7d" in, "3h12m" and "2026-12-07 14:03:09 UTC" out. Pure: the clock is passed in. */

#include "util/util.h"

#define TIMESPAN_MAX 32  /* format_timespan()'s buffer, "106751991d4h" and the NUL fit */
#define TIMESTAMP_MAX 32 /* format_timestamp()'s buffer */

/* One or more <number><unit> terms without spaces, units s, m, h, d, w ("1h30m"), or a bare
 * number of seconds. Returns 0, or -EINVAL for anything else (empty, a negative or fractional
 * number, an unknown unit) and -ERANGE when it does not fit in a usec_t. */
int parse_timespan(const char *s, usec_t *ret);

/* The two most significant units, rounded down: "45s", "12m30s", "3h12m", "2d4h", "0s". */
char *format_timespan(char buf[static TIMESPAN_MAX], usec_t t);

/* A CLOCK_REALTIME time in UTC: "2026-12-07 14:03:09 UTC" (human) or "2026-12-07T14:03:09Z"
 * (iso, for JSON). "-" (or "" for iso) when t is 0, meaning not known. */
char *format_timestamp(char buf[static TIMESTAMP_MAX], usec_t t, bool iso);
