/* SPDX-License-Identifier: MIT */
#include <criterion/criterion.h>

#include "core/circuit.h"

#define S(x) ((usec_t) (x) * USEC_PER_SEC)

/* The injected clock: starts well away from 0 so that "changed_at = 0" mistakes show. */
static usec_t clock_now;

static void tick(usec_t d) {
        clock_now += d;
}

static void setup(void) {
        clock_now = S(1000);
}

/* threshold 3, reset timeout 60 s, opened at the current clock_now. */
static void open_circuit(Circuit *c) {
        circuit_init(c, 3, S(60), clock_now);
        for (unsigned i = 0; i < 3; i++) {
                cr_assert(circuit_allow(c, clock_now));
                cr_assert_eq(circuit_record_failure(c, clock_now), i == 2);
        }
        cr_assert_eq(c->state, CIRCUIT_OPEN);
}

TestSuite(circuit, .init = setup);

Test(circuit, init) {
        Circuit c;

        circuit_init(&c, 5, S(60), clock_now);
        cr_assert_eq(c.state, CIRCUIT_CLOSED);
        cr_assert_eq(c.threshold, 5);
        cr_assert_eq(c.reset_timeout, S(60));
        cr_assert_eq(c.failures, 0);
        cr_assert_eq(c.changed_at, clock_now);
        cr_assert_not(c.probe_in_flight);
        cr_assert_eq(c.n_opened, 0);
        cr_assert_eq(circuit_next_probe(&c), USEC_INFINITY);
}

Test(circuit, state_to_string) {
        cr_assert_str_eq(circuit_state_to_string(CIRCUIT_CLOSED), "closed");
        cr_assert_str_eq(circuit_state_to_string(CIRCUIT_OPEN), "open");
        cr_assert_str_eq(circuit_state_to_string(CIRCUIT_HALF_OPEN), "half_open");
        cr_assert_null(circuit_state_to_string(_CIRCUIT_STATE_MAX));
        cr_assert_null(circuit_state_to_string((CircuitState) -1));
}

Test(circuit, closed_lets_everything_out) {
        Circuit c;

        circuit_init(&c, 3, S(60), clock_now);
        for (unsigned i = 0; i < 100; i++)
                cr_assert(circuit_allow(&c, clock_now));
        cr_assert_eq(c.state, CIRCUIT_CLOSED);
}

Test(circuit, closed_opens_after_threshold_consecutive_failures) {
        Circuit c;

        circuit_init(&c, 3, S(60), clock_now);
        cr_assert_not(circuit_record_failure(&c, clock_now));
        cr_assert_eq(c.failures, 1);
        tick(S(1));
        cr_assert_not(circuit_record_failure(&c, clock_now));
        cr_assert_eq(c.failures, 2);
        cr_assert_eq(c.state, CIRCUIT_CLOSED);
        tick(S(1));
        cr_assert(circuit_record_failure(&c, clock_now));
        cr_assert_eq(c.state, CIRCUIT_OPEN);
        cr_assert_eq(c.changed_at, clock_now);
        cr_assert_eq(c.n_opened, 1);
        cr_assert_eq(circuit_next_probe(&c), clock_now + S(60));
}

Test(circuit, closed_success_resets_count) {
        Circuit c;

        circuit_init(&c, 3, S(60), clock_now);
        cr_assert_not(circuit_record_failure(&c, clock_now));
        cr_assert_not(circuit_record_failure(&c, clock_now));
        cr_assert_not(circuit_record_success(&c, clock_now));
        cr_assert_eq(c.failures, 0);
        /* Two more do not open it: the count started again. */
        cr_assert_not(circuit_record_failure(&c, clock_now));
        cr_assert_not(circuit_record_failure(&c, clock_now));
        cr_assert_eq(c.state, CIRCUIT_CLOSED);
        cr_assert(circuit_record_failure(&c, clock_now));
        cr_assert_eq(c.state, CIRCUIT_OPEN);
}

Test(circuit, threshold_one) {
        Circuit c;

        circuit_init(&c, 1, S(60), clock_now);
        cr_assert(circuit_record_failure(&c, clock_now));
        cr_assert_eq(c.state, CIRCUIT_OPEN);
}

Test(circuit, open_lets_nothing_out_until_timeout) {
        Circuit c;
        usec_t opened;

        open_circuit(&c);
        opened = clock_now;

        for (unsigned i = 0; i < 59; i++) {
                cr_assert_not(circuit_allow(&c, clock_now), "after %u s", i);
                cr_assert_eq(c.state, CIRCUIT_OPEN);
                tick(S(1));
        }
        tick(S(1) - 1);
        cr_assert_not(circuit_allow(&c, clock_now)); /* 1 µs short */
        cr_assert_eq(c.state, CIRCUIT_OPEN);
        cr_assert_eq(c.changed_at, opened);
        cr_assert_eq(circuit_next_probe(&c), opened + S(60));
}

