/* SPDX-License-Identifier: MIT */
#include <criterion/criterion.h>
#include <json-c/json.h>
#include <stdio.h>

#include "core/json-check.h"

/* A literal with its length, so that embedded NULs count. */
#define L(s) (s), (sizeof(s) - 1)

static const char *const check_name[_JSON_CHECK_MAX] = {
        [JSON_CHECK_OK] = "OK",
        [JSON_CHECK_EMPTY] = "EMPTY",
        [JSON_CHECK_INVALID_UTF8] = "INVALID_UTF8",
        [JSON_CHECK_NOT_JSON] = "NOT_JSON",
        [JSON_CHECK_NOT_OBJECT] = "NOT_OBJECT",
};

/* Printable form of an input for failure messages; static, so one at a time. */
static const char *escaped(const void *data, size_t size) {
        static char buf[1024];
        const uint8_t *p = data;
        size_t j = 0;

        for (size_t i = 0; i < size && j + 8 < sizeof(buf); i++) {
                if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '\\')
                        buf[j++] = (char) p[i];
                else
                        j += (size_t) snprintf(buf + j, sizeof(buf) - j, "\\x%02x", p[i]);
        }
        if (j + 8 >= sizeof(buf))
                j += (size_t) snprintf(buf + j, sizeof(buf) - j, "...");
        buf[j] = '\0';
        return buf;
}

/* Checks a copy in a heap block of exactly size bytes, so that AddressSanitizer sees any read past
 * the end: the body handed over by the broker is not NUL-terminated either. */
static JsonCheck check_id(const void *data, size_t size, char **ret_id, size_t *ret_id_len) {
        uint8_t *copy = malloc(MAX(size, (size_t) 1));
        JsonEventId id = { .id = (const char *) 1, .id_len = 77 };
        JsonCheck c;

        cr_assert(copy);
        if (size > 0)
                memcpy(copy, data, size);
        c = json_check_event(copy, size, &id);
        if (c != JSON_CHECK_OK)
                cr_expect(!id.id && id.id_len == 0, "id not cleared on failure for '%s'", escaped(data, size));
        if (id.id) {
                cr_assert((const uint8_t *) id.id >= copy && (const uint8_t *) id.id + id.id_len <= copy + size,
                          "id does not point into the body");
        }
        if (ret_id) {
                *ret_id = id.id ? strndup(id.id, id.id_len) : NULL;
                *ret_id_len = id.id_len;
        }
        free(copy);
        return c;
}

static JsonCheck check(const void *data, size_t size) {
        return check_id(data, size, NULL, NULL);
}

#define expect_check(expected, lit)                                                                  \
        do {                                                                                         \
                JsonCheck _c = check(L(lit));                                                        \
                cr_expect_eq(_c, (expected), "'%s': got %s, want %s", escaped(L(lit)),               \
                             check_name[_c], check_name[(expected)]);                                \
        } while (0)

Test(json_check, empty) {
        JsonEventId id;

        expect_check(JSON_CHECK_EMPTY, "");
        expect_check(JSON_CHECK_EMPTY, " ");
        expect_check(JSON_CHECK_EMPTY, "\t\r\n ");
        expect_check(JSON_CHECK_EMPTY, "\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n");
        cr_expect_eq(json_check_event(NULL, 0, &id), JSON_CHECK_EMPTY);
        cr_expect_null(id.id);
        /* Only the four RFC 8259 whitespace characters are whitespace. */
        expect_check(JSON_CHECK_NOT_JSON, "\f");
        expect_check(JSON_CHECK_NOT_JSON, "\v");
        expect_check(JSON_CHECK_NOT_JSON, "\0");
}

Test(json_check, ok_objects) {
        expect_check(JSON_CHECK_OK, "{}");
        expect_check(JSON_CHECK_OK, " \t\r\n{ \t\r\n} \t\r\n");
        expect_check(JSON_CHECK_OK, "{\"a\":1}");
        expect_check(JSON_CHECK_OK, "{ \"a\" : 1 , \"b\" : [ ] , \"c\" : { } }");
        expect_check(JSON_CHECK_OK, "{\"\":\"\"}");
        expect_check(JSON_CHECK_OK, "{\"a\":true,\"b\":false,\"c\":null}");
        expect_check(JSON_CHECK_OK, "{\"a\":[true,false,null,[],{},\"\",0]}");
        expect_check(JSON_CHECK_OK, "{\"a\":{\"b\":{\"c\":[[[{\"d\":[1,[2,[3]]]}]]]}}}");
        expect_check(JSON_CHECK_OK, "{\"a\":1,\"a\":2}"); /* duplicate names: SHOULD, not MUST, be unique */
        expect_check(JSON_CHECK_OK,
                     "{\"specversion\":\"1.0\",\"id\":\"A234-1234-1234\",\"source\":\"/mycontext\","
                     "\"type\":\"com.example.someevent\",\"time\":\"2018-04-05T17:31:00Z\","
                     "\"datacontenttype\":\"application/json\",\"data\":{\"appinfoA\":\"abc\",\"appinfoB\":123,"
                     "\"appinfoC\":true}}");
}

Test(json_check, numbers) {
        expect_check(JSON_CHECK_OK, "{\"n\":0}");
        expect_check(JSON_CHECK_OK, "{\"n\":-0}");
        expect_check(JSON_CHECK_OK, "{\"n\":-0.0}");
        expect_check(JSON_CHECK_OK, "{\"n\":1e5}");
        expect_check(JSON_CHECK_OK, "{\"n\":1E5}");
        expect_check(JSON_CHECK_OK, "{\"n\":1e+5}");
        expect_check(JSON_CHECK_OK, "{\"n\":1e-5}");
        expect_check(JSON_CHECK_OK, "{\"n\":1.5E-3}");
        expect_check(JSON_CHECK_OK, "{\"n\":0e0}");
        expect_check(JSON_CHECK_OK, "{\"n\":1e05}"); /* leading zeros are allowed in the exponent */
        expect_check(JSON_CHECK_OK, "{\"n\":-123.456e789}");
        expect_check(JSON_CHECK_OK, "{\"n\":99999999999999999999999999999999999999}");
        expect_check(JSON_CHECK_OK, "{\"n\":[0,1,-1,10,0.5,-0.5]}");
        expect_check(JSON_CHECK_OK, "{\"n\":0 }");

        expect_check(JSON_CHECK_NOT_JSON, "{\"n\":01}");
        expect_check(JSON_CHECK_NOT_JSON, "{\"n\":00}");
        expect_check(JSON_CHECK_NOT_JSON, "{\"n\":-01}");
        expect_check(JSON_CHECK_NOT_JSON, "{\"n\":-}");
        expect_check(JSON_CHECK_NOT_JSON, "{\"n\":--1}");
        expect_check(JSON_CHECK_NOT_JSON, "{\"n\":+1}");
        expect_check(JSON_CHECK_NOT_JSON, "{\"n\":.5}");
        expect_check(JSON_CHECK_NOT_JSON, "{\"n\":-.5}");
        expect_check(JSON_CHECK_NOT_JSON, "{\"n\":1.}");
        expect_check(JSON_CHECK_NOT_JSON, "{\"n\":1.e5}");
        expect_check(JSON_CHECK_NOT_JSON, "{\"n\":1e}");
        expect_check(JSON_CHECK_NOT_JSON, "{\"n\":1e+}");
        expect_check(JSON_CHECK_NOT_JSON, "{\"n\":1e-}");
        expect_check(JSON_CHECK_NOT_JSON, "{\"n\":1ee5}");
        expect_check(JSON_CHECK_NOT_JSON, "{\"n\":1.5.5}");
        expect_check(JSON_CHECK_NOT_JSON, "{\"n\":0x10}");
        expect_check(JSON_CHECK_NOT_JSON, "{\"n\":NaN}");
        expect_check(JSON_CHECK_NOT_JSON, "{\"n\":Infinity}");
        expect_check(JSON_CHECK_NOT_JSON, "{\"n\":-Infinity}");
        expect_check(JSON_CHECK_NOT_JSON, "{\"n\":1 2}");
        expect_check(JSON_CHECK_NOT_JSON, "01");
        expect_check(JSON_CHECK_NOT_JSON, "-");
        expect_check(JSON_CHECK_NOT_JSON, "1.");
        expect_check(JSON_CHECK_NOT_JSON, "{\"n\":1}1");
}

