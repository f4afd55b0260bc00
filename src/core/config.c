/* SPDX-License-Identifier: MIT */
#include <ctype.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <strings.h>

#include "core/broker-url.h"
#include "core/config.h"
#include "core/log-level.h"

typedef enum SettingKind {
        /* The kinds held as char * come first (kind_is_string()). */
        KIND_NAME,         /* char *, min-max bytes */
        KIND_PATH,         /* char *, empty = unset */
        KIND_SECRET,       /* char *, empty = unset, never shown */
        KIND_URL_AMQP,     /* char * */
        KIND_URL_POSTGRES, /* char *, URL or conninfo */
        KIND_URL_HTTP,     /* char * */
        KIND_U16,
        KIND_UNSIGNED,
        KIND_SIZE,
        KIND_INT,
        KIND_DECIMAL, /* double, min-max */
        KIND_BOOL,
        KIND_LOG_LEVEL, /* int, a syslog priority */
        KIND_QUEUE_TYPE,
        _KIND_MAX,
} SettingKind;

/* clang-format off */
/* Every setting: name without the prefix, kind, Config field, default (NULL: unset, or
 * supplied by ConfigSources), accepted range, whether a reload applies it. This order is
 * the documentation order: config_setting_names, config_format and conf/transmitter.conf. */
#define CONFIG_SETTINGS(X)                                                                     \
        X(SERVER_HOST, NAME, server_host, "0.0.0.0", 1, 255, false)                            \
        X(SERVER_PORT, U16, server_port, "8020", 1, 65535, false)                              \
        X(RABBITMQ_URL, URL_AMQP, rabbitmq_url,                                                \
          "amqp://discovery:discovery@localhost:5672/", 0, 0, false)                           \
        X(RABBITMQ_EXCHANGE, NAME, rabbitmq_exchange, "discovery.events", 1, 255, false)       \
        X(RABBITMQ_QUEUE, NAME, rabbitmq_queue, "transmitter.approved", 1, 255, false)         \
        X(RABBITMQ_DEAD_LETTER_EXCHANGE, NAME, rabbitmq_dead_letter_exchange,                  \
          "discovery.events.dlx", 1, 255, false)                                               \
        X(RABBITMQ_QUEUE_TYPE, QUEUE_TYPE, rabbitmq_queue_type, "classic", 0, 0, false)        \
        X(RABBITMQ_PREFETCH, UNSIGNED, rabbitmq_prefetch, "0", 0, 65535, false)                \
        X(RABBITMQ_HEARTBEAT_S, UNSIGNED, rabbitmq_heartbeat_s, "30", 0, 3600, false)          \
        X(RABBITMQ_CA_FILE, PATH, rabbitmq_ca_file, "/etc/ssl/certs/ca-certificates.crt", 0,   \
          PATH_MAX - 1, false)                                                                 \
        X(RABBITMQ_DELIVERY_LIMIT, UNSIGNED, rabbitmq_delivery_limit, "20", 0, 100000, true)   \
        X(RABBITMQ_CONSUMER_TIMEOUT_S, UNSIGNED, rabbitmq_consumer_timeout_s, "1800", 0,        \
          604800, true)                                                                        \
        X(DATABASE_URL, URL_POSTGRES, database_url,                                            \
          "postgresql://discovery:discovery@localhost:5432/discovery", 0, 0, false)            \
        X(DATABASE_MIGRATE, BOOL, database_migrate, "false", 0, 0, false)                      \
        X(DESTINATION_URL, URL_HTTP, destination_url,                                          \
          "https://api.example.com/v1/discovery", 0, 0, false)                                 \
        X(AUTH_TOKEN, SECRET, auth_token, NULL, 0, CONFIG_TOKEN_SIZE_MAX, true)                \
        X(AUTH_TOKEN_FILE, PATH, auth_token_file, NULL, 0, PATH_MAX - 1, true)                 \
        X(TLS_CA_FILE, PATH, tls_ca_file, NULL, 0, PATH_MAX - 1, false)                        \
        X(TLS_CERT_FILE, PATH, tls_cert_file, NULL, 0, PATH_MAX - 1, false)                    \
        X(TLS_KEY_FILE, PATH, tls_key_file, NULL, 0, PATH_MAX - 1, false)                      \
        X(ALLOW_INSECURE_HTTP, BOOL, allow_insecure_http, "false", 0, 0, false)                \
        X(REQUEST_TIMEOUT_S, UNSIGNED, request_timeout_s, "30", 1, 3600, true)                 \
        X(CONNECT_TIMEOUT_S, UNSIGNED, connect_timeout_s, "10", 1, 600, true)                  \
        X(BATCH_SIZE, UNSIGNED, batch_size, "100", 1, 100000, true)                            \
        X(BATCH_INTERVAL_S, UNSIGNED, batch_interval_s, "60", 1, 86400, true)                  \
        X(BATCH_MAX_BYTES, SIZE, batch_max_bytes, "10485760", 1024, 1073741824, true)          \
        X(MAX_IN_FLIGHT, UNSIGNED, max_in_flight, "2", 1, 64, true)                            \
        X(COMPRESSION_LEVEL, INT, compression_level, "6", 0, 9, true)                          \
        X(RETRY_MAX_ATTEMPTS, UNSIGNED, retry_max_attempts, "3", 1, 100, true)                 \
        X(RETRY_BACKOFF_MULTIPLIER, DECIMAL, retry_backoff_multiplier, "2", 1, 60, true)       \
        X(RETRY_MAX_DELAY_S, UNSIGNED, retry_max_delay_s, "300", 1, 86400, true)               \
        X(RETRY_JITTER, BOOL, retry_jitter, "false", 0, 0, true)                               \
        X(CIRCUIT_FAILURE_THRESHOLD, UNSIGNED, circuit_failure_threshold, "5", 1, 10000, true) \
        X(CIRCUIT_RESET_TIMEOUT_S, UNSIGNED, circuit_reset_timeout_s, "60", 1, 86400, true)    \
        X(LOG_LEVEL, LOG_LEVEL, log_level, "INFO", 0, 0, true)                                 \
        X(BATCH_TIMELINE, BOOL, batch_timeline, "false", 0, 0, true)                           \
        X(SHUTDOWN_TIMEOUT_S, UNSIGNED, shutdown_timeout_s, "20", 1, 3600, true)               \
        X(INSTANCE_ID, NAME, instance_id, NULL, 1, 255, false)

