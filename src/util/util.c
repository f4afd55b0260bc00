/* SPDX-License-Identifier: MIT */
#include <ctype.h>
#include <fcntl.h>
#include <stdio.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>

#include "util/util.h"

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


#define WHITESPACE " \t\n\r\f\v"
#define CONNINFO_KEYWORD_CHARS "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"

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

/* "password", and libpq's "sslpassword". */
static bool key_is_password(const char *key, size_t len) {
        static const char suffix[] = "password";
        size_t l = sizeof(suffix) - 1;

        return len >= l && strncasecmp(key + len - l, suffix, l) == 0;
}

/* The end of a conninfo value starting at p: a single-quoted string with backslash escapes,
 * or everything up to the next whitespace, as libpq reads it. NULL when a quote is open. */
static const char *conninfo_value_end(const char *p) {
        if (*p == '\'') {
                for (p++; *p != '\''; p++) {
                        if (!*p)
                                return NULL;
                        if (*p == '\\' && p[1])
                                p++;
                }
                return p + 1;
        }
        while (*p && !strchr(WHITESPACE, *p)) {
                if (*p == '\\' && p[1])
                        p++;
                p++;
        }
        return p;
}

/* Walks a libpq conninfo string ("keyword = value ..."). With out (room for strlen(s) plus
 * 3 bytes per '=' in s), copies s there with the values of password keywords replaced by
 * "***" ("'***'" where quoted, from 2 bytes at least). Returns false when s is
 * not a sequence of such pairs. */
static bool conninfo_walk(const char *s, char *out) {
        const char *p = s;
        size_t n_pairs = 0;

        for (;;) {
                const char *start = p, *key, *value, *end;
                size_t key_len;

                p += strspn(p, WHITESPACE);
                if (!*p) {
                        if (out) {
                                memcpy(out, start, (size_t) (p - start));
                                out[p - start] = '\0';
                        }
                        return n_pairs > 0;
                }
                key = p;
                key_len = strspn(p, CONNINFO_KEYWORD_CHARS);
                if (key_len == 0)
                        return false;
                p += key_len;
                p += strspn(p, WHITESPACE);
                if (*p != '=')
                        return false;
                p++;
                p += strspn(p, WHITESPACE);
                value = p;
                end = conninfo_value_end(value);
                if (!end)
                        return false;
                if (out) {
                        memcpy(out, start, (size_t) (value - start));
                        out += value - start;
                        if (key_is_password(key, key_len)) {
                                /* A quoted value stays quoted: libpq needs no blank after one
                                 * ("password='x'port=1"), and bare stars would take in what follows. */
                                const char *stars = *value == '\'' ? "'***'" : "***";

                                out = stpcpy(out, stars);
                        } else {
                                memcpy(out, value, (size_t) (end - value));
                                out += end - value;
                        }
                }
                p = end;
                n_pairs++;
        }
}

static char *conninfo_redact(const char *s) {
        size_t n_eq = 0;
        const char *pw;
        char *out;

        for (const char *p = s; *p; p++)
                if (*p == '=')
                        n_eq++;
        out = malloc(strlen(s) + 3 * n_eq + 8);
        if (!out)
                return NULL;
        if (conninfo_walk(s, out))
                return out;

        /* Not valid conninfo (an open quote, say), and it is only shown in the error that says
         * so: hide everything from the first password keyword on. */
        pw = strcasestr(s, "password");
        if (!pw)
                memcpy(out, s, strlen(s) + 1);
        else
                sprintf(out, "%.*spassword=***", (int) (pw - s), s);
        return out;
}

/* The length of "scheme://" at the start of s, 0 when s does not start with one. */
static size_t url_scheme_len(const char *s) {
        size_t n = 0;

        if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z')))
                return 0;
        n = strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.");
        return startswith(s + n, "://") ? n + 3 : 0;
}

/* In an authority without userinfo (n bytes at a), "host:port", "[v6]:port" or a comma-separated
 * list of those: the first byte after a ':' that is followed by something other than digits, or
 * NULL when every port is digits. */
