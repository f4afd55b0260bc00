/* SPDX-License-Identifier: MIT */
#include <inttypes.h>
#include <stdio.h>

#include "core/timeline.h"

static const struct {
        const char *name, *field;
        TimelineMark from, to;
} spans[_TIMELINE_SPAN_MAX] = {
        [TIMELINE_SPAN_FILL] = { "fill", "TIMELINE_FILL_US", TIMELINE_FIRST_EVENT, TIMELINE_LAST_EVENT },
        [TIMELINE_SPAN_FLUSH] = { "flush", "TIMELINE_FLUSH_US", TIMELINE_LAST_EVENT, TIMELINE_FORMING },
        [TIMELINE_SPAN_ENCODE] = { "encode", "TIMELINE_ENCODE_US", TIMELINE_FORMING, TIMELINE_FORMED },
        [TIMELINE_SPAN_SLOT] = { "slot", "TIMELINE_SLOT_US", TIMELINE_FORMED, TIMELINE_REQUEST },
        [TIMELINE_SPAN_HTTP] = { "http", "TIMELINE_HTTP_US", TIMELINE_REQUEST, TIMELINE_FINISHED },
        [TIMELINE_SPAN_COMMIT] = { "commit", "TIMELINE_COMMIT_US", TIMELINE_FINISHED, TIMELINE_COMMITTED },
        [TIMELINE_SPAN_ACK] = { "ack", "TIMELINE_ACK_US", TIMELINE_COMMITTED, TIMELINE_ACK_QUEUED },
        [TIMELINE_SPAN_WIRE] = { "wire", "TIMELINE_WIRE_US", TIMELINE_ACK_QUEUED, TIMELINE_ACK_SENT },
        [TIMELINE_SPAN_REFILL] = { "refill", "TIMELINE_REFILL_US", TIMELINE_ACK_SENT, TIMELINE_REFILLED },
        [TIMELINE_SPAN_WINDOW] = { "window", "TIMELINE_WINDOW_US", TIMELINE_FIRST_EVENT, TIMELINE_ACK_SENT },
};

usec_t timeline_span(const Timeline *t, TimelineSpan s) {
        usec_t a, b;

        if (s < 0 || s >= _TIMELINE_SPAN_MAX)
                return USEC_INFINITY;
        a = t->at[spans[s].from];
        b = t->at[spans[s].to];
        if (a == 0 || b == 0)
                return USEC_INFINITY;
        /* The thread's and the loop's readings of one clock: an end read a hair before the start
         * (the thread stamped an event after the loop saw it) is no time at all, not an overflow. */
        return b > a ? b - a : 0;
}

const char *timeline_span_to_string(TimelineSpan s) {
        if (s < 0 || s >= _TIMELINE_SPAN_MAX)
                return NULL;
        return spans[s].name;
}

const char *timeline_span_field(TimelineSpan s) {
        if (s < 0 || s >= _TIMELINE_SPAN_MAX)
                return NULL;
        return spans[s].field;
}

void timeline_format(const Timeline *t, char *buf, size_t size) {
        size_t used = 0;

        if (size == 0)
                return;
        buf[0] = '\0';
        for (TimelineSpan s = 0; s < _TIMELINE_SPAN_MAX && used < size; s++) {
                usec_t d = timeline_span(t, s);
                int k;

                if (d == USEC_INFINITY)
                        k = snprintf(buf + used, size - used, "%s%s -", s > 0 ? " " : "", spans[s].name);
                else
                        k = snprintf(buf + used, size - used, "%s%s %" PRIu64 ".%02" PRIu64, s > 0 ? " " : "",
                                     spans[s].name, d / USEC_PER_MSEC, d % USEC_PER_MSEC / 10);
                if (k < 0)
                        return;
                used += (size_t) k;
        }
}