Test(json_check, literals) {
        expect_check(JSON_CHECK_OK, "{\"a\":true}");
        expect_check(JSON_CHECK_OK, "{\"a\":false}");
        expect_check(JSON_CHECK_OK, "{\"a\":null}");
        expect_check(JSON_CHECK_NOT_JSON, "{\"a\":True}");
        expect_check(JSON_CHECK_NOT_JSON, "{\"a\":tru}");
        expect_check(JSON_CHECK_NOT_JSON, "{\"a\":truee}");
        expect_check(JSON_CHECK_NOT_JSON, "{\"a\":true1}");
        expect_check(JSON_CHECK_NOT_JSON, "{\"a\":fals}");
        expect_check(JSON_CHECK_NOT_JSON, "{\"a\":nul}");
        expect_check(JSON_CHECK_NOT_JSON, "{\"a\":NULL}");
        expect_check(JSON_CHECK_NOT_JSON, "{\"a\":undefined}");
        expect_check(JSON_CHECK_NOT_JSON, "{\"a\":t");
        expect_check(JSON_CHECK_NOT_JSON, "{\"a\":nu");
}

Test(json_check, strings_and_escapes) {
        expect_check(JSON_CHECK_OK, "{\"a\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"}");
        expect_check(JSON_CHECK_OK, "{\"a\":\"\\u0000\\u001f\\u0041\\uabcd\\uABCD\\uFFFF\"}");
        expect_check(JSON_CHECK_OK, "{\"a\":\"\\ud83d\\ude00\"}");  /* a surrogate pair */
        expect_check(JSON_CHECK_OK, "{\"a\":\"\\ud800\"}");         /* lone surrogates: syntactically JSON */
        expect_check(JSON_CHECK_OK, "{\"a\":\"\\udc00x\\ud800\"}");
        expect_check(JSON_CHECK_OK, "{\"a\":\"\x7f\"}");            /* DEL is no control character to JSON */
        expect_check(JSON_CHECK_OK, "{\"\\\"key\\\"\":\"}\"}");
        expect_check(JSON_CHECK_OK, "{\"a\":\"[{,:\"}");
        expect_check(JSON_CHECK_OK, "{\"a\":\"0123456789abcdefghijklmnopqrstuvwxyz\\\"0123456789\"}");

        expect_check(JSON_CHECK_NOT_JSON, "{\"a\":\"\\x\"}");
        expect_check(JSON_CHECK_NOT_JSON, "{\"a\":\"\\'\"}");
        expect_check(JSON_CHECK_NOT_JSON, "{\"a\":\"\\U0041\"}");
        expect_check(JSON_CHECK_NOT_JSON, "{\"a\":\"\\u\"}");
        expect_check(JSON_CHECK_NOT_JSON, "{\"a\":\"\\u1\"}");
        expect_check(JSON_CHECK_NOT_JSON, "{\"a\":\"\\u12\"}");
        expect_check(JSON_CHECK_NOT_JSON, "{\"a\":\"\\u123\"}");
        expect_check(JSON_CHECK_NOT_JSON, "{\"a\":\"\\u12g4\"}");
        expect_check(JSON_CHECK_NOT_JSON, "{\"a\":\"\\u-123\"}");
        expect_check(JSON_CHECK_NOT_JSON, "{\"a\":\"\\u 123\"}");
        expect_check(JSON_CHECK_NOT_JSON, "{\"a\":\"\\");
        expect_check(JSON_CHECK_NOT_JSON, "{\"a\":\"\\u12");
        expect_check(JSON_CHECK_NOT_JSON, "{\"a\":\"abc");
        expect_check(JSON_CHECK_NOT_JSON, "{\"a\":'abc'}");
        /* Raw control characters, tab and newline included, must be escaped inside strings. */
        expect_check(JSON_CHECK_NOT_JSON, "{\"a\":\"tab\there\"}");
        expect_check(JSON_CHECK_NOT_JSON, "{\"a\":\"line\nbreak\"}");
        expect_check(JSON_CHECK_NOT_JSON, "{\"a\":\"\r\"}");
        expect_check(JSON_CHECK_NOT_JSON, "{\"a\":\"\x01\"}");
        expect_check(JSON_CHECK_NOT_JSON, "{\"a\":\"\x1f\"}");
        expect_check(JSON_CHECK_NOT_JSON, "{\"a\":\"\0\"}");
        expect_check(JSON_CHECK_NOT_JSON, "{\"a\x01\":1}");
        /* Long strings take the word-at-a-time path: a special byte at every offset of a word. */
        for (size_t off = 0; off < 24; off++) {
                static const char specials[] = { '\x00', '\x01', '\x1f', '\n', '\t' };

                for (size_t k = 0; k < ELEMENTSOF(specials); k++) {
                        char doc[64];
                        size_t n = 0;

                        n += (size_t) sprintf(doc, "{\"a\":\"");
                        memset(doc + n, 'x', 24);
                        doc[n + off] = specials[k];
                        n += 24;
                        n += (size_t) sprintf(doc + n, "\"}");
                        cr_expect_eq(check(doc, n), JSON_CHECK_NOT_JSON, "'%s'", escaped(doc, n));
                        doc[6 + off] = '"'; /* the string ends early: what follows is garbage */
                        cr_expect_eq(check(doc, n), JSON_CHECK_NOT_JSON, "'%s'", escaped(doc, n));
                        doc[6 + off] = '\\'; /* "\x": no escape */
                        cr_expect_eq(check(doc, n), JSON_CHECK_NOT_JSON, "'%s'", escaped(doc, n));
                        if (off + 1 < 24) {
                                doc[6 + off + 1] = 'n';
                                cr_expect_eq(check(doc, n), JSON_CHECK_OK, "'%s'", escaped(doc, n));
                        }
                }
        }
}

Test(json_check, unicode_ok) {
        expect_check(JSON_CHECK_OK, "{\"a\":\"\xc2\x80\"}");                       /* U+0080 */
        expect_check(JSON_CHECK_OK, "{\"a\":\"\xdf\xbf\"}");                       /* U+07FF */
        expect_check(JSON_CHECK_OK, "{\"a\":\"\xe0\xa0\x80\"}");                   /* U+0800 */
        expect_check(JSON_CHECK_OK, "{\"a\":\"\xed\x9f\xbf\"}");                   /* U+D7FF */
        expect_check(JSON_CHECK_OK, "{\"a\":\"\xee\x80\x80\"}");                   /* U+E000 */
        expect_check(JSON_CHECK_OK, "{\"a\":\"\xef\xbf\xbf\"}");                   /* U+FFFF */
        expect_check(JSON_CHECK_OK, "{\"a\":\"\xf0\x90\x80\x80\"}");               /* U+10000 */
        expect_check(JSON_CHECK_OK, "{\"a\":\"\xf4\x8f\xbf\xbf\"}");               /* U+10FFFF */
        expect_check(JSON_CHECK_OK, "{\"a\":\"\xf0\x9f\x98\x80 \xf0\x9f\x9a\x80\"}"); /* 😀 🚀 */
        expect_check(JSON_CHECK_OK,
                     "{\"Grüße\":\"日本語テキスト\",\"emoji\":\"👍🏽\",\"ελληνικά\":[\"ñ\"]}");
        expect_check(JSON_CHECK_OK, "{\"a\":\"\xef\xbb\xbf\"}"); /* a BOM inside a string is just U+FEFF */
}

