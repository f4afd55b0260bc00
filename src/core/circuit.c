/* SPDX-License-Identifier: MIT */
#include <limits.h>

#include "core/circuit.h"

static const char *const circuit_state_table[_CIRCUIT_STATE_MAX] = {
        [CIRCUIT_CLOSED] = "closed",
        [CIRCUIT_OPEN] = "open",
        [CIRCUIT_HALF_OPEN] = "half_open",
};

const char *circuit_state_to_string(CircuitState s) {
        if ((unsigned) s >= _CIRCUIT_STATE_MAX)
                return NULL;
        return circuit_state_table[s];
}

void circuit_init(Circuit *c, unsigned threshold, usec_t reset_timeout, usec_t now) {
        *c = (Circuit) {
                .state = CIRCUIT_CLOSED,
                .threshold = threshold,
                .reset_timeout = reset_timeout,
                .changed_at = now,
        };
}

void circuit_configure(Circuit *c, unsigned threshold, usec_t reset_timeout) {
        /* Even when the count already reaches a lowered threshold: a reload is no failure, the
         * next failed request opens the circuit. */
        c->threshold = threshold;
        c->reset_timeout = reset_timeout;
}

static void circuit_set_state(Circuit *c, CircuitState s, usec_t now) {
        c->period++;
        c->state = s;
        c->changed_at = now;
        c->probe_in_flight = false;
        if (s == CIRCUIT_OPEN)
                c->n_opened++;
        if (s == CIRCUIT_CLOSED)
                c->failures = 0;
}

usec_t circuit_next_probe(const Circuit *c) {
        if (c->state != CIRCUIT_OPEN)
                return USEC_INFINITY;
        if (c->reset_timeout > USEC_INFINITY - c->changed_at)
                return USEC_INFINITY;
        return c->changed_at + c->reset_timeout;
}

bool circuit_would_allow(const Circuit *c, usec_t now) {
        switch (c->state) {
        case CIRCUIT_CLOSED:
                return true;
        case CIRCUIT_OPEN:
                return now >= c->changed_at && now - c->changed_at >= c->reset_timeout;
        case CIRCUIT_HALF_OPEN:
                return !c->probe_in_flight;
        default:
                return false;
        }
}

bool circuit_allow(Circuit *c, usec_t now) {
        switch (c->state) {
        case CIRCUIT_CLOSED:
                return true;

        case CIRCUIT_OPEN:
                /* A clock before changed_at (a caller mixing clocks) counts as not yet due. */
                if (now < c->changed_at || now - c->changed_at < c->reset_timeout)
                        return false;
                circuit_set_state(c, CIRCUIT_HALF_OPEN, now);
                c->probe_in_flight = true;
                return true;

        case CIRCUIT_HALF_OPEN:
                /* Normally the probe's result moves us on before another request asks; a probe
                 * that ended without a result (circuit_abandon) must not wedge the circuit. */
                if (c->probe_in_flight)
                        return false;
                c->probe_in_flight = true;
                return true;

        default:
                return false;
        }
}

static bool record_success(Circuit *c, usec_t now) {
        switch (c->state) {
        case CIRCUIT_CLOSED:
                c->failures = 0;
                return false;

        case CIRCUIT_HALF_OPEN:
                circuit_set_state(c, CIRCUIT_CLOSED, now);
                return true;

        default:
                /* Open: an answer to a request sent before the circuit opened says nothing
                 * about whether the destination has recovered since. */
                return false;
        }
}

static bool record_failure(Circuit *c, usec_t now) {
        switch (c->state) {
        case CIRCUIT_CLOSED:
                if (c->failures < UINT_MAX)
                        c->failures++;
                if (c->failures < c->threshold)
                        return false;
                circuit_set_state(c, CIRCUIT_OPEN, now);
                return true;

        case CIRCUIT_HALF_OPEN:
                circuit_set_state(c, CIRCUIT_OPEN, now);
                return true;

        default:
                return false;
        }
}

bool circuit_record(Circuit *c, uint64_t period, bool success, usec_t now) {
        if (period != c->period)
                return false;
        return success ? record_success(c, now) : record_failure(c, now);
}

void circuit_abandon(Circuit *c, uint64_t period) {
        if (c->state == CIRCUIT_HALF_OPEN && period == c->period)
                c->probe_in_flight = false;
}

bool circuit_record_success(Circuit *c, usec_t now) {
        return circuit_record(c, c->period, true, now);
}

bool circuit_record_failure(Circuit *c, usec_t now) {
        return circuit_record(c, c->period, false, now);
}
