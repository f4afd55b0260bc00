/* SPDX-License-Identifier: MIT */
#include <criterion/criterion.h>
#include <json-c/json.h>
#include <stdio.h>

#include "core/dead-letter-report.h"

#define S(x) ((usec_t) (x) * USEC_PER_SEC)
#define NOW S(1796160882) /* 2026-12-01T21:34:42Z */

static DeadLetterEntry make(uint64_t pos, const char *reason, long status, const char *id, usec_t at, size_t size) {
        DeadLetterEntry e = { .position = pos, .http_status = status, .dead_lettered_at = at, .size = size };

        snprintf(e.reason, sizeof e.reason, "%s", reason);
        snprintf(e.event_id, sizeof e.event_id, "%s", id);
        snprintf(e.routing_key, sizeof e.routing_key, "approved.server");
        if (status > 0)
                snprintf(e.batch_id, sizeof e.batch_id, "0c1d2e3f-4a5b-5c6d-8e7f-8091a2b3c4d%ld", status % 10);
        return e;
}

static char *text(const Buffer *b) {
        char *s = strndup(b->data ? (const char *) b->data : "", b->size);
        cr_assert_not_null(s);
        return s;
}

static json_object *parse(const Buffer *b) {
        _cleanup_free_ char *s = text(b);
        json_object *o = json_tokener_parse(s);

        cr_assert_not_null(o, "not JSON: %s", s);
        return o;
}

static json_object *member(json_object *o, const char *key) {
        json_object *v = NULL;
        cr_assert(json_object_object_get_ex(o, key, &v), "no %s in %s", key, json_object_to_json_string(o));
        return v;
}

/* 21 refused with 400, one 413, 3 not_json, 2 empty without a time, mixed as in a real queue. */
static DeadLetterEntry entries[27];
static DeadLetterSummary summary;

static void fill(void) {
        size_t n = 0;

        memset(&summary, 0, sizeof summary);
        for (unsigned i = 0; i < 27; i++) {
                usec_t at = NOW - S(3600) + S(i * 60);
                if (i % 9 == 4)
                        entries[n] = make(i + 1, "not_json", 0, "", at, 12);
                else if (i == 10 || i == 20)
                        entries[n] = make(i + 1, "empty", 0, "", 0, 0);
                else if (i == 26)
                        entries[n] = make(i + 1, "http_413", 413, "big-1", at, 30000);
                else {
                        char id[32];
                        snprintf(id, sizeof id, "evt-%06u", i);
                        entries[n] = make(i + 1, "http_400", 400, id, at, 1000);
                }
                cr_assert_eq(dead_letter_summary_add(&summary, &entries[n], true), 0);
                n++;
        }
}

TestSuite(dead_letter_report, .init = fill);

Test(dead_letter_report, summary) {
        static const DeadLetterCount want[] = {
                { "http_400", 21 }, { "not_json", 3 }, { "empty", 2 }, { "http_413", 1 },
        };

        cr_assert_eq(summary.in_queue, 27);
        cr_assert_eq(summary.total, 27);
        cr_assert_eq(summary.bytes, 21 * 1000 + 3 * 12 + 30000);
        /* In order of first appearance. */
        cr_assert_eq(summary.n_reasons, 4);
        for (size_t i = 0; i < 4; i++) {
                cr_assert_str_eq(summary.reasons[i].key, want[i].key);
                cr_assert_eq(summary.reasons[i].count, want[i].count, "%s", want[i].key);
        }
        cr_assert_eq(summary.n_statuses, 2);
        cr_assert_str_eq(summary.statuses[0].key, "400");
        cr_assert_eq(summary.statuses[0].count, 21);
        cr_assert_str_eq(summary.statuses[1].key, "413");
        cr_assert_eq(summary.oldest, NOW - S(3600));
        cr_assert_eq(summary.newest, NOW - S(3600) + S(26 * 60));
        cr_assert_eq(summary.time_unknown, 2);
        dead_letter_summary_done(&summary);
        cr_assert_null(summary.reasons);
}

Test(dead_letter_report, unmatched_are_read_not_counted) {
        DeadLetterSummary s = { 0 };

        cr_assert_eq(dead_letter_summary_add(&s, &entries[0], false), 0);
        cr_assert_eq(dead_letter_summary_add(&s, &entries[1], true), 0);
        cr_assert_eq(s.in_queue, 2);
        cr_assert_eq(s.total, 1);
        cr_assert_eq(s.n_reasons, 1);
        cr_assert_eq(s.bytes, entries[1].size);
        dead_letter_summary_done(&s);
}

