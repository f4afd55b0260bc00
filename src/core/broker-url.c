/* SPDX-License-Identifier: MIT */
#include <string.h>

#include "core/broker-url.h"
#include "util/util.h"

#define BLANKS " \t"

/* Decodes n bytes at s into a new string. -EINVAL for a '%' not followed by two hex digits, or
 * for "%00", which would end the C string early and so change the user or password silently. */
static int percent_decode(const char *s, size_t n, char **ret, const char **ret_problem) {
        _cleanup_free_ char *out = malloc(n + 1);
        size_t o = 0;

        if (!out)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                int hi, lo;

                if (s[i] != '%') {
                        out[o++] = s[i];
                        continue;
                }
                hi = i + 1 < n ? unhexchar(s[i + 1]) : -EINVAL;
                lo = hi >= 0 && i + 2 < n ? unhexchar(s[i + 2]) : -EINVAL;
                if (hi < 0 || lo < 0) {
                        *ret_problem = "a '%' not followed by two hex digits, write a '%' itself as %25";
                        return -EINVAL;
                }
                if (hi == 0 && lo == 0) {
                        *ret_problem = "\"%00\" (a NUL byte) in the URL";
                        return -EINVAL;
                }
                out[o++] = (char) (hi << 4 | lo);
                i += 2;
        }
        out[o] = '\0';
        *ret = TAKE_PTR(out);
        return 0;
}

static const char *memchr_any(const char *s, size_t n, const char *set) {
        for (size_t i = 0; i < n; i++)
                if (strchr(set, s[i]))
                        return s + i;
        return NULL;
}

static size_t count_char(const char *s, size_t n, char c) {
        size_t k = 0;

        for (size_t i = 0; i < n; i++)
                k += s[i] == c;
        return k;
}

/* Digits only (after decoding), 1-65535. */
static bool parse_port(const char *s, uint16_t *ret) {
        unsigned v = 0;

        if (!*s || strlen(s) > 5)
                return false;
        for (; *s; s++) {
                if (*s < '0' || *s > '9')
                        return false;
                v = v * 10 + (unsigned) (*s - '0');
        }
        if (v < 1 || v > 65535)
                return false;
        *ret = (uint16_t) v;
        return true;
}

static int parse_userinfo(const char *s, size_t n, BrokerUrl *u, const char **ret_problem) {
        const char *colon = memchr(s, ':', n);
        int r;

        if (count_char(s, n, ':') > 1) {
                *ret_problem = "a ':' in the password, write it as %3A";
                return -EINVAL;
        }
        if (memchr_any(s, n, "[]")) {
                *ret_problem = "a '[' or ']' in the user name or password, write them as %5B, %5D";
                return -EINVAL;
        }
        r = percent_decode(s, colon ? (size_t) (colon - s) : n, &u->user, ret_problem);
        if (r < 0)
                return r;
        if (!colon)
                return 0; /* rabbitmq-c keeps its default password */
        free(u->password);
        u->password = NULL;
        return percent_decode(colon + 1, n - (size_t) (colon + 1 - s), &u->password, ret_problem);
}

static int parse_host_port(const char *s, size_t n, BrokerUrl *u, const char **ret_problem) {
        const char *end = s + n, *port = NULL;
        _cleanup_free_ char *p = NULL;
        int r;

        if (n > 0 && s[0] == '[') {
                const char *close = memchr(s, ']', n);

                if (!close || close == s + 1 || memchr_any(s + 1, (size_t) (close - s - 1), "[")) {
                        *ret_problem = "a '[' without an IPv6 address and ']' after it";
                        return -EINVAL;
                }
                if (close + 1 < end && close[1] != ':') {
                        *ret_problem = "something between the ']' of the IPv6 address and the ':' of the port";
                        return -EINVAL;
                }
                r = percent_decode(s + 1, (size_t) (close - s - 1), &u->host, ret_problem);
                if (r < 0)
                        return r;
                if (close + 1 < end)
                        port = close + 2;
        } else {
                const char *colon = memchr(s, ':', n);

                if (count_char(s, n, ':') > 1) {
                        *ret_problem = "more than one ':' after the host (an IPv6 address goes in brackets: [::1])";
                        return -EINVAL;
                }
                if (memchr_any(s, n, "[]")) {
                        *ret_problem = "a '[' or ']' that does not enclose an IPv6 address";
                        return -EINVAL;
                }
                r = percent_decode(s, colon ? (size_t) (colon - s) : n, &u->host, ret_problem);
                if (r < 0)
                        return r;
                if (colon)
                        port = colon + 1;
        }

        /* rabbitmq-c would connect to localhost: more likely an empty ${HOST} than a wish. */
        if (isempty(u->host)) {
                *ret_problem = "no host";
                return -EINVAL;
        }
        if (!port)
                return 0;
        r = percent_decode(port, (size_t) (end - port), &p, ret_problem);
        if (r < 0)
                return r;
        if (!parse_port(p, &u->port)) {
                *ret_problem = "a port that is not 1-65535";
                return -EINVAL;
        }
        return 0;
}

