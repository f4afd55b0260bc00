/* SPDX-License-Identifier: MIT */
#include "core/verdict.h"

#define WHY_EXPIRING "returned before the broker's consumer timeout"

static Verdict finish(BatchStatus row, Settlement settlement, const char *why) {
        return (Verdict) { .action = VERDICT_FINISH, .row = row, .settlement = settlement, .why = why };
}

static Verdict decide_ready(const VerdictInput *in) {
        if (!in->epoch_current)
                return finish(BATCH_FAILED, SETTLEMENT_NONE, "broker connection lost before sending");
        if (in->circuit_lets_out)
                return (Verdict) { .action = VERDICT_SEND };
        /* An open circuit costs no attempt; only a stop or the consumer timeout ends the wait. */
        if (in->stopping)
                return finish(BATCH_FAILED, SETTLEMENT_REQUEUE, "shutting down while the circuit is open");
        if (in->expiring)
                return finish(BATCH_FAILED, SETTLEMENT_REQUEUE, WHY_EXPIRING);
        return (Verdict) { .action = VERDICT_HOLD };
}

/* A retriable failure with the round's attempts spent. */
static Verdict decide_spent(const VerdictInput *in, const RetryPolicy *policy) {
        /* Returns happen for failures of a batch of its own (and at stops, reconnects and the
         * consumer timeout): a single event the broker had back before has failed alone. */
        bool own_failure = in->others_got_through || (in->n_events == 1 && in->delivery_count > 0);

        if (in->n_events > 1 && (own_failure || !in->split_blind))
                /* With evidence, halve until the event the destination cannot take stands
                 * alone. Without, split once: if one half gets through, the other has it. */
                return (Verdict) { .action = VERDICT_SPLIT, .row = BATCH_FAILED, .blind = !own_failure };
        if (in->n_events == 1 && own_failure) {
                Verdict v;

                if (in->delivery_limit > 0 && in->delivery_count + 1 >= in->delivery_limit) {
                        /* The broker would drop it, or dead-letter it without saying why. */
                        v = finish(BATCH_FAILED, SETTLEMENT_DEAD_LETTER, NULL);
                        v.dead_letter = DEAD_LETTER_RETRIES_EXHAUSTED;
                        return v;
                }
                /* Back to the broker, to travel again in a later batch, as a failure: the count
                 * that brings it to the limit above must grow on RabbitMQ 4.3 too. */
                return finish(BATCH_FAILED, SETTLEMENT_RETURN_FAILED, NULL);
        }
        /* The destination's failure, as far as anyone can tell: returning the messages would
         * only spend their delivery limit. Keep them, try again, gated by the circuit. */
        return (Verdict) {
                .action = VERDICT_RETRY,
                .new_round = true,
                .row = BATCH_FAILED,
                .delay = retry_delay(policy, in->attempt, in->retry_after, in->now_realtime, in->random),
        };
}

static Verdict decide_answered(const VerdictInput *in, const RetryPolicy *policy) {
        DeliveryOutcome outcome = retry_classify(in->http_status);
        Verdict v;

        if (outcome == OUTCOME_SENT)
                /* Sent all the same when its connection is gone; the broker redelivers the
                 * messages, which cannot be acked on another channel: duplicates. */
                v = finish(BATCH_SENT, in->epoch_current ? SETTLEMENT_ACK : SETTLEMENT_NONE, NULL);
        else if (!in->epoch_current)
                v = finish(BATCH_FAILED, SETTLEMENT_NONE, NULL);
        else if (outcome == OUTCOME_PERMANENT && retry_status_splits(in->http_status) && in->n_events > 1)
                /* One bad event must not take the others with it: halve until the refused
                 * events stand alone. */
                v = (Verdict) { .action = VERDICT_SPLIT, .row = BATCH_FAILED };
        else if (outcome == OUTCOME_PERMANENT) {
                v = finish(BATCH_FAILED, SETTLEMENT_DEAD_LETTER, NULL);
                v.dead_letter = DEAD_LETTER_HTTP;
        } else if (in->stopping || in->expiring)
                v = finish(BATCH_FAILED, SETTLEMENT_REQUEUE, NULL);
        else if (in->attempt < policy->max_attempts)
                v = (Verdict) {
                        .action = VERDICT_RETRY,
                        .delay = retry_delay(policy, in->attempt, in->retry_after, in->now_realtime, in->random),
                };
        else
                v = decide_spent(in, policy);

        v.outcome = outcome;
        return v;
}

static Verdict decide_backing_off(const VerdictInput *in) {
        if (!in->epoch_current)
                return finish(BATCH_FAILED, SETTLEMENT_NONE, "broker connection lost before sending");
        /* What waits for a retry goes back to the broker at once, not at the shutdown timeout. */
        if (in->stopping)
                return finish(BATCH_FAILED, SETTLEMENT_REQUEUE, "shutting down before the retry");
        if (in->expiring)
                return finish(BATCH_FAILED, SETTLEMENT_REQUEUE, WHY_EXPIRING);
        return (Verdict) { .action = VERDICT_HOLD };
}

Verdict verdict_decide(const VerdictInput *in, const RetryPolicy *policy) {
        switch (in->moment) {
        case BATCH_MOMENT_READY:
                return decide_ready(in);
        case BATCH_MOMENT_ANSWERED:
                return decide_answered(in, policy);
        case BATCH_MOMENT_UNSTARTED:
                return finish(BATCH_FAILED, in->epoch_current ? SETTLEMENT_REQUEUE : SETTLEMENT_NONE,
                              "request could not be started");
        case BATCH_MOMENT_BACKING_OFF:
                return decide_backing_off(in);
        default:
                return finish(BATCH_FAILED, in->epoch_current ? SETTLEMENT_REQUEUE : SETTLEMENT_NONE,
                              "unknown batch moment");
        }
}

usec_t consumer_timeout_hold_limit(usec_t consumer_timeout, usec_t request_timeout) {
        usec_t margin;

        if (consumer_timeout == 0)
                return USEC_INFINITY;
        margin = MAX(consumer_timeout / 4, request_timeout + 5 * USEC_PER_SEC);
        if (margin >= consumer_timeout)
                return consumer_timeout / 2;
        return consumer_timeout - margin;
}

static const char *const verdict_action_names[_VERDICT_ACTION_MAX] = {
        [VERDICT_SEND] = "send",
        [VERDICT_HOLD] = "hold",
        [VERDICT_RETRY] = "retry",
        [VERDICT_SPLIT] = "split",
        [VERDICT_FINISH] = "finish",
};

const char *verdict_action_to_string(VerdictAction a) {
        return a >= 0 && a < _VERDICT_ACTION_MAX ? verdict_action_names[a] : "unknown";
}

static const char *const settlement_names[_SETTLEMENT_MAX] = {
        [SETTLEMENT_ACK] = "ack",
        [SETTLEMENT_REQUEUE] = "requeue",
        [SETTLEMENT_RETURN_FAILED] = "return_failed",
        [SETTLEMENT_DEAD_LETTER] = "dead_letter",
        [SETTLEMENT_NONE] = "none",
};

const char *settlement_to_string(Settlement s) {
        return s >= 0 && s < _SETTLEMENT_MAX ? settlement_names[s] : "unknown";
}