static const char *bad_port(const char *a, size_t n) {
        const char *end = a + n;

        for (const char *h = a; h < end;) {
                const char *item_end = memchr(h, ',', (size_t) (end - h)), *colon;

                if (!item_end)
                        item_end = end;
                colon = h;
                if (*h == '[') {
                        const char *close = memchr(h, ']', (size_t) (item_end - h));
                        colon = close ? close + 1 : item_end;
                }
                colon = memchr(colon, ':', (size_t) (item_end - colon));
                if (colon)
                        for (const char *p = colon + 1; p < item_end; p++)
                                if (*p < '0' || *p > '9')
                                        return colon + 1;
                h = item_end + 1;
        }
        return NULL;
}

/* What url_redact_one() hides of a URL, byte by byte: hide[i] for each byte replaced by "***"
 * (a run of them by one "***"), stars[i] for "***" standing before byte i where an empty
 * password is hidden. Each rule marks what it takes for a password on the original URL, and
 * the union is hidden: one rule's guess never uncovers what another's hides (a query password
 * starting with '@' once showed, taken for the end of a userinfo; found by fuzz-url). */
typedef struct RedactMask {
        bool *hide, *stars;
} RedactMask;

static void mark_range(RedactMask *m, const char *url, const char *from, const char *to) {
        for (const char *p = from; p < to; p++)
                m->hide[p - url] = true;
}

/* amqp:// and postgresql:// URLs never hold an '@' but in the userinfo, so the userinfo
 * ends at the last '@' before the query, even when a password holds an unescaped '/'
 * (which would pass for the start of the path). A password may also hold an unescaped '?'
 * or '#': with no '@' before the first of those, the last '@' anywhere ends it. That may
 * hide more than the password of a URL with an '@' in its path or query, never less. */
static void userinfo_mark(const char *url, const char *authority, RedactMask *m) {
        size_t n = strcspn(authority, "?#");
        const char *at = NULL, *colon;

        for (const char *p = authority; p < authority + n; p++)
                if (*p == '@')
                        at = p;
        if (!at)
                at = strrchr(authority, '@');
        if (!at) {
                const char *end = authority + strcspn(authority, "/?#");
                const char *bad = bad_port(authority, (size_t) (end - authority));

                /* No '@', but "amqp://user:secret" (a list item cut at a ',' in the password, say):
                 * what follows the ':' is no port, so it may be a password. */
                if (bad)
                        mark_range(m, url, bad, end);
                return;
        }
        colon = memchr(authority, ':', (size_t) (at - authority));
        if (!colon)
                return;
        mark_range(m, url, colon + 1, at);
        m->stars[at - url] = true;
}

/* The values of password parameters in the query (libpq reads "?password=..."). libpq knows
 * no fragment: a '#' is part of a value, which runs to the next '&'. Where the query starts is
 * less certain: libpq takes the first '@' before any '/' for the end of the userinfo, also when
 * a '?' comes before it, and starts the query at a later '?' (found by fuzz-url). So the
 * parameters are read from every '?' on; a value still runs to the next '&' only. */
static void query_mark(const char *url, RedactMask *m) {
        for (const char *q = strchr(url, '?'); q; q = strchr(q + 1, '?'))
                for (const char *p = q + 1;;) {
                        size_t n = strcspn(p, "&"), key_len = strcspn(p, "=&");

                        if (key_len < n && key_is_password(p, key_len)) {
                                mark_range(m, url, p + key_len + 1, p + n);
                                m->stars[p + key_len + 1 - url] = true;
                        }
                        p += n;
                        if (*p != '&')
                                break;
                        p++;
                }
}

static char *url_redact_marked(const char *url, size_t scheme_len) {
        size_t len = strlen(url), n_stars = 0;
        _cleanup_free_ bool *hide = NULL, *stars = NULL;
        RedactMask m;
        char *out, *o;

        hide = calloc(len + 1, sizeof(bool));
        stars = calloc(len + 1, sizeof(bool));
        if (!hide || !stars)
                return NULL;
        m = (RedactMask) { .hide = hide, .stars = stars };
        userinfo_mark(url, url + scheme_len, &m);
        query_mark(url, &m);

        for (size_t i = 0; i <= len; i++)
                if (stars[i] || (hide[i] && (i == 0 || !hide[i - 1])))
                        n_stars++;
        out = malloc(len + 3 * n_stars + 1);
        if (!out)
                return NULL;
        o = out;
        for (size_t i = 0; i <= len; i++) {
                bool run_start = hide[i] && (i == 0 || !hide[i - 1]);

                /* One "***" for a run of hidden bytes and the marks inside or right after it. */
                if (run_start || (stars[i] && !hide[i] && (i == 0 || !hide[i - 1])))
                        o = mempcpy(o, "***", 3);
                if (i < len && !hide[i])
                        *o++ = url[i];
        }
        *o = '\0';
        return out;
}