Test(circuit, open_to_half_open_lets_one_probe_out) {
        Circuit c;

        open_circuit(&c);
        tick(S(60));

        cr_assert(circuit_allow(&c, clock_now));
        cr_assert_eq(c.state, CIRCUIT_HALF_OPEN);
        cr_assert_eq(c.changed_at, clock_now);
        cr_assert(c.probe_in_flight);
        cr_assert_eq(circuit_next_probe(&c), USEC_INFINITY);

        /* The probe is exclusive, however long it takes. */
        for (unsigned i = 0; i < 100; i++) {
                tick(S(10));
                cr_assert_not(circuit_allow(&c, clock_now));
                cr_assert_eq(c.state, CIRCUIT_HALF_OPEN);
        }
}

Test(circuit, half_open_success_closes) {
        Circuit c;

        open_circuit(&c);
        tick(S(61));
        cr_assert(circuit_allow(&c, clock_now));
        tick(S(2));
        cr_assert(circuit_record_success(&c, clock_now));
        cr_assert_eq(c.state, CIRCUIT_CLOSED);
        cr_assert_eq(c.changed_at, clock_now);
        cr_assert_eq(c.failures, 0);
        cr_assert_not(c.probe_in_flight);
        cr_assert_eq(c.n_opened, 1);

        /* Closed again: everything goes, and the full threshold is needed to open it. */
        cr_assert(circuit_allow(&c, clock_now));
        cr_assert(circuit_allow(&c, clock_now));
        cr_assert_not(circuit_record_failure(&c, clock_now));
        cr_assert_not(circuit_record_failure(&c, clock_now));
        cr_assert(circuit_record_failure(&c, clock_now));
        cr_assert_eq(c.n_opened, 2);
}

Test(circuit, half_open_failure_opens_again) {
        Circuit c;

        open_circuit(&c);
        tick(S(60));
        cr_assert(circuit_allow(&c, clock_now));
        tick(S(5));
        cr_assert(circuit_record_failure(&c, clock_now));
        cr_assert_eq(c.state, CIRCUIT_OPEN);
        cr_assert_eq(c.changed_at, clock_now);
        cr_assert_not(c.probe_in_flight);
        cr_assert_eq(c.n_opened, 2);
        cr_assert_eq(circuit_next_probe(&c), clock_now + S(60));

        /* The reset timeout runs from the failed probe, not from the first opening. */
        tick(S(59));
        cr_assert_not(circuit_allow(&c, clock_now));
        tick(S(1));
        cr_assert(circuit_allow(&c, clock_now));
        cr_assert_eq(c.state, CIRCUIT_HALF_OPEN);
        cr_assert_not(circuit_allow(&c, clock_now));
        cr_assert(circuit_record_success(&c, clock_now));
        cr_assert_eq(c.state, CIRCUIT_CLOSED);
}

Test(circuit, results_while_open_are_ignored) {
        Circuit c;
        usec_t opened;

        open_circuit(&c);
        opened = clock_now;
        tick(S(10));

        /* Answers to requests that left before the circuit opened. */
        cr_assert_not(circuit_record_success(&c, clock_now));
        cr_assert_eq(c.state, CIRCUIT_OPEN);
        cr_assert_not(circuit_record_failure(&c, clock_now));
        cr_assert_not(circuit_record_success(&c, clock_now));
        cr_assert_eq(c.state, CIRCUIT_OPEN);
        cr_assert_eq(c.changed_at, opened);
        cr_assert_eq(c.n_opened, 1);
        cr_assert_eq(circuit_next_probe(&c), opened + S(60));

        /* Nor do they delay or hasten the probe. */
        tick(S(49));
        cr_assert_not(circuit_allow(&c, clock_now));
        tick(S(1));
        cr_assert(circuit_allow(&c, clock_now));
}

Test(circuit, probe_let_out_again_when_it_left_no_result) {
        Circuit c;

        /* A caller that drops the probe (shutdown, a cancelled request) without recording a
         * result must not wedge the circuit half open for ever. */
        open_circuit(&c);
        tick(S(60));
        cr_assert(circuit_allow(&c, clock_now));
        c.probe_in_flight = false;
        cr_assert(circuit_allow(&c, clock_now));
        cr_assert_not(circuit_allow(&c, clock_now));
}