Test(json_check, invalid_utf8) {
        expect_check(JSON_CHECK_INVALID_UTF8, "{\"a\":\"\x80\"}");                 /* lone continuation */
        expect_check(JSON_CHECK_INVALID_UTF8, "{\"a\":\"\xbf\"}");
        expect_check(JSON_CHECK_INVALID_UTF8, "{\"a\":\"\xc0\xaf\"}");             /* overlong '/' */
        expect_check(JSON_CHECK_INVALID_UTF8, "{\"a\":\"\xc1\xbf\"}");
        expect_check(JSON_CHECK_INVALID_UTF8, "{\"a\":\"\xe0\x80\xaf\"}");         /* overlong, 3 bytes */
        expect_check(JSON_CHECK_INVALID_UTF8, "{\"a\":\"\xe0\x9f\xbf\"}");
        expect_check(JSON_CHECK_INVALID_UTF8, "{\"a\":\"\xf0\x80\x80\xaf\"}");     /* overlong, 4 bytes */
        expect_check(JSON_CHECK_INVALID_UTF8, "{\"a\":\"\xf0\x8f\xbf\xbf\"}");
        expect_check(JSON_CHECK_INVALID_UTF8, "{\"a\":\"\xed\xa0\x80\"}");         /* U+D800 */
        expect_check(JSON_CHECK_INVALID_UTF8, "{\"a\":\"\xed\xbf\xbf\"}");         /* U+DFFF */
        expect_check(JSON_CHECK_INVALID_UTF8, "{\"a\":\"\xed\xa0\xbd\xed\xb8\x80\"}"); /* CESU-8 pair */
        expect_check(JSON_CHECK_INVALID_UTF8, "{\"a\":\"\xf4\x90\x80\x80\"}");     /* U+110000 */
        expect_check(JSON_CHECK_INVALID_UTF8, "{\"a\":\"\xf5\x80\x80\x80\"}");
        expect_check(JSON_CHECK_INVALID_UTF8, "{\"a\":\"\xf8\x88\x80\x80\x80\"}"); /* 5-byte form */
        expect_check(JSON_CHECK_INVALID_UTF8, "{\"a\":\"\xfe\"}");
        expect_check(JSON_CHECK_INVALID_UTF8, "{\"a\":\"\xff\"}");
        expect_check(JSON_CHECK_INVALID_UTF8, "{\"a\":\"\xc3\"}");                 /* truncated before '"' */
        expect_check(JSON_CHECK_INVALID_UTF8, "{\"a\":\"\xe2\x82\"}");
        expect_check(JSON_CHECK_INVALID_UTF8, "{\"a\":\"\xf0\x9f\x98\"}");
        expect_check(JSON_CHECK_INVALID_UTF8, "{\"a\":\"\xc3x\"}");
        expect_check(JSON_CHECK_INVALID_UTF8, "{\"a\":\"\xf0\x9f\x98");            /* the body ends inside */
        expect_check(JSON_CHECK_INVALID_UTF8, "{\"a\":\"\xe2");
        expect_check(JSON_CHECK_INVALID_UTF8, "{\"\xff\":1}");                     /* in a key */
        /* Outside strings too, and wherever it is: the encoding check takes precedence over syntax. */
        expect_check(JSON_CHECK_INVALID_UTF8, "\xff");
        expect_check(JSON_CHECK_INVALID_UTF8, "\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03"); /* gzip */
        expect_check(JSON_CHECK_INVALID_UTF8, "{\"a\":1}\xff");
        expect_check(JSON_CHECK_INVALID_UTF8, "{\"a\":\xc3\xa9}\xff");
        expect_check(JSON_CHECK_INVALID_UTF8, "{\"a\":} \"\xed\xa0\x80\"");
        expect_check(JSON_CHECK_INVALID_UTF8, "[\"\xc0\x80\"]");
        expect_check(JSON_CHECK_INVALID_UTF8, "\"\xe0\x80\x80\"");
        /* Valid UTF-8 outside a string is still no JSON. */
        expect_check(JSON_CHECK_NOT_JSON, "\xef\xbb\xbf{}"); /* RFC 8259 §8.1: no BOM */
        expect_check(JSON_CHECK_NOT_JSON, "{\"a\":\xc3\xa9}");
        expect_check(JSON_CHECK_NOT_JSON, "{}\xc2\xa0"); /* U+00A0 is no JSON whitespace */
}

/* Independent of the validator: decode, then judge the code point. */
static bool ref_utf8_valid(const uint8_t *s, size_t n) {
        for (size_t i = 0; i < n; i++) {
                uint8_t c = s[i];
                uint32_t cp, min;
                size_t len;

                if (c < 0x80)
                        continue;
                if ((c & 0xe0) == 0xc0) {
                        len = 2, cp = c & 0x1f, min = 0x80;
                } else if ((c & 0xf0) == 0xe0) {
                        len = 3, cp = c & 0x0f, min = 0x800;
                } else if ((c & 0xf8) == 0xf0) {
                        len = 4, cp = c & 0x07, min = 0x10000;
                } else
                        return false;
                if (n - i < len)
                        return false;
                for (size_t k = 1; k < len; k++) {
                        if ((s[i + k] & 0xc0) != 0x80)
                                return false;
                        cp = cp << 6 | (s[i + k] & 0x3f);
                }
                if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                        return false;
                i += len - 1;
        }
        return true;
}

/* Every sequence of one to three bytes, and four-byte ones over the boundary values, inside a
 * string: accepted exactly when the reference decoder accepts it (bytes below 0x80 are judged as
 * JSON string content instead). */
Test(json_check, utf8_exhaustive) {
        static const uint8_t edges[] = { 0x00, 0x22, 0x41, 0x5c, 0x7f, 0x80, 0x8f, 0x90, 0x9f,
                                         0xa0, 0xbf, 0xc0, 0xc2, 0xe0, 0xf0, 0xf4, 0xff };
        uint8_t doc[16] = "{\"a\":\"";
        size_t mismatches = 0;

        for (uint32_t v = 0x80; v < 0x1000000; v++) {
                size_t len = v < 0x100 ? 1 : v < 0x10000 ? 2 : 3, n = 6;
                JsonCheck c, want;

                /* Only sequences starting with a non-ASCII byte: ASCII is covered elsewhere. */
                if (((v >> (8 * (len - 1))) & 0xff) < 0x80)
                        continue;
                for (size_t k = len; k > 0; k--)
                        doc[n++] = (uint8_t) (v >> (8 * (k - 1)));
                doc[n++] = '"';
                doc[n++] = '}';

                c = json_check_event(doc, n, NULL);
                if (!ref_utf8_valid(doc, n))
                        want = JSON_CHECK_INVALID_UTF8;
                else {
                        /* Valid UTF-8 whose trailing bytes are ASCII: any quote, backslash or control
                         * byte among them makes it something else; skip those. */
                        bool plain = true;
                        for (size_t k = 6; k < n - 2; k++)
                                if (doc[k] < 0x20 || doc[k] == '"' || doc[k] == '\\')
                                        plain = false;
                        if (!plain)
                                continue;
                        want = JSON_CHECK_OK;
                }
                if (c != want && mismatches++ < 10)
                        cr_expect_eq(c, want, "'%s': got %s, want %s", escaped(doc, n), check_name[c],
                                     check_name[want]);
        }

        for (uint32_t lead = 0xf0; lead <= 0xff; lead++)
                for (uint32_t b1 = 0; b1 < 256; b1++)
                        for (size_t i2 = 0; i2 < ELEMENTSOF(edges); i2++)
                                for (size_t i3 = 0; i3 < ELEMENTSOF(edges); i3++) {
                                        uint8_t d[] = { '{', '"', 'a', '"', ':', '"', (uint8_t) lead, (uint8_t) b1,
                                                        edges[i2], edges[i3], '"', '}' };
                                        JsonCheck c = json_check_event(d, sizeof(d), NULL);

                                        if (!ref_utf8_valid(d, sizeof(d))) {
                                                if (c != JSON_CHECK_INVALID_UTF8 && mismatches++ < 10)
                                                        cr_expect_eq(c, JSON_CHECK_INVALID_UTF8, "'%s'",
                                                                     escaped(d, sizeof(d)));
                                        } else if (c == JSON_CHECK_INVALID_UTF8 && mismatches++ < 10)
                                                cr_expect_neq(c, JSON_CHECK_INVALID_UTF8, "'%s'",
                                                              escaped(d, sizeof(d)));
                                }

        /* Every code point, encoded: valid unless a surrogate. */
        for (uint32_t cp = 0x80; cp <= 0x10ffff; cp++) {
                uint8_t d[16] = "{\"a\":\"";
                size_t n = 6;

                if (cp < 0x800) {
                        d[n++] = (uint8_t) (0xc0 | cp >> 6);
                } else if (cp < 0x10000) {
                        d[n++] = (uint8_t) (0xe0 | cp >> 12);
                        d[n++] = (uint8_t) (0x80 | ((cp >> 6) & 0x3f));
                } else {
                        d[n++] = (uint8_t) (0xf0 | cp >> 18);
                        d[n++] = (uint8_t) (0x80 | ((cp >> 12) & 0x3f));
                        d[n++] = (uint8_t) (0x80 | ((cp >> 6) & 0x3f));
                }
                d[n++] = (uint8_t) (0x80 | (cp & 0x3f));
                d[n++] = '"';
                d[n++] = '}';
                JsonCheck c = json_check_event(d, n, NULL), want =
                        cp >= 0xd800 && cp <= 0xdfff ? JSON_CHECK_INVALID_UTF8 : JSON_CHECK_OK;
                if (c != want && mismatches++ < 10)
                        cr_expect_eq(c, want, "U+%04X: got %s", (unsigned) cp, check_name[c]);
        }
        cr_expect_eq(mismatches, 0);
}

