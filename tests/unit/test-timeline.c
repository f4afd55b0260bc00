/* SPDX-License-Identifier: MIT */
#include <criterion/criterion.h>

#include "core/timeline.h"

#define MS(x) ((usec_t) (x) * USEC_PER_MSEC)

static Timeline full(void) {
        Timeline t = { 0 };
        usec_t at = MS(1000);
        /* fill 5, flush 0.25, encode 1.2, slot 3, http 2, commit 1.5, ack 0.1, wire 0.05, refill 0.4 */
        const usec_t steps[_TIMELINE_MARK_MAX] = { 0, 5000, 250, 1200, 3000, 2000, 1500, 100, 50, 400 };

        for (TimelineMark m = 0; m < _TIMELINE_MARK_MAX; m++) {
                at += steps[m];
                timeline_mark(&t, m, at);
        }
        return t;
}

Test(timeline, spans) {
        Timeline t = full();

        cr_expect_eq(timeline_span(&t, TIMELINE_SPAN_FILL), 5000);
        cr_expect_eq(timeline_span(&t, TIMELINE_SPAN_FLUSH), 250);
        cr_expect_eq(timeline_span(&t, TIMELINE_SPAN_ENCODE), 1200);
        cr_expect_eq(timeline_span(&t, TIMELINE_SPAN_SLOT), 3000);
        cr_expect_eq(timeline_span(&t, TIMELINE_SPAN_HTTP), 2000);
        cr_expect_eq(timeline_span(&t, TIMELINE_SPAN_COMMIT), 1500);
        cr_expect_eq(timeline_span(&t, TIMELINE_SPAN_ACK), 100);
        cr_expect_eq(timeline_span(&t, TIMELINE_SPAN_WIRE), 50);
        cr_expect_eq(timeline_span(&t, TIMELINE_SPAN_REFILL), 400);
        /* The window ends when the ack is on the wire: the refill is the next batch's wait. */
        cr_expect_eq(timeline_span(&t, TIMELINE_SPAN_WINDOW), 5000 + 250 + 1200 + 3000 + 2000 + 1500 + 100 + 50);
        cr_expect_eq(timeline_span(&t, _TIMELINE_SPAN_MAX), USEC_INFINITY);
}

Test(timeline, missing_end_is_not_measured) {
        Timeline t = full();

        t.at[TIMELINE_ACK_SENT] = 0;
        cr_expect_eq(timeline_span(&t, TIMELINE_SPAN_WIRE), USEC_INFINITY);
        cr_expect_eq(timeline_span(&t, TIMELINE_SPAN_REFILL), USEC_INFINITY);
        cr_expect_eq(timeline_span(&t, TIMELINE_SPAN_WINDOW), USEC_INFINITY);
        cr_expect_eq(timeline_span(&t, TIMELINE_SPAN_ACK), 100);
}

Test(timeline, end_before_start_is_zero) {
        Timeline t = full();

        /* The thread stamped the last event a hair after the loop began forming the batch. */
        t.at[TIMELINE_FORMING] = t.at[TIMELINE_LAST_EVENT] - 3;
        cr_expect_eq(timeline_span(&t, TIMELINE_SPAN_FLUSH), 0);
}

Test(timeline, format) {
        Timeline t = full();
        char buf[256], small[12];

        t.at[TIMELINE_REFILLED] = 0;
        timeline_format(&t, buf, sizeof buf);
        cr_expect_str_eq(buf, "fill 5.00 flush 0.25 encode 1.20 slot 3.00 http 2.00 commit 1.50 ack 0.10 "
                              "wire 0.05 refill - window 13.10");

        timeline_format(&t, small, sizeof small);
        cr_expect_str_eq(small, "fill 5.00 f");
}

Test(timeline, names) {
        cr_expect_str_eq(timeline_span_to_string(TIMELINE_SPAN_FILL), "fill");
        cr_expect_str_eq(timeline_span_to_string(TIMELINE_SPAN_WINDOW), "window");
        cr_expect_null(timeline_span_to_string(_TIMELINE_SPAN_MAX));
        cr_expect_str_eq(timeline_span_field(TIMELINE_SPAN_FILL), "TIMELINE_FILL_US");
        cr_expect_str_eq(timeline_span_field(TIMELINE_SPAN_WINDOW), "TIMELINE_WINDOW_US");
        cr_expect_null(timeline_span_field(_TIMELINE_SPAN_MAX));
        for (TimelineSpan s = 0; s < _TIMELINE_SPAN_MAX; s++)
                cr_expect_not_null(timeline_span_to_string(s));
}
