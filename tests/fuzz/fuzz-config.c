/* SPDX-License-Identifier: MIT */
/* config_load() (core/config.c): the configuration file and the environment, both written by an
 * operator (or by whoever could write them). The input is the file's text, then, after each NUL
 * byte, one environment entry ("TRANSMITTER_NAME=value"). The token also comes from a credential
 * file, fixed here. Invariants:
 *   - no crash, no leak, no undefined behaviour;
 *   - a failure is one line, and never shows a token: neither the credential's nor a value given
 *     to AUTH_TOKEN (where that value is not also written elsewhere in the input);
 *   - a success is printed by config_format() as one TRANSMITTER_NAME=value line per setting, in
 *     order, the same with and without the token but for "AUTH_TOKEN=***": the token itself never
 *     appears; the prefetch in effect is 1-65535; a configuration compared with itself, or with a
 *     reloaded copy given its restart-only settings, has no change needing a restart;
 *   - what config_format() prints loads again as a file, to the same output, where no value has
 *     surrounding blanks or quotes (the file syntax drops those).
 * AUTH_TOKEN_FILE names a file to read: inputs that mention it are skipped, since a fuzzer could
 * name a FIFO there and block; read_token_file() is exercised through the credential. */
#include <stdio.h>

#include "core/config.h"
#include "fuzz.h"

#define CREDENTIAL_TOKEN "cred-T0ken-Zq8"
#define ENV_MAX 64

static char credentials_dir[] = "/tmp/transmitter-fuzz-config.XXXXXX";

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        _cleanup_free_ char *path = NULL;
        FILE *f;

        if (!mkdtemp(credentials_dir) || asprintf(&path, "%s/" CONFIG_CREDENTIAL_AUTH_TOKEN, credentials_dir) < 0)
                abort();
        f = fopen(path, "we");
        if (!f || fputs(CREDENTIAL_TOKEN "\n", f) < 0 || fclose(f) != 0)
                abort();
        return 0;
}

static __attribute__((destructor)) void remove_credentials(void) {
        _cleanup_free_ char *path = NULL;

        if (strchr(credentials_dir, 'X'))
                return;
        if (asprintf(&path, "%s/" CONFIG_CREDENTIAL_AUTH_TOKEN, credentials_dir) >= 0)
                (void) unlink(path);
        (void) rmdir(credentials_dir);
}

/* How often token shows in the error config_load() gives with the environment entry i's token
 * replaced by one of the same length and control characters, its printable characters all 'Q':
 * the fixed words of the message ("accepted: postgresql://...") hold what any token could. */
static size_t count_without_token(const ConfigSources *sources, char *const *env, size_t n_env, size_t i,
                                  const char *token) {
        _cleanup_free_ char *other = strdup(env[i]);
        _cleanup_(config_done) Config c = { 0 };
        char *env2[ENV_MAX + 1], error[CONFIG_ERROR_MAX];
        ConfigSources s = *sources;

        if (!other)
                abort();
        for (char *p = other + strlen(CONFIG_ENV_PREFIX "AUTH_TOKEN="); *p; p++)
                if (*p >= 0x20 && *p < 0x7f)
                        *p = 'Q';
        memcpy(env2, env, n_env * sizeof(char *));
        env2[i] = other;
        env2[n_env] = NULL;
        s.environ = env2;
        if (config_load(&s, &c, error) >= 0)
                return 0;
        return fuzz_count(error, strlen(error), token, strlen(token));
}

