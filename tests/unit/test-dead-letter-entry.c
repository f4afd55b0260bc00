/* SPDX-License-Identifier: MIT */
#include <criterion/criterion.h>
#include <stdio.h>

#include "core/dead-letter-entry.h"

#define S(x) ((usec_t) (x) * USEC_PER_SEC)
#define NOW S(1796160882) /* 2026-12-01T21:34:42Z */

#define BODY(s) s, sizeof(s) - 1
#define STR(s) s, sizeof(s) - 1

static DeadLetterEntry entry(const DeadLetterHeaders *h, const char *body, size_t size) {
        DeadLetterEntry e;

        memset(&e, 0xaa, sizeof e); /* nothing may be left over from before */
        dead_letter_entry_init(&e, 7, h, body, size, STR("approved.server"));
        return e;
}

Test(dead_letter_entry, daemon_headers) {
        DeadLetterHeaders h = {
                .reason = STR("http_400"),
                .http_status = 400,
                .batch_id = STR("0c1d2e3f-4a5b-5c6d-8e7f-8091a2b3c4d5"),
                .dead_lettered_at = NOW - S(3600),
                .timestamp = NOW - S(7200),
        };
        static const char body[] = "{\"specversion\":\"1.0\",\"id\":\"evt-000042\",\"data\":{}}";
        DeadLetterEntry e = entry(&h, BODY(body));

        cr_assert_eq(e.position, 7);
        cr_assert_str_eq(e.reason, "http_400");
        cr_assert_eq(e.http_status, 400);
        cr_assert_str_eq(e.batch_id, "0c1d2e3f-4a5b-5c6d-8e7f-8091a2b3c4d5");
        cr_assert_str_eq(e.event_id, "evt-000042");
        cr_assert_eq(e.dead_lettered_at, NOW - S(3600));
        cr_assert_eq(e.published_at, NOW - S(7200), "the timestamp property is the publish time");
        cr_assert_eq(e.replay_count, 0);
        cr_assert_eq(e.size, strlen(body));
        cr_assert_str_eq(e.routing_key, "approved.server");
        cr_assert(e.body_is_json);
}

Test(dead_letter_entry, malformed_body_has_no_event_id) {
        DeadLetterHeaders h = { .reason = STR("not_json") };
        DeadLetterEntry e = entry(&h, BODY("{\"id\":\"trunc-1\",\"data\":{"));

        cr_assert_str_eq(e.reason, "not_json");
        cr_assert_str_eq(e.event_id, "", "an id inside a body that is no JSON is not trusted");
        cr_assert_not(e.body_is_json);
        cr_assert_eq(e.http_status, 0);
        cr_assert_str_eq(e.batch_id, "");
        cr_assert_eq(e.dead_lettered_at, 0);

        e = entry(&h, BODY("[{\"id\":\"a-1\"}]"));
        cr_assert_str_eq(e.event_id, "");
        cr_assert_not(e.body_is_json);
        e = entry(&h, "", 0);
        cr_assert_str_eq(e.event_id, "");
        cr_assert_eq(e.size, 0);
}

Test(dead_letter_entry, escaped_event_id) {
        DeadLetterHeaders h = { .reason = STR("http_422") };
        DeadLetterEntry e = entry(&h, BODY("{\"id\":\"caf\\u00e9\\/1\\n\"}"));

        /* Unescaped, and the newline made printable. */
        cr_assert_str_eq(e.event_id, "caf\xc3\xa9/1 ");
}

Test(dead_letter_entry, event_id_too_long) {
        char body[600];
        DeadLetterHeaders h = { .reason = STR("http_400") };

        snprintf(body, sizeof body, "{\"id\":\"%0300d\"}", 1);
        cr_assert_str_eq(entry(&h, body, strlen(body)).event_id, "", "no prefix that could match another id");
        snprintf(body, sizeof body, "{\"id\":\"%0255d\"}", 1);
        cr_assert_eq(strlen(entry(&h, body, strlen(body)).event_id), 255, "255 bytes fit");
}