static int parse_vhost(const char *s, size_t n, BrokerUrl *u, const char **ret_problem) {
        if (memchr_any(s, n, "/:@")) {
                *ret_problem = "a '/', ':' or '@' in the vhost, write them as %2F, %3A, %40";
                return -EINVAL;
        }
        /* rabbitmq-c refuses them anywhere but around an IPv6 host (found by fuzz-broker-url). */
        if (memchr_any(s, n, "[]")) {
                *ret_problem = "a '[' or ']' in the vhost, write them as %5B, %5D";
                return -EINVAL;
        }
        free(u->vhost);
        u->vhost = NULL;
        if (n == 0) {
                u->vhost = strdup("/");
                return u->vhost ? 0 : -ENOMEM;
        }
        return percent_decode(s, n, &u->vhost, ret_problem);
}

int broker_url_parse(const char *text, size_t n, BrokerUrl *ret, const char **ret_problem) {
        _cleanup_(broker_url_done) BrokerUrl u = { 0 };
        const char *problem = NULL, *s, *end = text + n, *slash, *at;
        int r;

        if (!ret_problem)
                ret_problem = &problem;

        if (n >= 7 && memcmp(text, "amqp://", 7) == 0) {
                s = text + 7;
                u.port = BROKER_URL_PORT_AMQP;
        } else if (n >= 8 && memcmp(text, "amqps://", 8) == 0) {
                s = text + 8;
                u.tls = true;
                u.port = BROKER_URL_PORT_AMQPS;
        } else {
                *ret_problem = n == 0 ? "empty" : "not an amqp:// or amqps:// URL";
                return -EINVAL;
        }

        for (const char *p = text; p < end; p++)
                if ((unsigned char) *p <= ' ' || *p == 0x7f) {
                        *ret_problem = "a space or control character in the URL, write a space as %20";
                        return -EINVAL;
                }
        if (memchr_any(s, (size_t) (end - s), "?#")) {
                /* rabbitmq-c 0.11 reads no query; in a password they are written %3F, %23. */
                *ret_problem = "a '?' or '#' in the URL (no query is read; in a password write them as %3F, %23)";
                return -EINVAL;
        }

        u.user = strdup("guest");
        u.password = strdup("guest");
        if (!u.user || !u.password)
                return -ENOMEM;

        /* The authority ends at the first '/': rabbitmq-c ends the user name and password there too. */
        slash = memchr(s, '/', (size_t) (end - s));
        if (!slash)
                slash = end;
        if (count_char(s, (size_t) (slash - s), '@') > 1) {
                *ret_problem = "an '@' in the user name or password, write it as %40";
                return -EINVAL;
        }
        at = memchr(s, '@', (size_t) (slash - s));
        if (!at && memchr(slash, '@', (size_t) (end - slash))) {
                *ret_problem = "a '/' in the user name or password or an '@' in the vhost, write them as %2F, %40";
                return -EINVAL;
        }
        if (at) {
                free(u.user);
                u.user = NULL;
                r = parse_userinfo(s, (size_t) (at - s), &u, ret_problem);
                if (r < 0)
                        return r;
                s = at + 1;
        }
        r = parse_host_port(s, (size_t) (slash - s), &u, ret_problem);
        if (r < 0)
                return r;
        r = parse_vhost(slash < end ? slash + 1 : end, slash < end ? (size_t) (end - slash - 1) : 0, &u,
                        ret_problem);
        if (r < 0)
                return r;

        *ret = u;
        u = (BrokerUrl){ 0 };
        return 0;
}

