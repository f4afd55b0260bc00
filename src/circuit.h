/* SPDX-License-Identifier: MIT */
#pragma once

/* The circuit breaker of DESIGN §5, with time passed in. */

#include "util.h"

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
} Circuit;

void circuit_init(Circuit *c, unsigned threshold, usec_t reset_timeout, usec_t now);
/* Applies new settings from a reload; the state is kept. */
void circuit_configure(Circuit *c, unsigned threshold, usec_t reset_timeout);

/* Whether a request may leave now. Moves open -> half_open once reset_timeout has passed;
 * in half_open exactly one request is let out (the probe) until its result is recorded.
 * Returns true when the caller may send; the caller must then record the result. */
bool circuit_allow(Circuit *c, usec_t now);

/* Record a request's result. Each returns true when the state changed (the caller logs it).
 * In half_open a success closes, a failure opens again; in closed, threshold consecutive
 * failures open; a success resets the count. Results of requests let out before the
 * circuit opened (open state) do not change it. */
bool circuit_record_success(Circuit *c, usec_t now);
bool circuit_record_failure(Circuit *c, usec_t now);

/* When the circuit, open, lets a probe out: changed_at + reset_timeout; USEC_INFINITY otherwise. */
usec_t circuit_next_probe(const Circuit *c);

/* "closed", "open", "half_open" */
const char *circuit_state_to_string(CircuitState s);