Test(json_check, not_object) {
        expect_check(JSON_CHECK_NOT_OBJECT, "[]");
        expect_check(JSON_CHECK_NOT_OBJECT, "[1,2,3]");
        expect_check(JSON_CHECK_NOT_OBJECT, " [{\"id\":\"x\"}] ");
        expect_check(JSON_CHECK_NOT_OBJECT, "\"string\"");
        expect_check(JSON_CHECK_NOT_OBJECT, "\"\"");
        expect_check(JSON_CHECK_NOT_OBJECT, "0");
        expect_check(JSON_CHECK_NOT_OBJECT, "-0");
        expect_check(JSON_CHECK_NOT_OBJECT, "1e5");
        expect_check(JSON_CHECK_NOT_OBJECT, " 1.5E-3 ");
        expect_check(JSON_CHECK_NOT_OBJECT, "123");
        expect_check(JSON_CHECK_NOT_OBJECT, "true");
        expect_check(JSON_CHECK_NOT_OBJECT, "false");
        expect_check(JSON_CHECK_NOT_OBJECT, "null");
        expect_check(JSON_CHECK_NOT_OBJECT, "[\"\xf0\x9f\x98\x80\"]");
        /* Not valid JSON: no object either, but the syntax error is what is reported. */
        expect_check(JSON_CHECK_NOT_JSON, "[1,2");
        expect_check(JSON_CHECK_NOT_JSON, "\"abc");
        expect_check(JSON_CHECK_NOT_JSON, "[] []");
}

Test(json_check, not_json) {
        expect_check(JSON_CHECK_NOT_JSON, "{");
        expect_check(JSON_CHECK_NOT_JSON, "}");
        expect_check(JSON_CHECK_NOT_JSON, "{}}");
        expect_check(JSON_CHECK_NOT_JSON, "{]");
        expect_check(JSON_CHECK_NOT_JSON, "{\"a\":[}");
        expect_check(JSON_CHECK_NOT_JSON, "{\"a\":[1}");
        expect_check(JSON_CHECK_NOT_JSON, "{\"a\":{]}");
        expect_check(JSON_CHECK_NOT_JSON, "{\"a\"}");
        expect_check(JSON_CHECK_NOT_JSON, "{\"a\":}");
        expect_check(JSON_CHECK_NOT_JSON, "{\"a\" 1}");
        expect_check(JSON_CHECK_NOT_JSON, "{\"a\"::1}");
        expect_check(JSON_CHECK_NOT_JSON, "{\"a\":1,}");
        expect_check(JSON_CHECK_NOT_JSON, "{,\"a\":1}");
        expect_check(JSON_CHECK_NOT_JSON, "{\"a\":1 \"b\":2}");
        expect_check(JSON_CHECK_NOT_JSON, "{\"a\":[1,]}");
        expect_check(JSON_CHECK_NOT_JSON, "{\"a\":[,1]}");
        expect_check(JSON_CHECK_NOT_JSON, "{\"a\":[1,,2]}");
        expect_check(JSON_CHECK_NOT_JSON, "{\"a\":[1 2]}");
        expect_check(JSON_CHECK_NOT_JSON, "{a:1}");
        expect_check(JSON_CHECK_NOT_JSON, "{'a':1}");
        expect_check(JSON_CHECK_NOT_JSON, "{1:1}");
        expect_check(JSON_CHECK_NOT_JSON, "{null:1}");
        expect_check(JSON_CHECK_NOT_JSON, "{}{}");
        expect_check(JSON_CHECK_NOT_JSON, "{} {}");
        expect_check(JSON_CHECK_NOT_JSON, "{}x");
        expect_check(JSON_CHECK_NOT_JSON, "{},");
        expect_check(JSON_CHECK_NOT_JSON, "{}\0");
        expect_check(JSON_CHECK_NOT_JSON, "{}\f");
        expect_check(JSON_CHECK_NOT_JSON, "/*c*/{}");
        expect_check(JSON_CHECK_NOT_JSON, "{}//");
        expect_check(JSON_CHECK_NOT_JSON, "{\"a\":1}\n{\"b\":2}"); /* no JSON lines */
        expect_check(JSON_CHECK_NOT_JSON, "<html></html>");
        expect_check(JSON_CHECK_NOT_JSON, "hello");
        expect_check(JSON_CHECK_NOT_JSON, ":");
        expect_check(JSON_CHECK_NOT_JSON, ",");
}

/* A prefix of a valid document is never valid: the cut lands in a token, between tokens before the
 * final '}', or inside a UTF-8 sequence. */
Test(json_check, truncated_at_every_byte) {
        static const char *const docs[] = {
                "{}",
                "  {\"a\":1}",
                "{\"id\":\"abc-123\",\"n\":-1.5e+10,\"t\":true,\"f\":false,\"z\":null,"
                "\"a\":[[],{}],\"o\":{\"x\":[0]}}",
                "{\"u\":\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf\","
                "\"e\":\"\\u00e9\\ud83d\\ude00\\n\\\"\"}",
                "{ \"spaced\" : [ 1 , 2 , { \"k\" : \"v\" } ] , \"more\" : 0 }",
                "{\"long\":\"0123456789012345678901234567890123456789012345678901234567890123456789\"}",
        };

        for (size_t d = 0; d < ELEMENTSOF(docs); d++) {
                const char *doc = docs[d];
                size_t n = strlen(doc);

                cr_assert_eq(check(doc, n), JSON_CHECK_OK, "'%s'", doc);
                for (size_t len = 0; len < n; len++) {
                        JsonCheck c = check(doc, len), want;
                        size_t i = 0;

                        while (i < len && strchr(" \t\r\n", doc[i]))
                                i++;
                        if (!ref_utf8_valid((const uint8_t *) doc, len))
                                want = JSON_CHECK_INVALID_UTF8;
                        else if (i == len)
                                want = JSON_CHECK_EMPTY;
                        else
                                want = JSON_CHECK_NOT_JSON;
                        cr_expect_eq(c, want, "'%s' cut at %zu: got %s, want %s", escaped(doc, len), len,
                                     check_name[c], check_name[want]);
                }
        }
}

