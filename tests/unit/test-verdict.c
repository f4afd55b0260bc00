/* SPDX-License-Identifier: MIT */
/* The rows of architecture §5, one by one: what verdict_decide() makes of each moment in a batch's
 * life. */
#include <criterion/criterion.h>
#include <inttypes.h>

#include "core/verdict.h"

#define S USEC_PER_SEC

static const RetryPolicy policy = {
        .max_attempts = 3,
        .multiplier = 2,
        .max_delay = 300 * S,
        .jitter = false,
};

/* Tue, 01 Dec 2026 00:00:00 GMT */
#define NOW_REALTIME (1796083200ULL * S)

/* Conditions a row may add. */
#define LETS_OUT  (1u << 0) /* the circuit would let a request out */
#define OLD_EPOCH (1u << 1) /* the broker connection the messages came on is gone */
#define STOPPING  (1u << 2)
#define OTHERS    (1u << 3) /* another batch was answered 2xx since this one's round began */
#define EXPIRING  (1u << 4) /* a message nears the broker's consumer timeout */
#define BLIND     (1u << 5) /* a half of a split made without evidence */

typedef struct Row {
        const char *what;
        BatchMoment moment;
        long status;
        unsigned attempt;
        size_t n_events;
        unsigned flags;
        const char *retry_after;
        unsigned delivery_count;
        VerdictAction action;
        BatchStatus row;
        Settlement settlement;
        usec_t delay;
        bool new_round;
        DeadLetterKind dead_letter;
        bool blind;
} Row;

#define DELIVERY_LIMIT 20

static VerdictInput row_input(const Row *r) {
        return (VerdictInput) {
                .moment = r->moment,
                .http_status = r->status,
                .retry_after = r->retry_after,
                .attempt = r->attempt,
                .n_events = r->n_events,
                .circuit_lets_out = r->flags & LETS_OUT,
                .epoch_current = !(r->flags & OLD_EPOCH),
                .stopping = r->flags & STOPPING,
                .others_got_through = r->flags & OTHERS,
                .split_blind = r->flags & BLIND,
                .expiring = r->flags & EXPIRING,
                .delivery_count = r->delivery_count,
                .delivery_limit = DELIVERY_LIMIT,
                .now_realtime = NOW_REALTIME,
        };
}

#define R BATCH_MOMENT_READY
#define A BATCH_MOMENT_ANSWERED
#define U BATCH_MOMENT_UNSTARTED
#define B BATCH_MOMENT_BACKING_OFF
#define SEND 0, VERDICT_SEND, 0, 0, 0, false, 0
#define HOLD 0, VERDICT_HOLD, 0, 0, 0, false, 0
#define RETRY(d) 0, VERDICT_RETRY, 0, 0, (d), false, 0
#define NEW_ROUND(d) 0, VERDICT_RETRY, BATCH_FAILED, 0, (d), true, 0
#define SPLIT 0, VERDICT_SPLIT, BATCH_FAILED, 0, 0, false, 0, false
#define SPLIT_BLIND 0, VERDICT_SPLIT, BATCH_FAILED, 0, 0, false, 0, true
#define SENT(s) 0, VERDICT_FINISH, BATCH_SENT, (s), 0, false, 0
#define FAILED(s) 0, VERDICT_FINISH, BATCH_FAILED, (s), 0, false, 0
#define DEAD(k) 0, VERDICT_FINISH, BATCH_FAILED, SETTLEMENT_DEAD_LETTER, 0, false, (k)
#define DEAD_HTTP DEAD(DEAD_LETTER_HTTP)
#define RETURNED_AT(count) (count), VERDICT_FINISH, BATCH_FAILED, SETTLEMENT_RETURN_FAILED, 0, false, 0
#define DEAD_AT(count) (count), VERDICT_FINISH, BATCH_FAILED, SETTLEMENT_DEAD_LETTER, 0, false, DEAD_LETTER_RETRIES_EXHAUSTED

