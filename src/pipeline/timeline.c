/* SPDX-License-Identifier: MIT */
/* BATCH_TIMELINE: one log line per batch saying where its time in the prefetch window went
 * (core/timeline.h). The other files mark the moments on the Batch; this file keeps a settled
 * batch's marks until the AMQP thread reports the ack of its last event on the wire (and the
 * next delivery after it), and logs them. Off, it keeps nothing. */
#include <inttypes.h>
#include <stdio.h>

#include "os/log.h"
#include "pipeline/internal.h"

static void timeline_log(const TimelineRecord *r) {
        char spans[256], fields[_TIMELINE_SPAN_MAX][48];
        const char *f[_TIMELINE_SPAN_MAX] = { NULL };
        size_t n = 0;

        timeline_format(&r->timeline, spans, sizeof spans);
        /* Only the spans measured become fields; the list ends at the first NULL. */
        for (TimelineSpan s = 0; s < _TIMELINE_SPAN_MAX; s++) {
                usec_t d = timeline_span(&r->timeline, s);

                if (d == USEC_INFINITY)
                        continue;
                snprintf(fields[n], sizeof fields[n], "%s=%" PRIu64, timeline_span_field(s), d);
                f[n] = fields[n];
                n++;
        }

        log_struct(LOG_INFO, LOG_MESSAGE("Batch %s timeline (ms): %s", r->id, spans), LOG_FIELD("BATCH_ID=%s", r->id),
                   LOG_FIELD("EVENT_COUNT=%zu", r->n), f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9],
                   NULL);
}

_Static_assert(_TIMELINE_SPAN_MAX == 10, "timeline_log() passes ten span fields");

void timeline_batch_settled(Pipeline *p, const Batch *b) {
        TimelineRecord *r;

        if (!p->config->batch_timeline || b->n == 0)
                return;

        r = calloc(1, sizeof *r);
        if (!r)
                return; /* a debugging aid: without memory this batch is not told about */
        *r = (TimelineRecord) {
                .epoch = b->epoch,
                .last_tag = b->last_tag,
                .n = b->n,
                .timeline = b->timeline,
        };
        memcpy(r->id, b->id, sizeof r->id);

        /* Its acks cannot go out on another connection: tell what there is now. */
        if (b->epoch != p->epoch || p->epoch == 0) {
                timeline_log(r);
                free(r);
                return;
        }
        r->next = p->timelines;
        p->timelines = r;
}

static bool covers(const AckCommand *c, uint64_t tag) {
        return c->multiple ? tag <= c->tag : tag == c->tag;
}

void timeline_acks_queued(Pipeline *p, const AckCommand *commands, size_t n, usec_t t) {
        for (TimelineRecord *r = p->timelines; r; r = r->next) {
                if (r->timeline.at[TIMELINE_ACK_QUEUED] != 0)
                        continue;
                for (size_t k = 0; k < n; k++)
                        if (covers(&commands[k], r->last_tag)) {
                                timeline_mark(&r->timeline, TIMELINE_ACK_QUEUED, t);
                                break;
                        }
        }
}

void timeline_acks_sent(Pipeline *p, uint64_t epoch, const AmqpAckReport *report) {
        if (epoch != p->epoch)
                return;
        for (TimelineRecord **i = &p->timelines; *i;) {
                TimelineRecord *r = *i;
                usec_t queued = r->timeline.at[TIMELINE_ACK_QUEUED];

                /* Its ack went in this command or in an earlier one, whose report came before. */
                if (queued == 0 || queued > report->queued_at) {
                        i = &r->next;
                        continue;
                }
                timeline_mark(&r->timeline, TIMELINE_ACK_SENT, report->sent_at);
                if (report->refilled_at != 0)
                        timeline_mark(&r->timeline, TIMELINE_REFILLED, report->refilled_at);
                timeline_log(r);
                *i = r->next;
                free(r);
        }
}

void timeline_flush(Pipeline *p) {
        while (p->timelines) {
                TimelineRecord *r = p->timelines;

                p->timelines = r->next;
                timeline_log(r);
                free(r);
        }
}