static void check_error(const uint8_t *data, size_t size, const char *error, const ConfigSources *sources,
                        char *const *env, size_t n_env) {
        FUZZ_CHECK(error[0] != '\0', data, size, "a failure without a message");
        FUZZ_CHECK(!strchr(error, '\n'), data, size, "the message is more than one line: %s", error);
        FUZZ_CHECK(strlen(error) < CONFIG_ERROR_MAX, data, size, "the message is too long");
        if (!memmem(data, size, CREDENTIAL_TOKEN, strlen(CREDENTIAL_TOKEN)))
                FUZZ_CHECK(!strstr(error, CREDENTIAL_TOKEN), data, size, "the message shows the credential: %s",
                           error);

        for (size_t i = 0; i < n_env; i++) {
                const char *t = startswith(env[i], CONFIG_ENV_PREFIX "AUTH_TOKEN=");
                size_t shown;

                /* Only a token written nowhere else in the input can be told apart. */
                if (!t || strlen(t) < 4 || fuzz_count((const char *) data, size, t, strlen(t)) != 1)
                        continue;
                shown = fuzz_count(error, strlen(error), t, strlen(t));
                FUZZ_CHECK(shown == 0 || shown <= count_without_token(sources, env, n_env, i, t), data, size,
                           "the message shows the token \"%s\": %s", t, error);
        }
}

/* Replaces the first "\nTRANSMITTER_AUTH_TOKEN=***\n" of with by one without the stars. */
static char *without_token_line(const char *with) {
        const char *line = strstr(with, "\n" CONFIG_ENV_PREFIX "AUTH_TOKEN=***\n");
        const size_t l = strlen("\n" CONFIG_ENV_PREFIX "AUTH_TOKEN=");
        char *out;

        if (!line)
                return NULL;
        if (asprintf(&out, "%.*s%s", (int) (line - with + l), with, line + l + 3) < 0)
                abort();
        return out;
}

/* Whether config_format() output can go through the file syntax unchanged: no value with blanks
 * or a quote at its ends (the file syntax drops them), no URL with an '@' after the authority.
 * url_redact() takes the last '@' before the query for the end of the userinfo, so that a
 * password holding an unescaped '/' or '@' stays hidden, and therefore hides more than the
 * password where a path holds an '@' ("https://h:443/a@b" is shown as "https://h:***@b"): on
 * purpose, and such an AMQP vhost is refused by rabbitmq-c's amqp_parse_url() anyway; nor one
 * that redacting once more would change. */
static bool formatted_reloads_exactly(const Config *c, const char *formatted) {
        const char *urls[] = { c->rabbitmq_url, c->database_url, c->destination_url };

        for (size_t i = 0; i < ELEMENTSOF(urls); i++) {
                const char *u = strempty(urls[i]), *authority = strstr(u, "://");
                _cleanup_free_ char *once = url_redact(u), *twice = once ? url_redact(once) : NULL;

                if (authority && strchr(authority + 3 + strcspn(authority + 3, "/?#"), '@'))
                        return false;
                /* Where a rule finds a ':' or '@' that another rule's "***" left in a new place,
                 * redacting the redacted URL hides more: the output is then no fixed point. */
                if (!twice || !streq(once, twice))
                        return false;
        }
        for (const char *line = formatted; *line;) {
                const char *eq = strchr(line, '='), *end = strchr(line, '\n');

                if (!eq || !end)
                        return false;
                if (end > eq + 1 && (strchr(" \t\v\f\r\"'", eq[1]) || strchr(" \t\v\f\r", end[-1])))
                        return false;
                line = end + 1;
        }
        return true;
}