/* Nesting of depth levels, each an object ("k":...) or an array as pattern says; closes level
 * bad_close (1-based) with the wrong bracket, or none when 0. */
static size_t nest(char *buf, unsigned depth, uint64_t pattern_lo, uint64_t pattern_hi, unsigned bad_close) {
        size_t n = 0;

#define IS_OBJ(i) ((i) == 0 || ((((i) % 128) < 64 ? pattern_lo : pattern_hi) >> ((i) % 64) & 1))
        for (unsigned i = 0; i < depth; i++) {
                if (IS_OBJ(i))
                        n += (size_t) sprintf(buf + n, "{\"k\":");
                else
                        buf[n++] = '[';
        }
        buf[n++] = '0';
        for (unsigned i = depth; i > 0; i--) {
                bool obj = IS_OBJ(i - 1);
                if (i == bad_close)
                        obj = !obj;
                buf[n++] = obj ? '}' : ']';
        }
#undef IS_OBJ
        return n;
}

Test(json_check, depth) {
        static const uint64_t patterns[][2] = {
                { UINT64_MAX, UINT64_MAX },                         /* objects only */
                { 1, 0 },                                           /* arrays below the top */
                { UINT64_C(0x5555555555555555), UINT64_C(0xaaaaaaaaaaaaaaaa) },
                { UINT64_C(0x8000000000000001), UINT64_C(0x0000000000000001) }, /* around the word edge */
                { UINT64_C(0x0123456789abcdef), UINT64_C(0xfedcba9876543210) },
        };
        char *buf = malloc(16 * 1024);

        cr_assert(buf);
        for (size_t p = 0; p < ELEMENTSOF(patterns); p++) {
                for (unsigned depth = 1; depth <= JSON_CHECK_MAX_DEPTH + 2; depth++) {
                        size_t n = nest(buf, depth, patterns[p][0], patterns[p][1], 0);
                        JsonCheck want = depth <= JSON_CHECK_MAX_DEPTH ? JSON_CHECK_OK : JSON_CHECK_NOT_JSON;

                        cr_expect_eq(check(buf, n), want, "pattern %zu depth %u", p, depth);
                        /* The same cut one byte short, and with each level closed wrongly in turn. */
                        cr_expect_eq(check(buf, n - 1), JSON_CHECK_NOT_JSON, "pattern %zu depth %u cut", p,
                                     depth);
                        for (unsigned bad = 1; bad <= depth && depth <= JSON_CHECK_MAX_DEPTH; bad++) {
                                n = nest(buf, depth, patterns[p][0], patterns[p][1], bad);
                                cr_expect_eq(check(buf, n), JSON_CHECK_NOT_JSON, "pattern %zu depth %u bad %u", p,
                                             depth, bad);
                        }
                }
        }

        /* Far deeper than the limit must fail fast, not crash: 1 MiB of '['. */
        {
                size_t n = 1024 * 1024;
                char *deep = malloc(n + 2);
                cr_assert(deep);
                deep[0] = '{';
                deep[1] = '"';
                deep[2] = '"';
                deep[3] = ':';
                memset(deep + 4, '[', n - 4);
                cr_expect_eq(check(deep, n), JSON_CHECK_NOT_JSON);
                free(deep);
        }
        free(buf);
}

Test(json_check, big_document) {
        size_t cap = 2 * 1024 * 1024, n = 0;
        char *doc = malloc(cap);
        char *id;
        size_t id_len;
        unsigned i = 0;

        cr_assert(doc);
        n += (size_t) sprintf(doc + n, "{\"id\":\"big-1\",\"items\":[");
        while (n < 1024 * 1024) {
                n += (size_t) sprintf(doc + n,
                                      "%s{\"n\":%u,\"f\":-%u.%ue-%u,\"s\":\"item \\\"%u\\\" "
                                      "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80 lorem ipsum dolor sit amet\","
                                      "\"b\":[true,false,null],\"id\":\"inner-%u\"}",
                                      i ? "," : "", i, i, i % 100, i % 300, i, i);
                i++;
        }
        n += (size_t) sprintf(doc + n, "],\"tail\":\"end\"}");
        cr_assert_eq(check_id(doc, n, &id, &id_len), JSON_CHECK_OK);
        cr_expect_str_eq(id, "big-1");
        free(id);

        /* The same with a break near the end. */
        doc[n - 3] = '\x01';
        cr_expect_eq(check(doc, n), JSON_CHECK_NOT_JSON);
        doc[n - 3] = '\xc0';
        cr_expect_eq(check(doc, n), JSON_CHECK_INVALID_UTF8);

        /* One string of 1 MiB, with multi-byte characters spread through it. */
        n = 0;
        n += (size_t) sprintf(doc, "{\"s\":\"");
        for (size_t k = 0; n < 1024 * 1024; k++) {
                if (k % 97 == 0) {
                        memcpy(doc + n, "\xf0\x9f\x98\x80", 4);
                        n += 4;
                } else if (k % 89 == 0) {
                        memcpy(doc + n, "\\u20ac", 6);
                        n += 6;
                } else
                        doc[n++] = (char) ('a' + k % 26);
        }
        n += (size_t) sprintf(doc + n, "\"}");
        cr_expect_eq(check(doc, n), JSON_CHECK_OK);
        free(doc);
}

static void expect_id(const char *doc, JsonCheck want, const char *want_id) {
        char *id = NULL;
        size_t id_len = 0;
        JsonCheck c = check_id(doc, strlen(doc), &id, &id_len);

        cr_expect_eq(c, want, "'%s': got %s, want %s", doc, check_name[c], check_name[want]);
        if (want_id) {
                cr_expect(id && streq(id, want_id) && id_len == strlen(want_id), "'%s': id '%s', want '%s'", doc,
                          strempty(id), want_id);
        } else
                cr_expect_null(id, "'%s': id '%s', want none", doc, strempty(id));
        free(id);
}