Test(dead_letter_entry, broker_dead_lettering) {
        DeadLetterHeaders h = { .death_reason = STR("rejected"), .death_time = NOW - S(60), .timestamp = NOW - S(90),
                                .delivery_count = 3 };
        DeadLetterEntry e = entry(&h, BODY("{\"id\":\"x-1\"}"));

        cr_assert_str_eq(e.reason, "x-death:rejected");
        cr_assert_eq(e.dead_lettered_at, NOW - S(60), "x-death's time");
        cr_assert_eq(e.delivery_count, 3);

        h = (DeadLetterHeaders) { .timestamp = NOW - S(90) };
        e = entry(&h, BODY("{}"));
        cr_assert_str_eq(e.reason, "unknown");
        cr_assert_eq(e.dead_lettered_at, 0, "the publish time is not the dead-lettering time");
        cr_assert_eq(e.published_at, NOW - S(90));
}

Test(dead_letter_entry, strange_headers) {
        DeadLetterHeaders h = {
                .reason = "http\n_400\x01 and more",
                .reason_len = 10,
                .http_status = 70000,
                .replay_count = -3,
                .batch_id = "0123456789012345678901234567890123456789012345678901234567890123456789",
                .batch_id_len = 70,
        };
        DeadLetterEntry e = entry(&h, BODY("{}"));

        cr_assert_str_eq(e.reason, "http _400 ", "control characters are not printed");
        cr_assert_eq(e.http_status, 0, "not an HTTP status");
        cr_assert_eq(e.replay_count, 0);
        cr_assert_str_eq(e.batch_id, "", "too long to be ours");
}

Test(dead_letter_entry, reason_syntax) {
        cr_assert(dead_letter_reason_is_valid("http_400"));
        cr_assert(dead_letter_reason_is_valid("not_json"));
        cr_assert(dead_letter_reason_is_valid("x-death:rejected"));
        cr_assert(dead_letter_reason_is_valid("retries_exhausted"));
        cr_assert_not(dead_letter_reason_is_valid(""));
        cr_assert_not(dead_letter_reason_is_valid("HTTP_400"));
        cr_assert_not(dead_letter_reason_is_valid("http 400"));
        cr_assert_not(dead_letter_reason_is_valid("http_400;rm"));
        cr_assert_not(dead_letter_reason_is_valid(
                "a123456789012345678901234567890123456789012345678901234567890123"));
}

static DeadLetterEntry sample(const char *reason, const char *id, const char *batch, usec_t at) {
        DeadLetterEntry e = { .position = 1, .dead_lettered_at = at };

        snprintf(e.reason, sizeof e.reason, "%s", reason);
        snprintf(e.event_id, sizeof e.event_id, "%s", id);
        snprintf(e.batch_id, sizeof e.batch_id, "%s", batch);
        return e;
}

Test(dead_letter_entry, filter) {
        char *reasons[] = { "http_400", "not_json" }, *ids[] = { "e-1", "e-3" };
        DeadLetterEntry a = sample("http_400", "e-1", "b-1", NOW - S(7200)), b = sample("not_json", "", "", NOW - S(10)),
                        c = sample("http_413", "e-3", "b-2", 0);
        DeadLetterFilter none = { 0 }, by_reason = { .reasons = reasons, .n_reasons = 2 },
                         by_id = { .event_ids = ids, .n_event_ids = 2 }, by_batch = { .batch_id = "b-2" },
                         old = { .older_than = S(3600) },
                         all = { .reasons = reasons, .n_reasons = 1, .event_ids = ids, .n_event_ids = 1,
                                 .batch_id = "b-1", .older_than = S(7200) };

        cr_assert(dead_letter_filter_is_empty(&none));
        cr_assert(dead_letter_filter_match(&none, &a, NOW) && dead_letter_filter_match(&none, &b, NOW) &&
                  dead_letter_filter_match(&none, &c, NOW));

        cr_assert_not(dead_letter_filter_is_empty(&by_reason));
        cr_assert(dead_letter_filter_match(&by_reason, &a, NOW));
        cr_assert(dead_letter_filter_match(&by_reason, &b, NOW));
        cr_assert_not(dead_letter_filter_match(&by_reason, &c, NOW));

        cr_assert(dead_letter_filter_match(&by_id, &a, NOW));
        cr_assert_not(dead_letter_filter_match(&by_id, &b, NOW), "no id matches no --event-id");
        cr_assert(dead_letter_filter_match(&by_id, &c, NOW));

        cr_assert_not(dead_letter_filter_match(&by_batch, &a, NOW));
        cr_assert(dead_letter_filter_match(&by_batch, &c, NOW));

        cr_assert(dead_letter_filter_match(&old, &a, NOW));
        cr_assert_not(dead_letter_filter_match(&old, &b, NOW), "10 s is not older than 1h");
        cr_assert_not(dead_letter_filter_match(&old, &c, NOW), "an unknown time is never old enough");
        cr_assert_not(dead_letter_filter_match(&old, &a, NOW - S(7200) - 1), "a time in the future is not old");

        cr_assert(dead_letter_filter_match(&all, &a, NOW), "exactly 2h old is older than 2h; all criteria hold");
        cr_assert_not(dead_letter_filter_match(&all, &a, NOW - 1));
}