/*  what                                                 moment status attempt n flags retry-after  verdict */
static const Row rows[] = {
        /* A batch that may leave: the circuit and the connection decide. */
        { "formed, circuit closed",                               R, 0, 0, 100, LETS_OUT, NULL, SEND },
        { "formed, circuit open: waits, spends no attempt",       R, 0, 0, 100, 0, NULL, HOLD },
        { "retry due, half-open with the probe out: waits",       R, 0, 1, 100, 0, NULL, HOLD },
        { "stopping, circuit lets out: the drain sends it",       R, 0, 0, 100, LETS_OUT | STOPPING, NULL, SEND },
        { "stopping, circuit open: back to the broker now",       R, 0, 0, 100, STOPPING, NULL, FAILED(SETTLEMENT_REQUEUE) },
        { "connection lost before sending",                       R, 0, 0, 100, LETS_OUT | OLD_EPOCH, NULL, FAILED(SETTLEMENT_NONE) },
        { "connection lost, circuit open",                        R, 0, 0, 100, OLD_EPOCH, NULL, FAILED(SETTLEMENT_NONE) },
        { "circuit open, near the consumer timeout: returned",    R, 0, 3, 100, EXPIRING, NULL, FAILED(SETTLEMENT_REQUEUE) },
        { "circuit lets out, near the consumer timeout: sent",    R, 0, 3, 100, LETS_OUT | EXPIRING, NULL, SEND },

        /* 2xx: sent. */
        { "200",                                                  A, 200, 1, 100, 0, NULL, SENT(SETTLEMENT_ACK) },
        { "201 on the last attempt",                              A, 201, 3, 100, 0, NULL, SENT(SETTLEMENT_ACK) },
        { "202",                                                  A, 202, 2, 1, 0, NULL, SENT(SETTLEMENT_ACK) },
        { "204",                                                  A, 204, 1, 100, 0, NULL, SENT(SETTLEMENT_ACK) },
        { "299",                                                  A, 299, 1, 100, 0, NULL, SENT(SETTLEMENT_ACK) },
        { "200 while stopping",                                   A, 200, 1, 100, STOPPING, NULL, SENT(SETTLEMENT_ACK) },
        { "200 after the connection was lost: redelivered",       A, 200, 1, 100, OLD_EPOCH, NULL, SENT(SETTLEMENT_NONE) },

        /* Retriable: backoff multiplier^k, then requeue when the attempts are spent. */
        { "no answer (connect, TLS, timeout), attempt 1",         A, 0, 1, 100, 0, NULL, RETRY(2 * S) },
        { "no answer, attempt 2",                                 A, 0, 2, 100, 0, NULL, RETRY(4 * S) },
        { "no answer, spent, nothing else got through: split once, blind",
                                                                  A, 0, 3, 100, 0, NULL, SPLIT_BLIND },
        { "no answer, spent, a blind half, nothing else got through: held, a new round",
                                                                  A, 0, 3, 50, BLIND, NULL, NEW_ROUND(8 * S) },
        { "401: a token to fix, never thrown away",               A, 401, 1, 100, 0, NULL, RETRY(2 * S) },
        { "401, spent: split once, blind",                        A, 401, 3, 100, 0, NULL, SPLIT_BLIND },
        { "401, spent, blind half: held until the token is fixed", A, 401, 3, 50, BLIND, NULL, NEW_ROUND(8 * S) },
        { "403",                                                  A, 403, 2, 100, 0, NULL, RETRY(4 * S) },
        { "408",                                                  A, 408, 1, 100, 0, NULL, RETRY(2 * S) },
        { "429",                                                  A, 429, 1, 100, 0, NULL, RETRY(2 * S) },
        { "429 with Retry-After: 7",                              A, 429, 1, 100, 0, "7", RETRY(7 * S) },
        { "503 with Retry-After in 30 s as an HTTP-date",         A, 503, 1, 100, 0, "Tue, 01 Dec 2026 00:00:30 GMT", RETRY(30 * S) },
        { "503 with Retry-After beyond the cap: capped",          A, 503, 1, 100, 0, "9999", RETRY(300 * S) },
        { "503 with a Retry-After that is no delay: backoff",     A, 503, 2, 100, 0, "soon", RETRY(4 * S) },
        { "500",                                                  A, 500, 1, 100, 0, NULL, RETRY(2 * S) },
        { "502, one event",                                       A, 502, 1, 1, 0, NULL, RETRY(2 * S) },
        { "504",                                                  A, 504, 2, 100, 0, NULL, RETRY(4 * S) },
        { "599",                                                  A, 599, 1, 100, 0, NULL, RETRY(2 * S) },
        { "503, spent, the destination is down: blind split",      A, 503, 3, 100, 0, NULL, SPLIT_BLIND },
        { "503, spent, blind half, the destination is down: held", A, 503, 3, 50, BLIND, NULL, NEW_ROUND(8 * S) },
        { "503, spent, held, Retry-After honoured",               A, 503, 3, 50, BLIND, "20", NEW_ROUND(20 * S) },
        { "503, spent, one event never returned, alone: held",    A, 503, 3, 1, 0, NULL, NEW_ROUND(8 * S) },
        { "503, spent, a blind half that got evidence: split",    A, 503, 3, 50, BLIND | OTHERS, NULL, SPLIT },
        { "503 while others get through, attempts left: retry",   A, 503, 2, 100, OTHERS, NULL, RETRY(4 * S) },
        { "503, attempts spent, others get through: split",       A, 503, 3, 100, OTHERS, NULL, SPLIT },
        { "no answer, spent, others get through, 2 events: split", A, 0, 3, 2, OTHERS, NULL, SPLIT },
        { "500, spent, one event, first delivery: returned failed", A, 500, 3, 1, OTHERS, NULL, RETURNED_AT(0) },
        { "500, spent, one event, returned 18 times: returned failed", A, 500, 3, 1, OTHERS, NULL, RETURNED_AT(18) },
        { "500, spent, one event, returned 19 times of 20: dead", A, 500, 3, 1, OTHERS, NULL, DEAD_AT(19) },
        { "500, spent, one event, past the limit: dead",          A, 500, 3, 1, OTHERS, NULL, DEAD_AT(25) },
        { "500, spent, one event returned before, alone: its own failure, returned failed",
                                                                  A, 500, 3, 1, 0, NULL, RETURNED_AT(1) },
        { "500, spent, one event returned 19 times of 20, alone: dead", A, 500, 3, 1, 0, NULL, 19, VERDICT_FINISH,
          BATCH_FAILED, SETTLEMENT_DEAD_LETTER, 0, false, DEAD_LETTER_RETRIES_EXHAUSTED, false },
        { "503, spent, others get through, stopping: requeued",   A, 503, 3, 100, OTHERS | STOPPING, NULL, FAILED(SETTLEMENT_REQUEUE) },
        { "503 near the consumer timeout: returned, not retried", A, 503, 1, 100, EXPIRING, NULL, FAILED(SETTLEMENT_REQUEUE) },
        { "200 near the consumer timeout: acked",                 A, 200, 1, 100, EXPIRING, NULL, SENT(SETTLEMENT_ACK) },
        { "400 near the consumer timeout: split all the same",    A, 400, 1, 100, EXPIRING, NULL, SPLIT },
        { "503 while stopping: no retry, back to the broker",     A, 503, 1, 100, STOPPING, NULL, FAILED(SETTLEMENT_REQUEUE) },
        { "503 after the connection was lost",                    A, 503, 1, 100, OLD_EPOCH, NULL, FAILED(SETTLEMENT_NONE) },

        /* Permanent: dead-lettered, but 400/413/422 split a batch of more than one event. */
        { "400, 100 events: split",                               A, 400, 1, 100, 0, NULL, SPLIT },
        { "400, 2 events: split",                                 A, 400, 1, 2, 0, NULL, SPLIT },
        { "400, 1 event: dead-lettered",                          A, 400, 1, 1, 0, NULL, DEAD_HTTP },
        { "413, 100 events: split",                               A, 413, 1, 100, 0, NULL, SPLIT },
        { "413, 1 event",                                         A, 413, 1, 1, 0, NULL, DEAD_HTTP },
        { "422, 3 events: split",                                 A, 422, 2, 3, 0, NULL, SPLIT },
        { "422, 1 event",                                         A, 422, 1, 1, 0, NULL, DEAD_HTTP },
        { "400 while stopping: split all the same",               A, 400, 1, 10, STOPPING, NULL, SPLIT },
        { "400 after the connection was lost: no split",          A, 400, 1, 100, OLD_EPOCH, NULL, FAILED(SETTLEMENT_NONE) },
        { "404, 100 events: no split",                            A, 404, 1, 100, 0, NULL, DEAD_HTTP },
        { "405",                                                  A, 405, 1, 100, 0, NULL, DEAD_HTTP },
        { "409",                                                  A, 409, 1, 100, 0, NULL, DEAD_HTTP },
        { "410",                                                  A, 410, 1, 100, 0, NULL, DEAD_HTTP },
        { "451",                                                  A, 451, 1, 100, 0, NULL, DEAD_HTTP },
        { "501",                                                  A, 501, 1, 100, 0, NULL, DEAD_HTTP },
        { "505",                                                  A, 505, 1, 100, 0, NULL, DEAD_HTTP },
        { "301: redirects are not followed",                      A, 301, 1, 100, 0, NULL, DEAD_HTTP },
        { "302",                                                  A, 302, 1, 100, 0, NULL, DEAD_HTTP },
        { "307, one event",                                       A, 307, 1, 1, 0, NULL, DEAD_HTTP },
        { "100: never a final answer",                            A, 100, 1, 100, 0, NULL, DEAD_HTTP },
        { "404 while stopping",                                   A, 404, 1, 100, STOPPING, NULL, DEAD_HTTP },
        { "404 after the connection was lost",                    A, 404, 1, 100, OLD_EPOCH, NULL, FAILED(SETTLEMENT_NONE) },

        /* No request at all. */
        { "request could not be started",                         U, 0, 1, 100, 0, NULL, FAILED(SETTLEMENT_REQUEUE) },
        { "request could not be started, connection lost",        U, 0, 1, 100, OLD_EPOCH, NULL, FAILED(SETTLEMENT_NONE) },

        /* Waiting out a retry delay. */
        { "backing off",                                          B, 0, 1, 100, 0, NULL, HOLD },
        { "backing off when the stop begins",                     B, 0, 1, 100, STOPPING, NULL, FAILED(SETTLEMENT_REQUEUE) },
        { "backing off when the connection is lost",              B, 0, 2, 100, OLD_EPOCH, NULL, FAILED(SETTLEMENT_NONE) },
        { "backing off, connection lost while stopping",          B, 0, 2, 100, OLD_EPOCH | STOPPING, NULL, FAILED(SETTLEMENT_NONE) },
        { "backing off near the consumer timeout: returned",      B, 0, 2, 100, EXPIRING, NULL, FAILED(SETTLEMENT_REQUEUE) },
};

