/* SPDX-License-Identifier: MIT */
#pragma once

/* Configuration (architecture §7): built-in defaults < the file (KEY=VALUE) < the environment.
 * The caller hands in the file's text and the environment and gets a validated Config or
 * one clear error line. Pure but for one thing: the token is read from AUTH_TOKEN_FILE or
 * the credential "auth-token", because a reload must pick up a rotated token. */

#include "util/util.h"

#define CONFIG_FILE_DEFAULT "/etc/transmitter/transmitter.conf"
#define CONFIG_ENV_PREFIX "TRANSMITTER_"
#define CONFIG_ERROR_MAX 512
#define CONFIG_CREDENTIAL_AUTH_TOKEN "auth-token"
#define CONFIG_TOKEN_SIZE_MAX 16384

typedef enum QueueType {
        QUEUE_TYPE_CLASSIC,
        QUEUE_TYPE_QUORUM,
        _QUEUE_TYPE_MAX,
} QueueType;

typedef struct Config {
        /* HTTP API */
        char *server_host;            /* SERVER_HOST 0.0.0.0 */
        uint16_t server_port;         /* SERVER_PORT 8020 */

        /* RabbitMQ */
        char *rabbitmq_url;           /* RABBITMQ_URL amqp://discovery:discovery@localhost:5672/ */
        char *rabbitmq_exchange;      /* RABBITMQ_EXCHANGE discovery.events */
        char *rabbitmq_queue;         /* RABBITMQ_QUEUE transmitter.approved */
        char *rabbitmq_dead_letter_exchange; /* RABBITMQ_DEAD_LETTER_EXCHANGE discovery.events.dlx */
        QueueType rabbitmq_queue_type;/* RABBITMQ_QUEUE_TYPE classic|quorum */
        unsigned rabbitmq_prefetch;   /* RABBITMQ_PREFETCH 0 = batch_size * (max_in_flight + 1); see config_prefetch() */
        unsigned rabbitmq_heartbeat_s;/* RABBITMQ_HEARTBEAT_S 30 (0 disables) */
        char *rabbitmq_ca_file;       /* RABBITMQ_CA_FILE /etc/ssl/certs/ca-certificates.crt: trust anchors for amqps:// */
        unsigned rabbitmq_delivery_limit;     /* RABBITMQ_DELIVERY_LIMIT 20: the queue's delivery-limit, 0: none */
        unsigned rabbitmq_consumer_timeout_s; /* RABBITMQ_CONSUMER_TIMEOUT_S 1800: the broker's consumer_timeout, 0: none */

        /* PostgreSQL */
        char *database_url;           /* DATABASE_URL postgresql://discovery:discovery@localhost:5432/discovery */
        bool database_migrate;        /* DATABASE_MIGRATE false */

        /* Destination */
        char *destination_url;        /* DESTINATION_URL https://api.example.com/v1/discovery */
        char *auth_token;             /* AUTH_TOKEN, AUTH_TOKEN_FILE or credential auth-token; NULL when none */
        char *auth_token_file;        /* AUTH_TOKEN_FILE */
        char *tls_ca_file;            /* TLS_CA_FILE */
        char *tls_cert_file;          /* TLS_CERT_FILE */
        char *tls_key_file;           /* TLS_KEY_FILE */
        bool allow_insecure_http;     /* ALLOW_INSECURE_HTTP false */
        unsigned request_timeout_s;   /* REQUEST_TIMEOUT_S 30 */
        unsigned connect_timeout_s;   /* CONNECT_TIMEOUT_S 10 */

        /* Batching */
        unsigned batch_size;          /* BATCH_SIZE 100 */
        unsigned batch_interval_s;    /* BATCH_INTERVAL_S 60 */
        size_t batch_max_bytes;       /* BATCH_MAX_BYTES 10485760 */
        unsigned max_in_flight;       /* MAX_IN_FLIGHT 2 */
        int compression_level;        /* COMPRESSION_LEVEL 6 (0-9) */

        /* Retry and circuit breaker */
        unsigned retry_max_attempts;  /* RETRY_MAX_ATTEMPTS 3 */
        double retry_backoff_multiplier; /* RETRY_BACKOFF_MULTIPLIER 2 */
        unsigned retry_max_delay_s;   /* RETRY_MAX_DELAY_S 300 */
        bool retry_jitter;            /* RETRY_JITTER false */
        unsigned circuit_failure_threshold; /* CIRCUIT_FAILURE_THRESHOLD 5 */
        unsigned circuit_reset_timeout_s;   /* CIRCUIT_RESET_TIMEOUT_S 60 */

        /* Process */
        int log_level;                /* LOG_LEVEL INFO, a syslog priority (LOG_INFO) */
        bool batch_timeline;          /* BATCH_TIMELINE false: log where each batch's time went */
        unsigned shutdown_timeout_s;  /* SHUTDOWN_TIMEOUT_S 20 */
        char *instance_id;            /* INSTANCE_ID, the host name by default */

        unsigned obsolete;            /* not a setting: the obsolete ones given (config_obsolete_names()) */
} Config;

