/* SPDX-License-Identifier: MIT */
#include <inttypes.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>

#include "core/dead-letter-report.h"
#include "core/timespan.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(json_object *, json_object_put);

static int count_add(DeadLetterCount **list, size_t *n, const char *key) {
        DeadLetterCount *l;

        for (size_t i = 0; i < *n; i++)
                if (streq((*list)[i].key, key)) {
                        (*list)[i].count++;
                        return 0;
                }
        l = realloc(*list, (*n + 1) * sizeof **list);
        if (!l)
                return -ENOMEM;
        *list = l;
        l[*n] = (DeadLetterCount) { .count = 1 };
        snprintf(l[*n].key, sizeof l[*n].key, "%s", key);
        (*n)++;
        return 0;
}

int dead_letter_summary_add(DeadLetterSummary *s, const DeadLetterEntry *e, bool matched) {
        int r;

        s->in_queue++;
        if (!matched)
                return 0;
        s->total++;
        s->bytes += e->size;
        r = count_add(&s->reasons, &s->n_reasons, e->reason);
        if (r < 0)
                return r;
        if (e->http_status > 0) {
                char code[16];

                snprintf(code, sizeof code, "%ld", e->http_status);
                r = count_add(&s->statuses, &s->n_statuses, code);
                if (r < 0)
                        return r;
        }
        if (e->dead_lettered_at == 0)
                s->time_unknown++;
        else {
                if (s->oldest == 0 || e->dead_lettered_at < s->oldest)
                        s->oldest = e->dead_lettered_at;
                if (e->dead_lettered_at > s->newest)
                        s->newest = e->dead_lettered_at;
        }
        return 0;
}

void dead_letter_summary_done(DeadLetterSummary *s) {
        s->reasons = mfree(s->reasons);
        s->statuses = mfree(s->statuses);
        s->n_reasons = s->n_statuses = 0;
}

/* Most first; ties by name, so that the output does not depend on the queue's order. */
static int count_compare(const void *a, const void *b) {
        const DeadLetterCount *x = a, *y = b;

        if (x->count != y->count)
                return x->count > y->count ? -1 : 1;
        return strcmp(x->key, y->key);
}

static DeadLetterCount *sorted_counts(const DeadLetterCount *l, size_t n) {
        DeadLetterCount *copy = malloc(MAX(n, (size_t) 1) * sizeof *copy);

        if (!copy)
                return NULL;
        if (n > 0) {
                memcpy(copy, l, n * sizeof *copy);
                qsort(copy, n, sizeof *copy, count_compare);
        }
        return copy;
}

static int appendf(Buffer *out, const char *format, ...) _printf_(2, 3);
static int appendf(Buffer *out, const char *format, ...) {
        va_list ap;
        int n;

        va_start(ap, format);
        n = vsnprintf(NULL, 0, format, ap);
        va_end(ap);
        if (n < 0)
                return -EINVAL;
        if (buffer_reserve(out, (size_t) n + 1) < 0)
                return -ENOMEM;
        va_start(ap, format);
        (void) vsnprintf((char *) out->data + out->size, (size_t) n + 1, format, ap);
        va_end(ap);
        out->size += (size_t) n;
        return 0;
}

/* 1234567 -> "1,234,567". */
static const char *format_count(char buf[static 32], uint64_t n) {
        char digits[32];
        size_t len, j = 0;

        snprintf(digits, sizeof digits, "%" PRIu64, n);
        len = strlen(digits);
        for (size_t i = 0; i < len; i++) {
                if (i > 0 && (len - i) % 3 == 0)
                        buf[j++] = ',';
                buf[j++] = digits[i];
        }
        buf[j] = '\0';
        return buf;
}

/* 512 -> "512 B", 31948 -> "31.2 KiB". */
static const char *format_bytes(char buf[static 32], uint64_t n) {
        static const char *const units[] = { "KiB", "MiB", "GiB", "TiB" };
        double v = (double) n;
        size_t i = 0;

        if (n < 1024) {
                snprintf(buf, 32, "%" PRIu64 " B", n);
                return buf;
        }
        v /= 1024;
        while (v >= 1024 && i + 1 < ELEMENTSOF(units)) {
                v /= 1024;
                i++;
        }
        snprintf(buf, 32, "%.1f %s", v, units[i]);
        return buf;
}