Test(json_check, id_extraction) {
        expect_id("{\"id\":\"abc\"}", JSON_CHECK_OK, "abc");
        expect_id("{\"specversion\":\"1.0\",\"id\":\"A234-1234-1234\",\"source\":\"/x\"}", JSON_CHECK_OK,
                  "A234-1234-1234");
        expect_id(" { \"id\" \t:\n \"spaced\" } ", JSON_CHECK_OK, "spaced");
        expect_id("{\"id\":\"\"}", JSON_CHECK_OK, ""); /* present and empty: the builder decides */
        expect_id("{\"id\":\"\xe2\x82\xac\xf0\x9f\x98\x80\"}", JSON_CHECK_OK, "\xe2\x82\xac\xf0\x9f\x98\x80");
        /* The raw bytes, escapes and all. */
        expect_id("{\"id\":\"a\\\"b\\u0041\\\\\"}", JSON_CHECK_OK, "a\\\"b\\u0041\\\\");

        /* Absent. */
        expect_id("{}", JSON_CHECK_OK, NULL);
        expect_id("{\"ID\":\"x\"}", JSON_CHECK_OK, NULL);
        expect_id("{\"Id\":\"x\"}", JSON_CHECK_OK, NULL);
        expect_id("{\"idx\":\"x\"}", JSON_CHECK_OK, NULL);
        expect_id("{\"xid\":\"x\"}", JSON_CHECK_OK, NULL);
        expect_id("{\"i\":\"x\",\"d\":\"y\"}", JSON_CHECK_OK, NULL);
        expect_id("{\"id \":\"x\"}", JSON_CHECK_OK, NULL);
        expect_id("{\"x\":\"id\"}", JSON_CHECK_OK, NULL);
        expect_id("{\"x\":[\"id\",\"y\"]}", JSON_CHECK_OK, NULL);

        /* Not a string. */
        expect_id("{\"id\":5}", JSON_CHECK_OK, NULL);
        expect_id("{\"id\":null}", JSON_CHECK_OK, NULL);
        expect_id("{\"id\":true}", JSON_CHECK_OK, NULL);
        expect_id("{\"id\":[\"x\"]}", JSON_CHECK_OK, NULL);
        expect_id("{\"id\":{\"id\":\"x\"}}", JSON_CHECK_OK, NULL);

        /* Nested ones are not the event's. */
        expect_id("{\"data\":{\"id\":\"inner\"}}", JSON_CHECK_OK, NULL);
        expect_id("{\"data\":[{\"id\":\"inner\"}]}", JSON_CHECK_OK, NULL);
        expect_id("{\"data\":{\"id\":\"inner\"},\"id\":\"outer\"}", JSON_CHECK_OK, "outer");
        expect_id("{\"id\":\"outer\",\"data\":{\"a\":{\"id\":\"inner\"}}}", JSON_CHECK_OK, "outer");

        /* Keys compare raw: an escaped spelling of "id" is not "id" (see json-check.c). */
        expect_id("{\"\\u0069d\":\"x\"}", JSON_CHECK_OK, NULL);
        expect_id("{\"i\\u0064\":\"x\"}", JSON_CHECK_OK, NULL);
        expect_id("{\"\\u0069d\":\"x\",\"id\":\"y\"}", JSON_CHECK_OK, "y");

        /* Repeated: the last one counts, as with the parsers a destination uses. */
        expect_id("{\"id\":\"a\",\"id\":\"b\"}", JSON_CHECK_OK, "b");
        expect_id("{\"id\":\"a\",\"id\":5}", JSON_CHECK_OK, NULL);
        expect_id("{\"id\":5,\"id\":\"b\"}", JSON_CHECK_OK, "b");

        /* Only for valid objects. */
        expect_id("{\"id\":\"x\",}", JSON_CHECK_NOT_JSON, NULL);
        expect_id("{\"id\":\"x\"", JSON_CHECK_NOT_JSON, NULL);
        expect_id("{\"id\":\"x", JSON_CHECK_NOT_JSON, NULL);
        expect_id("{\"id\":\"x\\q\"}", JSON_CHECK_NOT_JSON, NULL);
        expect_id("{\"id\":\"\xc0\x80\"}", JSON_CHECK_INVALID_UTF8, NULL);
        expect_id("[{\"id\":\"x\"}]", JSON_CHECK_NOT_OBJECT, NULL);

        /* ret_id may be NULL. */
        cr_expect_eq(json_check_event(L("{\"id\":\"x\"}"), NULL), JSON_CHECK_OK);
}

Test(json_check, reasons) {
        cr_expect_str_eq(json_check_to_reason(JSON_CHECK_EMPTY), "empty");
        cr_expect_str_eq(json_check_to_reason(JSON_CHECK_INVALID_UTF8), "invalid_utf8");
        cr_expect_str_eq(json_check_to_reason(JSON_CHECK_NOT_JSON), "not_json");
        cr_expect_str_eq(json_check_to_reason(JSON_CHECK_NOT_OBJECT), "not_object");
        cr_expect_null(json_check_to_reason(JSON_CHECK_OK));
        cr_expect_null(json_check_to_reason(_JSON_CHECK_MAX));
        cr_expect_null(json_check_to_reason((JsonCheck) -1));
}

/* ---- Differential fuzzing against json-c ---- */

static uint64_t rng_state;

static uint64_t rnd(void) {
        /* xorshift64*: deterministic, so a failure reproduces. */
        rng_state ^= rng_state >> 12;
        rng_state ^= rng_state << 25;
        rng_state ^= rng_state >> 27;
        return rng_state * UINT64_C(2685821657736338717);
}

static size_t rnd_below(size_t n) {
        return n ? (size_t) (rnd() % n) : 0;
}

typedef struct Gen {
        char *buf;
        size_t n, cap;
        /* The raw bytes of the last top-level string "id", as the validator should report them. */
        bool has_id;
        size_t id_off, id_len;
} Gen;

static void gen_put(Gen *g, const void *p, size_t n) {
        if (g->n + n > g->cap) {
                g->cap = MAX(g->cap * 2, g->n + n + 256);
                g->buf = realloc(g->buf, g->cap);
                cr_assert(g->buf);
        }
        memcpy(g->buf + g->n, p, n);
        g->n += n;
}

static void gen_str(Gen *g, const char *s) {
        gen_put(g, s, strlen(s));
}

static void gen_ws(Gen *g) {
        static const char *const ws[] = { " ", "\n", "\t", "\r\n", "  " };

        while (rnd_below(6) == 0)
                gen_str(g, ws[rnd_below(ELEMENTSOF(ws))]);
}

static void gen_utf8(Gen *g, uint32_t cp) {
        uint8_t b[4];
        size_t n;

        if (cp < 0x80) {
                b[0] = (uint8_t) cp;
                n = 1;
        } else if (cp < 0x800) {
                b[0] = (uint8_t) (0xc0 | cp >> 6);
                b[1] = (uint8_t) (0x80 | (cp & 0x3f));
                n = 2;
        } else if (cp < 0x10000) {
                b[0] = (uint8_t) (0xe0 | cp >> 12);
                b[1] = (uint8_t) (0x80 | ((cp >> 6) & 0x3f));
                b[2] = (uint8_t) (0x80 | (cp & 0x3f));
                n = 3;
        } else {
                b[0] = (uint8_t) (0xf0 | cp >> 18);
                b[1] = (uint8_t) (0x80 | ((cp >> 12) & 0x3f));
                b[2] = (uint8_t) (0x80 | ((cp >> 6) & 0x3f));
                b[3] = (uint8_t) (0x80 | (cp & 0x3f));
                n = 4;
        }
        gen_put(g, b, n);
}

/* Writes the string's content, without quotes. */
static void gen_string_body(Gen *g) {
        static const char *const escapes[] = { "\\\"", "\\\\", "\\/", "\\b", "\\f", "\\n", "\\r", "\\t",
                                                "\\u0000", "\\u00e9", "\\uD83D\\uDE00", "\\ud800", "\\uDFFF",
                                                "\\uFFFF" };
        size_t len = rnd_below(4) == 0 ? rnd_below(100) : rnd_below(12);

        for (size_t i = 0; i < len; i++) {
                switch (rnd_below(10)) {
                case 0:
                        gen_str(g, escapes[rnd_below(ELEMENTSOF(escapes))]);
                        break;
                case 1: {
                        uint32_t cp;
                        do
                                cp = (uint32_t) (0x80 + rnd_below(rnd_below(4) == 0 ? 0x10ff80 : 0x3000));
                        while (cp >= 0xd800 && cp <= 0xdfff);
                        gen_utf8(g, cp);
                        break;
                }
                default: {
                        char c = (char) (0x20 + rnd_below(0x5f));
                        if (c == '"' || c == '\\')
                                c = 'x';
                        gen_put(g, &c, 1);
                }
                }
        }
}

