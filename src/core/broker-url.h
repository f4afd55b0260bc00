/* SPDX-License-Identifier: MIT */
#pragma once

/* The broker's URLs: RABBITMQ_URL is a comma-separated list of AMQP URIs (architecture §10). Pure, so
 * that the configuration checks a list with the very parser the AMQP thread connects with (the
 * core may not link rabbitmq-c). Owns parsing only: which URL is used when is the consumer's.
 *
 * One URL is read as rabbitmq-c 0.11's amqp_parse_url() reads it:
 *   amqp://[user[:password]@]host[:port][/vhost]   or   amqps://...
 * - scheme exactly "amqp://" (port 5672) or "amqps://" (port 5671, TLS), in lower case;
 * - user, password, host, port and vhost are percent-decoded; a userinfo without ':' keeps the
 *   password "guest", a URL without userinfo is user "guest", password "guest";
 * - host: a name or IPv4 address, or an IPv6 address in brackets ("[::1]", brackets dropped);
 * - vhost: everything after the first '/', which must hold no further '/', ':' or '@' (write
 *   them as %2F, %3A, %40); no '/' or nothing after it means the default vhost "/" (the AMQP URI
 *   spec makes "amqp://host/" the vhost "", which no broker has: every operator means "/");
 * - a ':' or '@' in the user name or password, and any '?', '#', '[' or ']' outside an IPv6
 *   host, are refused: percent-encode them.
 * Stricter than rabbitmq-c: an empty host (it takes "localhost"), port 0, "%00", spaces and
 * control characters are refused; and
 * percent-encoded bytes 0x80-0xff (UTF-8 passwords) are accepted, which rabbitmq-c refuses.
 *
 * The list: items separated by ',' (write a ',' inside an item as %2C), blanks around an item
 * ignored, no empty item, all amqp:// or all amqps://. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BROKER_URL_PORT_AMQP 5672
#define BROKER_URL_PORT_AMQPS 5671
#define BROKER_URL_LIST_MAX 64

typedef struct BrokerUrl {
        bool tls;       /* amqps:// */
        char *user;     /* decoded, never NULL */
        char *password; /* decoded, never NULL; erased when freed */
        char *host;     /* decoded, without the brackets of an IPv6 address */
        uint16_t port;
        char *vhost;    /* decoded, "/" when the URL names none */
        char *shown;    /* the item as written, its password hidden (url_redact()): what logs, stats and
                         * metrics show; set by broker_url_list_parse() only, NULL otherwise */
} BrokerUrl;

typedef struct BrokerUrlList {
        BrokerUrl *urls;
        size_t n;
} BrokerUrlList;

/* Parses one URL of n bytes at text. 0; -EINVAL with *ret_problem (may be NULL) set to a
 * static description of what is wrong, which never quotes the text; -ENOMEM. */
int broker_url_parse(const char *text, size_t n, BrokerUrl *ret, const char **ret_problem);
void broker_url_done(BrokerUrl *u);

/* Parses a whole list, each URL with its shown form. On -EINVAL, *ret_index (may be NULL) is the
 * 0-based position of the item that is wrong (or, for mixed schemes, of the first that differs
 * from the first item) and *ret_problem says what is wrong. */
int broker_url_list_parse(const char *text, BrokerUrlList *ret, size_t *ret_index, const char **ret_problem);
void broker_url_list_done(BrokerUrlList *l);

/* A copy of the index-th item of a list as written, blanks around it dropped (for messages:
 * redact it before showing it). NULL when there is no such item or on ENOMEM. */
char *broker_url_list_item(const char *text, size_t index);
