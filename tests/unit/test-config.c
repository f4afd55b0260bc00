/* SPDX-License-Identifier: MIT */
/* Unit tests of src/core/config.c.
 *
 * The shipped conf/transmitter.conf is read from CONF_FILE_PATH: by default relative to the
 * working directory, so run the binary from the repository root, or build it with
 * -DCONF_FILE_PATH='"/abs/path/conf/transmitter.conf"' (meson:
 * meson.project_source_root() / 'conf' / 'transmitter.conf'). */

#include <criterion/criterion.h>
#include <ftw.h>
#include <stdio.h>
#include <sys/stat.h>

#include "core/config.h"
#include "os/log.h"

#ifndef CONF_FILE_PATH
#define CONF_FILE_PATH "conf/transmitter.conf"
#endif

#define HOSTNAME "gw-1.example.net"
#define TOKEN "s3cr3t-T0ken-value"

static char tmpdir[64];

static int load_full(const char *file_text, char **env, const char *credentials_dir, Config *c,
                     char *error) {
        ConfigSources s = {
                .file_text = file_text,
                .file_name = "test.conf",
                .environ = env,
                .credentials_dir = credentials_dir,
                .hostname = HOSTNAME,
        };
        return config_load(&s, c, error);
}

static int load(const char *file_text, char **env, Config *c, char *error) {
        return load_full(file_text, env, NULL, c, error);
}

/* Loads one TRANSMITTER_<name>=value from the environment and returns the error line. */
static int load_one(const char *name, const char *value, char *error) {
        _cleanup_free_ char *assignment = NULL;
        Config c = { 0 };
        int r;

        cr_assert(asprintf(&assignment, "TRANSMITTER_%s=%s", name, value) >= 0);
        r = load(NULL, (char *[]){ assignment, NULL }, &c, error);
        config_done(&c);
        return r;
}

static void write_file(const char *name, const char *content) {
        _cleanup_free_ char *path = NULL;
        FILE *f;

        cr_assert(asprintf(&path, "%s/%s", tmpdir, name) >= 0);
        f = fopen(path, "we");
        cr_assert_not_null(f);
        cr_assert_eq(fwrite(content, 1, strlen(content), f), strlen(content));
        cr_assert_eq(fclose(f), 0);
}

static char *tmp_path(const char *name) {
        char *p;

        cr_assert(asprintf(&p, "%s/%s", tmpdir, name) >= 0);
        return p;
}

static void make_tmpdir(void) {
        strcpy(tmpdir, "/tmp/test-config-XXXXXX");
        cr_assert_not_null(mkdtemp(tmpdir));
}

static int remove_entry(const char *path, _unused_ const struct stat *st, _unused_ int flag,
                        _unused_ struct FTW *ftw) {
        return remove(path);
}

