/* SPDX-License-Identifier: MIT */
#include <json-c/json.h>
#include <stdio.h>

#include "core/dead-letter-entry.h"
#include "core/json-check.h"

/* Copies len bytes of s into buf (size bytes) as a printable C string; "" for NULL. Returns
 * false when it did not fit (buf then holds "" as well). */
static bool copy_text(char *buf, size_t size, const char *s, size_t len) {
        if (!s || len >= size) {
                buf[0] = '\0';
                return !s;
        }
        memcpy(buf, s, len);
        buf[len] = '\0';
        /* A NUL inside ends the string there; text_sanitize() handles the rest but for line
         * breaks and tabs, which have no place in a table row either. */
        text_sanitize(buf);
        for (char *p = buf; *p; p++)
                if (*p == '\n' || *p == '\t')
                        *p = ' ';
        return true;
}

/* The raw (escaped) bytes of a JSON string, unescaped. */
static void copy_event_id(DeadLetterEntry *e, const char *raw, size_t len) {
        _cleanup_free_ char *quoted = NULL;
        json_object *o;

        if (!memchr(raw, '\\', len)) {
                (void) copy_text(e->event_id, sizeof e->event_id, raw, len);
                return;
        }
        quoted = malloc(len + 3);
        if (!quoted)
                return;
        quoted[0] = '"';
        memcpy(quoted + 1, raw, len);
        quoted[len + 1] = '"';
        quoted[len + 2] = '\0';
        o = json_tokener_parse(quoted);
        if (o && json_object_is_type(o, json_type_string))
                (void) copy_text(e->event_id, sizeof e->event_id, json_object_get_string(o),
                                 (size_t) json_object_get_string_len(o));
        json_object_put(o);
}

void dead_letter_entry_init(DeadLetterEntry *e, uint64_t position, const DeadLetterHeaders *h, const void *body,
                            size_t body_size, const char *routing_key, size_t routing_key_len) {
        JsonEventId id = { 0 };

        *e = (DeadLetterEntry) {
                .position = position,
                .http_status = h->http_status > 0 && h->http_status < 1000 ? (long) h->http_status : 0,
                .replay_count = h->replay_count > 0 ? (uint64_t) h->replay_count : 0,
                .delivery_count = h->delivery_count > 0 ? (uint64_t) h->delivery_count : 0,
                .dead_lettered_at = h->dead_lettered_at > 0 ? h->dead_lettered_at : h->death_time,
                .published_at = h->timestamp,
                .size = body_size,
        };

        if (h->reason && h->reason_len > 0)
                (void) copy_text(e->reason, sizeof e->reason, h->reason, h->reason_len);
        else if (h->death_reason && h->death_reason_len > 0 && h->death_reason_len < sizeof e->reason - 8) {
                char why[DEAD_LETTER_REASON_MAX];

                (void) copy_text(why, sizeof why, h->death_reason, h->death_reason_len);
                snprintf(e->reason, sizeof e->reason, "x-death:%s", why);
        }
        if (e->reason[0] == '\0')
                snprintf(e->reason, sizeof e->reason, "unknown");

        (void) copy_text(e->batch_id, sizeof e->batch_id, h->batch_id, h->batch_id_len);
        (void) copy_text(e->routing_key, sizeof e->routing_key, routing_key, routing_key_len);

        e->body_is_json = json_check_event(body, body_size, &id) == JSON_CHECK_OK;
        if (e->body_is_json && id.id)
                copy_event_id(e, id.id, id.id_len);
}

bool dead_letter_reason_is_valid(const char *s) {
        size_t n = strlen(s);

        if (n == 0 || n >= DEAD_LETTER_REASON_MAX)
                return false;
        for (const char *p = s; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || strchr("_:.-", *p)))
                        return false;
        return true;
}

static bool in_list(char *const *list, size_t n, const char *s) {
        for (size_t i = 0; i < n; i++)
                if (streq(list[i], s))
                        return true;
        return false;
}

bool dead_letter_filter_match(const DeadLetterFilter *f, const DeadLetterEntry *e, usec_t now) {
        if (f->n_reasons > 0 && !in_list(f->reasons, f->n_reasons, e->reason))
                return false;
        if (f->n_event_ids > 0 && (e->event_id[0] == '\0' || !in_list(f->event_ids, f->n_event_ids, e->event_id)))
                return false;
        if (f->batch_id && !streq(f->batch_id, e->batch_id))
                return false;
        if (f->older_than > 0 && (e->dead_lettered_at == 0 || e->dead_lettered_at > now ||
                                  now - e->dead_lettered_at < f->older_than))
                return false;
        return true;
}

bool dead_letter_header_is_own(const char *key, size_t len) {
        static const char *const own[] = {
                DEAD_LETTER_HEADER_REASON,
                DEAD_LETTER_HEADER_HTTP_STATUS,
                DEAD_LETTER_HEADER_BATCH_ID,
                DEAD_LETTER_HEADER_DEAD_LETTERED_AT,
        };

        for (size_t i = 0; i < ELEMENTSOF(own); i++)
                if (len == strlen(own[i]) && memcmp(key, own[i], len) == 0)
                        return true;
        return false;
}

DeadLetterHeaderAction dead_letter_replay_header(const char *key, size_t len, char buf[static 256]) {
        const size_t prefix = strlen(DEAD_LETTER_HEADER_PREFIX), replayed = strlen(DEAD_LETTER_HEADER_REPLAYED_PREFIX);

        if (len < prefix || memcmp(key, DEAD_LETTER_HEADER_PREFIX, prefix) != 0)
                return DEAD_LETTER_HEADER_KEEP;
        /* The earlier replay's record is replaced by this one's: the reason headers about to be
         * renamed are those of the latest dead-lettering. */
        if ((len >= replayed && memcmp(key, DEAD_LETTER_HEADER_REPLAYED_PREFIX, replayed) == 0) ||
            (len == strlen(DEAD_LETTER_HEADER_REPLAY_COUNT) &&
             memcmp(key, DEAD_LETTER_HEADER_REPLAY_COUNT, len) == 0))
                return DEAD_LETTER_HEADER_DROP;
        if (len - prefix + replayed > 255)
                return DEAD_LETTER_HEADER_DROP;
        memcpy(buf, DEAD_LETTER_HEADER_REPLAYED_PREFIX, replayed);
        memcpy(buf + replayed, key + prefix, len - prefix);
        buf[replayed + len - prefix] = '\0';
        return DEAD_LETTER_HEADER_RENAME;
}
