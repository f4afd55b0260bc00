/* SPDX-License-Identifier: MIT */
#pragma once

/* What every fuzz target shares: the libFuzzer entry points, and a failure that names the
 * broken invariant and shows the input before it aborts (libFuzzer then saves the input as
 * crash-<sha1>; the replay driver, fuzz-replay.c, names the file). */

#include <stdarg.h>
#include <stdio.h>
#include <strings.h>

#include "util/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* Prints at most 4 KiB of data, C-escaped, on one line. */
static inline void fuzz_print_escaped(FILE *f, const void *data, size_t size) {
        const uint8_t *p = data;

        fputc('"', f);
        for (size_t i = 0; i < size && i < 4096; i++) {
                if (p[i] == '\\' || p[i] == '"')
                        fprintf(f, "\\%c", p[i]);
                else if (p[i] >= 0x20 && p[i] < 0x7f)
                        fputc(p[i], f);
                else
                        fprintf(f, "\\x%02x", p[i]);
        }
        fputc('"', f);
        if (size > 4096)
                fprintf(f, "... (%zu bytes)", size);
        fputc('\n', f);
}

/* The invariant that failed, with the input (or the part of it that matters). Never returns. */
static inline _noreturn_ _printf_(3, 4) void fuzz_fail(const void *data, size_t size, const char *format, ...) {
        va_list ap;

        fputs("FUZZ INVARIANT BROKEN: ", stderr);
        va_start(ap, format);
        vfprintf(stderr, format, ap);
        va_end(ap);
        fputs("\ninput: ", stderr);
        fuzz_print_escaped(stderr, data, size);
        fflush(stderr);
        abort();
}

#define FUZZ_CHECK(cond, data, size, ...)                                 \
        do {                                                              \
                if (!(cond))                                              \
                        fuzz_fail((data), (size), __VA_ARGS__);           \
        } while (0)

/* A NUL-terminated heap copy of exactly size + 1 bytes (so that ASan sees a read past its end). */
static inline char *fuzz_strndup(const uint8_t *data, size_t size) {
        char *s = malloc(size + 1);

        if (!s)
                abort();
        if (size > 0)
                memcpy(s, data, size);
        s[size] = '\0';
        return s;
}

/* Occurrences of needle in haystack, overlapping ones included; needle not empty. */
static inline size_t fuzz_count(const char *haystack, size_t haystack_len, const char *needle, size_t needle_len) {
        size_t n = 0;

        if (needle_len == 0 || needle_len > haystack_len)
                return 0;
        for (size_t i = 0; i + needle_len <= haystack_len; i++)
                if (memcmp(haystack + i, needle, needle_len) == 0)
                        n++;
        return n;
}

/* %XX decoded where XX are hex digits but 00, everything else as it is; malloc()ed. (A decoded
 * NUL would end the string, and what follows it would go unsearched.) */
static inline char *fuzz_percent_decode(const char *s) {
        char *out = malloc(strlen(s) + 1), *o = out;

        if (!out)
                abort();
        for (const char *p = s; *p; p++) {
                int hi, lo;

                if (p[0] == '%' && (hi = unhexchar(p[1])) >= 0 && (lo = unhexchar(p[2])) >= 0 && (hi | lo) != 0) {
                        *o++ = (char) (hi << 4 | lo);
                        p += 2;
                } else
                        *o++ = *p;
        }
        *o = '\0';
        return out;
}

/* Whether every '%' in s starts a %XX escape of two hex digits. rabbitmq-c reads escapes with
 * sscanf("%2x"), which also takes "%+2", "% 2" or "%0x": the password it then gives is not what
 * fuzz_percent_decode() finds in the input, and only inputs without such escapes can be judged. */
static inline bool fuzz_escapes_are_hex(const char *s) {
        for (const char *p = strchr(s, '%'); p; p = strchr(p + 1, '%'))
                if (unhexchar(p[1]) < 0 || unhexchar(p[2]) < 0)
                        return false;
        return true;
}

/* s with every "password" (in any case) replaced by a \x01: the keyword, which a redaction
 * keeps, must not count as an occurrence of a password such as "sword=". malloc()ed. */
static inline char *fuzz_without_keyword(const char *s) {
        char *out = strdup(s), *o = out;

        if (!out)
                abort();
        for (const char *p = s; *p;) {
                if (strncasecmp(p, "password", 8) == 0) {
                        *o++ = '\x01';
                        p += 8;
                } else
                        *o++ = *p++;
        }
        *o = '\0';
        return out;
}

/* The check of a redaction: the password a judge (a library, a parser) reads from input occurs
 * fewer times in redacted than in input, and not at all where input holds it once. decoded:
 * whether the judge gives it percent-decoded; it is then looked for in the decoded strings,
 * else in the strings as they are; the keyword "password" counts in neither. Passwords that
 * are empty or hold a '*' prove nothing. */
static inline void fuzz_check_hidden(const uint8_t *data, size_t size, const char *judge, const char *password,
                                     bool decoded, const char *input, const char *redacted) {
        char *di = NULL, *dr = NULL, *ki, *kr;
        size_t in, out;

        if (isempty(password) || strchr(password, '*'))
                return;
        if (decoded) {
                di = fuzz_percent_decode(input);
                dr = fuzz_percent_decode(redacted);
                input = di;
                redacted = dr;
        }
        ki = fuzz_without_keyword(input);
        kr = fuzz_without_keyword(redacted);
        free(di);
        free(dr);
        input = di = ki;
        redacted = dr = kr;
        in = fuzz_count(input, strlen(input), password, strlen(password));
        out = fuzz_count(redacted, strlen(redacted), password, strlen(password));
        if (in > 0)
                FUZZ_CHECK(out < in && (in > 1 || out == 0), data, size,
                           "%s reads the password \"%s\", and the redacted string%s \"%s\" shows it", judge,
                           password, decoded ? ", decoded," : "", redacted);
        free(di);
        free(dr);
}

/* Whether a URL writes a password: "scheme://...:...@": rabbitmq-c and the broker URL parser
 * give the default "guest" where it does not, which proves nothing about a redaction. */
static inline bool fuzz_url_writes_password(const char *s) {
        const char *authority = strstr(s, "://"), *at = strrchr(s, '@');

        return authority && at && at > authority + 3 && memchr(authority + 3, ':', (size_t) (at - authority - 3));
}