/* Settings that are read no more: accepted with any value, so that a configuration written for an
 * earlier version still starts, and ignored; config_obsolete_names() lets the daemon warn. The name
 * without the prefix and why it went. transmitter.conf(5) lists them (OBSOLETE SETTINGS). */
#define CONFIG_OBSOLETE_SETTINGS(X)                                                            \
        X(MIGRATIONS_DIR, "the migrations are built into the binary")

typedef enum SettingId {
#define SETTING_ID(name, ...) SETTING_##name,
        CONFIG_SETTINGS(SETTING_ID)
#undef SETTING_ID
        _SETTING_MAX,
} SettingId;

typedef struct ObsoleteSetting {
        const char *name, *why;
} ObsoleteSetting;

static const ObsoleteSetting obsolete_settings[] = {
#define OBSOLETE_ENTRY(name, why) { #name, why },
        CONFIG_OBSOLETE_SETTINGS(OBSOLETE_ENTRY)
#undef OBSOLETE_ENTRY
};
_Static_assert(ELEMENTSOF(obsolete_settings) <= sizeof(((Config *) 0)->obsolete) * 8,
               "more obsolete settings than bits in Config.obsolete");

typedef struct Setting {
        const char *name;
        SettingKind kind;
        size_t offset;
        const char *default_value;
        uint64_t min, max;
        bool reloadable;
} Setting;