static void gen_number(Gen *g) {
        char buf[64];
        size_t n = 0;

        if (rnd_below(3) == 0)
                buf[n++] = '-';
        if (rnd_below(4) == 0)
                buf[n++] = '0';
        else {
                buf[n++] = (char) ('1' + rnd_below(9));
                for (size_t i = rnd_below(8); i > 0; i--)
                        buf[n++] = (char) ('0' + rnd_below(10));
        }
        if (rnd_below(3) == 0) {
                buf[n++] = '.';
                for (size_t i = 1 + rnd_below(5); i > 0; i--)
                        buf[n++] = (char) ('0' + rnd_below(10));
        }
        if (rnd_below(4) == 0) {
                buf[n++] = "eE"[rnd_below(2)];
                if (rnd_below(2))
                        buf[n++] = "+-"[rnd_below(2)];
                for (size_t i = 1 + rnd_below(3); i > 0; i--)
                        buf[n++] = (char) ('0' + rnd_below(10));
        }
        gen_put(g, buf, n);
}

static void gen_value(Gen *g, unsigned depth);
static void gen_nonstring_value(Gen *g, unsigned depth);

static void gen_object(Gen *g, unsigned depth) {
        static const char *const keys[] = { "id", "data", "type", "source", "specversion", "time",
                                            "\\u0069d", "i\\u0064", "ID", "idx", "" };
        size_t members = depth > 6 ? 0 : rnd_below(depth == 0 ? 10 : 5);

        gen_put(g, "{", 1);
        gen_ws(g);
        for (size_t i = 0; i < members; i++) {
                const char *key = NULL;

                if (i > 0) {
                        gen_put(g, ",", 1);
                        gen_ws(g);
                }
                gen_put(g, "\"", 1);
                if (rnd_below(2)) {
                        key = keys[rnd_below(ELEMENTSOF(keys))];
                        gen_str(g, key);
                } else
                        gen_string_body(g);
                gen_put(g, "\"", 1);
                gen_ws(g);
                gen_put(g, ":", 1);
                gen_ws(g);
                if (depth == 0 && key && streq(key, "id")) {
                        g->has_id = false;
                        if (rnd_below(4) != 0) {
                                gen_put(g, "\"", 1);
                                g->id_off = g->n;
                                gen_string_body(g);
                                g->id_len = g->n - g->id_off;
                                g->has_id = true;
                                gen_put(g, "\"", 1);
                        } else
                                gen_nonstring_value(g, depth + 1);
                } else
                        gen_value(g, depth + 1);
                gen_ws(g);
        }
        gen_put(g, "}", 1);
}

static void gen_value(Gen *g, unsigned depth) {
        if (rnd_below(3) == 0)
                gen_nonstring_value(g, depth);
        else {
                gen_put(g, "\"", 1);
                gen_string_body(g);
                gen_put(g, "\"", 1);
        }
}

static void gen_nonstring_value(Gen *g, unsigned depth) {
        switch (rnd_below(depth > 6 ? 3 : 5)) {
        case 0:
        case 1:
                gen_number(g);
                break;
        case 2:
                gen_str(g, (const char *const[]) { "true", "false", "null" }[rnd_below(3)]);
                break;
        case 3: {
                size_t k = rnd_below(5);
                gen_put(g, "[", 1);
                gen_ws(g);
                for (size_t i = 0; i < k; i++) {
                        if (i > 0) {
                                gen_put(g, ",", 1);
                                gen_ws(g);
                        }
                        gen_value(g, depth + 1);
                        gen_ws(g);
                }
                gen_put(g, "]", 1);
                break;
        }
        default:
                gen_object(g, depth);
        }
}

/* A top level that is anything but an object. */
static void gen_top_nonobject(Gen *g) {
        size_t start = g->n;

        for (;;) {
                gen_value(g, 1);
                if (g->buf[start] != '{')
                        return;
                g->n = start;
        }
}

/* json-c 0.16, even with JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8, accepts what RFC 8259
 * rejects. Found by this test and by hand; when json-c accepts and we reject, one of these must be
 * in the input, or it is a bug of ours:
 *  - raw control characters (tab, newline, 0x01...) inside strings;
 *  - UTF-8 that is well-formed in shape only: overlongs, encoded surrogates, code points above
 *    U+10FFFF (VALIDATE_UTF8 checks lead and continuation bytes, nothing more). Those inputs are
 *    judged against ref_utf8_valid() instead;
 *  - NaN, Infinity, -Infinity;
 *  - numbers with leading zeros (00, -01) or a '.' without digits on both sides (1., 1.e5, -.5);
 *  - single-quoted strings.
 * json-c also stops at a NUL byte; the oracle requires it to have consumed all input, which matches
 * the validator's treatment of NUL as a syntax error. Its depth limit (json_tokener_new_ex(128)) is
 * the same as JSON_CHECK_MAX_DEPTH: 128 levels pass, 129 fail. */
enum {
        LAX_CONTROL_IN_STRING = 1 << 0,
        LAX_NAN_INFINITY = 1 << 1,
        LAX_NUMBER = 1 << 2,
        LAX_SINGLE_QUOTE = 1 << 3,
        _LAX_MAX = 4,
};

static unsigned jsonc_laxities(const uint8_t *s, size_t n) {
        unsigned r = 0;
        bool in_string = false;

        for (size_t i = 0; i < n; i++) {
                uint8_t c = s[i];

                if (in_string) {
                        if (c == '\\')
                                i++;
                        else if (c == '"')
                                in_string = false;
                        else if (c < 0x20)
                                r |= LAX_CONTROL_IN_STRING;
                        continue;
                }
                switch (c) {
                case '"':
                        in_string = true;
                        break;
                case '\'':
                        /* Inside a single-quoted string a '"' means nothing: stop looking. */
                        return r | LAX_SINGLE_QUOTE;
                case 'N':
                case 'I':
                        r |= LAX_NAN_INFINITY;
                        break;
                case '0':
                        if ((i == 0 || !strchr("0123456789.eE+-", s[i - 1]) || s[i - 1] == '-') && i + 1 < n &&
                            s[i + 1] >= '0' && s[i + 1] <= '9')
                                r |= LAX_NUMBER;
                        break;
                case '.':
                        if (i == 0 || s[i - 1] < '0' || s[i - 1] > '9' || i + 1 == n || s[i + 1] < '0' ||
                            s[i + 1] > '9')
                                r |= LAX_NUMBER;
                        break;
                }
        }
        return r;
}

/* json-c's verdict: 1 valid object, 2 valid but not an object, 0 invalid. */
static int jsonc_verdict(const uint8_t *s, size_t n) {
        json_tokener *tok = json_tokener_new_ex(JSON_CHECK_MAX_DEPTH);
        char *copy = malloc(n + 1);
        json_object *o;
        int r = 0;

        cr_assert(tok && copy);
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
        memcpy(copy, s, n);
        copy[n] = '\0';
        /* The NUL counted in: without it json-c cannot tell that a top-level number has ended. */
        o = json_tokener_parse_ex(tok, copy, (int) n + 1);
        if (json_tokener_get_error(tok) == json_tokener_success && json_tokener_get_parse_end(tok) == n)
                r = o && json_object_get_type(o) == json_type_object ? 1 : 2;
        json_object_put(o);
        json_tokener_free(tok);
        free(copy);
        return r;
}

typedef struct FuzzStats {
        size_t cases, ok, not_object, not_json, invalid_utf8, empty, lax[_LAX_MAX];
        char lax_example[_LAX_MAX][160]; /* the first input excused by each, for the log */
} FuzzStats;

