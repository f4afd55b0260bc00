/* SPDX-License-Identifier: MIT */
#pragma once

/* What an answer from the destination means, and when to try again (architecture §5). */

#include "util/util.h"

typedef enum DeliveryOutcome {
        OUTCOME_SENT,      /* 2xx */
        OUTCOME_RETRY,     /* 401, 403, 408, 429, 5xx but 501/505, transport, TLS, timeout */
        OUTCOME_PERMANENT, /* every other 4xx and 3xx, 501, 505, and 1xx (never a final answer) */
        _OUTCOME_MAX,
} DeliveryOutcome;

/* http_status is 0 when no HTTP answer came (transport error, TLS error, timeout). */
DeliveryOutcome retry_classify(long http_status);
const char *delivery_outcome_to_string(DeliveryOutcome o);

/* A batch of more than one event refused with 400, 413 or 422 is split in two. */
bool retry_status_splits(long http_status);

/* 401/403: the operator fixes the token and reloads; logged at error level as such. */
bool retry_status_is_auth(long http_status);

typedef struct RetryPolicy {
        unsigned max_attempts; /* RETRY_MAX_ATTEMPTS, attempts in all, >= 1 */
        double multiplier;     /* RETRY_BACKOFF_MULTIPLIER, >= 1 */
        usec_t max_delay;      /* RETRY_MAX_DELAY_S */
        bool jitter;           /* RETRY_JITTER */
} RetryPolicy;

/* The wait after failed attempt k (k = 1, 2, ...): min(multiplier^k, max_delay) seconds.
 * With jitter, a value drawn uniformly from [delay/2, delay] using random_value (any
 * 64-bit random number; ignored without jitter). */
usec_t retry_backoff(const RetryPolicy *p, unsigned attempt, uint64_t random_value);

/* Parses a Retry-After value: delta-seconds, or an HTTP-date (IMF-fixdate, and the obsolete
 * RFC 850 and asctime forms) taken relative to now_realtime (µs since the epoch). A date in
 * the past gives 0. -EINVAL for anything else. The result is not capped here. */
int retry_after_parse(const char *value, usec_t now_realtime, usec_t *ret_delay);

/* The wait before attempt k+1 after failed attempt k: the Retry-After delay when the answer
 * had a valid one, else the backoff; capped at max_delay either way. */
usec_t retry_delay(const RetryPolicy *p, unsigned attempt, const char *retry_after, usec_t now_realtime,
                   uint64_t random_value);