static const char *format_ago(char buf[static 64], usec_t t, usec_t now) {
        char span[TIMESPAN_MAX];

        if (t > now)
                snprintf(buf, 64, "in the future");
        else
                snprintf(buf, 64, "%s ago", format_timespan(span, now - t));
        return buf;
}

static int list_counts_text(Buffer *out, const char *title, const DeadLetterCount *l, size_t n) {
        _cleanup_free_ DeadLetterCount *sorted = NULL;
        size_t width = 0;
        int r;

        if (n == 0)
                return 0;
        sorted = sorted_counts(l, n);
        if (!sorted)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                width = MAX(width, strlen(sorted[i].key));
        r = appendf(out, "\n%s:\n", title);
        for (size_t i = 0; r >= 0 && i < n; i++) {
                char c[32];
                r = appendf(out, "  %-*s %8s\n", (int) width, sorted[i].key, format_count(c, sorted[i].count));
        }
        return r;
}

typedef struct Column {
        const char *title;
        size_t width;
} Column;

enum { COL_POSITION, COL_EVENT_ID, COL_REASON, COL_STATUS, COL_BATCH_ID, COL_TIME, COL_SIZE, COL_REPLAYS, _COL_MAX };

static void row_cells(const DeadLetterEntry *e, char cells[_COL_MAX][DEAD_LETTER_EVENT_ID_MAX]) {
        char t[TIMESTAMP_MAX], b[32];

        snprintf(cells[COL_POSITION], DEAD_LETTER_EVENT_ID_MAX, "%" PRIu64, e->position);
        snprintf(cells[COL_EVENT_ID], DEAD_LETTER_EVENT_ID_MAX, "%s", e->event_id[0] ? e->event_id : "-");
        snprintf(cells[COL_REASON], DEAD_LETTER_EVENT_ID_MAX, "%s", e->reason);
        if (e->http_status > 0)
                snprintf(cells[COL_STATUS], DEAD_LETTER_EVENT_ID_MAX, "%ld", e->http_status);
        else
                snprintf(cells[COL_STATUS], DEAD_LETTER_EVENT_ID_MAX, "-");
        snprintf(cells[COL_BATCH_ID], DEAD_LETTER_EVENT_ID_MAX, "%s", e->batch_id[0] ? e->batch_id : "-");
        /* The header line says UTC; the column drops it to stay narrow. */
        format_timestamp(t, e->dead_lettered_at, false);
        if (e->dead_lettered_at > 0)
                t[strlen(t) - strlen(" UTC")] = '\0';
        snprintf(cells[COL_TIME], DEAD_LETTER_EVENT_ID_MAX, "%s", t);
        snprintf(cells[COL_SIZE], DEAD_LETTER_EVENT_ID_MAX, "%s", format_bytes(b, e->size));
        snprintf(cells[COL_REPLAYS], DEAD_LETTER_EVENT_ID_MAX, "%" PRIu64, e->replay_count);
}

static int list_page_text(const DeadLetterListing *l, Buffer *out) {
        Column cols[_COL_MAX] = {
                [COL_POSITION] = { "POS" },       [COL_EVENT_ID] = { "EVENT ID" },
                [COL_REASON] = { "REASON" },      [COL_STATUS] = { "STATUS" },
                [COL_BATCH_ID] = { "BATCH ID" },  [COL_TIME] = { "DEAD-LETTERED (UTC)" },
                [COL_SIZE] = { "SIZE" },          [COL_REPLAYS] = { "REPLAYS" },
        };
        char cells[_COL_MAX][DEAD_LETTER_EVENT_ID_MAX];
        int r = 0;

        for (size_t c = 0; c < _COL_MAX; c++)
                cols[c].width = strlen(cols[c].title);
        for (size_t i = 0; i < l->n_page; i++) {
                row_cells(&l->page[i], cells);
                for (size_t c = 0; c < _COL_MAX; c++)
                        cols[c].width = MAX(cols[c].width, strlen(cells[c]));
        }

        r = appendf(out, "\n");
        for (size_t c = 0; r >= 0 && c < _COL_MAX; c++)
                r = c + 1 < _COL_MAX ? appendf(out, "%-*s  ", (int) cols[c].width, cols[c].title)
                                     : appendf(out, "%*s\n", (int) cols[c].width, cols[c].title);
        for (size_t i = 0; r >= 0 && i < l->n_page; i++) {
                row_cells(&l->page[i], cells);
                for (size_t c = 0; r >= 0 && c < _COL_MAX; c++) {
                        bool right = c == COL_POSITION || c == COL_SIZE || c == COL_REPLAYS;
                        if (c + 1 == _COL_MAX)
                                r = appendf(out, "%*s\n", (int) cols[c].width, cells[c]);
                        else
                                r = appendf(out, right ? "%*s  " : "%-*s  ", (int) cols[c].width, cells[c]);
                }
        }
        return r;
}

