/* SPDX-License-Identifier: MIT */
/* json_check_event() on message bodies (core/json-check.c): what the broker hands over, from any
 * publisher. Invariants:
 *   - no crash, no read outside the body (the body is a heap block of exactly its size, not
 *     NUL-terminated, as the broker's is);
 *   - a failure leaves no id; an id lies inside the body and holds no unescaped '"';
 *   - json-c's strict parser (JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8) is an independent
 *     judgement, but a more lenient one: what json-c refuses, json-check refuses; what json-check
 *     accepts, json-c accepts as the same kind (object or not); and where json-c accepts what
 *     json-check refuses, the body holds one of json-c's known leniencies (json_c_lenient());
 *   - where the body has no backslash at all (no escaped key could spell "id"), the id is what
 *     json-c finds as the top-level string member "id" (the last one, for both);
 *   - the verdict does not change with whitespace added around the body;
 *   - "invalid_utf8" exactly when a decoder written here from RFC 3629 §4 (code points, not byte
 *     ranges) finds a byte sequence that is not UTF-8 (json-c accepts overlongs and surrogates). */
#include <json-c/json.h>

#include "core/json-check.h"
#include "fuzz.h"

/* Nesting depth for json-c: one more than ours, so that a body ours refuses as too deep is one
 * json-c reads; those are left out of the comparison by depth_at_limit(). */
#define JSON_C_DEPTH (JSON_CHECK_MAX_DEPTH + 1)

typedef enum Verdict {
        VERDICT_INVALID,    /* empty, not UTF-8 or not JSON */
        VERDICT_NOT_OBJECT,
        VERDICT_OBJECT,
        VERDICT_SKIP,       /* no independent judgement possible */
} Verdict;

/* Whether the brackets outside strings nest as deep as our limit: there ours says "not JSON" on
 * purpose, while json-c has a limit of its own. Counts only what a scanner of strings and
 * escapes sees, which is enough to recognise such bodies. */
static bool depth_at_limit(const uint8_t *p, size_t size) {
        unsigned depth = 0;
        bool in_string = false;

        for (size_t i = 0; i < size; i++) {
                if (in_string) {
                        if (p[i] == '\\')
                                i++;
                        else if (p[i] == '"')
                                in_string = false;
                        continue;
                }
                if (p[i] == '"')
                        in_string = true;
                else if (p[i] == '{' || p[i] == '[') {
                        if (++depth >= JSON_CHECK_MAX_DEPTH)
                                return true;
                } else if ((p[i] == '}' || p[i] == ']') && depth > 0)
                        depth--;
        }
        return false;
}

static Verdict json_c_verdict(const uint8_t *data, size_t size, json_object **ret) {
        struct json_tokener *tok;
        json_object *o;
        Verdict v;
        size_t i;

        *ret = NULL;
        /* json-c reads a NUL byte as the end of the text; a body with one is not JSON for us. */
        if (memchr(data, '\0', size) || size > INT32_MAX || depth_at_limit(data, size))
                return VERDICT_SKIP;

        tok = json_tokener_new_ex(JSON_C_DEPTH);
        if (!tok)
                abort();
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
        o = json_tokener_parse_ex(tok, (const char *) data, (int) size);
        i = json_tokener_get_parse_end(tok);
        if (!o && json_tokener_get_error(tok) == json_tokener_continue) {
                /* The text ended inside a value; json-c waits for more. "123" ends like that too:
                 * a NUL says that nothing follows. All of the body was then read. */
                o = json_tokener_parse_ex(tok, "", 1);
                i = size;
        }
        /* A JSON null is a NULL json_object: success tells it from a failure. */
        if (json_tokener_get_error(tok) != json_tokener_success) {
                json_tokener_free(tok);
                json_object_put(o);
                return VERDICT_INVALID;
        }
        /* Strict mode stops after the value; only whitespace may follow. */
        json_tokener_free(tok);
        for (; i < size; i++)
                if (!strchr(" \t\r\n", data[i]) || data[i] == '\0') {
                        json_object_put(o);
                        return VERDICT_INVALID;
                }
        v = json_object_is_type(o, json_type_object) ? VERDICT_OBJECT : VERDICT_NOT_OBJECT;
        *ret = o;
        return v;
}

/* RFC 3629: each sequence decodes to a scalar value (no surrogate, at most U+10FFFF) in its
 * shortest form. */
static bool utf8_valid(const uint8_t *p, size_t size) {
        for (size_t i = 0; i < size;) {
                uint32_t cp, min;
                size_t n;

                if (p[i] < 0x80) {
                        i++;
                        continue;
                }
                if ((p[i] & 0xe0) == 0xc0)
                        n = 2, cp = p[i] & 0x1f, min = 0x80;
                else if ((p[i] & 0xf0) == 0xe0)
                        n = 3, cp = p[i] & 0x0f, min = 0x800;
                else if ((p[i] & 0xf8) == 0xf0)
                        n = 4, cp = p[i] & 0x07, min = 0x10000;
                else
                        return false;
                if (size - i < n)
                        return false;
                for (size_t k = 1; k < n; k++) {
                        if ((p[i + k] & 0xc0) != 0x80)
                                return false;
                        cp = cp << 6 | (p[i + k] & 0x3f);
                }
                if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                        return false;
                i += n;
        }
        return true;
}

