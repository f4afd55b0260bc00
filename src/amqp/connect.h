/* SPDX-License-Identifier: MIT */
#pragma once

/* Opening a connection to one broker node, and the words for what an RPC answered: shared by
 * the AMQP thread (amqp/session.c) and the dead-letters command (amqp/dead-letter-queue.c).
 * Blocking, as rabbitmq-c is: never call it on the event loop. Private to src/amqp. */

#include <amqp.h>

#include "core/broker-url.h"

#define BROKER_FRAME_MAX 131072

typedef struct BrokerConnectSettings {
        const char *ca_file;         /* amqps:// trust anchors; NULL: the system's */
        unsigned connect_timeout_s;  /* TCP, TLS and AMQP handshake */
        unsigned rpc_timeout_s;      /* every RPC afterwards */
        unsigned heartbeat_s;
        const char *connection_name; /* shown in the broker's UI */
        bool consumer;               /* asks for basic.cancel and connection.blocked notifications */
} BrokerConnectSettings;

/* Opens the socket (TLS with peer and host name verification for amqps://) of conn to url.
 * -ECONNREFUSED when the node cannot be reached (the next node may); error says why. */
int broker_open_socket(amqp_connection_state_t conn, const BrokerUrl *url, const BrokerConnectSettings *s,
                       char *error, size_t size);

/* Logs in with url's credentials and vhost: -EACCES, error saying why, when refused. */
int broker_login(amqp_connection_state_t conn, const BrokerUrl *url, const BrokerConnectSettings *s, char *error,
                 size_t size);

/* "what: why" for an RPC reply that is not normal: a library error, or the broker's close. */
void rpc_reply_format(amqp_rpc_reply_t reply, const char *what, char *buf, size_t size);
bool rpc_reply_is_channel_close(amqp_rpc_reply_t reply, uint16_t code);