Test(circuit, configure_keeps_state) {
        Circuit c;
        usec_t opened;

        /* Closed with a count: a lower threshold takes effect at the next failure. */
        circuit_init(&c, 5, S(60), clock_now);
        cr_assert_not(circuit_record_failure(&c, clock_now));
        cr_assert_not(circuit_record_failure(&c, clock_now));
        cr_assert_not(circuit_record_failure(&c, clock_now));
        circuit_configure(&c, 2, S(30));
        cr_assert_eq(c.threshold, 2);
        cr_assert_eq(c.reset_timeout, S(30));
        cr_assert_eq(c.state, CIRCUIT_CLOSED);
        cr_assert_eq(c.failures, 3);
        cr_assert(circuit_record_failure(&c, clock_now));
        cr_assert_eq(c.state, CIRCUIT_OPEN);
        opened = clock_now;

        /* Open: stays open, and the new timeout counts from the same opening. */
        circuit_configure(&c, 2, S(10));
        cr_assert_eq(c.state, CIRCUIT_OPEN);
        cr_assert_eq(c.changed_at, opened);
        cr_assert_eq(circuit_next_probe(&c), opened + S(10));
        tick(S(9));
        cr_assert_not(circuit_allow(&c, clock_now));
        circuit_configure(&c, 2, S(120));
        tick(S(100));
        cr_assert_not(circuit_allow(&c, clock_now));
        circuit_configure(&c, 2, S(5));
        cr_assert(circuit_allow(&c, clock_now));
        cr_assert_eq(c.state, CIRCUIT_HALF_OPEN);

        /* Half open: the probe stays the only one out. */
        circuit_configure(&c, 7, S(5));
        cr_assert_eq(c.state, CIRCUIT_HALF_OPEN);
        cr_assert(c.probe_in_flight);
        cr_assert_not(circuit_allow(&c, clock_now));
        cr_assert(circuit_record_success(&c, clock_now));

        /* Raised threshold applies once closed. */
        for (unsigned i = 0; i < 6; i++)
                cr_assert_not(circuit_record_failure(&c, clock_now));
        cr_assert(circuit_record_failure(&c, clock_now));
}

Test(circuit, zero_reset_timeout) {
        Circuit c;

        circuit_init(&c, 1, 0, clock_now);
        cr_assert(circuit_record_failure(&c, clock_now));
        cr_assert_eq(circuit_next_probe(&c), clock_now);
        cr_assert(circuit_allow(&c, clock_now));
        cr_assert_eq(c.state, CIRCUIT_HALF_OPEN);
        cr_assert_not(circuit_allow(&c, clock_now));
}

Test(circuit, clock_before_opening_is_not_due) {
        Circuit c;

        open_circuit(&c);
        cr_assert_not(circuit_allow(&c, clock_now - S(1)));
        cr_assert_not(circuit_allow(&c, 0));
        cr_assert_eq(c.state, CIRCUIT_OPEN);
}

Test(circuit, next_probe_saturates) {
        Circuit c;

        circuit_init(&c, 1, USEC_INFINITY - 10, clock_now);
        cr_assert(circuit_record_failure(&c, clock_now));
        cr_assert_eq(circuit_next_probe(&c), USEC_INFINITY);
        cr_assert_not(circuit_allow(&c, USEC_INFINITY - 1));
}

Test(circuit, long_run) {
        Circuit c;

        /* Many cycles: n_opened counts every transition into open, from closed or half open. */
        circuit_init(&c, 2, S(60), clock_now);
        for (unsigned cycle = 0; cycle < 50; cycle++) {
                cr_assert_not(circuit_record_failure(&c, clock_now));
                cr_assert(circuit_record_failure(&c, clock_now));
                tick(S(60));
                cr_assert(circuit_allow(&c, clock_now));
                cr_assert(circuit_record_failure(&c, clock_now));
                tick(S(60));
                cr_assert(circuit_allow(&c, clock_now));
                cr_assert(circuit_record_success(&c, clock_now));
                cr_assert_eq(c.state, CIRCUIT_CLOSED);
        }
        cr_assert_eq(c.n_opened, 100);
}

Test(circuit, period_changes_at_every_transition) {
        Circuit c;
        uint64_t p0;

        circuit_init(&c, 1, S(60), clock_now);
        p0 = circuit_period(&c);
        cr_assert(circuit_allow(&c, clock_now));
        cr_assert_eq(circuit_period(&c), p0, "letting a request out is no transition");
        cr_assert(circuit_record_failure(&c, clock_now));
        cr_assert_neq(circuit_period(&c), p0);
        p0 = circuit_period(&c);
        tick(S(60));
        cr_assert(circuit_allow(&c, clock_now));
        cr_assert_neq(circuit_period(&c), p0, "open -> half_open inside circuit_allow");
}

