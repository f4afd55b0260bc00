/* SPDX-License-Identifier: MIT */
#pragma once

/* What every fuzz target shares: the libFuzzer entry points, and a failure that names the
 * broken invariant and shows the input before it aborts (libFuzzer then saves the input as
 * crash-<sha1>; the replay driver, fuzz-replay.c, names the file). */

#include <stdarg.h>
#include <stdio.h>

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