int dead_letter_list_text(const DeadLetterListing *l, Buffer *out) {
        const DeadLetterSummary *s = l->summary;
        char a[32], b[32], t[TIMESTAMP_MAX], ago[64];
        int r;

        buffer_clear(out);
        if (l->filtered)
                r = appendf(out, "%s: %s of %s dead letters match", l->queue, format_count(a, s->total),
                            format_count(b, s->in_queue));
        else
                r = appendf(out, "%s: %s dead letters", l->queue, format_count(a, s->total));
        if (r >= 0 && s->total > 0)
                r = appendf(out, " (%s)", format_bytes(b, s->bytes));
        if (r >= 0)
                r = appendf(out, "\n");
        if (r >= 0 && s->oldest > 0)
                r = appendf(out, "  oldest: %s (%s)\n", format_timestamp(t, s->oldest, false),
                            format_ago(ago, s->oldest, l->now));
        if (r >= 0 && s->newest > 0)
                r = appendf(out, "  newest: %s (%s)\n", format_timestamp(t, s->newest, false),
                            format_ago(ago, s->newest, l->now));
        if (r >= 0 && s->time_unknown > 0)
                r = appendf(out, "  %s without a time\n", format_count(a, s->time_unknown));
        if (r >= 0)
                r = list_counts_text(out, "By reason", s->reasons, s->n_reasons);
        if (r >= 0)
                r = list_counts_text(out, "By HTTP status", s->statuses, s->n_statuses);
        if (r >= 0 && l->n_page > 0)
                r = list_page_text(l, out);
        if (r >= 0 && s->total > l->n_page)
                r = appendf(out, "\n%s of %s shown (--limit N shows more, --limit 0 all).\n",
                            format_count(a, l->n_page), format_count(b, s->total));
        return r;
}

static json_object *string_or_null(const char *s) {
        return isempty(s) ? NULL : json_object_new_string(s);
}

static json_object *time_or_null(usec_t t) {
        char buf[TIMESTAMP_MAX];
        return t > 0 ? json_object_new_string(format_timestamp(buf, t, true)) : NULL;
}

static json_object *entry_json(const DeadLetterEntry *e) {
        json_object *o = json_object_new_object();

        if (!o)
                return NULL;
        json_object_object_add(o, "position", json_object_new_uint64(e->position));
        json_object_object_add(o, "event_id", string_or_null(e->event_id));
        json_object_object_add(o, "reason", json_object_new_string(e->reason));
        json_object_object_add(o, "http_status", e->http_status > 0 ? json_object_new_int64(e->http_status) : NULL);
        json_object_object_add(o, "batch_id", string_or_null(e->batch_id));
        json_object_object_add(o, "dead_lettered_at", time_or_null(e->dead_lettered_at));
        json_object_object_add(o, "published_at", time_or_null(e->published_at));
        json_object_object_add(o, "size", json_object_new_uint64(e->size));
        json_object_object_add(o, "routing_key", json_object_new_string(e->routing_key));
        json_object_object_add(o, "replay_count", json_object_new_uint64(e->replay_count));
        return o;
}

static json_object *counts_json(const DeadLetterCount *l, size_t n) {
        _cleanup_free_ DeadLetterCount *sorted = sorted_counts(l, n);
        json_object *o = json_object_new_object();

        if (!sorted || !o) {
                json_object_put(o);
                return NULL;
        }
        for (size_t i = 0; i < n; i++)
                json_object_object_add(o, sorted[i].key, json_object_new_uint64(sorted[i].count));
        return o;
}