Test(verdict, design_rows) {
        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                const Row *r = &rows[i];
                VerdictInput in = row_input(r);
                Verdict v = verdict_decide(&in, &policy);

                cr_expect_eq(v.action, r->action, "%s: %s, expected %s", r->what, verdict_action_to_string(v.action),
                             verdict_action_to_string(r->action));
                if (r->action == VERDICT_FINISH || r->action == VERDICT_SPLIT)
                        cr_expect_eq(v.row, r->row, "%s: row %s, expected %s", r->what, batch_status_to_string(v.row),
                                     batch_status_to_string(r->row));
                if (r->action == VERDICT_FINISH)
                        cr_expect_eq(v.settlement, r->settlement, "%s: settlement %s, expected %s", r->what,
                                     settlement_to_string(v.settlement), settlement_to_string(r->settlement));
                if (r->action == VERDICT_RETRY) {
                        cr_expect_eq(v.delay, r->delay, "%s: delay %" PRIu64 " µs, expected %" PRIu64, r->what,
                                     v.delay, r->delay);
                        cr_expect_eq(v.new_round, r->new_round, "%s: new_round %d", r->what, v.new_round);
                        if (r->new_round)
                                cr_expect_eq(v.row, BATCH_FAILED, "%s: the spent round's row is 'failed'", r->what);
                }
                if (r->action == VERDICT_SPLIT)
                        cr_expect_eq(v.blind, r->blind, "%s: blind %d", r->what, v.blind);
                if (r->action == VERDICT_FINISH && r->settlement == SETTLEMENT_DEAD_LETTER)
                        cr_expect_eq(v.dead_letter, r->dead_letter, "%s: reason %s, expected %s", r->what,
                                     dead_letter_kind_to_string(v.dead_letter),
                                     dead_letter_kind_to_string(r->dead_letter));
        }
}

