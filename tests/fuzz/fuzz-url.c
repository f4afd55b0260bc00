/* SPDX-License-Identifier: MIT */
/* url_redact() and conninfo_is_valid() (util/util.c) on any string: the broker, database and
 * destination URLs an operator writes, which show in logs, rows, stats and --check-config. The
 * password is whatever the library that reads the URL would send: rabbitmq-c's
 * amqp_parse_url() (amqp://, amqps://), libpq's PQconninfoParse() (postgresql:// URLs and
 * key=value strings; "password" and "sslpassword") and curl's URL parser (http://, https://), which
 * stand as independent judges. Invariants:
 *   - no crash, leak or undefined behaviour; url_redact() gives a string (redacting it again
 *     may hide more: a rule can find an '@' or ':' that another rule's "***" replaced);
 *   - each password such a library finds in the input (not empty, no '*') occurs fewer times in the redacted string than
 *     in the input, and not at all where the input holds it once: compared percent-decoded
 *     where the judge decodes, as written where it does not (curl: both);
 *   - conninfo_is_valid() refuses URLs (it is for key=value strings only).
 * Lists of broker URLs get their own target with the parser that reads them. */
#include <amqp.h>
#include <curl/curl.h>
#include <libpq-fe.h>

#include "fuzz.h"

static int unhex(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
                return (c | 0x20) - 'a' + 10;
        return -1;
}

/* "scheme://" at the start (RFC 3986 §3.1). */
static bool has_scheme(const char *s) {
        size_t n;

        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')))
                return false;
        n = strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.");
        return startswith(s + n, "://");
}

/* %XX decoded where XX are hex digits, everything else as it is. */
static char *percent_decode(const char *s) {
        char *out = malloc(strlen(s) + 1), *o = out;

        if (!out)
                abort();
        for (const char *p = s; *p; p++) {
                int hi, lo;

                if (p[0] == '%' && (hi = unhex(p[1])) >= 0 && (lo = unhex(p[2])) >= 0) {
                        *o++ = (char) (hi << 4 | lo);
                        p += 2;
                } else
                        *o++ = *p;
        }
        *o = '\0';
        return out;
}

/* decoded: whether the judge gives the password percent-decoded (rabbitmq-c, libpq's URLs) or
 * as written (libpq's key=value strings): it is then looked for in the decoded strings only, or
 * in the strings as they are. */
static void check_hidden(const uint8_t *data, size_t size, const char *judge, const char *password, bool decoded,
                         const char *input, const char *redacted) {
        _cleanup_free_ char *di = NULL, *dr = NULL;
        size_t in, out;

        if (isempty(password) || strchr(password, '*'))
                return;
        if (decoded) {
                di = percent_decode(input);
                dr = percent_decode(redacted);
                input = di;
                redacted = dr;
        }
        in = fuzz_count(input, strlen(input), password, strlen(password));
        out = fuzz_count(redacted, strlen(redacted), password, strlen(password));
        if (in == 0)
                return;
        FUZZ_CHECK(out < in && (in > 1 || out == 0), data, size,
                   "%s reads the password \"%s\", and the redacted string%s \"%s\" shows it", judge, password,
                   decoded ? ", decoded," : "", redacted);
}

static void judge_rabbitmq(const uint8_t *data, size_t size, const char *s, const char *redacted) {
        _cleanup_free_ char *copy = NULL;
        struct amqp_connection_info info;

        if (!startswith(s, "amqp://") && !startswith(s, "amqps://"))
                return;
        copy = strdup(s);
        if (!copy)
                abort();
        amqp_default_connection_info(&info);
        if (amqp_parse_url(copy, &info) != AMQP_STATUS_OK)
                return;
        /* A password from the URL lies in the copy (decoded in place); else it is rabbitmq-c's
         * default, "guest". */
        if (!info.password || info.password < copy || info.password >= copy + strlen(s))
                return;
        check_hidden(data, size, "rabbitmq-c", info.password, true, s, redacted);
}

static void judge_libpq(const uint8_t *data, size_t size, const char *s, const char *redacted) {
        PQconninfoOption *options;
        char *error = NULL;

        options = PQconninfoParse(s, &error);
        PQfreemem(error);
        if (!options)
                return;
        for (PQconninfoOption *o = options; o->keyword; o++)
                if (o->val && (streq(o->keyword, "password") || streq(o->keyword, "sslpassword")))
                        check_hidden(data, size, "libpq", o->val, has_scheme(s), s, redacted);
        PQconninfoFree(options);
}

static void judge_curl(const uint8_t *data, size_t size, const char *s, const char *redacted) {
        CURLU *u = curl_url();
        char *password = NULL;

        if (!u)
                abort();
        /* What the daemon hands curl (DESTINATION_URL); curl alone also reads "http:/h" and the like. */
        if ((startswith(s, "https://") || startswith(s, "http://")) &&
            curl_url_set(u, CURLUPART_URL, s, CURLU_NON_SUPPORT_SCHEME) == CURLUE_OK) {
                if (curl_url_get(u, CURLUPART_PASSWORD, &password, 0) == CURLUE_OK)
                        check_hidden(data, size, "curl", password, false, s, redacted);
                curl_free(password);
                password = NULL;
                if (curl_url_get(u, CURLUPART_PASSWORD, &password, CURLU_URLDECODE) == CURLUE_OK)
                        check_hidden(data, size, "curl", password, true, s, redacted);
                curl_free(password);
        }
        curl_url_cleanup(u);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_free_ char *s = NULL, *redacted = NULL;

        if (size > 4096)
                return 0;
        s = fuzz_strndup(data, size);

        redacted = url_redact(s);
        FUZZ_CHECK(redacted, data, size, "url_redact() gave NULL");

        if (has_scheme(s))
                FUZZ_CHECK(!conninfo_is_valid(s), data, size, "a URL passes for a conninfo string");
        (void) conninfo_is_valid(redacted);

        judge_rabbitmq(data, size, s, redacted);
        judge_libpq(data, size, s, redacted);
        judge_curl(data, size, s, redacted);
        return 0;
}
