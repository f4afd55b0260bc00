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
 *   - where libpq reads the redacted string, it finds none of those passwords in it;
 *   - conninfo_is_valid() refuses URLs (it is for key=value strings only).
 * Lists of broker URLs get their own target with the parser that reads them. */
#include <amqp.h>
#include <curl/curl.h>
#include <libpq-fe.h>

#include "fuzz.h"

/* "scheme://" at the start (RFC 3986 §3.1). */
static bool has_scheme(const char *s) {
        size_t n;

        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')))
                return false;
        n = strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.");
        return startswith(s + n, "://");
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
        if (!fuzz_url_writes_password(s) || !fuzz_escapes_are_hex(s))
                return; /* rabbitmq-c's default, "guest"; or escapes only it reads */
        fuzz_check_hidden(data, size, "rabbitmq-c", info.password, true, s, redacted);
}

static bool is_password_keyword(const char *k) {
        return streq(k, "password") || streq(k, "sslpassword");
}

/* libpq's reading of the redacted string, where it reads one: no password it finds there may be
 * one it found in the input. */
static void judge_libpq_again(const uint8_t *data, size_t size, const PQconninfoOption *before,
                              const char *redacted) {
        PQconninfoOption *after;
        char *error = NULL;

        after = PQconninfoParse(redacted, &error);
        PQfreemem(error);
        if (!after)
                return;
        for (const PQconninfoOption *a = after; a->keyword; a++) {
                if (!a->val || !is_password_keyword(a->keyword))
                        continue;
                for (const PQconninfoOption *b = before; b->keyword; b++)
                        if (b->val && is_password_keyword(b->keyword) && !isempty(b->val) && !strchr(b->val, '*'))
                                FUZZ_CHECK(!streq(a->val, b->val), data, size,
                                           "libpq reads the password \"%s\" in the redacted \"%s\" too", a->val,
                                           redacted);
        }
        PQconninfoFree(after);
}

static void judge_libpq(const uint8_t *data, size_t size, const char *s, const char *redacted) {
        PQconninfoOption *options;
        char *error = NULL;

        options = PQconninfoParse(s, &error);
        PQfreemem(error);
        if (!options)
                return;
        for (PQconninfoOption *o = options; o->keyword; o++)
                /* A key=value string's values may hold backslash escapes, which libpq drops: the
                 * password as written is then not what it reads, and only the reading of the
                 * redacted string below can tell. */
                if (o->val && is_password_keyword(o->keyword) && (has_scheme(s) || !strchr(s, '\\')))
                        fuzz_check_hidden(data, size, "libpq", o->val, has_scheme(s), s, redacted);
        judge_libpq_again(data, size, options, redacted);
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
                        fuzz_check_hidden(data, size, "curl", password, false, s, redacted);
                curl_free(password);
                password = NULL;
                if (curl_url_get(u, CURLUPART_PASSWORD, &password, CURLU_URLDECODE) == CURLUE_OK)
                        fuzz_check_hidden(data, size, "curl", password, true, s, redacted);
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
