/* SPDX-License-Identifier: MIT */
#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>
#include <errno.h>
#include <stdio.h>
#include <sys/time.h>

#include "amqp/connect.h"
#include "version.h"

int broker_open_socket(amqp_connection_state_t conn, const BrokerUrl *url, const BrokerConnectSettings *s,
                       char *error, size_t size) {
        struct timeval tv = { .tv_sec = (time_t) s->connect_timeout_s };
        amqp_socket_t *socket;
        int status;

        if (url->tls) {
                socket = amqp_ssl_socket_new(conn);
                if (!socket) {
                        snprintf(error, size, "cannot create a TLS socket");
                        return -ENOMEM;
                }
                amqp_ssl_socket_set_verify_peer(socket, 1);
                amqp_ssl_socket_set_verify_hostname(socket, 1);
                if (s->ca_file && amqp_ssl_socket_set_cacert(socket, s->ca_file) != AMQP_STATUS_OK) {
                        snprintf(error, size, "cannot load the CA file %s", s->ca_file);
                        return -EINVAL;
                }
        } else {
                socket = amqp_tcp_socket_new(conn);
                if (!socket) {
                        snprintf(error, size, "cannot create a socket");
                        return -ENOMEM;
                }
        }

        (void) amqp_set_handshake_timeout(conn, &tv);
        status = amqp_socket_open_noblock(socket, url->host, url->port, &tv);
        if (status != AMQP_STATUS_OK) {
                snprintf(error, size, "%s:%u: %s", url->host, url->port, amqp_error_string2(status));
                return -ECONNREFUSED;
        }
        /* A frozen broker must not hold an RPC for ever. */
        tv.tv_sec = (time_t) (s->rpc_timeout_s > 0 ? s->rpc_timeout_s : s->connect_timeout_s);
        (void) amqp_set_rpc_timeout(conn, &tv);
        return 0;
}

int broker_login(amqp_connection_state_t conn, const BrokerUrl *url, const BrokerConnectSettings *s, char *error,
                 size_t size) {
        amqp_table_entry_t capabilities[2], properties[4];
        amqp_rpc_reply_t reply;
        size_t n = 0;

        /* consumer_cancel_notify: a deleted queue cancels us instead of leaving us idle for ever. */
        capabilities[0] = (amqp_table_entry_t) {
                .key = amqp_cstring_bytes("consumer_cancel_notify"),
                .value = { .kind = AMQP_FIELD_KIND_BOOLEAN, .value.boolean = 1 },
        };
        capabilities[1] = (amqp_table_entry_t) {
                .key = amqp_cstring_bytes("connection.blocked"),
                .value = { .kind = AMQP_FIELD_KIND_BOOLEAN, .value.boolean = 1 },
        };
        if (s->consumer)
                properties[n++] = (amqp_table_entry_t) {
                        .key = amqp_cstring_bytes("capabilities"),
                        .value = { .kind = AMQP_FIELD_KIND_TABLE,
                                   .value.table = { .num_entries = 2, .entries = capabilities } },
                };
        properties[n++] = (amqp_table_entry_t) {
                .key = amqp_cstring_bytes("connection_name"),
                .value = { .kind = AMQP_FIELD_KIND_UTF8, .value.bytes = amqp_cstring_bytes(s->connection_name) },
        };
        properties[n++] = (amqp_table_entry_t) {
                .key = amqp_cstring_bytes("product"),
                .value = { .kind = AMQP_FIELD_KIND_UTF8, .value.bytes = amqp_cstring_bytes("transmitter") },
        };
        properties[n++] = (amqp_table_entry_t) {
                .key = amqp_cstring_bytes("version"),
                .value = { .kind = AMQP_FIELD_KIND_UTF8, .value.bytes = amqp_cstring_bytes(TRANSMITTER_VERSION) },
        };

        reply = amqp_login_with_properties(conn, url->vhost, 0, BROKER_FRAME_MAX, (int) s->heartbeat_s,
                                           &(amqp_table_t) { .num_entries = (int) n, .entries = properties },
                                           AMQP_SASL_METHOD_PLAIN, url->user, url->password);
        if (reply.reply_type != AMQP_RESPONSE_NORMAL) {
                char what[300];

                snprintf(what, sizeof what, "login to %s:%u as %s", url->host, url->port, url->user);
                rpc_reply_format(reply, what, error, size);
                return -EACCES;
        }
        return 0;
}

void rpc_reply_format(amqp_rpc_reply_t reply, const char *what, char *buf, size_t size) {
        switch (reply.reply_type) {
        case AMQP_RESPONSE_NORMAL:
                snprintf(buf, size, "%s: ok", what);
                break;
        case AMQP_RESPONSE_NONE:
                snprintf(buf, size, "%s: no reply", what);
                break;
        case AMQP_RESPONSE_LIBRARY_EXCEPTION:
                snprintf(buf, size, "%s: %s", what, amqp_error_string2(reply.library_error));
                break;
        case AMQP_RESPONSE_SERVER_EXCEPTION:
                if (reply.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
                        const amqp_connection_close_t *m = reply.reply.decoded;
                        snprintf(buf, size, "%s: connection closed by broker: %u %.*s", what, m->reply_code,
                                 (int) m->reply_text.len, (const char *) m->reply_text.bytes);
                } else if (reply.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
                        const amqp_channel_close_t *m = reply.reply.decoded;
                        snprintf(buf, size, "%s: channel closed by broker: %u %.*s", what, m->reply_code,
                                 (int) m->reply_text.len, (const char *) m->reply_text.bytes);
                } else
                        snprintf(buf, size, "%s: unexpected broker method 0x%08x", what, reply.reply.id);
                break;
        }
}

bool rpc_reply_is_channel_close(amqp_rpc_reply_t reply, uint16_t code) {
        return reply.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION && reply.reply.id == AMQP_CHANNEL_CLOSE_METHOD &&
               ((const amqp_channel_close_t *) reply.reply.decoded)->reply_code == code;
}