static int emit(json_object *o, int flags, Buffer *out) {
        size_t len;
        const char *s = json_object_to_json_string_length(o, flags | JSON_C_TO_STRING_NOSLASHESCAPE, &len);

        buffer_clear(out);
        if (!s)
                return -ENOMEM;
        if (buffer_append(out, s, len) < 0 || buffer_append(out, "\n", 1) < 0)
                return -ENOMEM;
        return 0;
}

int dead_letter_list_json(const DeadLetterListing *l, Buffer *out) {
        _cleanup_(json_object_putp) json_object *o = json_object_new_object();
        const DeadLetterSummary *s = l->summary;
        json_object *messages = json_object_new_array(), *reasons = counts_json(s->reasons, s->n_reasons),
                    *statuses = counts_json(s->statuses, s->n_statuses);

        if (!o || !messages || !reasons || !statuses) {
                json_object_put(messages);
                json_object_put(reasons);
                json_object_put(statuses);
                return -ENOMEM;
        }
        json_object_object_add(o, "queue", json_object_new_string(l->queue));
        json_object_object_add(o, "in_queue", json_object_new_uint64(s->in_queue));
        json_object_object_add(o, "matched", json_object_new_uint64(s->total));
        json_object_object_add(o, "bytes", json_object_new_uint64(s->bytes));
        json_object_object_add(o, "by_reason", reasons);
        json_object_object_add(o, "by_http_status", statuses);
        json_object_object_add(o, "oldest", time_or_null(s->oldest));
        json_object_object_add(o, "newest", time_or_null(s->newest));
        json_object_object_add(o, "time_unknown", json_object_new_uint64(s->time_unknown));
        for (size_t i = 0; i < l->n_page; i++) {
                json_object *e = entry_json(&l->page[i]);
                if (!e || json_object_array_add(messages, e) < 0) {
                        json_object_put(e);
                        json_object_put(messages);
                        return -ENOMEM;
                }
        }
        json_object_object_add(o, "messages", messages);
        return emit(o, JSON_C_TO_STRING_PLAIN, out);
}

/* Bytes as text: printable ASCII as is, \\, \n, \t, and \xNN for the rest. */
static int append_escaped(Buffer *out, const uint8_t *p, size_t n) {
        int r = 0;

        for (size_t i = 0; r >= 0 && i < n; i++) {
                if (p[i] == '\\')
                        r = buffer_append(out, "\\\\", 2);
                else if (p[i] == '\n')
                        r = buffer_append(out, "\\n", 2);
                else if (p[i] == '\t')
                        r = buffer_append(out, "\\t", 2);
                else if (p[i] >= 0x20 && p[i] < 0x7f)
                        r = buffer_append(out, &p[i], 1);
                else
                        r = appendf(out, "\\x%02x", p[i]);
        }
        return r;
}

static json_object *parse_body(const void *body, size_t size) {
        json_tokener *tok;
        json_object *o;

        if (size > INT32_MAX)
                return NULL;
        tok = json_tokener_new_ex(JSON_TOKENER_DEFAULT_DEPTH);
        if (!tok)
                return NULL;
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
        o = json_tokener_parse_ex(tok, body, (int) size);
        if (o && json_tokener_get_parse_end(tok) != size) {
                json_object_put(o);
                o = NULL;
        }
        json_tokener_free(tok);
        return o;
}

static int show_fields_text(Buffer *out, const char *title, const DeadLetterField *f, size_t n) {
        int r = appendf(out, "\n%s:%s\n", title, n == 0 ? " none" : "");

        for (size_t i = 0; r >= 0 && i < n; i++)
                r = appendf(out, "  %s: %s\n", f[i].name, f[i].value);
        return r;
}

