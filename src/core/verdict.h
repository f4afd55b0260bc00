/* SPDX-License-Identifier: MIT */
#pragma once

/* What happens to a batch (architecture §5 and §12): the one function that decides it, whenever
 * something happens to the batch — it may leave, an answer came, its request could not start, the
 * service stops, the broker connection is lost or its messages near the broker's consumer timeout
 * while it waits. The pipeline carries the verdict out and decides nothing itself. Pure:
 * everything the decision depends on is passed in.
 *
 * Two of the broker's limits shape it. A quorum queue dead-letters a message returned too often
 * (its delivery limit), so messages go back to the broker only for failures of their own batch,
 * never because the destination is down. A batch whose attempts are spent is the batch's own
 * failure when there is evidence: another batch got through meanwhile, or, for a single event,
 * the broker had it back before. Without evidence a batch is split once, blind, so that its
 * halves test each other; a blind half, or a single event, without evidence is held and tried
 * again in a new round. With evidence it is split down to single events, and a single event
 * goes back to the queue until its delivery count nears the limit: then it is dead-lettered.
 * And the broker closes the channel of a delivery held unacked too long (its consumer timeout),
 * so a batch whose messages near it is returned instead of held. */

#include "core/retry.h"
#include "core/stats.h"

typedef enum BatchMoment {
        BATCH_MOMENT_READY,       /* not on the wire and free to go: just formed, or its retry delay is over */
        BATCH_MOMENT_ANSWERED,    /* the attempt on the wire ended: an HTTP status, or 0 for no answer */
        BATCH_MOMENT_UNSTARTED,   /* the attempt's request could not even be started */
        BATCH_MOMENT_BACKING_OFF, /* waiting out a retry delay when the service stops or the connection goes */
        _BATCH_MOMENT_MAX,
} BatchMoment;

/* What becomes of the batch's messages once its final row is committed. */
typedef enum Settlement {
        SETTLEMENT_ACK,
        SETTLEMENT_REQUEUE,     /* basic.nack with requeue: they travel again in later batches; not a
                                 * failure of theirs, which RabbitMQ 4.3 does not count against a quorum
                                 * queue's delivery limit (earlier versions count every return) */
        SETTLEMENT_RETURN_FAILED, /* basic.reject with requeue: a single event failing on its own goes back
                                   * as a failed delivery, which every version counts against the limit */
        SETTLEMENT_DEAD_LETTER, /* to the dead-letter exchange, with Verdict.dead_letter's reason */
        SETTLEMENT_NONE,        /* the connection they came on is gone: the broker has them back already */
        _SETTLEMENT_MAX,
} Settlement;

typedef enum VerdictAction {
        VERDICT_SEND,   /* let the next attempt out now */
        VERDICT_HOLD,   /* keep waiting (for the circuit, or for the retry delay to pass); no attempt is spent */
        VERDICT_RETRY,  /* wait `delay`, then the batch is READY again; `new_round`: its attempts were
                         * spent, the row becomes 'failed' meanwhile and the attempts count anew */
        VERDICT_SPLIT,  /* final row 'failed'; its events go on as two halves, each a batch of its own;
                         * `blind`: made without evidence that the batch, not the destination, fails
                         * (the halves are each other's test, and are not split blind again) */
        VERDICT_FINISH, /* final row `row`, then its messages are settled as `settlement` */
        _VERDICT_ACTION_MAX,
} VerdictAction;

typedef struct VerdictInput {
        BatchMoment moment;
        long http_status;        /* ANSWERED: the status, 0 when no HTTP answer came */
        const char *retry_after; /* ANSWERED: the Retry-After header, NULL when absent */
        unsigned attempt;        /* attempts started so far (ANSWERED/UNSTARTED: including this one) */
        size_t n_events;
        bool circuit_lets_out;   /* READY: the circuit breaker would let a request out now */
        bool others_got_through; /* another batch was answered 2xx since this one was formed, or held */
        bool split_blind;        /* the batch is a half of a split made without evidence (see VERDICT_SPLIT) */
        bool epoch_current;      /* the broker connection its messages came on still stands */
        bool stopping;           /* SIGTERM: nothing waits any more */
        bool expiring;           /* a message of the batch nears the broker's consumer timeout */
        unsigned delivery_count; /* one event: its x-delivery-count, the times the broker had it back */
        unsigned delivery_limit; /* RABBITMQ_DELIVERY_LIMIT, 0: none */
        usec_t now_realtime;     /* for a Retry-After HTTP-date */
        uint64_t random;         /* any random value, for the retry jitter */
} VerdictInput;

typedef struct Verdict {
        VerdictAction action;
        BatchStatus row;         /* SPLIT and FINISH: the final row's status */
        Settlement settlement;   /* FINISH */
        usec_t delay;            /* RETRY */
        bool new_round;          /* RETRY */
        bool blind;              /* SPLIT */
        DeadLetterKind dead_letter; /* FINISH with SETTLEMENT_DEAD_LETTER: the reason */
        DeliveryOutcome outcome; /* ANSWERED: how the answer was classified */
        const char *why;         /* FINISH without an answer: the row's error_message; NULL otherwise */
} Verdict;

Verdict verdict_decide(const VerdictInput *in, const RetryPolicy *policy);

/* How long a delivery may be held before it is returned: the broker's consumer timeout less a
 * quarter of it, or less the request timeout and 5 s when that is more, so that an answer on
 * the wire still comes in time; half of it when the timeout is too short for either.
 * USEC_INFINITY when the broker has none (consumer_timeout 0). */
usec_t consumer_timeout_hold_limit(usec_t consumer_timeout, usec_t request_timeout);

const char *verdict_action_to_string(VerdictAction a);
const char *settlement_to_string(Settlement s);