static void remove_tmpdir(void) {
        (void) nftw(tmpdir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static size_t count_settings(void) {
        size_t n = 0;

        while (config_setting_names[n])
                n++;
        return n;
}

/* ---- Defaults and names ---- */

static const char default_format[] =
        "TRANSMITTER_SERVER_HOST=0.0.0.0\n"
        "TRANSMITTER_SERVER_PORT=8020\n"
        "TRANSMITTER_RABBITMQ_URL=amqp://discovery:***@localhost:5672/\n"
        "TRANSMITTER_RABBITMQ_EXCHANGE=discovery.events\n"
        "TRANSMITTER_RABBITMQ_QUEUE=transmitter.approved\n"
        "TRANSMITTER_RABBITMQ_DEAD_LETTER_EXCHANGE=discovery.events.dlx\n"
        "TRANSMITTER_RABBITMQ_QUEUE_TYPE=classic\n"
        "TRANSMITTER_RABBITMQ_PREFETCH=0\n"
        "TRANSMITTER_RABBITMQ_HEARTBEAT_S=30\n"
        "TRANSMITTER_RABBITMQ_CA_FILE=/etc/ssl/certs/ca-certificates.crt\n"
        "TRANSMITTER_RABBITMQ_DELIVERY_LIMIT=20\n"
        "TRANSMITTER_RABBITMQ_CONSUMER_TIMEOUT_S=1800\n"
        "TRANSMITTER_DATABASE_URL=postgresql://discovery:***@localhost:5432/discovery\n"
        "TRANSMITTER_DATABASE_MIGRATE=false\n"
        "TRANSMITTER_DESTINATION_URL=https://api.example.com/v1/discovery\n"
        "TRANSMITTER_AUTH_TOKEN=\n"
        "TRANSMITTER_AUTH_TOKEN_FILE=\n"
        "TRANSMITTER_TLS_CA_FILE=\n"
        "TRANSMITTER_TLS_CERT_FILE=\n"
        "TRANSMITTER_TLS_KEY_FILE=\n"
        "TRANSMITTER_ALLOW_INSECURE_HTTP=false\n"
        "TRANSMITTER_REQUEST_TIMEOUT_S=30\n"
        "TRANSMITTER_CONNECT_TIMEOUT_S=10\n"
        "TRANSMITTER_BATCH_SIZE=100\n"
        "TRANSMITTER_BATCH_INTERVAL_S=60\n"
        "TRANSMITTER_BATCH_MAX_BYTES=10485760\n"
        "TRANSMITTER_MAX_IN_FLIGHT=2\n"
        "TRANSMITTER_COMPRESSION_LEVEL=6\n"
        "TRANSMITTER_RETRY_MAX_ATTEMPTS=3\n"
        "TRANSMITTER_RETRY_BACKOFF_MULTIPLIER=2\n"
        "TRANSMITTER_RETRY_MAX_DELAY_S=300\n"
        "TRANSMITTER_RETRY_JITTER=false\n"
        "TRANSMITTER_CIRCUIT_FAILURE_THRESHOLD=5\n"
        "TRANSMITTER_CIRCUIT_RESET_TIMEOUT_S=60\n"
        "TRANSMITTER_LOG_LEVEL=INFO\n"
        "TRANSMITTER_BATCH_TIMELINE=false\n"
        "TRANSMITTER_SHUTDOWN_TIMEOUT_S=20\n"
        "TRANSMITTER_INSTANCE_ID=" HOSTNAME "\n";

Test(config, defaults) {
        char error[CONFIG_ERROR_MAX] = "x";
        _cleanup_free_ char *f = NULL;
        Config c;

        cr_assert_eq(load(NULL, NULL, &c, error), 0, "%s", error);
        cr_expect_str_empty(error);
        cr_expect_str_eq(c.server_host, "0.0.0.0");
        cr_expect_eq(c.server_port, 8020);
        cr_expect_str_eq(c.rabbitmq_url, "amqp://discovery:discovery@localhost:5672/");
        cr_expect_str_eq(c.rabbitmq_exchange, "discovery.events");
        cr_expect_str_eq(c.rabbitmq_queue, "transmitter.approved");
        cr_expect_str_eq(c.rabbitmq_dead_letter_exchange, "discovery.events.dlx");
        cr_expect_eq(c.rabbitmq_queue_type, QUEUE_TYPE_CLASSIC);
        cr_expect_eq(c.rabbitmq_prefetch, 0);
        cr_expect_eq(c.rabbitmq_heartbeat_s, 30);
        cr_expect_str_eq(c.rabbitmq_ca_file, "/etc/ssl/certs/ca-certificates.crt");
        cr_expect_str_eq(c.database_url, "postgresql://discovery:discovery@localhost:5432/discovery");
        cr_expect_not(c.database_migrate);
        cr_expect_str_eq(c.destination_url, "https://api.example.com/v1/discovery");
        cr_expect_null(c.auth_token);
        cr_expect_null(c.auth_token_file);
        cr_expect_null(c.tls_ca_file);
        cr_expect_null(c.tls_cert_file);
        cr_expect_null(c.tls_key_file);
        cr_expect_not(c.allow_insecure_http);
        cr_expect_eq(c.request_timeout_s, 30);
        cr_expect_eq(c.connect_timeout_s, 10);
        cr_expect_eq(c.batch_size, 100);
        cr_expect_eq(c.batch_interval_s, 60);
        cr_expect_eq(c.batch_max_bytes, 10485760);
        cr_expect_eq(c.max_in_flight, 2);
        cr_expect_eq(c.compression_level, 6);
        cr_expect_eq(c.retry_max_attempts, 3);
        cr_expect_eq(c.retry_backoff_multiplier, 2.0);
        cr_expect_eq(c.retry_max_delay_s, 300);
        cr_expect_not(c.retry_jitter);
        cr_expect_eq(c.circuit_failure_threshold, 5);
        cr_expect_eq(c.circuit_reset_timeout_s, 60);
        cr_expect_eq(c.log_level, LOG_INFO);
        cr_expect_not(c.batch_timeline);
        cr_expect_eq(c.shutdown_timeout_s, 20);
        cr_expect_str_eq(c.instance_id, HOSTNAME);
        cr_expect_eq(c.obsolete, 0);
        cr_expect_eq(config_prefetch(&c), 300);

        f = config_format(&c);
        cr_assert_not_null(f);
        cr_expect_str_eq(f, default_format);
        config_done(&c);
}

Test(config, setting_names_match_format) {
        char error[CONFIG_ERROR_MAX];
        _cleanup_free_ char *f = NULL;
        const char *p;
        size_t n = count_settings();
        Config c;

        cr_expect_eq(n, 38);
        for (size_t i = 0; i < n; i++) {
                cr_expect_null(startswith(config_setting_names[i], "TRANSMITTER_"));
                for (size_t j = 0; j < i; j++)
                        cr_expect_str_neq(config_setting_names[i], config_setting_names[j]);
        }

        cr_assert_eq(load(NULL, NULL, &c, error), 0, "%s", error);
        f = config_format(&c);
        cr_assert_not_null(f);
        p = f;
        for (size_t i = 0; i < n; i++) {
                char prefix[128];

                snprintf(prefix, sizeof(prefix), "TRANSMITTER_%s=", config_setting_names[i]);
                cr_expect(startswith(p, prefix), "line %zu is not %s", i + 1, prefix);
                p = strchr(p, '\n');
                cr_assert_not_null(p);
                p++;
        }
        cr_expect_str_empty(p);
        config_done(&c);
}

/* MIGRATIONS_DIR went when the migrations moved into the binary: a configuration that still sets
 * it, in the file or the environment and to any value, loads as if it did not, and says so once. */
Test(config, obsolete_settings) {
        char error[CONFIG_ERROR_MAX], names[256];
        _cleanup_free_ char *plain = NULL, *f = NULL;
        Config c;

        cr_assert_eq(load(NULL, NULL, &c, error), 0, "%s", error);
        cr_expect_eq(config_obsolete_names(&c, names, sizeof(names)), 0);
        cr_expect_str_empty(names);
        plain = config_format(&c);
        cr_assert_not_null(plain);
        config_done(&c);

        cr_assert_eq(load("TRANSMITTER_MIGRATIONS_DIR=/usr/share/transmitter/db\n",
                          (char *[]){ "TRANSMITTER_MIGRATIONS_DIR=", NULL }, &c, error),
                     0, "%s", error);
        cr_expect_eq(config_obsolete_names(&c, names, sizeof(names)), 1);
        cr_expect_str_eq(names, "TRANSMITTER_MIGRATIONS_DIR (the migrations are built into the binary)");
        cr_expect_eq(config_obsolete_names(&c, NULL, 0), 1);
        cr_expect_eq(config_obsolete_names(&c, names, 12), 1);
        cr_expect_str_eq(names, "TRANSMITTER");
        f = config_format(&c);
        cr_assert_not_null(f);
        cr_expect_str_eq(f, plain, "an obsolete setting changed the configuration");
        cr_expect_null(strstr(f, "MIGRATIONS_DIR"));
        config_done(&c);

        /* Not validated: whatever it was set to. */
        cr_assert_eq(load("TRANSMITTER_MIGRATIONS_DIR='unbalanced\n", NULL, &c, error), 0, "%s", error);
        cr_expect_eq(config_obsolete_names(&c, NULL, 0), 1);
        config_done(&c);

        /* Not an unknown variable either, which would be a second warning. */
        cr_expect_eq(config_unknown_env((char *[]){ "TRANSMITTER_MIGRATIONS_DIR=/x", NULL }, names, sizeof(names)),
                     0);
        cr_expect_eq(config_setting_reloadable("MIGRATIONS_DIR"), false);
}

Test(config, null_sources_and_done) {
        char error[CONFIG_ERROR_MAX];
        Config c = { 0 };

        /* Without a host name INSTANCE_ID has no default. */
        cr_expect_eq(config_load(NULL, &c, error), -EINVAL);
        cr_expect_str_eq(
                error,
                "TRANSMITTER_INSTANCE_ID is not set and the host name is unknown (accepted: 1-255 bytes)");
        config_done(&c);
        config_done(&c);
        config_done(NULL);
}

Test(config, instance_id) {
        char error[CONFIG_ERROR_MAX];
        ConfigSources s = { .hostname = "host-a" };
        Config c;

        cr_assert_eq(config_load(&s, &c, error), 0, "%s", error);
        cr_expect_str_eq(c.instance_id, "host-a");
        config_done(&c);

        s.environ = (char *[]){ "TRANSMITTER_INSTANCE_ID=", NULL };
        cr_assert_eq(config_load(&s, &c, error), 0, "%s", error);
        cr_expect_str_eq(c.instance_id, "host-a");
        config_done(&c);

        s.environ = (char *[]){ "TRANSMITTER_INSTANCE_ID=gw-east-2", NULL };
        cr_assert_eq(config_load(&s, &c, error), 0, "%s", error);
        cr_expect_str_eq(c.instance_id, "gw-east-2");
        config_done(&c);

        s.hostname = NULL;
        cr_assert_eq(config_load(&s, &c, error), 0, "%s", error);
        cr_expect_str_eq(c.instance_id, "gw-east-2");
        config_done(&c);
}

/* ---- The file ---- */

Test(config, file_syntax) {
        char error[CONFIG_ERROR_MAX];
        Config c;
        const char *text = "# a comment\n"
                           "\n"
                           "   # an indented comment\n"
                           "TRANSMITTER_BATCH_SIZE=7\n"
                           "  TRANSMITTER_BATCH_INTERVAL_S  =  9  \n"
                           "\t\n"
                           "TRANSMITTER_RABBITMQ_QUEUE=\"my queue\"\n"
                           "TRANSMITTER_RABBITMQ_EXCHANGE='ex # not a comment'\n"
                           "TRANSMITTER_INSTANCE_ID=\"it's\"\n"
                           "TRANSMITTER_LOG_LEVEL=debug\r\n"
                           "TRANSMITTER_RETRY_JITTER=Yes\n"
                           "TRANSMITTER_BATCH_TIMELINE=on\n"
                           "TRANSMITTER_RABBITMQ_QUEUE_TYPE=QUORUM\n"
                           "TRANSMITTER_AUTH_TOKEN=''\n"
                           "TRANSMITTER_MAX_IN_FLIGHT=3\n"
                           "TRANSMITTER_MAX_IN_FLIGHT=4\n" /* the later line wins */
                           "TRANSMITTER_RETRY_BACKOFF_MULTIPLIER=1.5\n"
                           "TRANSMITTER_DESTINATION_URL=https://x.example:8443/in?a=b=c\n"
                           "TRANSMITTER_COMPRESSION_LEVEL=0"; /* no final newline */

        cr_assert_eq(load(text, NULL, &c, error), 0, "%s", error);
        cr_expect_eq(c.batch_size, 7);
        cr_expect_eq(c.batch_interval_s, 9);
        cr_expect_str_eq(c.rabbitmq_queue, "my queue");
        cr_expect_str_eq(c.rabbitmq_exchange, "ex # not a comment");
        cr_expect_str_eq(c.instance_id, "it's");
        cr_expect_eq(c.log_level, LOG_DEBUG);
        cr_expect(c.retry_jitter);
        cr_expect(c.batch_timeline);
        cr_expect_eq(c.rabbitmq_queue_type, QUEUE_TYPE_QUORUM);
        cr_expect_null(c.auth_token);
        cr_expect_eq(c.max_in_flight, 4);
        cr_expect_eq(c.retry_backoff_multiplier, 1.5);
        cr_expect_str_eq(c.destination_url, "https://x.example:8443/in?a=b=c");
        cr_expect_eq(c.compression_level, 0);
        config_done(&c);

        /* Empty and comment-only files are fine. */
        cr_assert_eq(load("", NULL, &c, error), 0, "%s", error);
        config_done(&c);
        cr_assert_eq(load("#\n\n#TRANSMITTER_BATCH_SIZE=abc\n", NULL, &c, error), 0, "%s", error);
        cr_expect_eq(c.batch_size, 100);
        config_done(&c);
}

Test(config, file_errors) {
        static const struct {
                const char *text, *error;
        } cases[] = {
                { "# x\nTRANSMITTER_BATCH_SIZE 5\n",
                  "test.conf:2: missing '=' (expected TRANSMITTER_NAME=value)" },
                { "\n\n\n\n\n\nTRANSMITTER_FOO=1\n", "test.conf:7: unknown setting TRANSMITTER_FOO" },
                { "BATCH_SIZE=5\n", "test.conf:1: unknown setting BATCH_SIZE" },
                { "transmitter_batch_size=5\n", "test.conf:1: unknown setting transmitter_batch_size" },
                { " = 5\n", "test.conf:1: missing setting name before '='" },
                { "TRANSMITTER_RABBITMQ_QUEUE=\"q\n",
                  "test.conf:1: unbalanced quotes in the value of TRANSMITTER_RABBITMQ_QUEUE" },
                { "TRANSMITTER_RABBITMQ_QUEUE='q\"\n",
                  "test.conf:1: unbalanced quotes in the value of TRANSMITTER_RABBITMQ_QUEUE" },
                { "TRANSMITTER_RABBITMQ_QUEUE=\"\n",
                  "test.conf:1: unbalanced quotes in the value of TRANSMITTER_RABBITMQ_QUEUE" },
                { "#\nTRANSMITTER_BATCH_SIZE=abc\n",
                  "test.conf:2: TRANSMITTER_BATCH_SIZE=abc: not a number (accepted: 1-100000)" },
                { "TRANSMITTER_BATCH_SIZE=100 # comment\n",
                  "test.conf:1: TRANSMITTER_BATCH_SIZE=100 # comment: not a number (accepted: 1-100000)" },
                { "TRANSMITTER_BATCH_SIZE=\"\"\n",
                  "test.conf:1: TRANSMITTER_BATCH_SIZE=: not a number (accepted: 1-100000)" },
                /* A line without '=' is not echoed: it might be a pasted token. */
                { "TRANSMITTER_AUTH_TOKEN=a\n" TOKEN "\n",
                  "test.conf:2: missing '=' (expected TRANSMITTER_NAME=value)" },
                /* The rule between settings names the line of the value it refuses. */
                { "TRANSMITTER_DESTINATION_URL=http://h/\n",
                  "test.conf:1: TRANSMITTER_DESTINATION_URL=http://h/: plain http:// is refused (accepted: "
                  "https://, "
                  "or http:// with TRANSMITTER_ALLOW_INSECURE_HTTP=true)" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char error[CONFIG_ERROR_MAX];
                Config c = { 0 };

                cr_expect_eq(load(cases[i].text, NULL, &c, error), -EINVAL, "case %zu", i);
                cr_expect_str_eq(error, cases[i].error, "case %zu", i);
                config_done(&c);
        }
}

Test(config, file_name_in_messages) {
        char error[CONFIG_ERROR_MAX];
        ConfigSources s = {
                .file_text = "TRANSMITTER_X=1\n",
                .file_name = CONFIG_FILE_DEFAULT,
                .hostname = HOSTNAME,
        };
        Config c = { 0 };

        cr_expect_eq(config_load(&s, &c, error), -EINVAL);
        cr_expect_str_eq(error, "/etc/transmitter/transmitter.conf:1: unknown setting TRANSMITTER_X");
        s.file_name = NULL;
        cr_expect_eq(config_load(&s, &c, error), -EINVAL);
        cr_expect_str_eq(error, "configuration file:1: unknown setting TRANSMITTER_X");
}

/* ---- The environment ---- */

Test(config, environment_overrides_file) {
        char error[CONFIG_ERROR_MAX];
        Config c;
        const char *text =
                "TRANSMITTER_BATCH_SIZE=7\nTRANSMITTER_LOG_LEVEL=ERROR\nTRANSMITTER_SERVER_PORT=9000\n";
        char *env[] = {
                "PATH=/usr/bin",
                "BATCH_SIZE=1", /* no prefix: not ours */
                "TRANSMITTER_BATCH_SIZE=8",
                "TRANSMITTER_FOO=1", /* unknown: no error */
                "TRANSMITTER_BATCH_SIZ=2",
                "TRANSMITTER_NOEQUALS",
                "TRANSMITTER_LOG_LEVEL=warning",
                "TRANSMITTER_RABBITMQ_QUEUE= spaced ", /* the environment is taken verbatim */
                NULL,
        };
        char names[CONFIG_ERROR_MAX];

        cr_assert_eq(load(text, env, &c, error), 0, "%s", error);
        cr_expect_eq(c.batch_size, 8);
        cr_expect_eq(c.log_level, LOG_WARNING);
        cr_expect_eq(c.server_port, 9000);
        cr_expect_str_eq(c.rabbitmq_queue, " spaced ");
        config_done(&c);

        cr_expect_eq(config_unknown_env(env, names, sizeof(names)), 3);
        cr_expect_str_eq(names, "TRANSMITTER_FOO, TRANSMITTER_BATCH_SIZ, TRANSMITTER_NOEQUALS");
        cr_expect_eq(config_unknown_env(env, NULL, 0), 3);
        cr_expect_eq(
                config_unknown_env((char *[]){ "TRANSMITTER_BATCH_SIZE=1", NULL }, names, sizeof(names)), 0);
        cr_expect_str_empty(names);
        cr_expect_eq(config_unknown_env(NULL, names, sizeof(names)), 0);

        /* Truncated, never overflowing. */
        cr_expect_eq(config_unknown_env(env, names, 20), 3);
        cr_expect_str_eq(names, "TRANSMITTER_FOO, TR");

        /* A bad value in the environment fails even when the file is fine. */
        cr_expect_eq(load(text, (char *[]){ "TRANSMITTER_SERVER_PORT=x", NULL }, &c, error), -EINVAL);
        cr_expect_str_eq(error, "TRANSMITTER_SERVER_PORT=x: not a number (accepted: 1-65535)");
}

/* ---- Values ---- */

static const struct {
        const char *name, *value, *error;
} bad_values[] = {
        { "SERVER_HOST", "", "TRANSMITTER_SERVER_HOST=: must not be empty (accepted: 1-255 bytes)" },
        { "SERVER_PORT", "0", "TRANSMITTER_SERVER_PORT=0: out of range (accepted: 1-65535)" },
        { "SERVER_PORT", "65536", "TRANSMITTER_SERVER_PORT=65536: out of range (accepted: 1-65535)" },
        { "SERVER_PORT", "80x", "TRANSMITTER_SERVER_PORT=80x: not a number (accepted: 1-65535)" },
        { "RABBITMQ_URL", "http://h/",
          "TRANSMITTER_RABBITMQ_URL=http://h/: not an amqp:// or amqps:// URL (accepted: "
          "amqp://[user[:password]@]host[:port][/vhost] or amqps://..., several separated by commas, all amqp:// or all amqps://)" },
        { "RABBITMQ_URL", "amqp://u:pw@:5672/",
          "TRANSMITTER_RABBITMQ_URL=amqp://u:***@:5672/: no host (accepted: "
          "amqp://[user[:password]@]host[:port][/vhost] or amqps://..., several separated by commas, all amqp:// or all amqps://)" },
        { "RABBITMQ_URL", "amqps://u:pw@h:99999/",
          "TRANSMITTER_RABBITMQ_URL=amqps://u:***@h:99999/: a port that is not 1-65535 (accepted: "
          "amqp://[user[:password]@]host[:port][/vhost] or amqps://..., several separated by commas, all amqp:// or all amqps://)" },
        /* A password with an unescaped '#', '?', '@' or '/': the hint, and the password not shown. */
        { "RABBITMQ_URL", "amqp://u:se#cret@h/",
          "TRANSMITTER_RABBITMQ_URL=amqp://u:***@h/: a '?' or '#' in the URL (no query is read; in a "
          "password write them as %3F, %23) (accepted: "
          "amqp://[user[:password]@]host[:port][/vhost] or amqps://..., several separated by commas, all amqp:// or all amqps://)" },
        { "RABBITMQ_URL", "amqp://u:p@ss@h/",
          "TRANSMITTER_RABBITMQ_URL=amqp://u:***@h/: an '@' in the user name or password, write it as %40 "
          "(accepted: "
          "amqp://[user[:password]@]host[:port][/vhost] or amqps://..., several separated by commas, all amqp:// or all amqps://)" },
        { "RABBITMQ_URL", "amqp://u:pa/ss@h/",
          "TRANSMITTER_RABBITMQ_URL=amqp://u:***@h/: a '/' in the user name or password or an '@' in the "
          "vhost, write them as %2F, %40 (accepted: "
          "amqp://[user[:password]@]host[:port][/vhost] or amqps://..., several separated by commas, all amqp:// or all amqps://)" },
        { "RABBITMQ_URL", "amqp://u:pa%zzss@h/",
          "TRANSMITTER_RABBITMQ_URL=amqp://u:***@h/: a '%' not followed by two hex digits, write a '%' "
          "itself as %25 (accepted: "
          "amqp://[user[:password]@]host[:port][/vhost] or amqps://..., several separated by commas, all amqp:// or all amqps://)" },
        /* What rabbitmq-c refuses: a query, a second '/' or a ':' in the vhost. */
        { "RABBITMQ_URL", "amqp://h/?heartbeat=5",
          "TRANSMITTER_RABBITMQ_URL=amqp://h/?heartbeat=5: a '?' or '#' in the URL (no query is read; in a "
          "password write them as %3F, %23) (accepted: "
          "amqp://[user[:password]@]host[:port][/vhost] or amqps://..., several separated by commas, all amqp:// or all amqps://)" },
        { "RABBITMQ_URL", "amqp://h/a/b",
          "TRANSMITTER_RABBITMQ_URL=amqp://h/a/b: a '/', ':' or '@' in the vhost, write them as %2F, %3A, "
          "%40 (accepted: "
          "amqp://[user[:password]@]host[:port][/vhost] or amqps://..., several separated by commas, all amqp:// or all amqps://)" },
        { "RABBITMQ_URL", "",
          "TRANSMITTER_RABBITMQ_URL=: empty (accepted: "
          "amqp://[user[:password]@]host[:port][/vhost] or amqps://..., several separated by commas, all amqp:// or all amqps://)" },
        /* Lists: the bad item named by position and text, redacted. */
        { "RABBITMQ_URL", "amqp://a:pw1@h1/,amqps://b:pw2@h2/",
          "TRANSMITTER_RABBITMQ_URL=amqp://a:***@h1/,amqps://b:***@h2/: item 2 (amqps://b:***@h2/): "
          "amqp:// and amqps:// mixed (accepted: "
          "amqp://[user[:password]@]host[:port][/vhost] or amqps://..., several separated by commas, all amqp:// or all amqps://)" },
        { "RABBITMQ_URL", "amqp://a:pw1@h1/,,amqp://h3/",
          "TRANSMITTER_RABBITMQ_URL=amqp://a:***@h1/,,amqp://h3/: item 2 (): an empty item (accepted: "
          "amqp://[user[:password]@]host[:port][/vhost] or amqps://..., several separated by commas, all amqp:// or all amqps://)" },
        { "RABBITMQ_URL", "amqp://h1/,",
          "TRANSMITTER_RABBITMQ_URL=amqp://h1/,: item 2 (): an empty item (accepted: "
          "amqp://[user[:password]@]host[:port][/vhost] or amqps://..., several separated by commas, all amqp:// or all amqps://)" },
        { "RABBITMQ_URL", "amqp://a:pw1@h1/, amqp://b:pw2@h2:0/",
          "TRANSMITTER_RABBITMQ_URL=amqp://a:***@h1/, amqp://b:***@h2:0/: item 2 (amqp://b:***@h2:0/): a "
          "port that is not 1-65535 (accepted: "
          "amqp://[user[:password]@]host[:port][/vhost] or amqps://..., several separated by commas, all amqp:// or all amqps://)" },
        { "RABBITMQ_URL", "amqp://a:pw1@h1/,nope",
          "TRANSMITTER_RABBITMQ_URL=amqp://a:***@h1/,nope: item 2 (nope): not an amqp:// or amqps:// URL "
          "(accepted: "
          "amqp://[user[:password]@]host[:port][/vhost] or amqps://..., several separated by commas, all amqp:// or all amqps://)" },
        /* A ',' in a password: named, and no part of the password shown. */
        { "RABBITMQ_URL", "amqp://u:pa,ss@h/",
          "TRANSMITTER_RABBITMQ_URL=amqp://u:***@h/: item 1 (amqp://u:***): a ',' in the user name or "
          "password, write it as %2C (accepted: "
          "amqp://[user[:password]@]host[:port][/vhost] or amqps://..., several separated by commas, all amqp:// or all amqps://)" },
        { "RABBITMQ_EXCHANGE", "",
          "TRANSMITTER_RABBITMQ_EXCHANGE=: must not be empty (accepted: 1-255 bytes)" },
        { "RABBITMQ_QUEUE", "", "TRANSMITTER_RABBITMQ_QUEUE=: must not be empty (accepted: 1-255 bytes)" },
        { "RABBITMQ_DEAD_LETTER_EXCHANGE", "",
          "TRANSMITTER_RABBITMQ_DEAD_LETTER_EXCHANGE=: must not be empty (accepted: 1-255 bytes)" },
        { "RABBITMQ_QUEUE_TYPE", "stream",
          "TRANSMITTER_RABBITMQ_QUEUE_TYPE=stream: unknown queue type (accepted: classic, quorum)" },
        { "RABBITMQ_PREFETCH", "65536",
          "TRANSMITTER_RABBITMQ_PREFETCH=65536: out of range (accepted: 0-65535)" },
        { "RABBITMQ_HEARTBEAT_S", "3601",
          "TRANSMITTER_RABBITMQ_HEARTBEAT_S=3601: out of range (accepted: 0-3600)" },
        { "RABBITMQ_HEARTBEAT_S", "-1",
          "TRANSMITTER_RABBITMQ_HEARTBEAT_S=-1: out of range (accepted: 0-3600)" },
        { "RABBITMQ_DELIVERY_LIMIT", "100001",
          "TRANSMITTER_RABBITMQ_DELIVERY_LIMIT=100001: out of range (accepted: 0-100000)" },
        { "RABBITMQ_CONSUMER_TIMEOUT_S", "30m",
          "TRANSMITTER_RABBITMQ_CONSUMER_TIMEOUT_S=30m: not a number (accepted: 0-604800)" },
        { "DATABASE_URL", "mysql://u:pw@h/db",
          "TRANSMITTER_DATABASE_URL=mysql://u:***@h/db: not a postgresql:// URL or key=value conninfo "
          "string "
          "(accepted: postgresql://[user[:password]@]host[:port][,...][/dbname][?param=value...], "
          "postgres://..., "
          "or a key=value conninfo string)" },
        { "DATABASE_URL", "postgresql://u:pw@/db",
          "TRANSMITTER_DATABASE_URL=postgresql://u:***@/db: no host in the URL (accepted: "
          "postgresql://[user[:password]@]host[:port][,...][/dbname][?param=value...], postgres://..., "
          "or a key=value conninfo string)" },
        { "DATABASE_URL", "postgresql://u:s3cr%zzet@h/db",
          "TRANSMITTER_DATABASE_URL=postgresql://u:***@h/db: a '%' not followed by two hex digits, write a "
          "'%' itself as %25 (accepted: "
          "postgresql://[user[:password]@]host[:port][,...][/dbname][?param=value...], postgres://..., "
          "or a key=value conninfo string)" },
        { "DATABASE_URL", "postgresql://u:top?secret@h/db",
          "TRANSMITTER_DATABASE_URL=postgresql://u:***@h/db: the user name or password holds a '/', '?' or "
          "'#', write them as %2F, %3F, %23 (accepted: "
          "postgresql://[user[:password]@]host[:port][,...][/dbname][?param=value...], postgres://..., "
          "or a key=value conninfo string)" },
        { "DATABASE_URL", "host=h password='open",
          "TRANSMITTER_DATABASE_URL=host=h password=***: not a postgresql:// URL or key=value conninfo "
          "string "
          "(accepted: postgresql://[user[:password]@]host[:port][,...][/dbname][?param=value...], "
          "postgres://..., "
          "or a key=value conninfo string)" },
        { "DATABASE_MIGRATE", "maybe",
          "TRANSMITTER_DATABASE_MIGRATE=maybe: not a boolean (accepted: true, false, yes, no, on, off, 1, "
          "0)" },
        { "DESTINATION_URL", "ftp://h/",
          "TRANSMITTER_DESTINATION_URL=ftp://h/: not an https:// URL (accepted: https://host[:port][/path]; "
          "http:// only with TRANSMITTER_ALLOW_INSECURE_HTTP=true)" },
        { "DESTINATION_URL", "https:///v1",
          "TRANSMITTER_DESTINATION_URL=https:///v1: no host in the URL (accepted: "
          "https://host[:port][/path]; "
          "http:// only with TRANSMITTER_ALLOW_INSECURE_HTTP=true)" },
        { "DESTINATION_URL", "https://a b/",
          "TRANSMITTER_DESTINATION_URL=https://a b/: contains a space, write it as %20 (accepted: "
          "https://host[:port][/path]; http:// only with TRANSMITTER_ALLOW_INSECURE_HTTP=true)" },
        { "DESTINATION_URL", "https://h:/",
          "TRANSMITTER_DESTINATION_URL=https://h:/: bad port in the URL (accepted: "
          "https://host[:port][/path]; "
          "http:// only with TRANSMITTER_ALLOW_INSECURE_HTTP=true)" },
        { "AUTH_TOKEN", "abc\r\nX-Evil: 1",
          "TRANSMITTER_AUTH_TOKEN=***: contains a control character (accepted: printable text)" },
        { "TLS_CA_FILE", "/a\nb",
          "TRANSMITTER_TLS_CA_FILE=/a\\x0ab: contains a control character (accepted: printable text)" },
        { "ALLOW_INSECURE_HTTP", "2",
          "TRANSMITTER_ALLOW_INSECURE_HTTP=2: not a boolean (accepted: true, false, yes, no, on, off, 1, "
          "0)" },
        { "REQUEST_TIMEOUT_S", "0", "TRANSMITTER_REQUEST_TIMEOUT_S=0: out of range (accepted: 1-3600)" },
        { "CONNECT_TIMEOUT_S", "601", "TRANSMITTER_CONNECT_TIMEOUT_S=601: out of range (accepted: 1-600)" },
        { "BATCH_SIZE", "abc", "TRANSMITTER_BATCH_SIZE=abc: not a number (accepted: 1-100000)" },
        { "BATCH_SIZE", "0", "TRANSMITTER_BATCH_SIZE=0: out of range (accepted: 1-100000)" },
        { "BATCH_SIZE", "100001", "TRANSMITTER_BATCH_SIZE=100001: out of range (accepted: 1-100000)" },
        { "BATCH_SIZE", " 5", "TRANSMITTER_BATCH_SIZE= 5: not a number (accepted: 1-100000)" },
        { "BATCH_SIZE", "+5", "TRANSMITTER_BATCH_SIZE=+5: not a number (accepted: 1-100000)" },
        { "BATCH_SIZE", "5.0", "TRANSMITTER_BATCH_SIZE=5.0: not a number (accepted: 1-100000)" },
        { "BATCH_SIZE", "99999999999999999999999",
          "TRANSMITTER_BATCH_SIZE=99999999999999999999999: out of range (accepted: 1-100000)" },
        { "BATCH_SIZE", "", "TRANSMITTER_BATCH_SIZE=: not a number (accepted: 1-100000)" },
        { "BATCH_INTERVAL_S", "86401",
          "TRANSMITTER_BATCH_INTERVAL_S=86401: out of range (accepted: 1-86400)" },
        { "BATCH_MAX_BYTES", "1023",
          "TRANSMITTER_BATCH_MAX_BYTES=1023: out of range (accepted: 1024-1073741824)" },
        { "BATCH_MAX_BYTES", "10M",
          "TRANSMITTER_BATCH_MAX_BYTES=10M: not a number (accepted: 1024-1073741824)" },
        { "MAX_IN_FLIGHT", "65", "TRANSMITTER_MAX_IN_FLIGHT=65: out of range (accepted: 1-64)" },
        { "COMPRESSION_LEVEL", "10", "TRANSMITTER_COMPRESSION_LEVEL=10: out of range (accepted: 0-9)" },
        { "COMPRESSION_LEVEL", "-1", "TRANSMITTER_COMPRESSION_LEVEL=-1: out of range (accepted: 0-9)" },
        { "RETRY_MAX_ATTEMPTS", "0", "TRANSMITTER_RETRY_MAX_ATTEMPTS=0: out of range (accepted: 1-100)" },
        { "RETRY_BACKOFF_MULTIPLIER", "abc",
          "TRANSMITTER_RETRY_BACKOFF_MULTIPLIER=abc: not a number (accepted: 1.0-60)" },
        { "RETRY_BACKOFF_MULTIPLIER", "0.5",
          "TRANSMITTER_RETRY_BACKOFF_MULTIPLIER=0.5: out of range (accepted: 1.0-60)" },
        { "RETRY_BACKOFF_MULTIPLIER", "60.01",
          "TRANSMITTER_RETRY_BACKOFF_MULTIPLIER=60.01: out of range (accepted: 1.0-60)" },
        { "RETRY_BACKOFF_MULTIPLIER", "-2",
          "TRANSMITTER_RETRY_BACKOFF_MULTIPLIER=-2: out of range (accepted: 1.0-60)" },
        { "RETRY_BACKOFF_MULTIPLIER", "1e1",
          "TRANSMITTER_RETRY_BACKOFF_MULTIPLIER=1e1: not a number (accepted: 1.0-60)" },
        { "RETRY_BACKOFF_MULTIPLIER", "2.",
          "TRANSMITTER_RETRY_BACKOFF_MULTIPLIER=2.: not a number (accepted: 1.0-60)" },
        { "RETRY_BACKOFF_MULTIPLIER", ".5",
          "TRANSMITTER_RETRY_BACKOFF_MULTIPLIER=.5: not a number (accepted: 1.0-60)" },
        { "RETRY_BACKOFF_MULTIPLIER", "1.2.3",
          "TRANSMITTER_RETRY_BACKOFF_MULTIPLIER=1.2.3: not a number (accepted: 1.0-60)" },
        { "RETRY_BACKOFF_MULTIPLIER", "inf",
          "TRANSMITTER_RETRY_BACKOFF_MULTIPLIER=inf: not a number (accepted: 1.0-60)" },
        { "RETRY_BACKOFF_MULTIPLIER", "nan",
          "TRANSMITTER_RETRY_BACKOFF_MULTIPLIER=nan: not a number (accepted: 1.0-60)" },
        { "RETRY_BACKOFF_MULTIPLIER", "1,5",
          "TRANSMITTER_RETRY_BACKOFF_MULTIPLIER=1,5: not a number (accepted: 1.0-60)" },
        { "RETRY_MAX_DELAY_S", "0x10",
          "TRANSMITTER_RETRY_MAX_DELAY_S=0x10: not a number (accepted: 1-86400)" },
        { "RETRY_JITTER", "maybe",
          "TRANSMITTER_RETRY_JITTER=maybe: not a boolean (accepted: true, false, yes, no, on, off, 1, 0)" },
        { "RETRY_JITTER", "",
          "TRANSMITTER_RETRY_JITTER=: not a boolean (accepted: true, false, yes, no, on, off, 1, 0)" },
        { "BATCH_TIMELINE", "verbose",
          "TRANSMITTER_BATCH_TIMELINE=verbose: not a boolean (accepted: true, false, yes, no, on, off, 1, 0)" },
        { "CIRCUIT_FAILURE_THRESHOLD", "10001",
          "TRANSMITTER_CIRCUIT_FAILURE_THRESHOLD=10001: out of range (accepted: 1-10000)" },
        { "CIRCUIT_RESET_TIMEOUT_S", "0",
          "TRANSMITTER_CIRCUIT_RESET_TIMEOUT_S=0: out of range (accepted: 1-86400)" },
        { "LOG_LEVEL", "LOUD",
          "TRANSMITTER_LOG_LEVEL=LOUD: unknown log level (accepted: DEBUG, INFO, WARNING, ERROR, "
          "CRITICAL)" },
        { "LOG_LEVEL", "",
          "TRANSMITTER_LOG_LEVEL=: unknown log level (accepted: DEBUG, INFO, WARNING, ERROR, CRITICAL)" },
        { "SHUTDOWN_TIMEOUT_S", "3601",
          "TRANSMITTER_SHUTDOWN_TIMEOUT_S=3601: out of range (accepted: 1-3600)" },
        { "INSTANCE_ID", "a\tb",
          "TRANSMITTER_INSTANCE_ID=a\\x09b: contains a control character (accepted: printable text)" },
};

Test(config, bad_values) {
        bool covered[64] = { false };
        size_t n = count_settings();

        for (size_t i = 0; i < ELEMENTSOF(bad_values); i++) {
                char error[CONFIG_ERROR_MAX] = "";

                cr_expect_eq(load_one(bad_values[i].name, bad_values[i].value, error), -EINVAL, "%s=%s",
                             bad_values[i].name, bad_values[i].value);
                cr_expect_str_eq(error, bad_values[i].error);
                cr_expect_null(strchr(error, '\n'));
                for (size_t j = 0; j < n; j++)
                        if (streq(config_setting_names[j], bad_values[i].name))
                                covered[j] = true;
        }

        /* Every setting that can be bad has a case above. */
        for (size_t j = 0; j < n; j++) {
                const char *s = config_setting_names[j];

                if (streq(s, "AUTH_TOKEN_FILE") || streq(s, "TLS_CERT_FILE") || streq(s, "TLS_KEY_FILE") ||
                    streq(s, "RABBITMQ_CA_FILE"))
                        continue; /* same kind as TLS_CA_FILE; AUTH_TOKEN_FILE in the token tests */
                cr_expect(covered[j], "no bad value for %s", s);
        }
}

Test(config, good_values) {
        static const struct {
                const char *name, *value;
        } good[] = {
                { "SERVER_PORT", "1" },
                { "SERVER_PORT", "65535" },
                { "SERVER_PORT", "08020" },
                { "RABBITMQ_URL", "amqps://user:p%40ss@broker.example:5671/vhost" },
                { "RABBITMQ_URL", "amqp://[::1]:5672" },
                { "RABBITMQ_URL", "amqp://h" },
                { "RABBITMQ_URL", "amqp://u:p%40ss@h/" },
                { "RABBITMQ_URL", "amqp://u:pw@h1:5672/,amqp://u:pw@h2:5673/" },
                { "RABBITMQ_URL", "amqps://a:1@h1/prod , amqps://b:2@[::1]/prod" },
                { "RABBITMQ_URL", "amqp://u:p%2Css@h/v%2Fx" },
                { "RABBITMQ_PREFETCH", "65535" },
                { "RABBITMQ_HEARTBEAT_S", "0" },
                { "DATABASE_URL", "postgres://h/db" },
                { "DATABASE_URL",
                  "postgresql://u@primary:5432,standby:5433/db?target_session_attrs=read-write" },
                { "DATABASE_URL", "postgresql:///db?host=/run/postgresql" },
                { "DATABASE_URL", "host=/run/postgresql dbname=discovery" },
                { "DATABASE_URL", "host = db port=5432 password='it\\'s a b' sslmode=require" },
                { "DESTINATION_URL", "https://[2001:db8::1]:8443/v1?x=1#f" },
                { "BATCH_SIZE", "100000" },
                { "BATCH_MAX_BYTES", "1073741824" },
                { "MAX_IN_FLIGHT", "64" },
                { "RETRY_BACKOFF_MULTIPLIER", "1" },
                { "RETRY_BACKOFF_MULTIPLIER", "1.0" },
                { "RETRY_BACKOFF_MULTIPLIER", "60" },
                { "RETRY_BACKOFF_MULTIPLIER", "60.000" },
                { "RETRY_BACKOFF_MULTIPLIER", "1.00000000000000000000000001" },
                { "LOG_LEVEL", "critical" },
                { "LOG_LEVEL", "Warning" },
                { "AUTH_TOKEN", "eyJhbGciOi.JIUzI1NiJ9+/=~" },
                { "INSTANCE_ID", "gw-1 (rack 4)" },
                { "SERVER_HOST", "::" },
        };
        static const char *const booleans_true[] = { "true", "TRUE", "yes", "Yes", "on", "ON", "1" };
        static const char *const booleans_false[] = { "false", "False", "no", "NO", "off", "Off", "0" };

        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                char error[CONFIG_ERROR_MAX];

                cr_expect_eq(load_one(good[i].name, good[i].value, error), 0, "%s=%s: %s", good[i].name,
                             good[i].value, error);
        }

        for (size_t i = 0; i < ELEMENTSOF(booleans_true); i++) {
                _cleanup_free_ char *a = NULL, *b = NULL;
                char error[CONFIG_ERROR_MAX];
                Config c;

                cr_assert(asprintf(&a, "TRANSMITTER_RETRY_JITTER=%s", booleans_true[i]) >= 0);
                cr_assert(asprintf(&b, "TRANSMITTER_DATABASE_MIGRATE=%s", booleans_false[i]) >= 0);
                cr_assert_eq(
                        load("TRANSMITTER_DATABASE_MIGRATE=true\n", (char *[]){ a, b, NULL }, &c, error), 0,
                        "%s", error);
                cr_expect(c.retry_jitter, "%s", a);
                cr_expect_not(c.database_migrate, "%s", b);
                config_done(&c);
        }
}

Test(config, decimal_values) {
        static const struct {
                const char *value;
                double expected;
        } cases[] = {
                { "1", 1.0 },   { "1.5", 1.5 },       { "2.25", 2.25 },
                { "1.1", 1.1 }, { "59.999", 59.999 }, { "007.50", 7.5 },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *a = NULL;
                char error[CONFIG_ERROR_MAX];
                Config c;

                cr_assert(asprintf(&a, "TRANSMITTER_RETRY_BACKOFF_MULTIPLIER=%s", cases[i].value) >= 0);
                cr_assert_eq(load(NULL, (char *[]){ a, NULL }, &c, error), 0, "%s", error);
                cr_expect_eq(c.retry_backoff_multiplier, cases[i].expected, "%s", cases[i].value);
                config_done(&c);
        }
}

Test(config, long_values_are_cut_in_errors) {
        char error[CONFIG_ERROR_MAX], value[300], expected[CONFIG_ERROR_MAX];

        memset(value, 'q', 256);
        value[256] = '\0';
        cr_expect_eq(load_one("RABBITMQ_QUEUE", value, error), -EINVAL);
        snprintf(expected, sizeof(expected),
                 "TRANSMITTER_RABBITMQ_QUEUE=%.96s...: too long (accepted: 1-255 bytes)", value);
        cr_expect_str_eq(error, expected);

        /* 255 bytes are fine. */
        value[255] = '\0';
        cr_expect_eq(load_one("RABBITMQ_QUEUE", value, error), 0, "%s", error);

        /* A multibyte character is not cut in half. */
        memset(value, 'x', 95);
        strcpy(value + 95, "\xc3\xa9\xc3\xa9 and more");
        cr_expect_eq(load_one("BATCH_SIZE", value, error), -EINVAL);
        snprintf(expected, sizeof(expected),
                 "TRANSMITTER_BATCH_SIZE=%.95s...: not a number (accepted: 1-100000)", value);
        cr_expect_str_eq(error, expected);
}

Test(config, prefetch) {
        char error[CONFIG_ERROR_MAX];
        Config c;

        cr_assert_eq(load(NULL, NULL, &c, error), 0, "%s", error);
        cr_expect_eq(config_prefetch(&c), 100 * (2 + 1));
        config_done(&c);

        cr_assert_eq(load("TRANSMITTER_BATCH_SIZE=50\nTRANSMITTER_MAX_IN_FLIGHT=4\n", NULL, &c, error), 0,
                     "%s", error);
        cr_expect_eq(config_prefetch(&c), 250);
        config_done(&c);

        cr_assert_eq(load("TRANSMITTER_RABBITMQ_PREFETCH=42\n", NULL, &c, error), 0, "%s", error);
        cr_expect_eq(config_prefetch(&c), 42);
        config_done(&c);

        cr_assert_eq(load("TRANSMITTER_BATCH_SIZE=100000\nTRANSMITTER_MAX_IN_FLIGHT=64\n", NULL, &c, error),
                     0, "%s", error);
        cr_expect_eq(config_prefetch(&c), 65535);
        config_done(&c);
}

Test(config, insecure_http) {
        char error[CONFIG_ERROR_MAX];
        Config c = { 0 };

        cr_expect_eq(load(NULL, (char *[]){ "TRANSMITTER_DESTINATION_URL=http://receiver:8080/in", NULL },
                          &c, error),
                     -EINVAL);
        cr_expect_str_eq(error,
                         "TRANSMITTER_DESTINATION_URL=http://receiver:8080/in: plain http:// is refused "
                         "(accepted: https://, or http:// with TRANSMITTER_ALLOW_INSECURE_HTTP=true)");

        /* Judged once every source is merged, whichever source set which. */
        cr_assert_eq(load("TRANSMITTER_ALLOW_INSECURE_HTTP=true\n",
                          (char *[]){ "TRANSMITTER_DESTINATION_URL=http://receiver:8080/in", NULL }, &c,
                          error),
                     0, "%s", error);
        cr_expect_str_eq(c.destination_url, "http://receiver:8080/in");
        config_done(&c);

        cr_assert_eq(load("TRANSMITTER_DESTINATION_URL=http://receiver/\n",
                          (char *[]){ "TRANSMITTER_ALLOW_INSECURE_HTTP=yes", NULL }, &c, error),
                     0, "%s", error);
        config_done(&c);

        /* The URL comes before the permission in the file: still fine. */
        cr_assert_eq(
                load("TRANSMITTER_DESTINATION_URL=http://receiver/\nTRANSMITTER_ALLOW_INSECURE_HTTP=1\n",
                     NULL, &c, error),
                0, "%s", error);
        config_done(&c);

        /* The environment withdraws the file's permission. */
        cr_expect_eq(
                load("TRANSMITTER_DESTINATION_URL=http://receiver/\nTRANSMITTER_ALLOW_INSECURE_HTTP=1\n",
                     (char *[]){ "TRANSMITTER_ALLOW_INSECURE_HTTP=false", NULL }, &c, error),
                -EINVAL);
        cr_expect_str_eq(
                error, "test.conf:1: TRANSMITTER_DESTINATION_URL=http://receiver/: plain http:// is refused "
                       "(accepted: https://, or http:// with TRANSMITTER_ALLOW_INSECURE_HTTP=true)");

        /* https needs no permission either way. */
        cr_assert_eq(load("TRANSMITTER_ALLOW_INSECURE_HTTP=true\n", NULL, &c, error), 0, "%s", error);
        config_done(&c);
}

Test(config, tls_pair) {
        char error[CONFIG_ERROR_MAX];
        Config c = { 0 };

        cr_expect_eq(load("TRANSMITTER_TLS_CERT_FILE=/etc/t/c.pem\n", NULL, &c, error), -EINVAL);
        cr_expect_str_eq(
                error,
                "TRANSMITTER_TLS_CERT_FILE is set but TRANSMITTER_TLS_KEY_FILE is not (accepted: both "
                "for mTLS, or neither)");
        cr_expect_eq(load(NULL, (char *[]){ "TRANSMITTER_TLS_KEY_FILE=/etc/t/k.pem", NULL }, &c, error),
                     -EINVAL);
        cr_expect_str_eq(
                error,
                "TRANSMITTER_TLS_KEY_FILE is set but TRANSMITTER_TLS_CERT_FILE is not (accepted: both "
                "for mTLS, or neither)");
        /* An empty value unsets. */
        cr_expect_eq(load("TRANSMITTER_TLS_CERT_FILE=/c\nTRANSMITTER_TLS_KEY_FILE=/k\n",
                          (char *[]){ "TRANSMITTER_TLS_KEY_FILE=", NULL }, &c, error),
                     -EINVAL);

        cr_assert_eq(load("TRANSMITTER_TLS_CERT_FILE=/c\nTRANSMITTER_TLS_KEY_FILE=/"
                          "k\nTRANSMITTER_TLS_CA_FILE=/ca\n",
                          NULL, &c, error),
                     0, "%s", error);
        cr_expect_str_eq(c.tls_cert_file, "/c");
        cr_expect_str_eq(c.tls_key_file, "/k");
        cr_expect_str_eq(c.tls_ca_file, "/ca");
        config_done(&c);
}

/* ---- The token ---- */

Test(config, token_precedence, .init = make_tmpdir, .fini = remove_tmpdir) {
        _cleanup_free_ char *file = tmp_path("token"), *file_env = NULL;
        char error[CONFIG_ERROR_MAX];
        Config c;

        write_file("token", "from-file\n");
        write_file("auth-token", "from-credential\n");
        cr_assert(asprintf(&file_env, "TRANSMITTER_AUTH_TOKEN_FILE=%s", file) >= 0);

        /* AUTH_TOKEN wins over both. */
        cr_assert_eq(load_full(NULL, (char *[]){ "TRANSMITTER_AUTH_TOKEN=direct", file_env, NULL }, tmpdir,
                               &c, error),
                     0, "%s", error);
        cr_expect_str_eq(c.auth_token, "direct");
        config_done(&c);

        /* An empty AUTH_TOKEN is no token: the file is next. */
        cr_assert_eq(load_full("TRANSMITTER_AUTH_TOKEN=in-the-file\n",
                               (char *[]){ "TRANSMITTER_AUTH_TOKEN=", file_env, NULL }, tmpdir, &c, error),
                     0, "%s", error);
        cr_expect_str_eq(c.auth_token, "from-file");
        cr_expect_str_eq(c.auth_token_file, file);
        config_done(&c);

        /* Then the credential. */
        cr_assert_eq(load_full(NULL, NULL, tmpdir, &c, error), 0, "%s", error);
        cr_expect_str_eq(c.auth_token, "from-credential");
        cr_expect_null(c.auth_token_file);
        config_done(&c);

        /* And then none. */
        cr_assert_eq(load_full(NULL, NULL, NULL, &c, error), 0, "%s", error);
        cr_expect_null(c.auth_token);
        config_done(&c);

        /* The token in the file given as AUTH_TOKEN (quotes dropped). */
        cr_assert_eq(load_full("TRANSMITTER_AUTH_TOKEN=\"a b\"\n", NULL, tmpdir, &c, error), 0, "%s", error);
        cr_expect_str_eq(c.auth_token, "a b");
        config_done(&c);
}

Test(config, token_files, .init = make_tmpdir, .fini = remove_tmpdir) {
        _cleanup_free_ char *file = tmp_path("token"), *missing = tmp_path("missing"), *env = NULL,
                            *env_missing = NULL, *expected = NULL, *cred = tmp_path("auth-token");
        char error[CONFIG_ERROR_MAX];
        Config c = { 0 };

        cr_assert(asprintf(&env, "TRANSMITTER_AUTH_TOKEN_FILE=%s", file) >= 0);
        cr_assert(asprintf(&env_missing, "TRANSMITTER_AUTH_TOKEN_FILE=%s", missing) >= 0);

        /* Surrounding whitespace and the final newline, also CRLF, are dropped. */
        write_file("token", "  " TOKEN " \r\n\n");
        cr_assert_eq(load(NULL, (char *[]){ env, NULL }, &c, error), 0, "%s", error);
        cr_expect_str_eq(c.auth_token, TOKEN);
        config_done(&c);

        write_file("token", TOKEN);
        cr_assert_eq(load(NULL, (char *[]){ env, NULL }, &c, error), 0, "%s", error);
        cr_expect_str_eq(c.auth_token, TOKEN);
        config_done(&c);

        /* Unreadable: names the path. */
        cr_expect_eq(load(NULL, (char *[]){ env_missing, NULL }, &c, error), -EINVAL);
        free(expected);
        cr_assert(asprintf(&expected,
                           "TRANSMITTER_AUTH_TOKEN_FILE=%s: cannot read it: No such file or directory",
                           missing) >= 0);
        cr_expect_str_eq(error, expected);

        /* A directory. */
        cr_expect_eq(load(NULL, (char *[]){ "TRANSMITTER_AUTH_TOKEN_FILE=/", NULL }, &c, error), -EINVAL);
        cr_expect_str_eq(error, "TRANSMITTER_AUTH_TOKEN_FILE=/: cannot read it: Is a directory");

        /* Empty, or nothing but whitespace. */
        write_file("token", " \n\n");
        cr_expect_eq(load(NULL, (char *[]){ env, NULL }, &c, error), -EINVAL);
        free(expected);
        cr_assert(asprintf(&expected, "TRANSMITTER_AUTH_TOKEN_FILE=%s: the file is empty", file) >= 0);
        cr_expect_str_eq(error, expected);

        /* A control character inside: refused, and the token is not shown. */
        write_file("token", TOKEN "\r\nX-Injected: " TOKEN "\n");
        cr_expect_eq(load(NULL, (char *[]){ env, NULL }, &c, error), -EINVAL);
        free(expected);
        cr_assert(asprintf(&expected,
                           "TRANSMITTER_AUTH_TOKEN_FILE=%s: the token holds a control character (accepted: "
                           "printable text)",
                           file) >= 0);
        cr_expect_str_eq(error, expected);
        cr_expect_null(strstr(error, TOKEN));

        /* Too large. */
        {
                char big[CONFIG_TOKEN_SIZE_MAX + 2];

                memset(big, 'a', sizeof(big) - 1);
                big[sizeof(big) - 1] = '\0';
                write_file("token", big);
                cr_expect_eq(load(NULL, (char *[]){ env, NULL }, &c, error), -EINVAL);
                free(expected);
                cr_assert(asprintf(&expected,
                                   "TRANSMITTER_AUTH_TOKEN_FILE=%s: the file is larger than 16384 bytes",
                                   file) >= 0);
                cr_expect_str_eq(error, expected);
        }

        /* The token file named in the configuration file: the message names its line. */
        write_file("token", "");
        {
                _cleanup_free_ char *text = NULL;

                cr_assert(asprintf(&text, "\nTRANSMITTER_AUTH_TOKEN_FILE=%s\n", file) >= 0);
                cr_expect_eq(load(text, NULL, &c, error), -EINVAL);
                free(expected);
                cr_assert(asprintf(&expected,
                                   "test.conf:2: TRANSMITTER_AUTH_TOKEN_FILE=%s: the file is empty",
                                   file) >= 0);
                cr_expect_str_eq(error, expected);
        }

        /* AUTH_TOKEN_FILE wins over the credential, even when it fails. */
        write_file("auth-token", "cred\n");
        cr_expect_eq(load_full(NULL, (char *[]){ env_missing, NULL }, tmpdir, &c, error), -EINVAL);

        /* The credential: empty (the unit's SetCredential= default) and absent are no token. */
        write_file("auth-token", "\n");
        cr_assert_eq(load_full(NULL, NULL, tmpdir, &c, error), 0, "%s", error);
        cr_expect_null(c.auth_token);
        config_done(&c);

        write_file("auth-token", "a\x01"
                                 "b");
        cr_expect_eq(load_full(NULL, NULL, tmpdir, &c, error), -EINVAL);
        free(expected);
        cr_assert(asprintf(&expected,
                           "credential auth-token (%s): the token holds a control character (accepted: "
                           "printable text)",
                           cred) >= 0);
        cr_expect_str_eq(error, expected);

        cr_assert_eq(unlink(cred), 0);
        cr_assert_eq(load_full(NULL, NULL, tmpdir, &c, error), 0, "%s", error);
        cr_expect_null(c.auth_token);
        config_done(&c);
}

Test(config, token_never_shown, .init = make_tmpdir, .fini = remove_tmpdir) {
        _cleanup_free_ char *f = NULL, *file = tmp_path("t"), *env = NULL;
        char error[CONFIG_ERROR_MAX];
        Config c = { 0 };

        cr_assert_eq(load("TRANSMITTER_AUTH_TOKEN=" TOKEN "\n", NULL, &c, error), 0, "%s", error);
        cr_expect_str_eq(c.auth_token, TOKEN);
        f = config_format(&c);
        cr_assert_not_null(f);
        cr_expect_null(strstr(f, TOKEN));
        cr_expect_not_null(strstr(f, "\nTRANSMITTER_AUTH_TOKEN=***\n"));
        config_done(&c);

        /* A failure after the token was read does not show it. */
        cr_expect_eq(load("TRANSMITTER_AUTH_TOKEN=" TOKEN "\nTRANSMITTER_BATCH_SIZE=x\n", NULL, &c, error),
                     -EINVAL);
        cr_expect_null(strstr(error, TOKEN));
        cr_expect_eq(load(NULL, (char *[]){ "TRANSMITTER_AUTH_TOKEN=" TOKEN "\x7f", NULL }, &c, error),
                     -EINVAL);
        cr_expect_str_eq(
                error,
                "TRANSMITTER_AUTH_TOKEN=***: contains a control character (accepted: printable text)");

        /* Too long. */
        {
                char big[CONFIG_TOKEN_SIZE_MAX + 40];

                strcpy(big, "TRANSMITTER_AUTH_TOKEN=");
                memset(big + strlen(big), 'z', CONFIG_TOKEN_SIZE_MAX + 1);
                big[strlen("TRANSMITTER_AUTH_TOKEN=") + CONFIG_TOKEN_SIZE_MAX + 1] = '\0';
                cr_expect_eq(load(NULL, (char *[]){ big, NULL }, &c, error), -EINVAL);
                cr_expect_str_eq(error,
                                 "TRANSMITTER_AUTH_TOKEN=***: too long (accepted: up to 16384 bytes)");
        }

        /* From a file: shown as *** too, the file name as it is. */
        write_file("t", TOKEN "\n");
        cr_assert(asprintf(&env, "TRANSMITTER_AUTH_TOKEN_FILE=%s", file) >= 0);
        cr_assert_eq(load(NULL, (char *[]){ env, NULL }, &c, error), 0, "%s", error);
        free(f);
        f = config_format(&c);
        cr_assert_not_null(f);
        cr_expect_null(strstr(f, TOKEN));
        cr_expect_not_null(strstr(f, "\nTRANSMITTER_AUTH_TOKEN=***\n"));
        cr_expect_not_null(strstr(f, file));
        config_done(&c);
}

/* ---- Redaction ---- */

Test(config, format_redacts_urls) {
        char error[CONFIG_ERROR_MAX];
        _cleanup_free_ char *f = NULL;
        Config c;
        char *env[] = {
                "TRANSMITTER_RABBITMQ_URL=amqps://svc:rabbit-pw@mq.example:5671/prod",
                "TRANSMITTER_DATABASE_URL=host=db user=svc password='pg pw' dbname=d",
                "TRANSMITTER_DESTINATION_URL=https://api:dest-pw@api.example/v1",
                NULL,
        };

        cr_assert_eq(load(NULL, env, &c, error), 0, "%s", error);
        f = config_format(&c);
        cr_assert_not_null(f);
        cr_expect_not_null(strstr(f, "\nTRANSMITTER_RABBITMQ_URL=amqps://svc:***@mq.example:5671/prod\n"));
        cr_expect_not_null(strstr(f, "\nTRANSMITTER_DATABASE_URL=host=db user=svc password='***' dbname=d\n"));
        cr_expect_not_null(strstr(f, "\nTRANSMITTER_DESTINATION_URL=https://api:***@api.example/v1\n"));
        cr_expect_null(strstr(f, "rabbit-pw"));
        cr_expect_null(strstr(f, "pg pw"));
        cr_expect_null(strstr(f, "dest-pw"));
        config_done(&c);

        free(f);
        cr_assert_eq(
                load(NULL,
                     (char *[]){ "TRANSMITTER_DATABASE_URL=postgresql://u@h/d?sslmode=require&password=qpw",
                                 NULL },
                     &c, error),
                0, "%s", error);
        f = config_format(&c);
        cr_assert_not_null(f);
        cr_expect_not_null(
                strstr(f, "\nTRANSMITTER_DATABASE_URL=postgresql://u@h/d?sslmode=require&password=***\n"));
        cr_expect_null(strstr(f, "qpw"));
        config_done(&c);
}

Test(config, url_redact) {
        static const struct {
                const char *in, *out;
        } cases[] = {
                { "amqp://u:pw@h:5672/v", "amqp://u:***@h:5672/v" },
                { "amqp://u@h/", "amqp://u@h/" },
                { "amqp://h/", "amqp://h/" },
                /* An unescaped '/' or '@' in the password. */
                { "amqp://u:pa/ss@h/", "amqp://u:***@h/" },
                { "postgresql://u:p@ss@h/db", "postgresql://u:***@h/db" },
                /* An unescaped '#' or '?' in the password. */
                { "amqp://u:se#cret@h/", "amqp://u:***@h/" },
                { "postgresql://u:top?se@cret@h/db", "postgresql://u:***@h/db" },
                /* libpq reads no fragment: "#f" belongs to the value (found by fuzz-url). */
                { "postgres://u:pw@h1,h2/db?password=x&sslpassword=y#f",
                  "postgres://u:***@h1,h2/db?password=***&sslpassword=***" },
                { "postgresql://u@h/db?password=#secret", "postgresql://u@h/db?password=***" },
                { "postgresql://h/db?a=1#x&password=s", "postgresql://h/db?a=1#x&password=***" },
                /* A query password starting with '@', taken for the end of a userinfo; the
                 * two rules' guesses are hidden together (found by fuzz-url). */
                { "postgresql://h:5432/db?password=@secret", "postgresql://h:***" },
                { "postgresql://u:p@h/db?password=@s&a=1", "postgresql://u:***@h/db?password=***&a=1" },
                { "amqp://u:@h/", "amqp://u:***@h/" },
                { "postgresql://h/db?password=&sslpassword=", "postgresql://h/db?password=***&sslpassword=***" },
                { "https://u:pw@h/p?a=1", "https://u:***@h/p?a=1" },
                { "https://h/users/a@b", "https://h/users/a@b" },
                { "password=pw host=h", "password=*** host=h" },
                { " host = h  PASSWORD = 'a b\\' c'  port=1 ", " host = h  PASSWORD = '***'  port=1 " },
                { "host=h password='open", "host=h password=***" },
                /* Lists (RABBITMQ_URL): every URL on its own. */
                { "amqp://a:pw1@h1/,amqp://b:pw2@h2:5673/v", "amqp://a:***@h1/,amqp://b:***@h2:5673/v" },
                { "amqps://a:pw1@h1/ , amqps://h2/,amqps://c:pw3@[::1]:5671/",
                  "amqps://a:***@h1/ , amqps://h2/,amqps://c:***@[::1]:5671/" },
                /* A ',' in a password is no separator: the whole password hidden. */
                { "amqp://u:pa,ss@h/", "amqp://u:***@h/" },
                { "amqp://u:x,amqp://y@h/", "amqp://u:***@h/" },
                /* No userinfo, but a ':' followed by no port: maybe a password. */
                { "amqp://u:secret", "amqp://u:***" },
                { "amqp://u:secret/v", "amqp://u:***/v" },
                { "amqp://h:5672,h2:x", "amqp://h:5672,h2:***" },
                { "postgresql://h1:5432,[::1]:5433/db", "postgresql://h1:5432,[::1]:5433/db" },
                /* Only RABBITMQ_URL is a list: a ',' and a "scheme://" in a libpq query cut
                 * nothing, and the password after them stays hidden (found by fuzz-url). */
                { "postgresql://u@h/db?application_name=a,b://c&password=secret",
                  "postgresql://u@h/db?application_name=a,b://c&password=***" },
                { "postgres://u:pw@h1:d?t=r,apostgres://d&password=x",
                  "postgres://u:***@h1:d?t=r,apostgres://d&password=***" },
                /* libpq ends the userinfo at an '@' after a '?' and starts the query at a later '?';
                 * a query value still runs to the next '&' (found by fuzz-url). */
                { "postgres://h?x=1@h2/db?password=s&port=5", "postgres://h?x=1@h2/db?password=***&port=5" },
                { "postgresql://h/db?password=a?b&c=d", "postgresql://h/db?password=***&c=d" },
                /* Blanks before a URL, as the broker URL list parser allows (found by fuzz-broker-url). */
                { " amqp://u:se=cret@h/", " amqp://u:***@h/" },
                { "\t amqp://a:p1@h1/, amqp://b:p2@h2/", "\t amqp://a:***@h1/, amqp://b:***@h2/" },
                /* No blank after a quoted value: the next keyword stays one (found by fuzz-config). */
                { "host=h password='p w'dbname=d", "host=h password='***'dbname=d" },
                { "password=''port=1", "password='***'port=1" },
                /* No URL at all, but maybe a password before the '@'. */
                { "amqp//u:pw@h/", "***@h/" },
                { "plain", "plain" },
                { "", "" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *r = url_redact(cases[i].in);

                cr_assert_not_null(r);
                cr_expect_str_eq(r, cases[i].out, "%s", cases[i].in);
        }
        cr_expect_null(url_redact(NULL));
}

/* ---- Reload ---- */

Test(config, reload_check) {
        char error[CONFIG_ERROR_MAX], live[CONFIG_ERROR_MAX], restart[CONFIG_ERROR_MAX];
        Config a, b;

        cr_assert_eq(load(NULL, NULL, &a, error), 0, "%s", error);
        cr_assert_eq(load(NULL, NULL, &b, error), 0, "%s", error);
        cr_expect_eq(config_reload_diff(&a, &b, live, sizeof(live), restart, sizeof(restart)), 0);
        cr_expect_str_empty(live);
        cr_expect_str_empty(restart);
        config_done(&b);

        cr_assert_eq(load("TRANSMITTER_AUTH_TOKEN=new\nTRANSMITTER_LOG_LEVEL=DEBUG\nTRANSMITTER_RETRY_MAX_"
                          "ATTEMPTS=5\n"
                          "TRANSMITTER_CIRCUIT_RESET_TIMEOUT_S=5\nTRANSMITTER_COMPRESSION_LEVEL=9\n"
                          "TRANSMITTER_REQUEST_TIMEOUT_S=5\nTRANSMITTER_BATCH_INTERVAL_S=5\n"
                          "TRANSMITTER_RETRY_BACKOFF_MULTIPLIER=1.5\nTRANSMITTER_RETRY_JITTER=on\n",
                          NULL, &b, error),
                     0, "%s", error);
        cr_expect_eq(config_reload_diff(&a, &b, live, sizeof(live), restart, sizeof(restart)), 0);
        cr_expect_str_eq(
                live, "TRANSMITTER_AUTH_TOKEN, TRANSMITTER_REQUEST_TIMEOUT_S, TRANSMITTER_BATCH_INTERVAL_S, "
                      "TRANSMITTER_COMPRESSION_LEVEL, TRANSMITTER_RETRY_MAX_ATTEMPTS, "
                      "TRANSMITTER_RETRY_BACKOFF_MULTIPLIER, TRANSMITTER_RETRY_JITTER, "
                      "TRANSMITTER_CIRCUIT_RESET_TIMEOUT_S, TRANSMITTER_LOG_LEVEL");
        cr_expect_str_empty(restart);
        cr_expect_null(strstr(live, "new"));
        config_done(&b);

        cr_assert_eq(load("TRANSMITTER_RABBITMQ_URL=amqp://other/\nTRANSMITTER_SERVER_PORT=1\n"
                          "TRANSMITTER_RABBITMQ_QUEUE=q\nTRANSMITTER_DATABASE_URL=host=x\nTRANSMITTER_"
                          "INSTANCE_ID=i\n"
                          "TRANSMITTER_SHUTDOWN_TIMEOUT_S=2\n",
                          NULL, &b, error),
                     0, "%s", error);
        cr_expect_eq(config_reload_diff(&a, &b, live, sizeof(live), restart, sizeof(restart)), 5);
        cr_expect_str_eq(live, "TRANSMITTER_SHUTDOWN_TIMEOUT_S");
        cr_expect_str_eq(restart,
                         "TRANSMITTER_SERVER_PORT, TRANSMITTER_RABBITMQ_URL, TRANSMITTER_RABBITMQ_QUEUE, "
                         "TRANSMITTER_DATABASE_URL, TRANSMITTER_INSTANCE_ID");
        cr_expect_eq(config_reload_diff(&a, &b, NULL, 0, NULL, 0), 5);
        config_done(&b);

        /* BATCH_SIZE applies live, but the prefetch computed from it cannot change. */
        cr_assert_eq(load("TRANSMITTER_BATCH_SIZE=10\n", NULL, &b, error), 0, "%s", error);
        cr_expect_eq(config_reload_diff(&a, &b, live, sizeof(live), restart, sizeof(restart)), 1);
        cr_expect_str_eq(live, "TRANSMITTER_BATCH_SIZE");
        cr_expect_str_eq(restart, "TRANSMITTER_RABBITMQ_PREFETCH");
        config_done(&b);
        config_done(&a);

        cr_assert_eq(load("TRANSMITTER_RABBITMQ_PREFETCH=500\n", NULL, &a, error), 0, "%s", error);
        cr_assert_eq(
                load("TRANSMITTER_RABBITMQ_PREFETCH=500\nTRANSMITTER_MAX_IN_FLIGHT=8\n", NULL, &b, error), 0,
                "%s", error);
        cr_expect_eq(config_reload_diff(&a, &b, live, sizeof(live), restart, sizeof(restart)), 0);
        cr_expect_str_eq(live, "TRANSMITTER_MAX_IN_FLIGHT");
        cr_expect_str_empty(restart);
        config_done(&b);
        cr_assert_eq(load(NULL, NULL, &b, error), 0, "%s", error);
        cr_expect_eq(config_reload_diff(&a, &b, live, sizeof(live), restart, sizeof(restart)), 1);
        cr_expect_str_eq(restart, "TRANSMITTER_RABBITMQ_PREFETCH");
        config_done(&b);
        config_done(&a);

        /* Truncation never overflows. */
        cr_assert_eq(load(NULL, NULL, &a, error), 0, "%s", error);
        cr_assert_eq(load("TRANSMITTER_SERVER_HOST=h\nTRANSMITTER_SERVER_PORT=1\n", NULL, &b, error), 0,
                     "%s", error);
        cr_expect_eq(config_reload_diff(&a, &b, live, sizeof(live), restart, 16), 2);
        cr_expect_str_eq(restart, "TRANSMITTER_SER");
        config_done(&b);
        config_done(&a);
}

Test(config, reload_check_restart_only) {
        char error[CONFIG_ERROR_MAX], restart[CONFIG_ERROR_MAX];
        Config a, b;

        cr_assert_eq(load(NULL, NULL, &a, error), 0, "%s", error);
        cr_assert_eq(load("TRANSMITTER_BATCH_SIZE=7\nTRANSMITTER_RABBITMQ_QUEUE_TYPE=quorum\n"
                          "TRANSMITTER_DESTINATION_URL=https://other/\nTRANSMITTER_TLS_CA_FILE=/ca\n",
                          NULL, &b, error),
                     0, "%s", error);
        cr_expect_eq(config_reload_check(&a, &b, restart, sizeof(restart)), 4);
        cr_expect_str_eq(restart, "TRANSMITTER_RABBITMQ_QUEUE_TYPE, TRANSMITTER_RABBITMQ_PREFETCH, "
                                  "TRANSMITTER_DESTINATION_URL, TRANSMITTER_TLS_CA_FILE");
        cr_expect_eq(config_reload_check(&a, &b, NULL, 0), 4);
        config_done(&b);

        /* Setting the prefetch in effect explicitly changes nothing the broker sees. */
        cr_assert_eq(load("TRANSMITTER_RABBITMQ_PREFETCH=300\n", NULL, &b, error), 0, "%s", error);
        cr_expect_eq(config_reload_check(&a, &b, restart, sizeof(restart)), 0);
        cr_expect_str_empty(restart);
        config_done(&b);
        config_done(&a);
}

Test(config, copy_restart_settings) {
        char error[CONFIG_ERROR_MAX], live[CONFIG_ERROR_MAX], restart[CONFIG_ERROR_MAX];
        _cleanup_free_ char *fa = NULL, *fb = NULL;
        Config a, b;

        cr_assert_eq(load(NULL, NULL, &a, error), 0, "%s", error);
        cr_assert_eq(
                load("TRANSMITTER_RABBITMQ_URL=amqp://u:p@other/\nTRANSMITTER_SERVER_PORT=1\n"
                     "TRANSMITTER_TLS_CA_FILE=/ca\nTRANSMITTER_RABBITMQ_QUEUE_TYPE=quorum\n"
                     "TRANSMITTER_DATABASE_MIGRATE=yes\nTRANSMITTER_INSTANCE_ID=other\n"
                     "TRANSMITTER_BATCH_SIZE=7\nTRANSMITTER_LOG_LEVEL=DEBUG\nTRANSMITTER_AUTH_TOKEN=t\n",
                     NULL, &b, error),
                0, "%s", error);
        cr_expect_eq(config_reload_diff(&a, &b, live, sizeof(live), restart, sizeof(restart)), 7);

        cr_assert_eq(config_copy_restart_settings(&b, &a), 0);
        cr_expect_eq(config_reload_diff(&a, &b, live, sizeof(live), restart, sizeof(restart)), 0);
        cr_expect_str_empty(restart);
        cr_expect_str_eq(live, "TRANSMITTER_AUTH_TOKEN, TRANSMITTER_BATCH_SIZE, TRANSMITTER_LOG_LEVEL");
        cr_expect_str_eq(b.rabbitmq_url, a.rabbitmq_url);
        cr_expect_neq(b.rabbitmq_url, a.rabbitmq_url); /* a copy, not shared */
        cr_expect_null(b.tls_ca_file);
        cr_expect_eq(b.server_port, 8020);
        cr_expect_eq(b.rabbitmq_queue_type, QUEUE_TYPE_CLASSIC);
        cr_expect_not(b.database_migrate);
        cr_expect_str_eq(b.instance_id, HOSTNAME);
        /* The live ones keep their new values, and the broker keeps its prefetch. */
        cr_expect_eq(b.batch_size, 7);
        cr_expect_eq(b.log_level, LOG_DEBUG);
        cr_expect_str_eq(b.auth_token, "t");
        cr_expect_eq(config_prefetch(&b), 300);

        fa = config_format(&a);
        fb = config_format(&b);
        cr_assert_not_null(fa);
        cr_assert_not_null(fb);
        cr_expect_str_neq(fa, fb);
        config_done(&b);
        config_done(&a);
}

Test(config, reloadable_settings) {
        static const char *const live[] = {
                "AUTH_TOKEN",
                "AUTH_TOKEN_FILE",
                "REQUEST_TIMEOUT_S",
                "CONNECT_TIMEOUT_S",
                "BATCH_SIZE",
                "BATCH_INTERVAL_S",
                "BATCH_MAX_BYTES",
                "MAX_IN_FLIGHT",
                "COMPRESSION_LEVEL",
                "RETRY_MAX_ATTEMPTS",
                "RETRY_BACKOFF_MULTIPLIER",
                "RETRY_MAX_DELAY_S",
                "RETRY_JITTER",
                "CIRCUIT_FAILURE_THRESHOLD",
                "CIRCUIT_RESET_TIMEOUT_S",
                "LOG_LEVEL",
                "BATCH_TIMELINE",
                "SHUTDOWN_TIMEOUT_S",
                "RABBITMQ_DELIVERY_LIMIT",
                "RABBITMQ_CONSUMER_TIMEOUT_S",
        };

        for (size_t i = 0; config_setting_names[i]; i++) {
                bool expected = false;

                for (size_t j = 0; j < ELEMENTSOF(live); j++)
                        if (streq(live[j], config_setting_names[i]))
                                expected = true;
                cr_expect_eq(config_setting_reloadable(config_setting_names[i]), expected, "%s",
                             config_setting_names[i]);
        }
        cr_expect(config_setting_reloadable("TRANSMITTER_LOG_LEVEL"));
        cr_expect_not(config_setting_reloadable("TRANSMITTER_RABBITMQ_URL"));
        cr_expect_not(config_setting_reloadable("NOPE"));
        cr_expect_not(config_setting_reloadable(""));
}

/* ---- The shipped conf/transmitter.conf ---- */

static char *read_conf(void) {
        char *text = NULL;
        int r;

        r = read_full_file(CONF_FILE_PATH, 1024 * 1024, &text, NULL);
        cr_assert_eq(r, 0, "cannot read %s (run from the repository root, or define CONF_FILE_PATH): %s",
                     CONF_FILE_PATH, strerror(-r));
        return text;
}

Test(config, shipped_conf_file) {
        _cleanup_free_ char *text = read_conf(), *defaults = NULL;
        char error[CONFIG_ERROR_MAX];
        size_t n = 0, n_settings = count_settings();
        ConfigSources s = {
                .file_name = CONF_FILE_PATH,
                .hostname = HOSTNAME,
        };
        Config c;

        /* As shipped, everything is commented out: the defaults apply. */
        s.file_text = text;
        cr_assert_eq(config_load(&s, &c, error), 0, "%s", error);
        defaults = config_format(&c);
        cr_assert_not_null(defaults);
        config_done(&c);

        for (char *line = text, *next; line; line = next) {
                const char *name, *eq;
                _cleanup_free_ char *uncommented = NULL, *f = NULL;

                next = strchr(line, '\n');
                if (next)
                        *next++ = '\0';
                cr_expect(*line == '\0' || *line == '#', "an active line: %s", line);
                name = startswith(line, "#TRANSMITTER_");
                if (!name)
                        continue;

                /* The settings it names, in order, are config_setting_names. */
                eq = strchr(name, '=');
                cr_assert_not_null(eq, "%s", line);
                cr_assert_lt(n, n_settings, "more settings than config_setting_names: %s", line);
                cr_expect_eq(strlen(config_setting_names[n]), (size_t) (eq - name), "%s, expected %s", line,
                             config_setting_names[n]);
                cr_expect_eq(strncmp(name, config_setting_names[n], (size_t) (eq - name)), 0,
                             "%s, expected %s", line, config_setting_names[n]);
                n++;

                /* The value it shows is accepted and is the built-in default. */
                uncommented = strdup(line + 1);
                cr_assert_not_null(uncommented);
                s.file_text = uncommented;
                cr_assert_eq(config_load(&s, &c, error), 0, "%s: %s", line, error);
                f = config_format(&c);
                cr_assert_not_null(f);
                cr_expect_str_eq(f, defaults, "%s does not show the default", line);
                config_done(&c);
        }
        cr_expect_eq(n, n_settings, "conf file names %zu settings, config_setting_names %zu", n, n_settings);
}