static void fuzz_one(FuzzStats *st, const uint8_t *s, size_t n) {
        JsonCheck c = check(s, n);
        bool only_ws = true;
        int jc;

        st->cases++;
        for (size_t i = 0; i < n && only_ws; i++)
                only_ws = strchr(" \t\r\n", s[i]) && s[i] != '\0';

        if (!ref_utf8_valid(s, n)) {
                st->invalid_utf8++;
                cr_assert_eq(c, JSON_CHECK_INVALID_UTF8, "'%s': got %s, want INVALID_UTF8", escaped(s, n),
                             check_name[c]);
                return;
        }
        cr_assert_neq(c, JSON_CHECK_INVALID_UTF8, "'%s': valid UTF-8 called invalid", escaped(s, n));
        if (only_ws) {
                st->empty++;
                cr_assert_eq(c, JSON_CHECK_EMPTY, "'%s': got %s, want EMPTY", escaped(s, n), check_name[c]);
                return;
        }
        cr_assert_neq(c, JSON_CHECK_EMPTY, "'%s': not empty", escaped(s, n));

        jc = jsonc_verdict(s, n);
        if (c == JSON_CHECK_OK || c == JSON_CHECK_NOT_OBJECT) {
                /* What we accept, json-c (being laxer) must accept, with the same top-level type. */
                cr_assert_eq(jc, c == JSON_CHECK_OK ? 1 : 2, "'%s': we say %s, json-c %d", escaped(s, n),
                             check_name[c], jc);
                if (c == JSON_CHECK_OK)
                        st->ok++;
                else
                        st->not_object++;
                return;
        }
        st->not_json++;
        if (jc != 0) {
                unsigned lax = jsonc_laxities(s, n);

                cr_assert(lax != 0, "'%s': json-c accepts, we say %s, and no known json-c laxity explains it",
                          escaped(s, n), check_name[c]);
                for (unsigned k = 0; k < _LAX_MAX; k++)
                        if (lax & (1u << k) && st->lax[k]++ == 0)
                                snprintf(st->lax_example[k], sizeof(st->lax_example[k]), "%s", escaped(s, n));
        }
}

static void mutate(Gen *g) {
        static const char interesting[] = "{}[]\":,\\ \t\n0123456789-+.eEtrufalsn'NI\x01\x7f";
        static const char *const seqs[] = { "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xc0\xaf",
                                            "\xed\xa0\x80", "\xf4\x90\x80\x80", "\x80", "\xff", "\\u", "\\ud800",
                                            "true", "null",
                                            "{\"id\":\"x\"}", "[[", "]]", "1e", "-0", "\"\"", "NaN",
                                            "-Infinity", "'a'", "00", "1." };
        size_t k = 1 + rnd_below(3);

        for (size_t m = 0; m < k; m++) {
                size_t at = rnd_below(g->n + 1);

                switch (rnd_below(8)) {
                case 0: /* flip a byte to anything */
                        if (at < g->n)
                                g->buf[at] = (char) rnd_below(256);
                        break;
                case 1:
                case 2: /* flip a byte to something that matters to JSON */
                        if (at < g->n)
                                g->buf[at] = interesting[rnd_below(sizeof(interesting) - 1)];
                        break;
                case 3: /* delete */
                        if (at < g->n) {
                                size_t len = 1 + rnd_below(4);
                                len = MIN(len, g->n - at); /* MIN() evaluates twice: no rnd() in it */
                                memmove(g->buf + at, g->buf + at + len, g->n - at - len);
                                g->n -= len;
                        }
                        break;
                case 4: { /* insert a byte */
                        char c = interesting[rnd_below(sizeof(interesting) - 1)];
                        gen_put(g, &c, 1); /* grows the buffer; then move it in place */
                        memmove(g->buf + at + 1, g->buf + at, g->n - 1 - at);
                        g->buf[at] = c;
                        break;
                }
                case 5: { /* insert a sequence */
                        const char *s = seqs[rnd_below(ELEMENTSOF(seqs))];
                        size_t len = strlen(s);
                        gen_put(g, s, len);
                        memmove(g->buf + at + len, g->buf + at, g->n - len - at);
                        memcpy(g->buf + at, s, len);
                        break;
                }
                case 6: /* truncate */
                        g->n = at;
                        break;
                default: /* duplicate a slice */
                        if (at < g->n) {
                                size_t len = 1 + rnd_below(16);
                                len = MIN(len, g->n - at);
                                char tmp[16];
                                size_t to = rnd_below(g->n + 1);
                                memcpy(tmp, g->buf + at, len);
                                gen_put(g, tmp, len);
                                memmove(g->buf + to + len, g->buf + to, g->n - len - to);
                                memcpy(g->buf + to, tmp, len);
                        }
                }
        }
}

static void fuzz_report(const char *what, const FuzzStats *st) {
        cr_log_info("%s: %zu cases: OK %zu, NOT_OBJECT %zu, NOT_JSON %zu, INVALID_UTF8 %zu, EMPTY %zu; "
                    "json-c laxer on control-in-string %zu, NaN/Infinity %zu, numbers %zu, single quotes %zu",
                    what, st->cases, st->ok, st->not_object, st->not_json, st->invalid_utf8, st->empty, st->lax[0],
                    st->lax[1], st->lax[2], st->lax[3]);
        for (unsigned k = 0; k < _LAX_MAX; k++)
                if (st->lax[k] > 0)
                        cr_log_info("%s: json-c laxity %u first seen in '%s'", what, k, st->lax_example[k]);
}

Test(json_check_fuzz, generated_valid) {
        FuzzStats st = { 0 };
        Gen g = { 0 };

        rng_state = UINT64_C(0x9e3779b97f4a7c15);
        for (unsigned i = 0; i < 20000; i++) {
                char *id = NULL;
                size_t id_len = 0;
                JsonCheck c;

                g.n = 0;
                g.has_id = false;
                gen_ws(&g);
                if (rnd_below(10) == 0)
                        gen_top_nonobject(&g);
                else
                        gen_object(&g, 0);
                gen_ws(&g);

                fuzz_one(&st, (const uint8_t *) g.buf, g.n);
                c = check_id(g.buf, g.n, &id, &id_len);
                cr_assert(c == JSON_CHECK_OK || c == JSON_CHECK_NOT_OBJECT, "generated '%s': %s",
                          escaped(g.buf, g.n), check_name[c]);
                if (c == JSON_CHECK_OK) {
                        if (g.has_id)
                                cr_assert(id && id_len == g.id_len && memcmp(id, g.buf + g.id_off, id_len) == 0,
                                          "'%s': wrong id", escaped(g.buf, g.n));
                        else
                                cr_assert_null(id, "'%s': unexpected id", escaped(g.buf, g.n));
                }
                free(id);
        }
        cr_expect_eq(st.ok + st.not_object, st.cases);
        fuzz_report("generated", &st);
        free(g.buf);
}

Test(json_check_fuzz, mutated) {
        FuzzStats st = { 0 };
        Gen g = { 0 };

        rng_state = UINT64_C(0x243f6a8885a308d3);
        for (unsigned i = 0; i < 200000; i++) {
                g.n = 0;
                gen_ws(&g);
                if (rnd_below(10) == 0)
                        gen_top_nonobject(&g);
                else
                        gen_object(&g, 0);
                gen_ws(&g);
                mutate(&g);
                fuzz_one(&st, (const uint8_t *) g.buf, g.n);
        }
        fuzz_report("mutated", &st);
        /* The mix is meant to reach every verdict; a generator change that stops doing so shows here. */
        cr_expect(st.ok > 1000 && st.not_object > 100 && st.not_json > 1000 && st.invalid_utf8 > 1000);
        free(g.buf);
}

Test(json_check_fuzz, random_bytes) {
        static const char alphabet[] = "{}[]\":,\\ 0123456789-.eEtrufalsnu";
        FuzzStats st = { 0 };
        uint8_t buf[64];

        rng_state = UINT64_C(0xb7e151628aed2a6b);
        for (unsigned i = 0; i < 200000; i++) {
                size_t n = rnd_below(sizeof(buf) + 1);

                for (size_t k = 0; k < n; k++) {
                        if (i % 2 == 0)
                                buf[k] = (uint8_t) rnd_below(256);
                        else
                                buf[k] = (uint8_t) alphabet[rnd_below(sizeof(alphabet) - 1)];
                }
                if (i % 4 == 1 && n > 0)
                        buf[0] = '{'; /* give the structured half a chance to get somewhere */
                fuzz_one(&st, buf, n);
        }
        fuzz_report("random", &st);
}
