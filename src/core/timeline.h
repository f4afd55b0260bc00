/* SPDX-License-Identifier: MIT */
#pragma once

/* Where a batch's time in the prefetch window goes (BATCH_TIMELINE): the moments of one batch,
 * from the AMQP thread reading its first event to the broker refilling the window after its
 * ack, and the spans between them. Pure: the pipeline and the AMQP thread take the times
 * (CLOCK_MONOTONIC), this only names, measures and formats them. */

#include "util/util.h"

typedef enum TimelineMark {
        TIMELINE_FIRST_EVENT, /* the AMQP thread read the batch's first event */
        TIMELINE_LAST_EVENT,  /* ... and its last */
        TIMELINE_FORMING,     /* the loop began forming it: its count, bytes or age rule fired */
        TIMELINE_FORMED,      /* id and gzip body made, its 'pending' row queued */
        TIMELINE_REQUEST,     /* its first request started (it had a send slot) */
        TIMELINE_FINISHED,    /* the answer handled, its final row queued */
        TIMELINE_COMMITTED,   /* PostgreSQL committed the final row */
        TIMELINE_ACK_QUEUED,  /* the ack covering its last event handed to the AMQP thread */
        TIMELINE_ACK_SENT,    /* ... and written to the socket by the thread */
        TIMELINE_REFILLED,    /* the thread read the next delivery, having had none left to read at the ack */
        _TIMELINE_MARK_MAX,
} TimelineMark;

typedef enum TimelineSpan {
        TIMELINE_SPAN_FILL,   /* FIRST_EVENT -> LAST_EVENT: the broker handing over its events */
        TIMELINE_SPAN_FLUSH,  /* LAST_EVENT -> FORMING: the thread-to-loop hand-off (and the age rule) */
        TIMELINE_SPAN_ENCODE, /* FORMING -> FORMED */
        TIMELINE_SPAN_SLOT,   /* FORMED -> REQUEST: waiting for a send slot (or the circuit) */
        TIMELINE_SPAN_HTTP,   /* REQUEST -> FINISHED: every attempt, retry delays included */
        TIMELINE_SPAN_COMMIT, /* FINISHED -> COMMITTED */
        TIMELINE_SPAN_ACK,    /* COMMITTED -> ACK_QUEUED */
        TIMELINE_SPAN_WIRE,   /* ACK_QUEUED -> ACK_SENT: the command crossing to the thread */
        TIMELINE_SPAN_REFILL, /* ACK_SENT -> REFILLED: the broker sending more into the freed window */
        TIMELINE_SPAN_WINDOW, /* FIRST_EVENT -> ACK_SENT: how long the batch held its place in the window */
        _TIMELINE_SPAN_MAX,
} TimelineSpan;

typedef struct Timeline {
        usec_t at[_TIMELINE_MARK_MAX]; /* 0: not reached */
} Timeline;

static inline void timeline_mark(Timeline *t, TimelineMark m, usec_t when) {
        t->at[m] = when;
}

/* The span's length, or USEC_INFINITY when one of its ends was not reached. */
usec_t timeline_span(const Timeline *t, TimelineSpan s);

/* "fill", "flush", ...: the word in the log line. */
const char *timeline_span_to_string(TimelineSpan s);
/* "TIMELINE_FILL_US", ...: the journal field that holds the span in microseconds. */
const char *timeline_span_field(TimelineSpan s);

/* "fill 3.10 flush 0.05 ... window 12.40" in milliseconds, "-" for a span not measured. */
void timeline_format(const Timeline *t, char *buf, size_t size);
