/* SPDX-License-Identifier: MIT */
/* The broker URL list (core/broker-url.c): RABBITMQ_URL as an operator writes it, which the
 * configuration checks and the AMQP thread connects with. rabbitmq-c's amqp_parse_url(), which
 * the parser follows, is the independent judge. Invariants:
 *   - no crash, leak or undefined behaviour;
 *   - a list that parses has 1 to BROKER_URL_LIST_MAX items, all amqp:// or all amqps://, each
 *     equal to broker_url_parse() of broker_url_list_item() (which is NULL past the last);
 *   - a URL broker_url_parse() accepts, rabbitmq-c accepts too, with the same TLS flag, user,
 *     password, host, port and vhost, but where broker-url.h says they differ on purpose: the
 *     vhost of "amqp://host/" ("/" here, "" there) and percent-encoded bytes 0x80-0xff (refused
 *     there);
 *   - a failure names a problem (and for a list, an item that exists);
 *   - url_redact() of the list hides every password an item holds (compared decoded: the parser
 *     decodes) and the one rabbitmq-c reads from the whole text; where the list is refused,
 *     url_redact() of the wrong item, which config_load()'s error shows, hides what rabbitmq-c
 *     reads from that item; config_load() takes the text as RABBITMQ_URL without harm. */
#include <amqp.h>

#include "core/broker-url.h"
#include "core/config.h"
#include "fuzz.h"

static bool has_high_escape(const char *s, size_t n) {
        for (size_t i = 0; i + 2 < n; i++)
                if (s[i] == '%' && unhexchar(s[i + 1]) >= 8 && unhexchar(s[i + 2]) >= 0)
                        return true;
        return false;
}

/* rabbitmq-c on one item: its reading must be ours. */
static void judge_rabbitmq(const uint8_t *data, size_t size, const char *item, const BrokerUrl *u) {
        _cleanup_free_ char *copy = strdup(item);
        struct amqp_connection_info info;
        const char *vhost;

        if (!copy)
                abort();
        if (amqp_parse_url(copy, &info) != AMQP_STATUS_OK) {
                FUZZ_CHECK(has_high_escape(item, strlen(item)), data, size,
                           "broker-url accepts \"%s\", rabbitmq-c does not", item);
                return;
        }
        vhost = isempty(info.vhost) ? "/" : info.vhost;
        FUZZ_CHECK(!!info.ssl == u->tls && streq(info.user, u->user) && streq(info.password, u->password) &&
                           streq(info.host, u->host) && info.port == u->port && streq(vhost, u->vhost),
                   data, size,
                   "\"%s\": rabbitmq-c reads user \"%s\" password \"%s\" host \"%s\" port %d vhost \"%s\", "
                   "broker-url \"%s\" \"%s\" \"%s\" %u \"%s\"",
                   item, info.user, info.password, info.host, info.port, info.vhost, u->user, u->password, u->host,
                   u->port, u->vhost);
}

/* Every password the text holds, by our reading of the list and rabbitmq-c's of the whole. */
static void check_passwords(const uint8_t *data, size_t size, const char *text, const BrokerUrlList *list,
                            const char *shown, const char *where) {
        _cleanup_free_ char *copy = strdup(text);
        struct amqp_connection_info info;

        if (!copy)
                abort();
        for (size_t i = 0; list && i < list->n; i++) {
                _cleanup_free_ char *item = broker_url_list_item(text, i);

                if (item && fuzz_url_writes_password(item))
                        fuzz_check_hidden(data, size, where, list->urls[i].password, true, text, shown);
        }
        if (fuzz_url_writes_password(text) && fuzz_escapes_are_hex(text) &&
            amqp_parse_url(copy, &info) == AMQP_STATUS_OK)
                fuzz_check_hidden(data, size, where, info.password, true, text, shown);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_free_ char *text = NULL, *redacted = NULL, *env_entry = NULL;
        _cleanup_(broker_url_list_done) BrokerUrlList list = { 0 };
        _cleanup_(config_done) Config c = { 0 };
        char error[CONFIG_ERROR_MAX];
        const char *problem = NULL;
        size_t index = SIZE_MAX;
        int r;

        if (size > 4096)
                return 0;
        text = fuzz_strndup(data, size);

        r = broker_url_list_parse(text, &list, &index, &problem);
        FUZZ_CHECK(r == 0 || r == -EINVAL, data, size, "broker_url_list_parse() returned %d", r);
        if (r < 0) {
                FUZZ_CHECK(problem && *problem, data, size, "a refused list without a problem");
                FUZZ_CHECK(index <= BROKER_URL_LIST_MAX, data, size, "problem at item %zu", index);
        } else {
                FUZZ_CHECK(list.n >= 1 && list.n <= BROKER_URL_LIST_MAX, data, size, "%zu items", list.n);
                for (size_t i = 0; i < list.n; i++) {
                        _cleanup_free_ char *item = broker_url_list_item(text, i);
                        BrokerUrl u = { 0 };

                        FUZZ_CHECK(item, data, size, "no item %zu of %zu", i, list.n);
                        FUZZ_CHECK(list.urls[i].tls == list.urls[0].tls, data, size, "amqp:// and amqps:// mixed");
                        r = broker_url_parse(item, strlen(item), &u, &problem);
                        FUZZ_CHECK(r == 0, data, size, "item %zu \"%s\" alone: %s", i, item, strempty(problem));
                        FUZZ_CHECK(u.tls == list.urls[i].tls && streq(u.user, list.urls[i].user) &&
                                           streq(u.password, list.urls[i].password) &&
                                           streq(u.host, list.urls[i].host) && u.port == list.urls[i].port &&
                                           streq(u.vhost, list.urls[i].vhost),
                                   data, size, "item %zu reads otherwise alone", i);
                        judge_rabbitmq(data, size, item, &u);
                        broker_url_done(&u);
                }
                FUZZ_CHECK(!broker_url_list_item(text, list.n), data, size, "an item past the last");
        }

        redacted = url_redact(text);
        FUZZ_CHECK(redacted, data, size, "url_redact() gave NULL");
        check_passwords(data, size, text, r == 0 ? &list : NULL, redacted, "url_redact()");

        /* What an operator sees when the list is refused: config_load()'s error echoes the list and
         * the wrong item, each through url_redact() (and echo(), which only escapes and cuts). The
         * item, redacted on its own, must hide what rabbitmq-c reads from it. (The whole message
         * is not searched: its fixed words hold any short password a fuzzer picks.) */
        if (r < 0) {
                _cleanup_free_ char *item = broker_url_list_item(text, index), *shown = NULL;

                if (item) {
                        shown = url_redact(item);
                        FUZZ_CHECK(shown, data, size, "url_redact() gave NULL");
                        check_passwords(data, size, item, NULL, shown, "url_redact() of the wrong item");
                }
        }
        if (asprintf(&env_entry, CONFIG_ENV_PREFIX "RABBITMQ_URL=%s", text) < 0)
                abort();
        (void) config_load(&(ConfigSources) { .environ = (char *[]) { env_entry, NULL }, .hostname = "h" }, &c, error);
        return 0;
}
