/* SPDX-License-Identifier: MIT */
#include <ctype.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/random.h>
#include <sys/stat.h>

#include "util.h"

int safe_close(int fd) {
        if (fd >= 0) {
                int saved = errno;
                (void) close(fd);
                errno = saved;
        }
        return -EBADF;
}

usec_t now(clockid_t clock) {
        struct timespec ts;

        if (clock_gettime(clock, &ts) < 0)
                abort(); /* only for an invalid clock id: a programming error */
        return (usec_t) ts.tv_sec * USEC_PER_SEC + (usec_t) ts.tv_nsec / NSEC_PER_USEC;
}

int read_full_file(const char *path, size_t max_size, char **ret, size_t *ret_size) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *buf = NULL;
        size_t size = 0;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return negative_errno();

        buf = malloc(max_size + 1);
        if (!buf)
                return -ENOMEM;

        for (;;) {
                ssize_t n = read(fd, buf + size, max_size + 1 - size);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                if (n == 0)
                        break;
                size += (size_t) n;
                if (size > max_size)
                        return -EFBIG;
        }

        buf[size] = '\0';
        *ret = TAKE_PTR(buf);
        if (ret_size)
                *ret_size = size;
        return 0;
}

char *strstrip(char *s) {
        char *e;

        while (isspace((unsigned char) *s))
                s++;
        e = s + strlen(s);
        while (e > s && isspace((unsigned char) e[-1]))
                e--;
        *e = '\0';
        return s;
}

char *url_redact(const char *url) {
        const char *scheme_end, *authority, *at, *colon, *slash;
        char *out;

        if (!url)
                return NULL;

        scheme_end = strstr(url, "://");
        if (!scheme_end)
                return strdup(url);
        authority = scheme_end + 3;
        slash = authority + strcspn(authority, "/?#");
        /* The last '@' before the path ends the userinfo: passwords may hold '@' unescaped. */
        at = NULL;
        for (const char *p = authority; p < slash; p++)
                if (*p == '@')
                        at = p;
        if (!at)
                return strdup(url);
        colon = memchr(authority, ':', (size_t) (at - authority));
        if (!colon)
                return strdup(url);

        if (asprintf(&out, "%.*s:***%s", (int) (colon - url), url, at) < 0)
                return NULL;
        return out;
}

static size_t utf8_sequence_length(const unsigned char *p) {
        unsigned char c = p[0];
        uint32_t cp;
        size_t n;

        if (c < 0x80)
                return 1;
        if (c >= 0xc2 && c <= 0xdf)
                n = 2, cp = c & 0x1f;
        else if (c >= 0xe0 && c <= 0xef)
                n = 3, cp = c & 0x0f;
        else if (c >= 0xf0 && c <= 0xf4)
                n = 4, cp = c & 0x07;
        else
                return 0;
        for (size_t i = 1; i < n; i++) {
                if ((p[i] & 0xc0) != 0x80)
                        return 0;
                cp = (cp << 6) | (p[i] & 0x3f);
        }
        if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
                return 0;
        return n;
}

char *text_sanitize(char *s) {
        unsigned char *p = (unsigned char *) s;

        while (*p) {
                size_t n = utf8_sequence_length(p);

                if (n == 0) {
                        *p++ = '?';
                        continue;
                }
                if (n == 1 && ((*p < 0x20 && *p != '\t' && *p != '\n') || *p == 0x7f))
                        *p = ' ';
                p += n;
        }
        return s;
}

uint64_t random_u64(void) {
        static uint64_t state;
        static bool seeded;
        uint64_t z;

        if (!seeded) {
                if (getrandom(&state, sizeof state, GRND_NONBLOCK) != (ssize_t) sizeof state)
                        state = now(CLOCK_MONOTONIC) ^ ((uint64_t) getpid() << 32);
                seeded = true;
        }
        z = (state += UINT64_C(0x9e3779b97f4a7c15));
        z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
        return z ^ (z >> 31);
}