static const Setting settings[] = {
#define SETTING_ENTRY(name, kind, field, def, lo, hi, reload) \
        { #name, KIND_##kind, offsetof(Config, field), def, lo, hi, reload },
        CONFIG_SETTINGS(SETTING_ENTRY)
#undef SETTING_ENTRY
};

const char *const config_setting_names[] = {
#define SETTING_NAME(name, ...) #name,
        CONFIG_SETTINGS(SETTING_NAME)
#undef SETTING_NAME
        NULL,
};

/* Settings are written through their offset, so make sure each field has the C type its
 * kind is written as. */
#define CTYPE_NAME char *
#define CTYPE_PATH char *
#define CTYPE_SECRET char *
#define CTYPE_URL_AMQP char *
#define CTYPE_URL_POSTGRES char *
#define CTYPE_URL_HTTP char *
#define CTYPE_U16 uint16_t
#define CTYPE_UNSIGNED unsigned
#define CTYPE_SIZE size_t
#define CTYPE_INT int
#define CTYPE_DECIMAL double
#define CTYPE_BOOL bool
#define CTYPE_LOG_LEVEL int
#define CTYPE_QUEUE_TYPE QueueType
#define SETTING_CHECK(name, kind, field, ...)                                                      \
        _Static_assert(_Generic(((Config *) 0)->field, CTYPE_##kind: 1, default: 0),               \
                       "Config." #field " does not have the type of a " #kind " setting");
CONFIG_SETTINGS(SETTING_CHECK)
#undef SETTING_CHECK

/* clang-format on */

_Static_assert(ELEMENTSOF(settings) == _SETTING_MAX, "settings table out of sync");

#define ORIGIN_DEFAULT 0U
#define ORIGIN_ENV UINT_MAX
/* Longest piece of a value echoed in an error: enough to recognise it, short enough to
 * leave room for what is accepted. */
#define ECHO_MAX 96

static const char *const queue_type_table[_QUEUE_TYPE_MAX] = {
        [QUEUE_TYPE_CLASSIC] = "classic",
        [QUEUE_TYPE_QUORUM] = "quorum",
};

const char *queue_type_to_string(QueueType t) {
        return t >= 0 && t < _QUEUE_TYPE_MAX ? queue_type_table[t] : NULL;
}

static int queue_type_from_string(const char *s) {
        for (int t = 0; t < _QUEUE_TYPE_MAX; t++)
                if (strcasecmp(s, queue_type_table[t]) == 0)
                        return t;
        return -EINVAL;
}

static bool kind_is_string(SettingKind k) {
        return k <= KIND_URL_HTTP;
}

static bool kind_is_url(SettingKind k) {
        return k == KIND_URL_AMQP || k == KIND_URL_POSTGRES || k == KIND_URL_HTTP;
}

static void *setting_field(Config *c, SettingId id) {
        return (uint8_t *) c + settings[id].offset;
}

static const void *setting_field_const(const Config *c, SettingId id) {
        return (const uint8_t *) c + settings[id].offset;
}

static int setting_lookup(const char *name, size_t len) {
        for (size_t i = 0; i < _SETTING_MAX; i++)
                if (strlen(settings[i].name) == len && memcmp(settings[i].name, name, len) == 0)
                        return (int) i;
        return -ENOENT;
}

/* A name with the prefix, as in the file and the environment. */
static int setting_lookup_full(const char *name, size_t len) {
        size_t l = strlen(CONFIG_ENV_PREFIX);

        if (len < l || memcmp(name, CONFIG_ENV_PREFIX, l) != 0)
                return -ENOENT;
        return setting_lookup(name + l, len - l);
}

/* The index in obsolete_settings of a name with the prefix, or -ENOENT. */
static int obsolete_lookup_full(const char *name, size_t len) {
        const char *n = startswith(name, CONFIG_ENV_PREFIX);

        if (!n || len < strlen(CONFIG_ENV_PREFIX))
                return -ENOENT;
        len -= strlen(CONFIG_ENV_PREFIX);
        for (size_t i = 0; i < ELEMENTSOF(obsolete_settings); i++)
                if (strlen(obsolete_settings[i].name) == len && memcmp(obsolete_settings[i].name, n, len) == 0)
                        return (int) i;
        return -ENOENT;
}

/* The token is overwritten before its memory goes back to the allocator. */
static char *erase_and_free(char *s) {
        if (s) {
                explicit_bzero(s, strlen(s));
                free(s);
        }
        return NULL;
}

static void erase_and_freep(char **p) {
        (void) erase_and_free(*p);
}

static bool is_control(char c) {
        return (unsigned char) c < 0x20 || c == 0x7f;
}

static bool has_control(const char *s) {
        for (; *s; s++)
                if (is_control(*s))
                        return true;
        return false;
}

static bool is_digit(char c) {
        /* Not isdigit(): the locale must not decide what a number is. */
        return c >= '0' && c <= '9';
}

static bool is_hex_digit(char c) {
        return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}


/* ---- Errors ---- */

typedef struct LoadContext {
        const ConfigSources *sources;
        Config *config;
        char *error;
        unsigned origin[_SETTING_MAX]; /* ORIGIN_DEFAULT, a line of the file, or ORIGIN_ENV */
} LoadContext;

static const char *file_label(const LoadContext *ctx) {
        return ctx->sources->file_name ? ctx->sources->file_name : "configuration file";
}

/* Copies s for an error message: control characters as \xNN, and no more than ECHO_MAX
 * bytes of it, so the message stays one line and keeps room for what is accepted. */
static const char *echo(const char *s, char *buf, size_t size) {
        size_t o = 0, i;

        for (i = 0; s[i] && i < ECHO_MAX && o + 5 <= size; i++) {
                if (is_control(s[i]))
                        o += (size_t) snprintf(buf + o, size - o, "\\x%02x", (unsigned char) s[i]);
                else
                        buf[o++] = s[i];
        }
        if (s[i]) {
                /* Drop the last, maybe incomplete, UTF-8 sequence before the ellipsis. */
                while (o > 0 && ((unsigned char) buf[o - 1] & 0xc0) == 0x80)
                        o--;
                if (o > 0 && ((unsigned char) buf[o - 1] & 0xc0) == 0xc0)
                        o--;
                o = MIN(o, size - 4);
                memcpy(buf + o, "...", 3);
                o += 3;
        }
        buf[o] = '\0';
        return buf;
}

static _printf_(2, 3) int config_error(LoadContext *ctx, const char *format, ...) {
        va_list ap;

        va_start(ap, format);
        (void) vsnprintf(ctx->error, CONFIG_ERROR_MAX, format, ap);
        va_end(ap);
        return -EINVAL;
}

static int oom(LoadContext *ctx) {
        (void) config_error(ctx, "Out of memory");
        return -ENOMEM;
}

/* "[file:line: ]TRANSMITTER_NAME=value: problem", with the token shown as "***" and
 * passwords in URLs redacted. */
static _printf_(4, 5) int value_error(LoadContext *ctx, SettingId id, const char *value, const char *format,
                                      ...) {
        char problem[CONFIG_ERROR_MAX], where[CONFIG_ERROR_MAX / 2] = "", shown[ECHO_MAX * 4 + 8];
        _cleanup_free_ char *redacted = NULL;
        const char *v = value;
        va_list ap;

        if (settings[id].kind == KIND_SECRET)
                v = "***";
        else if (kind_is_url(settings[id].kind)) {
                redacted = url_redact(value);
                v = redacted ? redacted : "(not shown)";
        }

        va_start(ap, format);
        (void) vsnprintf(problem, sizeof(problem), format, ap);
        va_end(ap);

        if (ctx->origin[id] != ORIGIN_DEFAULT && ctx->origin[id] != ORIGIN_ENV)
                (void) snprintf(where, sizeof(where), "%s:%u: ", file_label(ctx), ctx->origin[id]);

        return config_error(ctx, "%s" CONFIG_ENV_PREFIX "%s=%s: %s", where, settings[id].name,
                            echo(v, shown, sizeof(shown)), problem);
}

/* ---- Values ---- */

/* Plain decimal digits: no sign, no blanks, no 0x, and leading zeros do not mean octal.
 * -ERANGE for a negative number or one that does not fit. */
static int parse_integer(const char *s, uint64_t *ret) {
        bool negative = false, overflow = false;
        uint64_t v = 0;

        if (*s == '-') {
                negative = true;
                s++;
        }
        if (!*s)
                return -EINVAL;
        for (; *s; s++) {
                unsigned d;

                if (!is_digit(*s))
                        return -EINVAL;
                d = (unsigned) (*s - '0');
                if (v > (UINT64_MAX - d) / 10)
                        overflow = true;
                else
                        v = v * 10 + d;
        }
        if (negative || overflow)
                return -ERANGE;
        *ret = v;
        return 0;
}

/* "2", "1.5", "02.250": digits, optionally a '.' and more digits; no sign, exponent, inf or
 * nan, and the locale's decimal separator plays no part (strtod() would let it). */
static int parse_decimal(const char *s, double *ret) {
        uint64_t mantissa = 0;
        unsigned n_int = 0, n_frac = 0, scale = 0;
        bool negative = false, dot = false, overflow = false;
        double divisor = 1.0;

        if (*s == '-') {
                negative = true;
                s++;
        }
        for (; *s; s++) {
                if (*s == '.' && !dot) {
                        dot = true;
                        continue;
                }
                if (!is_digit(*s))
                        return -EINVAL;
                if (dot)
                        n_frac++;
                else
                        n_int++;
                /* Past 17 significant digits a fraction digit changes nothing a double holds. */
                if (mantissa >= UINT64_C(100000000000000000)) {
                        if (!dot)
                                overflow = true;
                        continue;
                }
                mantissa = mantissa * 10 + (uint64_t) (*s - '0');
                if (dot)
                        scale++;
        }
        if (n_int == 0 || (dot && n_frac == 0))
                return -EINVAL;
        if (negative || overflow)
                return -ERANGE;
        for (unsigned i = 0; i < scale; i++)
                divisor *= 10.0;
        *ret = (double) mantissa / divisor;
        return 0;
}

static int parse_boolean(const char *s) {
        static const char *const yes[] = { "true", "yes", "on", "1" };
        static const char *const no[] = { "false", "no", "off", "0" };

        for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
                if (strcasecmp(s, yes[i]) == 0)
                        return 1;
                if (strcasecmp(s, no[i]) == 0)
                        return 0;
        }
        return -EINVAL;
}

/* "host", "host:port", "[v6]" or "[v6]:port", n bytes at h. NULL when fine, else what is
 * wrong. */
static const char *check_host_port(const char *h, size_t n) {
        const char *port, *end = h + n;
        unsigned v = 0;

        if (n > 0 && h[0] == '[') {
                const char *close = memchr(h, ']', n);

                if (!close || close == h + 1)
                        return "no host in the URL";
                if (close + 1 == end)
                        return NULL;
                if (close[1] != ':')
                        return "bad host in the URL";
                port = close + 2;
        } else {
                const char *colon = memchr(h, ':', n);

                if (colon == h || n == 0)
                        return "no host in the URL";
                if (!colon)
                        return NULL;
                port = colon + 1;
        }

        if (port == end || end - port > 5)
                return "bad port in the URL";
        for (const char *p = port; p < end; p++) {
                if (!is_digit(*p))
                        return "bad port in the URL";
                v = v * 10 + (unsigned) (*p - '0');
        }
        if (v < 1 || v > 65535)
                return "bad port in the URL";
        return NULL;
}

static const char *url_accepted(SettingKind kind) {
        switch (kind) {
        case KIND_URL_AMQP:
                return "amqp://[user[:password]@]host[:port][/vhost] or amqps://..., several separated by "
                       "commas, all amqp:// or all amqps://";
        case KIND_URL_POSTGRES:
                return "postgresql://[user[:password]@]host[:port][,...][/dbname][?param=value...], "
                       "postgres://..., or a key=value conninfo string";
        default:
                return "https://host[:port][/path]; http:// only with " CONFIG_ENV_PREFIX
                       "ALLOW_INSECURE_HTTP=true";
        }
}

static bool percent_encoding_is_valid(const char *s) {
        for (const char *p = strchr(s, '%'); p; p = strchr(p + 1, '%'))
                if (!is_hex_digit(p[1]) || !is_hex_digit(p[2]))
                        return false;
        return true;
}

/* NULL when v is a URL of the kind (postgresql:// or http(s)://), else what is wrong with it. */
static const char *check_url(SettingKind kind, const char *v) {
        const char *authority, *hosts;
        size_t n;

        switch (kind) {
        case KIND_URL_POSTGRES:
                authority = startswith(v, "postgresql://");
                if (!authority)
                        authority = startswith(v, "postgres://");
                if (!authority)
                        return conninfo_is_valid(v)
                                       ? NULL
                                       : "not a postgresql:// URL or key=value conninfo string";
                break;
        default:
                authority = startswith(v, "https://");
                if (!authority)
                        authority = startswith(v, "http://");
                if (!authority)
                        return "not an https:// URL";
        }

        if (strchr(v, ' '))
                return "contains a space, write it as %20";
        /* librabbitmq and libpq decode these, and libpq's complaint would quote the password. */
        if (kind != KIND_URL_HTTP && !percent_encoding_is_valid(authority))
                return "a '%' not followed by two hex digits, write a '%' itself as %25";

        n = strcspn(authority, "/?#");
        hosts = authority;
        for (const char *p = authority; p < authority + n; p++)
                if (*p == '@')
                        hosts = p + 1;
        n -= (size_t) (hosts - authority);
        /* The '@' that ends the userinfo comes after a '/', '?' or '#' the password holds. */
        if (kind != KIND_URL_HTTP && hosts == authority && strchr(authority + n, '@') &&
            check_host_port(hosts, n))
                return "the user name or password holds a '/', '?' or '#', write them as %2F, %3F, %23";

        if (kind == KIND_URL_POSTGRES) {
                const char *query = strchr(hosts, '?');

                /* No host: libpq takes it from a host= parameter. */
                if (n == 0 && query && (strstr(query, "?host=") || strstr(query, "&host=")))
                        return NULL;
                /* A list of hosts lets libpq find the primary among standbys. */
                for (const char *h = hosts, *end = hosts + n;;) {
                        const char *comma = memchr(h, ',', (size_t) (end - h));
                        const char *problem = check_host_port(h, (size_t) ((comma ? comma : end) - h));

                        if (problem)
                                return problem;
                        if (!comma)
                                return NULL;
                        h = comma + 1;
                }
        }
        return check_host_port(hosts, n);
}

/* RABBITMQ_URL: checked by the parser the consumer connects with, so that what passes here also
 * connects. In a list, the bad item is named by its position and its text, redacted. */
static int check_broker_urls(LoadContext *ctx, SettingId id, const char *value) {
        _cleanup_(broker_url_list_done) BrokerUrlList list = { 0 };
        _cleanup_free_ char *item = NULL, *shown = NULL;
        char buf[ECHO_MAX * 4 + 8];
        const char *problem = NULL;
        size_t index = 0;
        int r;

        r = broker_url_list_parse(value, &list, &index, &problem);
        if (r == -ENOMEM)
                return oom(ctx);
        if (r >= 0)
                return 0;

        if (!strchr(value, ','))
                return value_error(ctx, id, value, "%s (accepted: %s)", strempty(problem),
                                   url_accepted(KIND_URL_AMQP));
        item = broker_url_list_item(value, index);
        shown = item ? url_redact(item) : NULL;
        return value_error(ctx, id, value, "item %zu (%s): %s (accepted: %s)", index + 1,
                           shown ? echo(shown, buf, sizeof(buf)) : "?", strempty(problem),
                           url_accepted(KIND_URL_AMQP));
}

static const char *setting_default(const LoadContext *ctx, SettingId id) {
        switch (id) {
        case SETTING_INSTANCE_ID:
                return isempty(ctx->sources->hostname) ? NULL : ctx->sources->hostname;
        default:
                return settings[id].default_value;
        }
}

static int set_string(LoadContext *ctx, SettingId id, const char *value) {
        char **field = setting_field(ctx->config, id), *copy = NULL;

        if (!isempty(value)) {
                copy = strdup(value);
                if (!copy)
                        return oom(ctx);
        }
        if (settings[id].kind == KIND_SECRET)
                erase_and_free(*field);
        else
                free(*field);
        *field = copy;
        return 0;
}

/* Parses and checks one assignment; on success it replaces what an earlier source set. */
static int apply_setting(LoadContext *ctx, SettingId id, const char *value) {
        const Setting *s = &settings[id];
        void *field = setting_field(ctx->config, id);
        const char *problem;
        uint64_t u;
        double d;
        int r;

        if (isempty(value) && id == SETTING_INSTANCE_ID)
                value = setting_default(ctx, id);
        if (!value)
                return set_string(ctx, id, NULL);

        if (has_control(value))
                return value_error(ctx, id, value,
                                   "contains a control character (accepted: printable text)");

        switch (s->kind) {
        case KIND_NAME:
                if (strlen(value) < s->min)
                        return value_error(ctx, id, value,
                                           "must not be empty (accepted: %" PRIu64 "-%" PRIu64 " bytes)",
                                           s->min, s->max);
                if (strlen(value) > s->max)
                        return value_error(ctx, id, value,
                                           "too long (accepted: %" PRIu64 "-%" PRIu64 " bytes)", s->min,
                                           s->max);
                return set_string(ctx, id, value);

        case KIND_PATH:
        case KIND_SECRET:
                if (strlen(value) > s->max)
                        return value_error(ctx, id, value, "too long (accepted: up to %" PRIu64 " bytes)",
                                           s->max);
                return set_string(ctx, id, value);

        case KIND_URL_AMQP:
                r = check_broker_urls(ctx, id, value);
                if (r < 0)
                        return r;
                return set_string(ctx, id, value);

        case KIND_URL_POSTGRES:
        case KIND_URL_HTTP:
                problem = check_url(s->kind, value);
                if (problem)
                        return value_error(ctx, id, value, "%s (accepted: %s)", problem,
                                           url_accepted(s->kind));
                return set_string(ctx, id, value);

        case KIND_U16:
        case KIND_UNSIGNED:
        case KIND_SIZE:
        case KIND_INT:
                r = parse_integer(value, &u);
                if (r == -EINVAL)
                        return value_error(ctx, id, value,
                                           "not a number (accepted: %" PRIu64 "-%" PRIu64 ")", s->min,
                                           s->max);
                if (r < 0 || u < s->min || u > s->max)
                        return value_error(ctx, id, value,
                                           "out of range (accepted: %" PRIu64 "-%" PRIu64 ")", s->min,
                                           s->max);
                if (s->kind == KIND_U16)
                        *(uint16_t *) field = (uint16_t) u;
                else if (s->kind == KIND_UNSIGNED)
                        *(unsigned *) field = (unsigned) u;
                else if (s->kind == KIND_SIZE)
                        *(size_t *) field = (size_t) u;
                else
                        *(int *) field = (int) u;
                return 0;

        case KIND_DECIMAL:
                r = parse_decimal(value, &d);
                if (r == -EINVAL)
                        return value_error(ctx, id, value,
                                           "not a number (accepted: %" PRIu64 ".0-%" PRIu64 ")", s->min,
                                           s->max);
                if (r < 0 || d < (double) s->min || d > (double) s->max)
                        return value_error(ctx, id, value,
                                           "out of range (accepted: %" PRIu64 ".0-%" PRIu64 ")", s->min,
                                           s->max);
                *(double *) field = d;
                return 0;

        case KIND_BOOL:
                r = parse_boolean(value);
                if (r < 0)
                        return value_error(ctx, id, value,
                                           "not a boolean (accepted: true, false, yes, no, on, off, 1, 0)");
                *(bool *) field = r;
                return 0;

        case KIND_LOG_LEVEL:
                r = log_level_from_string(value);
                if (r < 0)
                        return value_error(
                                ctx, id, value,
                                "unknown log level (accepted: DEBUG, INFO, WARNING, ERROR, CRITICAL)");
                *(int *) field = r;
                return 0;

        case KIND_QUEUE_TYPE:
                r = queue_type_from_string(value);
                if (r < 0)
                        return value_error(ctx, id, value, "unknown queue type (accepted: classic, quorum)");
                *(QueueType *) field = (QueueType) r;
                return 0;

        default:
                abort(); /* a kind missing above: a programming error */
        }
}

/* ---- Sources ---- */

static int load_defaults(LoadContext *ctx) {
        int r;

        for (SettingId id = 0; id < _SETTING_MAX; id++) {
                ctx->origin[id] = ORIGIN_DEFAULT;
                r = apply_setting(ctx, id, setting_default(ctx, id));
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Drops one pair of matching quotes around v. -EINVAL when a quote is left open. */
static int unquote(char **v) {
        size_t l = strlen(*v);

        if (l == 0 || !strchr("\"'", (*v)[0]))
                return 0;
        if (l < 2 || (*v)[l - 1] != (*v)[0])
                return -EINVAL;
        (*v)[l - 1] = '\0';
        (*v)++;
        return 0;
}

static int load_file(LoadContext *ctx) {
        _cleanup_(erase_and_freep) char *text = NULL; /* the token may be in it */
        char shown[ECHO_MAX * 4 + 8];
        unsigned line_no = 0;
        char *next;
        int r;

        if (!ctx->sources->file_text)
                return 0;
        text = strdup(ctx->sources->file_text);
        if (!text)
                return oom(ctx);

        for (char *line = text; line; line = next) {
                char *l, *eq, *key, *value;
                int id;

                next = strchr(line, '\n');
                if (next)
                        *next++ = '\0';
                line_no++;

                l = strstrip(line); /* also drops the '\r' of CRLF lines */
                if (*l == '\0' || *l == '#')
                        continue;

                eq = strchr(l, '=');
                if (!eq)
                        /* The line is not echoed: it might be a token pasted on a line of its own. */
                        return config_error(ctx,
                                            "%s:%u: missing '=' (expected " CONFIG_ENV_PREFIX "NAME=value)",
                                            file_label(ctx), line_no);
                *eq = '\0';
                key = strstrip(l);
                value = strstrip(eq + 1);
                if (*key == '\0')
                        return config_error(ctx, "%s:%u: missing setting name before '='", file_label(ctx),
                                            line_no);

                id = obsolete_lookup_full(key, strlen(key));
                if (id >= 0) {
                        ctx->config->obsolete |= 1U << id;
                        continue;
                }
                id = setting_lookup_full(key, strlen(key));
                if (id < 0)
                        return config_error(ctx, "%s:%u: unknown setting %s", file_label(ctx), line_no,
                                            echo(key, shown, sizeof(shown)));
                if (unquote(&value) < 0)
                        return config_error(
                                ctx, "%s:%u: unbalanced quotes in the value of " CONFIG_ENV_PREFIX "%s",
                                file_label(ctx), line_no, settings[id].name);

                ctx->origin[id] = line_no;
                r = apply_setting(ctx, (SettingId) id, value);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int load_environment(LoadContext *ctx) {
        int r;

        if (!ctx->sources->environ)
                return 0;

        for (char *const *e = ctx->sources->environ; *e; e++) {
                const char *eq = strchr(*e, '=');
                int id;

                if (!eq || !startswith(*e, CONFIG_ENV_PREFIX))
                        continue;
                id = obsolete_lookup_full(*e, (size_t) (eq - *e));
                if (id >= 0) {
                        ctx->config->obsolete |= 1U << id;
                        continue;
                }
                id = setting_lookup_full(*e, (size_t) (eq - *e));
                if (id < 0)
                        continue; /* config_unknown_env() lets the daemon warn */

                ctx->origin[id] = ORIGIN_ENV;
                r = apply_setting(ctx, (SettingId) id, eq + 1);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* The one place config_load() touches the file system. Surrounding whitespace (the final
 * newline of `echo token > file`) is dropped. -ENODATA when nothing is left, -EBADMSG when
 * the token holds a control character (or a NUL), which would break the HTTP header. */
static int read_token_file(const char *path, char **ret) {
        _cleanup_(erase_and_freep) char *buf = NULL;
        size_t size;
        char *t;
        int r;

        r = read_full_file(path, CONFIG_TOKEN_SIZE_MAX, &buf, &size);
        if (r < 0)
                return r;
        if (strlen(buf) != size) {
                explicit_bzero(buf, size);
                return -EBADMSG;
        }
        t = strstrip(buf);
        if (*t == '\0')
                return -ENODATA;
        if (has_control(t))
                return -EBADMSG;
        memmove(buf, t, strlen(t) + 1);
        *ret = TAKE_PTR(buf);
        return 0;
}

static const char *token_problem(int r, char *buf, size_t size) {
        char errbuf[128];

        switch (r) {
        case -ENODATA:
                return "the file is empty";
        case -EBADMSG:
                return "the token holds a control character (accepted: printable text)";
        case -EFBIG:
                (void) snprintf(buf, size, "the file is larger than %d bytes", CONFIG_TOKEN_SIZE_MAX);
                return buf;
        default:
                (void) snprintf(buf, size, "cannot read it: %s", strerror_r(-r, errbuf, sizeof(errbuf)));
                return buf;
        }
}

/* AUTH_TOKEN when not empty, else AUTH_TOKEN_FILE, else the credential when there is one. */
static int load_token(LoadContext *ctx) {
        Config *c = ctx->config;
        _cleanup_free_ char *path = NULL;
        char buf[256];
        int r;

        if (!isempty(c->auth_token))
                return 0;

        if (c->auth_token_file) {
                r = read_token_file(c->auth_token_file, &c->auth_token);
                if (r == -ENOMEM)
                        return oom(ctx);
                if (r < 0)
                        return value_error(ctx, SETTING_AUTH_TOKEN_FILE, c->auth_token_file, "%s",
                                           token_problem(r, buf, sizeof(buf)));
                return 0;
        }

        if (isempty(ctx->sources->credentials_dir))
                return 0;
        if (asprintf(&path, "%s/" CONFIG_CREDENTIAL_AUTH_TOKEN, ctx->sources->credentials_dir) < 0) {
                path = NULL;
                return oom(ctx);
        }
        r = read_token_file(path, &c->auth_token);
        /* No LoadCredential=auth-token, or the unit's blank SetCredential= default that keeps
         * a missing /etc/transmitter/auth-token from failing the start: no token from here. */
        if (r == -ENOENT || r == -ENODATA)
                return 0;
        if (r == -ENOMEM)
                return oom(ctx);
        if (r < 0)
                return config_error(ctx, "credential " CONFIG_CREDENTIAL_AUTH_TOKEN " (%s): %s", path,
                                    token_problem(r, buf, sizeof(buf)));
        return 0;
}

/* Rules between settings, once every source is merged: which source set what is no matter. */
static int check_merged(LoadContext *ctx) {
        const Config *c = ctx->config;

        if (!c->instance_id)
                return config_error(ctx,
                                    CONFIG_ENV_PREFIX "INSTANCE_ID is not set and the host name is unknown "
                                                      "(accepted: 1-255 bytes)");

        if (startswith(c->destination_url, "http://") && !c->allow_insecure_http)
                return value_error(
                        ctx, SETTING_DESTINATION_URL, c->destination_url,
                        "plain http:// is refused (accepted: https://, or http:// with " CONFIG_ENV_PREFIX
                        "ALLOW_INSECURE_HTTP=true)");

        if (!c->tls_cert_file != !c->tls_key_file)
                return config_error(ctx,
                                    CONFIG_ENV_PREFIX "%s is set but " CONFIG_ENV_PREFIX
                                                      "%s is not (accepted: both for mTLS, or neither)",
                                    c->tls_cert_file ? "TLS_CERT_FILE" : "TLS_KEY_FILE",
                                    c->tls_cert_file ? "TLS_KEY_FILE" : "TLS_CERT_FILE");
        return 0;
}

int config_load(const ConfigSources *sources, Config *ret, char error[static CONFIG_ERROR_MAX]) {
        static const ConfigSources no_sources = { 0 };
        _cleanup_(config_done) Config c = { 0 };
        LoadContext ctx = {
                .sources = sources ? sources : &no_sources,
                .config = &c,
                .error = error,
        };
        int r;

        error[0] = '\0';

        r = load_defaults(&ctx);
        if (r < 0)
                return r;
        r = load_file(&ctx);
        if (r < 0)
                return r;
        r = load_environment(&ctx);
        if (r < 0)
                return r;
        r = check_merged(&ctx);
        if (r < 0)
                return r;
        r = load_token(&ctx);
        if (r < 0)
                return r;

        *ret = c;
        c = (Config){ 0 };
        return 0;
}

void config_done(Config *c) {
        if (!c)
                return;
        for (SettingId id = 0; id < _SETTING_MAX; id++) {
                char **p;

                if (!kind_is_string(settings[id].kind))
                        continue;
                p = setting_field(c, id);
                *p = settings[id].kind == KIND_SECRET ? erase_and_free(*p) : mfree(*p);
        }
        *c = (Config){ 0 };
}

unsigned config_prefetch(const Config *c) {
        uint64_t p;

        if (c->rabbitmq_prefetch > 0)
                return c->rabbitmq_prefetch;
        /* Room for every batch on the wire and the one being filled; AMQP's prefetch count
         * is 16 bits wide. */
        p = (uint64_t) c->batch_size * ((uint64_t) c->max_in_flight + 1);
        return (unsigned) MIN(p, (uint64_t) UINT16_MAX);
}

/* ---- Output ---- */

static char *setting_format_value(const Config *c, SettingId id) {
        const void *f = setting_field_const(c, id);
        char *v;
        int r;

        switch (settings[id].kind) {
        case KIND_NAME:
        case KIND_PATH:
                return strdup(strempty(*(char *const *) f));
        case KIND_SECRET:
                return strdup(*(char *const *) f ? "***" : "");
        case KIND_URL_AMQP:
        case KIND_URL_POSTGRES:
        case KIND_URL_HTTP:
                return *(char *const *) f ? url_redact(*(char *const *) f) : strdup("");
        case KIND_U16:
                r = asprintf(&v, "%u", (unsigned) *(const uint16_t *) f);
                break;
        case KIND_UNSIGNED:
                r = asprintf(&v, "%u", *(const unsigned *) f);
                break;
        case KIND_SIZE:
                r = asprintf(&v, "%zu", *(const size_t *) f);
                break;
        case KIND_INT:
                r = asprintf(&v, "%d", *(const int *) f);
                break;
        case KIND_DECIMAL:
                r = asprintf(&v, "%.15g", *(const double *) f);
                break;
        case KIND_BOOL:
                return strdup(true_false(*(const bool *) f));
        case KIND_LOG_LEVEL:
                return strdup(log_level_to_string(*(const int *) f));
        case KIND_QUEUE_TYPE:
                return strdup(strempty(queue_type_to_string(*(const QueueType *) f)));
        default:
                abort();
        }
        return r < 0 ? NULL : v;
}

char *config_format(const Config *c) {
        char *buf = NULL;
        size_t size = 0;
        FILE *f;

        f = open_memstream(&buf, &size);
        if (!f)
                return NULL;
        for (SettingId id = 0; id < _SETTING_MAX; id++) {
                _cleanup_free_ char *v = setting_format_value(c, id);

                if (!v || fprintf(f, CONFIG_ENV_PREFIX "%s=%s\n", settings[id].name, v) < 0) {
                        (void) fclose(f);
                        return mfree(buf);
                }
        }
        if (fclose(f) != 0)
                return mfree(buf);
        return buf;
}

static bool setting_equal(const Config *a, const Config *b, SettingId id) {
        const void *x = setting_field_const(a, id), *y = setting_field_const(b, id);

        /* What the broker is told, whether set or computed. */
        if (id == SETTING_RABBITMQ_PREFETCH)
                return config_prefetch(a) == config_prefetch(b);

        switch (settings[id].kind) {
        case KIND_U16:
                return *(const uint16_t *) x == *(const uint16_t *) y;
        case KIND_UNSIGNED:
                return *(const unsigned *) x == *(const unsigned *) y;
        case KIND_SIZE:
                return *(const size_t *) x == *(const size_t *) y;
        case KIND_INT:
        case KIND_LOG_LEVEL:
                return *(const int *) x == *(const int *) y;
        case KIND_DECIMAL:
                return *(const double *) x == *(const double *) y;
        case KIND_BOOL:
                return *(const bool *) x == *(const bool *) y;
        case KIND_QUEUE_TYPE:
                return *(const QueueType *) x == *(const QueueType *) y;
        default:
                return streq_ptr(*(char *const *) x, *(char *const *) y);
        }
}

static void list_append(char *list, size_t size, const char *name, size_t len) {
        size_t l;

        if (!list || size == 0)
                return;
        l = strlen(list);
        if (l + 1 >= size)
                return;
        (void) snprintf(list + l, size - l, "%s%.*s", l > 0 ? ", " : "", (int) MIN(len, (size_t) INT_MAX),
                        name);
}

static void list_append_setting(char *list, size_t size, SettingId id) {
        char name[128];

        (void) snprintf(name, sizeof(name), CONFIG_ENV_PREFIX "%s", settings[id].name);
        list_append(list, size, name, strlen(name));
}

bool config_setting_reloadable(const char *name) {
        const char *n = startswith(name, CONFIG_ENV_PREFIX);
        int id = setting_lookup(n ? n : name, strlen(n ? n : name));

        return id >= 0 && settings[id].reloadable;
}

unsigned config_reload_diff(const Config *old_config, const Config *new_config, char *live, size_t live_size,
                            char *restart, size_t restart_size) {
        unsigned n_restart = 0;

        if (live && live_size > 0)
                live[0] = '\0';
        if (restart && restart_size > 0)
                restart[0] = '\0';

        for (SettingId id = 0; id < _SETTING_MAX; id++) {
                if (setting_equal(old_config, new_config, id))
                        continue;
                if (settings[id].reloadable)
                        list_append_setting(live, live_size, id);
                else {
                        list_append_setting(restart, restart_size, id);
                        n_restart++;
                }
        }
        return n_restart;
}

unsigned config_reload_check(const Config *old_config, const Config *new_config, char *restart,
                             size_t restart_size) {
        return config_reload_diff(old_config, new_config, NULL, 0, restart, restart_size);
}

int config_copy_restart_settings(Config *c, const Config *running) {
        char *copies[_SETTING_MAX] = { NULL };

        /* Copy every string first, so that running out of memory changes nothing. */
        for (SettingId id = 0; id < _SETTING_MAX; id++) {
                const char *v;

                if (settings[id].reloadable || !kind_is_string(settings[id].kind))
                        continue;
                v = *(char *const *) setting_field_const(running, id);
                if (!v)
                        continue;
                copies[id] = strdup(v);
                if (!copies[id]) {
                        for (SettingId j = 0; j < id; j++)
                                free(copies[j]);
                        return -ENOMEM;
                }
        }

        for (SettingId id = 0; id < _SETTING_MAX; id++) {
                void *field = setting_field(c, id);
                const void *from = setting_field_const(running, id);

                if (settings[id].reloadable || id == SETTING_RABBITMQ_PREFETCH)
                        continue;
                if (kind_is_string(settings[id].kind)) {
                        free(*(char **) field);
                        *(char **) field = copies[id];
                        continue;
                }
                switch (settings[id].kind) {
                case KIND_U16:
                        *(uint16_t *) field = *(const uint16_t *) from;
                        break;
                case KIND_UNSIGNED:
                        *(unsigned *) field = *(const unsigned *) from;
                        break;
                case KIND_SIZE:
                        *(size_t *) field = *(const size_t *) from;
                        break;
                case KIND_INT:
                case KIND_LOG_LEVEL:
                        *(int *) field = *(const int *) from;
                        break;
                case KIND_DECIMAL:
                        *(double *) field = *(const double *) from;
                        break;
                case KIND_BOOL:
                        *(bool *) field = *(const bool *) from;
                        break;
                case KIND_QUEUE_TYPE:
                        *(QueueType *) field = *(const QueueType *) from;
                        break;
                default:
                        abort();
                }
        }

        /* The broker keeps the prefetch it was given at connect, even when a new BATCH_SIZE or
         * MAX_IN_FLIGHT would compute another one: pin that. */
        if (config_prefetch(c) != config_prefetch(running))
                c->rabbitmq_prefetch = config_prefetch(running);
        return 0;
}

unsigned config_unknown_env(char *const *env, char *ret_names, size_t size) {
        unsigned n = 0;

        if (ret_names && size > 0)
                ret_names[0] = '\0';
        if (!env)
                return 0;

        for (char *const *e = env; *e; e++) {
                size_t len = strcspn(*e, "=");

                if (!startswith(*e, CONFIG_ENV_PREFIX) || setting_lookup_full(*e, len) >= 0 ||
                    obsolete_lookup_full(*e, len) >= 0)
                        continue;
                list_append(ret_names, size, *e, len);
                n++;
        }
        return n;
}

unsigned config_obsolete_names(const Config *c, char *ret_names, size_t size) {
        unsigned n = 0;

        if (ret_names && size > 0)
                ret_names[0] = '\0';
        for (size_t i = 0; i < ELEMENTSOF(obsolete_settings); i++) {
                char item[256];

                if (!(c->obsolete & (1U << i)))
                        continue;
                (void) snprintf(item, sizeof(item), CONFIG_ENV_PREFIX "%s (%s)", obsolete_settings[i].name,
                                obsolete_settings[i].why);
                list_append(ret_names, size, item, strlen(item));
                n++;
        }
        return n;
}