int dead_letter_show_text(const DeadLetterMessageView *v, Buffer *out) {
        const DeadLetterEntry *e = v->entry;
        _cleanup_(json_object_putp) json_object *body = NULL;
        char t[TIMESTAMP_MAX], ago[64], n[32];
        int r;

        buffer_clear(out);
        r = appendf(out, "Position:      %" PRIu64 "\n", e->position);
        if (r >= 0)
                r = appendf(out, "Event id:      %s\n", e->event_id[0] ? e->event_id : "-");
        if (r >= 0)
                r = appendf(out, "Reason:        %s\n", e->reason);
        if (r >= 0 && e->http_status > 0)
                r = appendf(out, "HTTP status:   %ld\n", e->http_status);
        if (r >= 0 && e->batch_id[0])
                r = appendf(out, "Batch id:      %s\n", e->batch_id);
        if (r >= 0)
                r = e->dead_lettered_at > 0 ? appendf(out, "Dead-lettered: %s (%s)\n",
                                                      format_timestamp(t, e->dead_lettered_at, false),
                                                      format_ago(ago, e->dead_lettered_at, v->now))
                                            : appendf(out, "Dead-lettered: unknown\n");
        if (r >= 0 && e->published_at > 0)
                r = appendf(out, "Published:     %s (%s)\n", format_timestamp(t, e->published_at, false),
                            format_ago(ago, e->published_at, v->now));
        if (r >= 0)
                r = appendf(out, "Replays:       %" PRIu64 "\n", e->replay_count);
        if (r >= 0)
                r = appendf(out, "Routing key:   %s\n", e->routing_key);
        if (r >= 0)
                r = appendf(out, "Size:          %s bytes\n", format_count(n, e->size));
        if (r >= 0)
                r = show_fields_text(out, "Properties", v->properties, v->n_properties);
        if (r >= 0)
                r = show_fields_text(out, "Headers", v->headers, v->n_headers);
        if (r < 0)
                return r;

        if (e->body_is_json)
                body = parse_body(v->body, v->body_size);
        if (body) {
                const char *s = json_object_to_json_string_ext(
                        body, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE);
                if (!s)
                        return -ENOMEM;
                return appendf(out, "\nBody (JSON):\n%s\n", s);
        }
        if (v->body_size == 0)
                return appendf(out, "\nBody: empty\n");
        r = appendf(out, "\nBody: not a JSON object, shown as text%s:\n",
                    v->body_size > v->body_max ? " (truncated)" : "");
        if (r >= 0)
                r = append_escaped(out, v->body, MIN(v->body_size, v->body_max));
        if (r >= 0 && v->body_size > v->body_max)
                r = appendf(out, "\n... %s more bytes", format_count(n, v->body_size - v->body_max));
        if (r >= 0)
                r = appendf(out, "\n");
        return r;
}

static json_object *fields_json(const DeadLetterField *f, size_t n) {
        json_object *o = json_object_new_object();

        for (size_t i = 0; o && i < n; i++)
                json_object_object_add(o, f[i].name, json_object_new_string(f[i].value));
        return o;
}

int dead_letter_show_json(const DeadLetterMessageView *v, Buffer *out) {
        _cleanup_(json_object_putp) json_object *o = json_object_new_object();
        json_object *body = NULL, *text = NULL;
        size_t shown = MIN(v->body_size, v->body_max);

        if (!o)
                return -ENOMEM;
        if (v->entry->body_is_json)
                body = parse_body(v->body, v->body_size);
        if (!body) {
                _cleanup_free_ char *copy = malloc(shown + 1);

                if (!copy)
                        return -ENOMEM;
                memcpy(copy, v->body, shown);
                copy[shown] = '\0';
                /* A NUL would end the string early; text_sanitize() makes the rest printable. */
                for (size_t i = 0; i < shown; i++)
                        if (copy[i] == '\0')
                                copy[i] = '?';
                text = json_object_new_string(text_sanitize(copy));
        }
        json_object_object_add(o, "message", entry_json(v->entry));
        json_object_object_add(o, "properties", fields_json(v->properties, v->n_properties));
        json_object_object_add(o, "headers", fields_json(v->headers, v->n_headers));
        json_object_object_add(o, "body", body);
        json_object_object_add(o, "body_text", text);
        json_object_object_add(o, "body_truncated", json_object_new_boolean(!body && shown < v->body_size));
        return emit(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED, out);
}

void dead_letter_progress(char *buf, size_t size, const char *verb, const char *done_word, uint64_t read,
                          uint64_t total, uint64_t done, usec_t elapsed) {
        char a[32], b[32], c[32];
        double rate = elapsed > 0 ? (double) read * USEC_PER_SEC / (double) elapsed : 0;

        snprintf(buf, size, "%s: %s of %s read, %s %s, %.0f/s", verb, format_count(a, read), format_count(b, total),
                 format_count(c, done), done_word, rate);
}