Test(dead_letter_report, list_text) {
        Buffer b = { 0 };
        DeadLetterListing l = { .queue = "transmitter.approved.dead", .summary = &summary, .page = entries,
                                .n_page = 3, .now = NOW };
        _cleanup_free_ char *s = NULL;
        const char *by_reason, *by_status, *table;

        cr_assert_eq(dead_letter_list_text(&l, &b), 0);
        s = text(&b);
        cr_assert(strstr(s, "transmitter.approved.dead: 27 dead letters (49.8 KiB)\n"), "%s", s);
        cr_assert(strstr(s, "  oldest: 2026-12-01 20:34:42 UTC (1h ago)\n"), "%s", s);
        cr_assert(strstr(s, "  newest: 2026-12-01 21:00:42 UTC (34m ago)\n"), "%s", s);
        cr_assert(strstr(s, "  2 without a time\n"), "%s", s);
        by_reason = strstr(s, "\nBy reason:\n  http_400       21\n  not_json        3\n  empty           2\n"
                              "  http_413        1\n");
        cr_assert(by_reason, "counts by reason, most first: %s", s);
        by_status = strstr(s, "\nBy HTTP status:\n  400       21\n  413        1\n");
        cr_assert(by_status, "%s", s);
        table = strstr(s, "\nPOS  EVENT ID    REASON    STATUS  BATCH ID                              "
                          "DEAD-LETTERED (UTC)  SIZE    REPLAYS\n"
                          "  1  evt-000000  http_400  400     0c1d2e3f-4a5b-5c6d-8e7f-8091a2b3c4d0  "
                          "2026-12-01 20:34:42  1000 B        0\n");
        cr_assert(table, "%s", s);
        cr_assert(strstr(s, "\n3 of 27 shown (--limit N shows more, --limit 0 all).\n"), "%s", s);
        cr_assert(by_reason < by_status && by_status < table);
        buffer_done(&b);
}

Test(dead_letter_report, list_text_filtered_and_empty) {
        Buffer b = { 0 };
        DeadLetterSummary none = { .in_queue = 27 };
        DeadLetterListing l = { .queue = "q.dead", .summary = &none, .filtered = true, .now = NOW };
        _cleanup_free_ char *s = NULL, *s2 = NULL;

        cr_assert_eq(dead_letter_list_text(&l, &b), 0);
        s = text(&b);
        cr_assert_str_eq(s, "q.dead: 0 of 27 dead letters match\n");
        none.in_queue = 0;
        l.filtered = false;
        cr_assert_eq(dead_letter_list_text(&l, &b), 0);
        s2 = text(&b);
        cr_assert_str_eq(s2, "q.dead: 0 dead letters\n");
        buffer_done(&b);
}

Test(dead_letter_report, list_json) {
        Buffer b = { 0 };
        DeadLetterListing l = { .queue = "q.dead", .summary = &summary, .page = entries, .n_page = 27, .now = NOW };
        json_object *o, *msgs, *first, *fifth;

        cr_assert_eq(dead_letter_list_json(&l, &b), 0);
        cr_assert_eq(b.data[b.size - 1], '\n', "one line, ended");
        o = parse(&b);
        cr_assert_str_eq(json_object_get_string(member(o, "queue")), "q.dead");
        cr_assert_eq(json_object_get_int64(member(o, "in_queue")), 27);
        cr_assert_eq(json_object_get_int64(member(o, "matched")), 27);
        cr_assert_eq(json_object_get_int64(member(member(o, "by_reason"), "http_400")), 21);
        cr_assert_eq(json_object_get_int64(member(member(o, "by_reason"), "empty")), 2);
        cr_assert_eq(json_object_get_int64(member(member(o, "by_http_status"), "413")), 1);
        cr_assert_str_eq(json_object_get_string(member(o, "oldest")), "2026-12-01T20:34:42Z");
        msgs = member(o, "messages");
        cr_assert_eq(json_object_array_length(msgs), 27);
        first = json_object_array_get_idx(msgs, 0);
        cr_assert_eq(json_object_get_int64(member(first, "position")), 1);
        cr_assert_str_eq(json_object_get_string(member(first, "event_id")), "evt-000000");
        cr_assert_eq(json_object_get_int64(member(first, "http_status")), 400);
        cr_assert_str_eq(json_object_get_string(member(first, "routing_key")), "approved.server");
        fifth = json_object_array_get_idx(msgs, 4);
        cr_assert_str_eq(json_object_get_string(member(fifth, "reason")), "not_json");
        cr_assert_null(member(fifth, "event_id"), "no id: null, not \"\"");
        cr_assert_null(member(fifth, "http_status"));
        cr_assert_null(member(fifth, "batch_id"));
        cr_assert_null(member(json_object_array_get_idx(msgs, 10), "dead_lettered_at"));
        json_object_put(o);
        buffer_done(&b);
}