static void check_config(const uint8_t *data, size_t size, Config *c, const ConfigSources *sources) {
        _cleanup_free_ char *formatted = NULL, *formatted_no_token = NULL, *expected = NULL, *again = NULL;
        char error[CONFIG_ERROR_MAX], restart[256];
        _cleanup_(config_done) Config copy = { 0 }, reloaded = { 0 };
        char *token;
        size_t i;
        int r;

        formatted = config_format(c);
        FUZZ_CHECK(formatted, data, size, "config_format() failed");

        /* One line per setting, in order. */
        i = 0;
        for (const char *line = formatted; *line; i++) {
                const char *end = strchr(line, '\n'), *rest;

                FUZZ_CHECK(end && config_setting_names[i], data, size, "more lines than settings");
                rest = startswith(line, CONFIG_ENV_PREFIX);
                FUZZ_CHECK(rest && startswith(rest, config_setting_names[i]) &&
                                   rest[strlen(config_setting_names[i])] == '=',
                           data, size, "line %zu is not TRANSMITTER_%s=...", i, config_setting_names[i]);
                for (const char *p = line; p < end; p++)
                        FUZZ_CHECK((unsigned char) *p >= 0x20 && *p != 0x7f, data, size,
                                   "a control character in line %zu", i);
                line = end + 1;
        }
        FUZZ_CHECK(!config_setting_names[i], data, size, "fewer lines than settings");

        /* The token changes nothing in the output but its own line. */
        token = c->auth_token;
        c->auth_token = NULL;
        formatted_no_token = config_format(c);
        c->auth_token = token;
        FUZZ_CHECK(formatted_no_token, data, size, "config_format() failed");
        if (token) {
                expected = without_token_line(formatted);
                FUZZ_CHECK(expected && streq(expected, formatted_no_token), data, size,
                           "the token shows in config_format():\n%s", formatted);
                if (strlen(token) >= 4)
                        FUZZ_CHECK(fuzz_count(formatted, strlen(formatted), token, strlen(token)) <=
                                           fuzz_count(formatted_no_token, strlen(formatted_no_token), token,
                                                      strlen(token)),
                                   data, size, "the token shows in config_format()");
        } else
                FUZZ_CHECK(streq(formatted, formatted_no_token), data, size, "config_format() is not stable");

        FUZZ_CHECK(config_prefetch(c) >= 1 && config_prefetch(c) <= 65535, data, size, "prefetch %u",
                   config_prefetch(c));
        FUZZ_CHECK(config_reload_check(c, c, restart, sizeof(restart)) == 0, data, size,
                   "a configuration differs from itself: %s", restart);

        /* A reload: the restart-only settings are taken from the running configuration. */
        r = config_load(sources, &copy, error);
        FUZZ_CHECK(r == 0, data, size, "the same input failed the second time: %s", error);
        r = config_copy_restart_settings(&copy, c);
        FUZZ_CHECK(r == 0, data, size, "config_copy_restart_settings() failed");
        FUZZ_CHECK(config_reload_check(c, &copy, restart, sizeof(restart)) == 0, data, size,
                   "restart-only settings differ after being copied: %s", restart);

        /* What --check-config prints is a configuration file. */
        if (formatted_reloads_exactly(c, formatted)) {
                ConfigSources file_only = {
                        .file_text = formatted,
                        .file_name = "formatted",
                        .hostname = sources->hostname,
                };

                r = config_load(&file_only, &reloaded, error);
                FUZZ_CHECK(r == 0, data, size, "config_format() output does not load: %s\n%s", error, formatted);
                again = config_format(&reloaded);
                FUZZ_CHECK(again && streq(again, formatted), data, size,
                           "config_format() output loads as another configuration:\n%s\n----\n%s", formatted,
                           strempty(again));
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_free_ char *text = NULL;
        char *env[ENV_MAX + 1] = { NULL }, error[CONFIG_ERROR_MAX], unknown[256];
        size_t n_env = 0;
        _cleanup_(config_done) Config c = { 0 };
        ConfigSources sources;
        int r;

        if (memmem(data, size, "TOKEN_FILE", strlen("TOKEN_FILE")))
                return 0;

        /* file text \0 env \0 env ... */
        text = fuzz_strndup(data, size);
        for (char *p = text, *end = text + size; p < end && n_env < ENV_MAX;) {
                char *nul = memchr(p, '\0', (size_t) (end - p));

                if (!nul)
                        break;
                p = nul + 1;
                env[n_env++] = p;
        }

        sources = (ConfigSources) {
                .file_text = text,
                .file_name = "fuzz.conf",
                .environ = env,
                .credentials_dir = (size > 0 && data[0] == '#') ? NULL : credentials_dir,
                .hostname = "fuzz-host",
        };

        (void) config_unknown_env(env, unknown, sizeof(unknown));
        r = config_load(&sources, &c, error);
        if (r < 0) {
                FUZZ_CHECK(r == -EINVAL, data, size, "config_load() returned %d", r);
                check_error(data, size, error, &sources, env, n_env);
                return 0;
        }
        FUZZ_CHECK(error[0] == '\0', data, size, "a success with an error message: %s", error);
        check_config(data, size, &c, &sources);
        return 0;
}
