/* SPDX-License-Identifier: MIT */
#include "core/json-check.h"

/* The result does not depend on where in the body the first problem is: a body that is not UTF-8
 * anywhere is JSON_CHECK_INVALID_UTF8 (RFC 8259 §8.1 makes the encoding a precondition of JSON
 * text), otherwise a body that is not JSON is JSON_CHECK_NOT_JSON, otherwise one whose top level is
 * not an object is JSON_CHECK_NOT_OBJECT. The scanner consumes a non-ASCII byte only inside a
 * string, after validating its sequence, so at a syntax error everything before the error is known
 * to be UTF-8 and only the rest needs a look. That look happens on the error path alone.
 *
 * The member "id" is recognised by its raw key bytes only: a key spelled with escapes ("\u0069d")
 * is not "id". CloudEvents producers never escape ASCII names, and decoding keys would cost the
 * hot path; such an event merely falls back to the body hash for the batch id. When the top level
 * repeats "id", the last one counts, as it does for the usual parsers (json-c, Python, JavaScript)
 * a destination reads with: a trailing non-string "id" therefore leaves no id. */

#if defined(__SSE2__)
#  include <emmintrin.h>
#endif

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#  define JSON_CHECK_SWAR 1
#else
#  define JSON_CHECK_SWAR 0
#endif

/* Inside strings: the bytes that end the fast scan. */
static inline bool is_string_special(uint8_t c) {
        return c < 0x20 || c == '"' || c == '\\' || c >= 0x80;
}

static inline bool is_hex(uint8_t c) {
        return (uint8_t) (c - '0') < 10 || (uint8_t) ((c | 0x20) - 'a') < 6;
}