Test(circuit, results_of_an_earlier_period_do_not_count) {
        Circuit c;
        uint64_t before, probe;

        /* A and B leave while closed; A's failure opens the circuit (threshold 1). */
        circuit_init(&c, 1, S(60), clock_now);
        cr_assert(circuit_allow(&c, clock_now));
        cr_assert(circuit_allow(&c, clock_now));
        before = circuit_period(&c);
        cr_assert(circuit_record(&c, before, false, clock_now));
        cr_assert_eq(c.state, CIRCUIT_OPEN);

        /* The probe leaves; B, slower than the reset timeout, answers while it is out. */
        tick(S(60));
        cr_assert(circuit_allow(&c, clock_now));
        probe = circuit_period(&c);
        cr_assert_eq(c.state, CIRCUIT_HALF_OPEN);
        cr_assert_not(circuit_record(&c, before, false, clock_now), "B's failure is not the probe's");
        cr_assert_eq(c.state, CIRCUIT_HALF_OPEN);
        cr_assert_not(circuit_record(&c, before, true, clock_now), "nor is B's success");
        cr_assert_eq(c.state, CIRCUIT_HALF_OPEN);
        cr_assert_not(circuit_allow(&c, clock_now), "still one probe only");

        /* The probe's own answer decides. */
        cr_assert(circuit_record(&c, probe, true, clock_now));
        cr_assert_eq(c.state, CIRCUIT_CLOSED);

        /* Closed again: a straggler from before the opening changes nothing either. */
        cr_assert_not(circuit_record(&c, before, false, clock_now));
        cr_assert_eq(c.state, CIRCUIT_CLOSED);
        cr_assert_eq(c.failures, 0);
        cr_assert(circuit_record(&c, circuit_period(&c), false, clock_now));
        cr_assert_eq(c.state, CIRCUIT_OPEN);
}

Test(circuit, probe_failure_of_its_own_period_opens_again) {
        Circuit c;
        uint64_t probe;
        usec_t reopened;

        open_circuit(&c);
        tick(S(60));
        cr_assert(circuit_allow(&c, clock_now));
        probe = circuit_period(&c);
        tick(S(2));
        reopened = clock_now;
        cr_assert(circuit_record(&c, probe, false, clock_now));
        cr_assert_eq(c.state, CIRCUIT_OPEN);
        cr_assert_eq(circuit_next_probe(&c), reopened + S(60));
        cr_assert_not(circuit_record(&c, probe, true, clock_now), "a second result of that probe is stale");
        cr_assert_eq(c.state, CIRCUIT_OPEN);
}

Test(circuit, abandoned_probe_frees_the_slot) {
        Circuit c;
        uint64_t probe, other;

        open_circuit(&c);
        tick(S(60));
        cr_assert(circuit_allow(&c, clock_now));
        probe = circuit_period(&c);
        cr_assert_not(circuit_allow(&c, clock_now));

        /* Abandoning a request of another period does not let a second probe out. */
        circuit_abandon(&c, probe - 1);
        cr_assert_not(circuit_allow(&c, clock_now));

        circuit_abandon(&c, probe);
        cr_assert_eq(c.state, CIRCUIT_HALF_OPEN);
        cr_assert(circuit_allow(&c, clock_now), "the next request is the probe");
        other = circuit_period(&c);
        cr_assert_eq(other, probe);
        cr_assert_not(circuit_allow(&c, clock_now));
        cr_assert(circuit_record(&c, other, true, clock_now));
        cr_assert_eq(c.state, CIRCUIT_CLOSED);

        /* In closed, abandoning changes nothing. */
        circuit_abandon(&c, circuit_period(&c));
        cr_assert_eq(c.state, CIRCUIT_CLOSED);
        cr_assert(circuit_allow(&c, clock_now));
}

/* The question without the side effects: it always agrees with circuit_allow() and leaves the
 * circuit as it was, in every state and around the reset timeout. */
Test(circuit, would_allow_agrees_and_changes_nothing) {
        Circuit c;
        unsigned checked = 0;

        open_circuit(&c);
        for (unsigned step = 0; step < 200; step++) {
                Circuit before = c, copy;
                bool would = circuit_would_allow(&c, clock_now);

                cr_assert_eq(memcmp(&before, &c, sizeof c), 0, "circuit_would_allow changed the circuit");
                copy = c;
                cr_assert_eq(would, circuit_allow(&copy, clock_now), "step %u, state %s", step,
                             circuit_state_to_string(c.state));
                checked++;

                /* Walk through the states: time passes, probes go out and fail or succeed. */
                switch (step % 5) {
                case 0:
                        tick(S(20));
                        break;
                case 1:
                        if (circuit_allow(&c, clock_now))
                                (void) circuit_record(&c, circuit_period(&c), step % 3 == 0, clock_now);
                        break;
                case 2:
                        tick(S(45));
                        break;
                case 3:
                        (void) circuit_allow(&c, clock_now);
                        break;
                default:
                        if (c.state == CIRCUIT_CLOSED)
                                (void) circuit_record_failure(&c, clock_now);
                        break;
                }
        }
        cr_assert_eq(checked, 200);
}