/* Every finish without an answer tells the ledger why, in words. */
Test(verdict, finish_without_answer_says_why) {
        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                VerdictInput in = row_input(&rows[i]);
                Verdict v = verdict_decide(&in, &policy);

                if (v.action == VERDICT_FINISH && rows[i].moment != BATCH_MOMENT_ANSWERED)
                        cr_expect(v.why && *v.why, "%s: no reason for the row", rows[i].what);
                if (rows[i].moment == BATCH_MOMENT_ANSWERED)
                        cr_expect_null(v.why, "%s: the answer is the reason", rows[i].what);
        }
}

/* The answer's classification travels with the verdict, for the logs and the counters. */
Test(verdict, outcome) {
        VerdictInput in = { .moment = BATCH_MOMENT_ANSWERED, .attempt = 1, .n_events = 1, .epoch_current = true };

        in.http_status = 204;
        cr_expect_eq(verdict_decide(&in, &policy).outcome, OUTCOME_SENT);
        in.http_status = 0;
        cr_expect_eq(verdict_decide(&in, &policy).outcome, OUTCOME_RETRY);
        in.http_status = 418;
        cr_expect_eq(verdict_decide(&in, &policy).outcome, OUTCOME_PERMANENT);
}

/* With jitter the delay stays within [delay/2, delay], and follows the random value. */
Test(verdict, jitter) {
        RetryPolicy jittery = policy;
        VerdictInput in = { .moment = BATCH_MOMENT_ANSWERED, .http_status = 503, .attempt = 2, .n_events = 1,
                            .epoch_current = true };
        usec_t lo = USEC_INFINITY, hi = 0;

        jittery.jitter = true;
        for (uint64_t k = 0; k < 64; k++) {
                Verdict v;

                in.random = k * 0x9e3779b97f4a7c15ULL;
                v = verdict_decide(&in, &jittery);
                cr_assert_eq(v.action, VERDICT_RETRY);
                cr_assert(v.delay >= 2 * S && v.delay <= 4 * S, "delay %" PRIu64, v.delay);
                lo = MIN(lo, v.delay);
                hi = MAX(hi, v.delay);
        }
        cr_expect(hi > lo, "jitter varies the delay");
}