void broker_url_done(BrokerUrl *u) {
        if (!u)
                return;
        if (u->password)
                explicit_bzero(u->password, strlen(u->password));
        free(u->user);
        free(u->password);
        free(u->host);
        free(u->vhost);
        free(u->shown);
        *u = (BrokerUrl){ 0 };
}

/* The index-th item: its start and length, blanks around it dropped. False when there is none. */
static bool list_item(const char *text, size_t index, const char **ret, size_t *ret_n) {
        const char *p = text;

        for (size_t i = 0;; i++) {
                size_t len = strcspn(p, ",");

                if (i == index) {
                        const char *b = p + strspn(p, BLANKS);
                        const char *e = p + len;

                        while (e > b && strchr(BLANKS, e[-1]))
                                e--;
                        *ret = b;
                        *ret_n = (size_t) (e - b);
                        return true;
                }
                if (!p[len])
                        return false;
                p += len + 1;
        }
}

int broker_url_list_parse(const char *text, BrokerUrlList *ret, size_t *ret_index, const char **ret_problem) {
        _cleanup_(broker_url_list_done) BrokerUrlList l = { 0 };
        const char *problem = NULL;
        size_t n = 1, index = 0;
        int r;

        if (!ret_problem)
                ret_problem = &problem;
        if (!ret_index)
                ret_index = &index;

        for (const char *p = text; *p; p++)
                n += *p == ',';
        if (n > BROKER_URL_LIST_MAX) {
                *ret_index = BROKER_URL_LIST_MAX;
                *ret_problem = "more than 64 URLs";
                return -EINVAL;
        }
        l.urls = calloc(n, sizeof *l.urls);
        if (!l.urls)
                return -ENOMEM;

        for (size_t i = 0; i < n; i++) {
                const char *item;
                size_t len;

                if (!list_item(text, i, &item, &len))
                        return -EINVAL; /* cannot happen: n counted the commas */
                if (len == 0) {
                        *ret_index = i;
                        *ret_problem = n == 1 ? "empty" : "an empty item";
                        return -EINVAL;
                }
                r = broker_url_parse(item, len, &l.urls[i], ret_problem);
                if (r == -EINVAL && n > 1 && strchr(text, '@') && strchr(text, ',') < strchr(text, '@')) {
                        BrokerUrl whole;

                        /* "amqp://user:pa,ss@host/": one URL with a ',' in the password, not two. */
                        if (broker_url_parse(text, strlen(text), &whole, NULL) >= 0) {
                                broker_url_done(&whole);
                                *ret_problem = "a ',' in the user name or password, write it as %2C";
                        }
                }
                if (r < 0) {
                        *ret_index = i;
                        return r;
                }
                l.n++;
                {
                        /* From the text as written, never rebuilt from the parsed fields: what the
                         * operator wrote is what they recognise, and url_redact() is the one place
                         * that knows where a password may hide. */
                        _cleanup_free_ char *written = broker_url_list_item(text, i);

                        l.urls[i].shown = written ? url_redact(written) : NULL;
                        if (!l.urls[i].shown)
                                return -ENOMEM;
                }
                if (l.urls[i].tls != l.urls[0].tls) {
                        *ret_index = i;
                        *ret_problem = "amqp:// and amqps:// mixed";
                        return -EINVAL;
                }
        }

        *ret = l;
        l = (BrokerUrlList){ 0 };
        return 0;
}

void broker_url_list_done(BrokerUrlList *l) {
        if (!l)
                return;
        for (size_t i = 0; i < l->n; i++)
                broker_url_done(&l->urls[i]);
        free(l->urls);
        *l = (BrokerUrlList){ 0 };
}

char *broker_url_list_item(const char *text, size_t index) {
        const char *item;
        size_t len;

        if (!list_item(text, index, &item, &len))
                return NULL;
        return strndup(item, len);
}