static inline bool is_ws(uint8_t c) {
        return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

static inline bool is_digit(uint8_t c) {
        return (uint8_t) (c - '0') < 10;
}

static inline bool is_cont(uint8_t c) {
        return (c & 0xc0) == 0x80;
}

/* Length of the well-formed UTF-8 sequence starting at p (its first byte >= 0x80), or 0.
 * Table 3-7 of the Unicode standard: the second byte's range excludes overlongs (E0, F0),
 * surrogates (ED) and code points above U+10FFFF (F4); C0, C1 and F5..FF never start one. */
static inline size_t utf8_sequence(const uint8_t *p, const uint8_t *end) {
        uint8_t c = p[0], lo = 0x80, hi = 0xbf;
        size_t n, avail = (size_t) (end - p);

        if (c >= 0xc2 && c <= 0xdf)
                n = 2;
        else if (c >= 0xe0 && c <= 0xef) {
                n = 3;
                if (c == 0xe0)
                        lo = 0xa0;
                else if (c == 0xed)
                        hi = 0x9f;
        } else if (c >= 0xf0 && c <= 0xf4) {
                n = 4;
                if (c == 0xf0)
                        lo = 0x90;
                else if (c == 0xf4)
                        hi = 0x8f;
        } else
                return 0;

        if (avail < n)
                return 0; /* truncated: the body ends inside the sequence */
        if (p[1] < lo || p[1] > hi)
                return 0;
        if (n >= 3 && !is_cont(p[2]))
                return 0;
        if (n == 4 && !is_cont(p[3]))
                return 0;
        return n;
}

/* Error path only: is [p, end) UTF-8? */
static bool utf8_valid(const uint8_t *p, const uint8_t *end) {
        while (p < end) {
                size_t n;

                if (*p < 0x80) {
                        p++;
                        continue;
                }
                n = utf8_sequence(p, end);
                if (n == 0)
                        return false;
                p += n;
        }
        return true;
}

/* Where the compiler would rather call: these sit in the loop that runs for every byte. */
#define _always_inline_ __attribute__((always_inline)) inline

/* The first byte at or after p that is_string_special(), or end. Strings are most of an event's
 * bytes, so they are scanned 16 bytes at a time with SSE2 (baseline on x86-64; one signed compare
 * catches both the control characters and the bytes >= 0x80), else 8 at a time in a register:
 * there the borrows of the subtractions can only mark bytes above a true hit, so the lowest marked
 * byte is still the first special one. */
static _always_inline_ const uint8_t *string_scan(const uint8_t *p, const uint8_t *end) {
#if defined(__SSE2__)
        const __m128i quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\');
        const __m128i space = _mm_set1_epi8(0x20);

        while (end - p >= 16) {
                __m128i x = _mm_loadu_si128((const __m128i *) (const void *) p);
                __m128i m = _mm_or_si128(_mm_cmpeq_epi8(x, quote), _mm_cmpeq_epi8(x, backslash));
                m = _mm_or_si128(m, _mm_cmplt_epi8(x, space));
                unsigned mask = (unsigned) _mm_movemask_epi8(m);

                if (mask != 0)
                        return p + __builtin_ctz(mask);
                p += 16;
        }
#endif
#if JSON_CHECK_SWAR
        const uint64_t ones = UINT64_C(0x0101010101010101), highs = UINT64_C(0x8080808080808080);

        while (end - p >= 8) {
                uint64_t x, t;

                memcpy(&x, p, sizeof(x));
                t = (x - ones * 0x20) | ((x ^ (ones * '"')) - ones) | ((x ^ (ones * '\\')) - ones) | x;
                t &= highs;
                if (t != 0)
                        return p + (__builtin_ctzll(t) >> 3);
                p += 8;
        }
#endif
        while (p < end && !is_string_special(*p))
                p++;
        return p;
}

/* Escapes and multi-byte characters: the rare part of a string, kept out of line. p is at the
 * special byte, which is not '"'. Returns where to resume scanning, or NULL at an error, p then
 * being where the string went wrong (never past an unvalidated byte). */
static const uint8_t *string_special(const uint8_t *p, const uint8_t *end) {
        uint8_t c = *p;

        if (c == '\\') {
                if (end - p < 2)
                        return NULL;
                switch (p[1]) {
                case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
                        return p + 2;
                case 'u':
                        /* Any four hex digits: a lone surrogate is syntactically JSON (RFC 8259 §8.2). */
                        if (end - p < 6 || !is_hex(p[2]) || !is_hex(p[3]) || !is_hex(p[4]) || !is_hex(p[5]))
                                return NULL;
                        return p + 6;
                default:
                        return NULL;
                }
        }
        if (c >= 0x80) {
                size_t n = utf8_sequence(p, end);
                return n > 0 ? p + n : NULL;
        }
        return NULL; /* a raw control character */
}

/* p is just past the opening quote. Returns the position just past the closing quote; on failure
 * NULL, with *ret_err at the byte where the string went wrong. */
static _always_inline_ const uint8_t *string_parse(const uint8_t *p, const uint8_t *end,
                                                   const uint8_t **ret_err) {
        for (;;) {
                const uint8_t *q;

                p = string_scan(p, end);
                if (_unlikely_(p >= end))
                        break;
                if (_likely_(*p == '"'))
                        return p + 1;
                q = string_special(p, end);
                if (!q)
                        break;
                p = q;
        }
        *ret_err = p;
        return NULL;
}

static _always_inline_ const uint8_t *skip_ws(const uint8_t *p, const uint8_t *end) {
        while (p < end && is_ws(*p))
                p++;
        return p;
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? ; returns the end or NULL. What follows is left to
 * the caller, so "01" fails there: after the number "0" comes a '1' where a separator must be. */
static inline const uint8_t *number_parse(const uint8_t *p, const uint8_t *end) {
        if (*p == '-' && ++p == end)
                return NULL;
        if (*p == '0')
                p++;
        else if (*p >= '1' && *p <= '9') {
                do
                        p++;
                while (p < end && is_digit(*p));
        } else
                return NULL;

        if (p < end && *p == '.') {
                if (++p == end || !is_digit(*p))
                        return NULL;
                do
                        p++;
                while (p < end && is_digit(*p));
        }
        if (p < end && (*p == 'e' || *p == 'E')) {
                if (++p < end && (*p == '+' || *p == '-'))
                        p++;
                if (p == end || !is_digit(*p))
                        return NULL;
                do
                        p++;
                while (p < end && is_digit(*p));
        }
        return p;
}

static inline const uint8_t *literal_parse(const uint8_t *p, const uint8_t *end, const char *lit, size_t n) {
        if ((size_t) (end - p) < n || memcmp(p, lit, n) != 0)
                return NULL;
        return p + n;
}

#define STACK_BIT(d) (UINT64_C(1) << ((d) % 64))

JsonCheck json_check_event(const void *body, size_t size, JsonEventId *ret_id) {
        const uint8_t *p = body, *end = p + size, *q, *err, *key;
        const uint8_t *id = NULL;
        size_t id_len = 0;
        /* The nesting stack, one bit per level: 1 object, 0 array. Level i (0 = top) is bit i; the
         * innermost level is also in in_object, read after every value. */
        uint64_t stack[(JSON_CHECK_MAX_DEPTH + 63) / 64] = { 0 };
        unsigned depth = 0;
        bool top_object, in_object = false;

        if (ret_id)
                *ret_id = (JsonEventId) { .id = NULL, .id_len = 0 };
        if (size == 0)
                return JSON_CHECK_EMPTY;

        p = skip_ws(p, end);
        if (p == end)
                return JSON_CHECK_EMPTY;
        top_object = *p == '{';

value:
        /* Compact JSON has no whitespace between tokens: each state looks at the byte first and
         * calls skip_ws() only when it is one, and each checks p < end before it reads. */
        if (_unlikely_(p >= end))
                goto syntax_error;
        if (_unlikely_(*p <= ' ')) {
                p = skip_ws(p, end);
                if (p >= end)
                        goto syntax_error;
        }
        switch (*p) {
        case '"':
                q = string_parse(p + 1, end, &err);
                if (!q) {
                        p = err;
                        goto syntax_error;
                }
                p = q;
                goto after_value;
        case '{':
                if (_unlikely_(depth >= JSON_CHECK_MAX_DEPTH))
                        goto syntax_error;
                stack[depth / 64] |= STACK_BIT(depth);
                depth++;
                in_object = true;
                p = skip_ws(p + 1, end);
                if (p < end && *p == '}') {
                        p++;
                        goto close;
                }
                goto member;
        case '[':
                if (_unlikely_(depth >= JSON_CHECK_MAX_DEPTH))
                        goto syntax_error;
                stack[depth / 64] &= ~STACK_BIT(depth);
                depth++;
                in_object = false;
                p = skip_ws(p + 1, end);
                if (p < end && *p == ']') {
                        p++;
                        goto close;
                }
                goto value;
        case '-':
        case '0': case '1': case '2': case '3': case '4': case '5': case '6': case '7': case '8': case '9':
                q = number_parse(p, end);
                break;
        case 't':
                q = literal_parse(p, end, "true", 4);
                break;
        case 'f':
                q = literal_parse(p, end, "false", 5);
                break;
        case 'n':
                q = literal_parse(p, end, "null", 4);
                break;
        default:
                goto syntax_error;
        }
        /* Numbers and literals are ASCII: on failure p at their start is a safe resume point. */
        if (!q)
                goto syntax_error;
        p = q;

after_value:
        if (depth == 0)
                goto done;
        if (_unlikely_(p >= end))
                goto syntax_error;
        if (_unlikely_(*p <= ' ')) {
                p = skip_ws(p, end);
                if (p >= end)
                        goto syntax_error;
        }
        if (*p == ',') {
                p++;
                if (in_object)
                        goto member;
                goto value;
        }
        if (*p != (in_object ? '}' : ']'))
                goto syntax_error;
        p++;

close:
        /* p is past the bracket that closed the innermost level. */
        depth--;
        if (depth == 0)
                goto done;
        in_object = stack[(depth - 1) / 64] & STACK_BIT(depth - 1);
        goto after_value;

member:
        /* At a key, or whitespace before it. */
        if (_unlikely_(p >= end))
                goto syntax_error;
        if (_unlikely_(*p != '"')) {
                p = skip_ws(p, end);
                if (p >= end || *p != '"')
                        goto syntax_error;
        }
        key = p + 1;
        q = string_parse(key, end, &err);
        if (!q) {
                p = err;
                goto syntax_error;
        }
        p = q;
        if (_unlikely_(p >= end || *p != ':')) {
                p = skip_ws(p, end);
                if (p >= end || *p != ':')
                        goto syntax_error;
        }
        p++;
        if (_unlikely_(depth == 1 && q - key == 3 && key[0] == 'i' && key[1] == 'd')) {
                p = skip_ws(p, end);
                id = NULL;
                id_len = 0;
                if (p < end && *p == '"') {
                        q = string_parse(p + 1, end, &err);
                        if (!q) {
                                p = err;
                                goto syntax_error;
                        }
                        id = p + 1;
                        id_len = (size_t) (q - 1 - id);
                        p = q;
                        goto after_value;
                }
        }
        goto value;

done:
        p = skip_ws(p, end);
        if (p != end)
                goto syntax_error;
        if (!top_object)
                return JSON_CHECK_NOT_OBJECT;
        if (ret_id)
                *ret_id = (JsonEventId) { .id = (const char *) id, .id_len = id_len };
        return JSON_CHECK_OK;

syntax_error:
        return utf8_valid(p, end) ? JSON_CHECK_NOT_JSON : JSON_CHECK_INVALID_UTF8;
}

static const char *const json_check_reason_table[_JSON_CHECK_MAX] = {
        [JSON_CHECK_EMPTY] = "empty",
        [JSON_CHECK_INVALID_UTF8] = "invalid_utf8",
        [JSON_CHECK_NOT_JSON] = "not_json",
        [JSON_CHECK_NOT_OBJECT] = "not_object",
};

/* NULL for JSON_CHECK_OK, which is no failure, and for values out of range. */
const char *json_check_to_reason(JsonCheck c) {
        if ((unsigned) c >= _JSON_CHECK_MAX)
                return NULL;
        return json_check_reason_table[c];
}