/* Whether the body holds something json-c's strict mode accepts although RFC 8259 does not:
 * single-quoted strings, raw control characters in strings, NaN and Infinity, and numbers
 * like "1.", "1.e5", "-.5", "00", "-01". A byte-level over-approximation: it only decides which
 * bodies json-c's acceptance proves nothing about. */
static bool json_c_lenient(const uint8_t *p, size_t size) {
        for (size_t i = 0; i < size; i++) {
                uint8_t prev = i > 0 ? p[i - 1] : ' ', next = i + 1 < size ? p[i + 1] : ' ';
                bool prev_in_number = (prev >= '0' && prev <= '9') || prev == '.' || prev == 'e' || prev == 'E' ||
                                      prev == '+';

                if (p[i] == '\'' || p[i] < 0x20)
                        return true;
                if (p[i] == '.' && !(next >= '0' && next <= '9'))
                        return true;
                if (p[i] == '-' && next == '.')
                        return true;
                if (p[i] == '0' && !prev_in_number && next >= '0' && next <= '9')
                        return true;
        }
        return memmem(p, size, "NaN", 3) || memmem(p, size, "Infinity", 8);
}

static Verdict our_verdict(JsonCheck c) {
        switch (c) {
        case JSON_CHECK_OK:
                return VERDICT_OBJECT;
        case JSON_CHECK_NOT_OBJECT:
                return VERDICT_NOT_OBJECT;
        default:
                return VERDICT_INVALID;
        }
}

static const char *verdict_name(Verdict v) {
        static const char *const names[] = { "invalid", "not an object", "an object", "skipped" };
        return names[v];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_free_ uint8_t *body = NULL, *padded = NULL;
        JsonEventId id = { .id = (const char *) 1, .id_len = 99 }, id2;
        json_object *o = NULL, *member;
        JsonCheck c, c2;
        Verdict theirs;

        body = malloc(MAX(size, (size_t) 1));
        if (!body)
                abort();
        if (size > 0)
                memcpy(body, data, size);

        c = json_check_event(body, size, &id);
        FUZZ_CHECK((unsigned) c < _JSON_CHECK_MAX, data, size, "result %d out of range", (int) c);
        FUZZ_CHECK(c == JSON_CHECK_OK || json_check_to_reason(c), data, size, "no reason for result %d", (int) c);
        if (c != JSON_CHECK_OK)
                FUZZ_CHECK(!id.id && id.id_len == 0, data, size, "a failed check left an id");
        if (id.id) {
                const uint8_t *p = (const uint8_t *) id.id;

                FUZZ_CHECK(p > body && p + id.id_len < body + size, data, size, "id outside the body");
                FUZZ_CHECK(p[-1] == '"' && p[id.id_len] == '"', data, size, "id not between quotes");
                for (size_t i = 0; i < id.id_len; i++)
                        if (p[i] == '"')
                                FUZZ_CHECK(i > 0 && p[i - 1] == '\\', data, size, "id holds an unescaped quote");
        }
        c2 = json_check_event(body, size, NULL);
        FUZZ_CHECK(c2 == c, data, size, "result depends on ret_id being given");

        /* Whitespace around the body changes nothing but an empty body's verdict. */
        padded = malloc(size + 4);
        if (!padded)
                abort();
        memcpy(padded, " \n", 2);
        if (size > 0)
                memcpy(padded + 2, data, size);
        memcpy(padded + 2 + size, "\t\r", 2);
        c2 = json_check_event(padded, size + 4, &id2);
        FUZZ_CHECK(c2 == c, data, size, "whitespace around the body changed the result from %s to %s",
                   strempty(json_check_to_reason(c)), strempty(json_check_to_reason(c2)));
        FUZZ_CHECK(id2.id_len == id.id_len && (!id.id || memcmp(id.id, id2.id, id.id_len) == 0), data, size,
                   "whitespace around the body changed the id");

        FUZZ_CHECK((c == JSON_CHECK_INVALID_UTF8) == !utf8_valid(data, size), data, size,
                   "json-check says %s, the UTF-8 decoder here says %s", strempty(json_check_to_reason(c)),
                   utf8_valid(data, size) ? "UTF-8" : "not UTF-8");

        theirs = json_c_verdict(data, size, &o);
        if (theirs != VERDICT_SKIP && theirs != our_verdict(c))
                FUZZ_CHECK(theirs != VERDICT_INVALID && our_verdict(c) == VERDICT_INVALID &&
                                   (c == JSON_CHECK_INVALID_UTF8 || json_c_lenient(data, size)),
                           data, size, "json-check says %s (%s), json-c says %s", verdict_name(our_verdict(c)),
                           strempty(json_check_to_reason(c)), verdict_name(theirs));

        if (theirs == VERDICT_OBJECT && c == JSON_CHECK_OK && !memchr(data, '\\', size)) {
                bool has = json_object_object_get_ex(o, "id", &member) && json_object_is_type(member, json_type_string);

                FUZZ_CHECK(has == !!id.id, data, size, "json-c %s a string \"id\", json-check %s",
                           has ? "finds" : "does not find", id.id ? "does" : "does not");
                if (has)
                        FUZZ_CHECK((size_t) json_object_get_string_len(member) == id.id_len &&
                                           memcmp(json_object_get_string(member), id.id, id.id_len) == 0,
                                   data, size, "the ids differ: json-c \"%s\"", json_object_get_string(member));
        }
        json_object_put(o);
        return 0;
}