static DeadLetterMessageView view(const DeadLetterEntry *e, const char *body, size_t size) {
        static const DeadLetterField props[] = { { "content_type", "application/json" }, { "delivery_mode", "2" } };
        static const DeadLetterField headers[] = { { "x-transmitter-reason", "http_400" },
                                                   { "x-transmitter-http-status", "400" } };
        return (DeadLetterMessageView) { .entry = e, .properties = props, .n_properties = 2, .headers = headers,
                                         .n_headers = 2, .body = body, .body_size = size, .body_max = 16, .now = NOW };
}

Test(dead_letter_report, show_json_body_pretty) {
        static const char body[] = "{\"specversion\":\"1.0\",\"id\":\"evt-000000\",\"data\":{\"n\":[1,2]}}";
        Buffer b = { 0 };
        DeadLetterEntry e = entries[0];
        DeadLetterMessageView v;
        _cleanup_free_ char *s = NULL;

        e.body_is_json = true;
        v = view(&e, body, sizeof body - 1);
        cr_assert_eq(dead_letter_show_text(&v, &b), 0);
        s = text(&b);
        cr_assert(strstr(s, "Event id:      evt-000000\n"), "%s", s);
        cr_assert(strstr(s, "Reason:        http_400\nHTTP status:   400\n"), "%s", s);
        cr_assert(strstr(s, "Dead-lettered: 2026-12-01 20:34:42 UTC (1h ago)\n"), "%s", s);
        cr_assert(strstr(s, "\nProperties:\n  content_type: application/json\n  delivery_mode: 2\n"), "%s", s);
        cr_assert(strstr(s, "\nHeaders:\n  x-transmitter-reason: http_400\n"), "%s", s);
        cr_assert(strstr(s, "\nBody (JSON):\n{\n  \"specversion\": \"1.0\",\n  \"id\": \"evt-000000\",\n"), "%s", s);
        buffer_done(&b);
}

Test(dead_letter_report, show_not_json) {
        static const char body[] = "hello\n\"world\"\x01\xff and a long tail";
        Buffer b = { 0 };
        DeadLetterEntry e = entries[4];
        DeadLetterMessageView v = view(&e, body, sizeof body - 1);
        _cleanup_free_ char *s = NULL;
        json_object *o;

        cr_assert_eq(dead_letter_show_text(&v, &b), 0);
        s = text(&b);
        cr_assert(strstr(s, "Event id:      -\n"), "%s", s);
        cr_assert(strstr(s, "\nBody: not a JSON object, shown as text (truncated):\n"
                            "hello\\n\"world\"\\x01\\xff \n... 15 more bytes\n"), "%s", s);

        cr_assert_eq(dead_letter_show_json(&v, &b), 0);
        o = parse(&b);
        cr_assert_null(member(o, "body"));
        cr_assert_str_eq(json_object_get_string(member(o, "body_text")), "hello\n\"world\" ? ");
        cr_assert(json_object_get_boolean(member(o, "body_truncated")));
        cr_assert_str_eq(json_object_get_string(member(member(o, "message"), "reason")), "not_json");
        cr_assert_str_eq(json_object_get_string(member(member(o, "headers"), "x-transmitter-http-status")), "400");
        json_object_put(o);

        v.body_size = 0;
        cr_assert_eq(dead_letter_show_text(&v, &b), 0);
        free(s);
        s = text(&b);
        cr_assert(strstr(s, "\nBody: empty\n"), "%s", s);
        buffer_done(&b);
}

Test(dead_letter_report, progress) {
        char buf[128];

        dead_letter_progress(buf, sizeof buf, "replay", "replayed", 2345, 5000, 2300, S(5));
        cr_assert_str_eq(buf, "replay: 2,345 of 5,000 read, 2,300 replayed, 469/s");
        dead_letter_progress(buf, sizeof buf, "purge", "deleted", 0, 0, 0, 0);
        cr_assert_str_eq(buf, "purge: 0 of 0 read, 0 deleted, 0/s");
}