static char *url_redact_one(const char *url);

static bool is_amqp_url(const char *s) {
        return startswith(s, "amqp://") || startswith(s, "amqps://");
}

/* The ',' that starts the next URL of a list ("amqp://a/,amqp://b/": RABBITMQ_URL, the one
 * setting that is a list), i.e. one followed by blanks and "amqp://" or "amqps://"; NULL when
 * there is none. A ',' in a password or in libpq's host list is followed by no such scheme; nor,
 * as a rule, is one in a postgresql:// query, whose values libpq reads to the next '&', and
 * which is therefore never cut here ("?application_name=a,b://c&password=..." showed the
 * password; found by fuzz-url). */
static const char *next_list_item(const char *s) {
        for (const char *p = strchr(s, ','); p; p = strchr(p + 1, ','))
                if (is_amqp_url(p + 1 + strspn(p + 1, " \t")))
                        return p;
        return NULL;
}

/* Each URL of a list redacted on its own. NULL on ENOMEM; *ret_cut when an item but the last
 * has no userinfo and a ':' followed by no port: its ',' is more likely part of a password
 * than a separator. */
static char *list_redact(const char *list, bool *ret_cut) {
        _cleanup_free_ char *out = NULL;
        size_t size = 0;
        FILE *f;

        *ret_cut = false;
        f = open_memstream(&out, &size);
        if (!f)
                return NULL;
        for (const char *item = list;;) {
                const char *comma = next_list_item(item);
                _cleanup_free_ char *one = comma ? strndup(item, (size_t) (comma - item)) : strdup(item);
                _cleanup_free_ char *r = one ? url_redact_one(one) : NULL;
                const char *authority = one ? one + url_scheme_len(one) : NULL;

                if (!r) {
                        (void) fclose(f);
                        return NULL;
                }
                if (comma && !strchr(one, '@') && bad_port(authority, strcspn(authority, "/?#")))
                        *ret_cut = true;
                (void) fputs(r, f);
                if (!comma)
                        break;
                item = comma + 1 + strspn(comma + 1, " \t");
                (void) fprintf(f, "%.*s", (int) (item - comma), comma);
        }
        if (fclose(f) != 0)
                return NULL;
        return TAKE_PTR(out);
}

char *url_redact(const char *url) {
        size_t blanks;
        char *r;
        bool cut;

        if (!url)
                return NULL;
        /* Blanks before a URL, which the broker URL list parser takes as it takes blanks around
         * any item: what follows them is redacted as a URL (found by fuzz-broker-url). */
        blanks = strspn(url, " \t");
        if (blanks > 0 && url_scheme_len(url + blanks) > 0) {
                _cleanup_free_ char *rest = url_redact(url + blanks);

                if (!rest || asprintf(&r, "%.*s%s", (int) blanks, url, rest) < 0)
                        return NULL;
                return r;
        }
        if (!is_amqp_url(url) || !next_list_item(url))
                return url_redact_one(url);

        r = list_redact(url, &cut);
        if (!r || !cut)
                return r;
        /* Read as one URL, the password then ends at the last '@' and is hidden whole. */
        free(r);
        return url_redact_one(url);
}

static char *url_redact_one(const char *url) {
        size_t l;
        char *r;

        l = url_scheme_len(url);
        if (l == 0) {
                const char *at;

                if (strchr(url, '='))
                        return conninfo_redact(url);
                /* Something like "amqp//user:secret@host": no URL, but what precedes the '@'
                 * may well be a password. */
                at = strrchr(url, '@');
                if (at) {
                        if (asprintf(&r, "***%s", at) < 0)
                                return NULL;
                        return r;
                }
                return strdup(url);
        }

        return url_redact_marked(url, l);
}

bool conninfo_is_valid(const char *s) {
        return url_scheme_len(s) == 0 && conninfo_walk(s, NULL);
}

const char *STRERROR(int error) {
        const char *s = strerrordesc_np(abs(error));
        return s ? s : "Unknown error";
}