static DeadLetterHeaderAction rename_header(const char *key, char buf[static 256]) {
        return dead_letter_replay_header(key, strlen(key), buf);
}

Test(dead_letter_entry, replay_headers) {
        char buf[256];
        char long_key[300];

        cr_assert_eq(rename_header("x-transmitter-reason", buf), DEAD_LETTER_HEADER_RENAME);
        cr_assert_str_eq(buf, "x-transmitter-replayed-reason");
        cr_assert_eq(rename_header("x-transmitter-http-status", buf), DEAD_LETTER_HEADER_RENAME);
        cr_assert_str_eq(buf, "x-transmitter-replayed-http-status");
        cr_assert_eq(rename_header("x-transmitter-batch-id", buf), DEAD_LETTER_HEADER_RENAME);
        cr_assert_str_eq(buf, "x-transmitter-replayed-batch-id");
        cr_assert_eq(rename_header("x-transmitter-dead-lettered-at", buf), DEAD_LETTER_HEADER_RENAME);
        cr_assert_str_eq(buf, "x-transmitter-replayed-dead-lettered-at");

        cr_assert_eq(rename_header("x-transmitter-replayed-reason", buf), DEAD_LETTER_HEADER_DROP,
                     "an earlier replay's record gives way to this one's");
        cr_assert_eq(rename_header("x-transmitter-replay-count", buf), DEAD_LETTER_HEADER_DROP);

        cr_assert_eq(rename_header("x-death", buf), DEAD_LETTER_HEADER_KEEP);
        cr_assert_eq(rename_header("traceparent", buf), DEAD_LETTER_HEADER_KEEP);
        cr_assert_eq(rename_header("x-transmitter", buf), DEAD_LETTER_HEADER_KEEP, "not our prefix");
        cr_assert_eq(dead_letter_replay_header("x-transmitter-reason", 13, buf), DEAD_LETTER_HEADER_KEEP,
                     "length, not the NUL, ends the key");

        memset(long_key, 'a', sizeof long_key);
        memcpy(long_key, "x-transmitter-", 14);
        long_key[255] = '\0';
        cr_assert_eq(rename_header(long_key, buf), DEAD_LETTER_HEADER_DROP, "a renamed key over 255 bytes cannot be sent");
        long_key[255 - 9] = '\0';
        cr_assert_eq(rename_header(long_key, buf), DEAD_LETTER_HEADER_RENAME);
        cr_assert_eq(strlen(buf), 255);
}

Test(dead_letter_entry, own_headers) {
        cr_assert(dead_letter_header_is_own("x-transmitter-reason", 20));
        cr_assert(dead_letter_header_is_own("x-transmitter-http-status", 25));
        cr_assert(dead_letter_header_is_own("x-transmitter-batch-id", 22));
        cr_assert(dead_letter_header_is_own("x-transmitter-dead-lettered-at", 30));
        cr_assert_not(dead_letter_header_is_own("x-transmitter-replay-count", 26), "a replay's count stays");
        cr_assert_not(dead_letter_header_is_own("x-transmitter-replayed-reason", 29), "and its record");
        cr_assert_not(dead_letter_header_is_own("x-transmitter-reason-x", 22));
        cr_assert_not(dead_letter_header_is_own("x-transmitter-reason", 19), "length, not the NUL, ends the key");
        cr_assert_not(dead_letter_header_is_own("traceparent", 11));
}
