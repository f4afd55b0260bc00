/* SPDX-License-Identifier: MIT */
#pragma once

/* Small helpers shared by every file: cleanup attributes, time, strings. */

#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _unused_ __attribute__((unused))
#define _noreturn_ __attribute__((noreturn))
#define _pure_ __attribute__((pure))
#define _warn_unused_result_ __attribute__((warn_unused_result))
#define _likely_(x) (__builtin_expect(!!(x), 1))
#define _unlikely_(x) (__builtin_expect(!!(x), 0))

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define CLAMP(x, lo, hi) ((x) < (lo) ? (lo) : (x) > (hi) ? (hi) : (x))

/* The struct of type that holds member at ptr (for intrusive lists). */
#define container_of(ptr, type, member) ((type *) (void *) ((char *) (ptr) - offsetof(type, member)))

/* Takes ownership of a pointer out of a _cleanup_ variable. */
#define TAKE_PTR(p)                                   \
        __extension__({                               \
                __typeof__(p) _taken_ = (p);          \
                (p) = NULL;                           \
                _taken_;                              \
        })

#define TAKE_FD(fd)                                   \
        __extension__({                               \
                int _taken_fd_ = (fd);                \
                (fd) = -EBADF;                        \
                _taken_fd_;                           \
        })

/* Declares name##p(type *p) calling func(*p) when *p is not NULL. */
#define DEFINE_TRIVIAL_CLEANUP_FUNC(type, func)       \
        static inline void func##p(type *p) {         \
                if (*p)                               \
                        func(*p);                     \
        }                                             \
        struct __useless_struct_to_allow_trailing_semicolon__

static inline void *mfree(void *p) {
        free(p);
        return NULL;
}

static inline void freep(void *p) {
        free(*(void **) p);
}
#define _cleanup_free_ _cleanup_(freep)

int safe_close(int fd);
static inline void closep(int *fd) {
        (void) safe_close(*fd);
}
#define _cleanup_close_ _cleanup_(closep)

DEFINE_TRIVIAL_CLEANUP_FUNC(DIR *, closedir);

/* Returns -errno of the last libc call as a negative value (never 0). */
static inline int negative_errno(void) {
        return errno > 0 ? -errno : -EIO;
}

/* Time: every duration and timestamp in the program is usec_t. */
typedef uint64_t usec_t;
#define USEC_INFINITY ((usec_t) UINT64_MAX)
#define USEC_PER_SEC ((usec_t) 1000000ULL)
#define USEC_PER_MSEC ((usec_t) 1000ULL)
#define NSEC_PER_USEC ((uint64_t) 1000ULL)

usec_t now(clockid_t clock);

static inline bool streq(const char *a, const char *b) {
        return strcmp(a, b) == 0;
}

static inline bool streq_ptr(const char *a, const char *b) {
        if (!a || !b)
                return a == b;
        return streq(a, b);
}

static inline const char *strempty(const char *s) {
        return s ? s : "";
}

static inline bool isempty(const char *s) {
        return !s || !*s;
}

/* Returns the rest of s after prefix, or NULL when s does not start with it. */
static inline const char *startswith(const char *s, const char *prefix) {
        size_t l = strlen(prefix);
        return strncmp(s, prefix, l) == 0 ? s + l : NULL;
}

static inline const char *yes_no(bool b) {
        return b ? "yes" : "no";
}

static inline const char *true_false(bool b) {
        return b ? "true" : "false";
}

/* The value of a hex digit, or -EINVAL. */
static inline int unhexchar(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -EINVAL;
}

/* Reads a whole small file (at most max_size bytes) into a NUL-terminated buffer. */
int read_full_file(const char *path, size_t max_size, char **ret, size_t *ret_size);

/* Strips leading and trailing ASCII whitespace in place; returns s. */
char *strstrip(char *s);

/* A copy of a URL or libpq conninfo string fit for logs and messages: the password of the
 * userinfo, of a "password=" query parameter or conninfo keyword is "***". A list of URLs
 * separated by ',' (RABBITMQ_URL) has each URL redacted. Also covers strings that are no valid
 * URL, so that an error message never echoes a password: what follows a ':' in a URL without
 * userinfo is hidden unless it is a port. NULL on ENOMEM (or when url is NULL). */
char *url_redact(const char *url);

/* Whether s is a libpq "keyword = value ..." conninfo string (and not a URL). */
bool conninfo_is_valid(const char *s);

/* Makes s safe to store as text: invalid UTF-8 bytes become '?', control characters other
 * than tab and newline become ' '. In place; returns s. */
char *text_sanitize(char *s);

/* A 64-bit pseudo-random number (splitmix64 over a seed taken from getrandom at first use);
 * for jitter, not for secrets. Not thread-safe. */
uint64_t random_u64(void);

/* The text of a (negative or positive) errno value; thread-safe. ISO C has no %m. */
const char *STRERROR(int error);