/* Where the settings come from. Any member may be NULL. */
typedef struct ConfigSources {
        const char *file_text;        /* contents of the configuration file */
        const char *file_name;        /* for messages: "…/transmitter.conf:12: …" */
        char *const *environ;         /* NAME=value strings; only TRANSMITTER_* are read */
        const char *credentials_dir;  /* $CREDENTIALS_DIRECTORY: file "auth-token" is read from it */
        const char *hostname;         /* default of INSTANCE_ID */
} ConfigSources;

/* File syntax: KEY=VALUE lines with the full TRANSMITTER_ names, surrounding whitespace and
 * one pair of matching quotes around the value dropped, '#' lines and blank lines ignored
 * (no comments after a value). A line without '=' or an unknown key is an error naming
 * file:line; so is a bad value given in the file. In the environment only TRANSMITTER_*
 * variables are read, and unknown ones are ignored (see config_unknown_env()).
 * An empty AUTH_TOKEN, AUTH_TOKEN_FILE or TLS_* means unset; an empty INSTANCE_ID means the
 * default. Every other setting must not be empty. An obsolete setting (MIGRATIONS_DIR) is
 * accepted in the file and the environment with any value, and ignored.
 * Token: AUTH_TOKEN when not empty, else the contents of AUTH_TOKEN_FILE, else the
 * credential CONFIG_CREDENTIAL_AUTH_TOKEN in credentials_dir when it exists; surrounding
 * whitespace is stripped from files, and a token holding a control character is refused.
 *
 * On failure returns -EINVAL (or -ENOMEM) and writes one line into error (CONFIG_ERROR_MAX),
 * naming the variable, the value and what is accepted, e.g.
 * "TRANSMITTER_BATCH_SIZE=abc: not a number (accepted: 1-100000)". Secrets are never
 * echoed in an error: the value of AUTH_TOKEN is shown as "***" and URL passwords redacted. */
int config_load(const ConfigSources *sources, Config *ret, char error[static CONFIG_ERROR_MAX]);
void config_done(Config *c);

/* The prefetch count actually used (RABBITMQ_PREFETCH, or its computed default). */
unsigned config_prefetch(const Config *c);

/* The effective configuration as KEY=VALUE lines (full TRANSMITTER_ names), secrets shown
 * as "***" when set, URL passwords redacted. Returns a malloc'd string. */
char *config_format(const Config *c);

/* The names (without prefix) of every setting, in documentation order, NULL-terminated. */
extern const char *const config_setting_names[];

const char *queue_type_to_string(QueueType t);

/* Whether a reload (SIGHUP) can apply a change of this setting (name with or without the
 * prefix); false for unknown names. */
bool config_setting_reloadable(const char *name);

/* Compares the running configuration with a freshly loaded one (SIGHUP). A reload applies
 * changes of the token, batching, retry, circuit breaker, log level, compression and
 * timeouts; the broker, database, destination and TLS, queue names, listen address,
 * prefetch and instance change only at a restart. The changed settings of the second kind
 * are listed in restart: full TRANSMITTER_ names separated by ", ", "" when none, truncated
 * to restart_size; restart may be NULL. RABBITMQ_PREFETCH counts as changed when the
 * prefetch in effect changes (config_prefetch()), so also when BATCH_SIZE or MAX_IN_FLIGHT
 * change with RABBITMQ_PREFETCH=0. Values are never shown.
 * Returns the number of changes needing a restart. */
unsigned config_reload_check(const Config *old_config, const Config *new_config, char *restart,
                             size_t restart_size);
/* The same, also listing the changed settings a reload applies in live (may be NULL). */
unsigned config_reload_diff(const Config *old_config, const Config *new_config, char *live, size_t live_size,
                            char *restart, size_t restart_size);

/* Sets every setting of c that only a restart changes to its value in running, so that a
 * reloaded configuration can replace the running one; the prefetch in effect is kept too.
 * -ENOMEM leaves c as it was. */
int config_copy_restart_settings(Config *c, const Config *running);

/* The obsolete settings the configuration gave (ignored; the daemon warns about them): their full
 * names, each with why it went, separated by ", " into ret_names (truncated to size; may be NULL).
 * Returns how many there are. */
unsigned config_obsolete_names(const Config *c, char *ret_names, size_t size);

/* TRANSMITTER_* variables in env that are no setting nor an obsolete one (typos the daemon warns about):
 * their names separated by ", " into ret_names (truncated to size; may be NULL). Returns
 * how many there are. */
unsigned config_unknown_env(char *const *env, char *ret_names, size_t size);

