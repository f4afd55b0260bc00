/* SPDX-License-Identifier: MIT */
#pragma once

/* The circuit breaker of architecture §5, with time passed in. */

#include "util/util.h"

typedef enum CircuitState {
        CIRCUIT_CLOSED,
        CIRCUIT_OPEN,
        CIRCUIT_HALF_OPEN,
        _CIRCUIT_STATE_MAX,
} CircuitState;

typedef struct Circuit {
        CircuitState state;
        unsigned threshold;      /* CIRCUIT_FAILURE_THRESHOLD, consecutive failures that open it */
        usec_t reset_timeout;    /* CIRCUIT_RESET_TIMEOUT_S */
        unsigned failures;       /* consecutive failed requests while closed */
        usec_t changed_at;       /* time of the last transition (the clock the caller uses) */
        bool probe_in_flight;    /* half_open: the one probe request has been let out */
        uint64_t n_opened;       /* transitions into open, for metrics */
        uint64_t period;         /* bumped at every transition: which state a request was let out in */
} Circuit;

void circuit_init(Circuit *c, unsigned threshold, usec_t reset_timeout, usec_t now);
/* Applies new settings from a reload; the state is kept. */
void circuit_configure(Circuit *c, unsigned threshold, usec_t reset_timeout);

/* Whether a request may leave now. Moves open -> half_open once reset_timeout has passed;
 * in half_open exactly one request is let out (the probe) until its result is recorded.
 * Returns true when the caller may send; the caller must then record the result. */
bool circuit_allow(Circuit *c, usec_t now);

/* Whether circuit_allow() would say yes now, without letting anything out. */
bool circuit_would_allow(const Circuit *c, usec_t now);

/* The period a request let out now belongs to: read it right after circuit_allow() said yes,
 * keep it with the request, and pass it back with the result. */
static inline uint64_t circuit_period(const Circuit *c) {
        return c->period;
}

/* Records the result of a request let out in period. Returns true when the state changed (the
 * caller logs it). In half_open a success closes, a failure opens again; in closed, threshold
 * consecutive failures open; a success resets the count. Only results of requests let out in
 * the current period count: in half_open that is the probe alone, and an answer to a request
 * let out before the last transition (before the circuit opened, say, or a slow one overtaken
 * by the probe) says nothing about the destination now. */
bool circuit_record(Circuit *c, uint64_t period, bool success, usec_t now);

/* A request let out in period ended without a result (it could not be started, or was
 * dropped): if it was the probe, another one may go. */
void circuit_abandon(Circuit *c, uint64_t period);

/* The result of a request let out in the current period. */
bool circuit_record_success(Circuit *c, usec_t now);
bool circuit_record_failure(Circuit *c, usec_t now);

/* When the circuit, open, lets a probe out: changed_at + reset_timeout; USEC_INFINITY otherwise. */
usec_t circuit_next_probe(const Circuit *c);

/* "closed", "open", "half_open" */
const char *circuit_state_to_string(CircuitState s);