/* RABBITMQ_DELIVERY_LIMIT=0: no limit is known, a lone failing event always goes back to the queue. */
Test(verdict, no_delivery_limit) {
        VerdictInput in = { .moment = BATCH_MOMENT_ANSWERED, .http_status = 500, .attempt = 3, .n_events = 1,
                            .epoch_current = true, .others_got_through = true, .delivery_count = 1000 };
        Verdict v = verdict_decide(&in, &policy);

        cr_expect_eq(v.action, VERDICT_FINISH);
        cr_expect_eq(v.settlement, SETTLEMENT_RETURN_FAILED);
        in.delivery_limit = 1;
        v = verdict_decide(&in, &policy);
        cr_expect_eq(v.settlement, SETTLEMENT_DEAD_LETTER, "a limit of 1: dead-lettered at its first failure");
}

Test(verdict, consumer_timeout_hold_limit) {
        /* The broker's default, 30 min: held at most 22.5 min. */
        cr_expect_eq(consumer_timeout_hold_limit(1800 * S, 30 * S), 1350 * S);
        /* A minute: the request timeout decides, an answer on the wire comes before it. */
        cr_expect_eq(consumer_timeout_hold_limit(60 * S, 30 * S), 25 * S);
        cr_expect_eq(consumer_timeout_hold_limit(60 * S, 5 * S), 45 * S);
        /* Too short for the margin: half of it. */
        cr_expect_eq(consumer_timeout_hold_limit(20 * S, 30 * S), 10 * S);
        /* None. */
        cr_expect_eq(consumer_timeout_hold_limit(0, 30 * S), USEC_INFINITY);
}
