/* What the AMQP test tools (tests/env/publish.c, tests/integration/amqp-get.c,
 * tests/bench/ceiling.c) share: dying with one line, the monotonic clock, the text of an RPC
 * reply, and connect + login + channel.open from a URL.
 *
 * Header-only so that each tool stays one gcc command away:
 *   gcc -std=c11 -O2 -Wall -Wextra -Werror -I tests/env -o TOOL TOOL.c \
 *       $(pkg-config --cflags --libs librabbitmq)
 * No project headers: the tools test the daemon from outside, with code of their own.
 *
 * Before including it, a tool defines AMQP_TOOL_NAME (its name in error lines). */
#pragma once

#ifndef AMQP_TOOL_NAME
#error "define AMQP_TOOL_NAME before including amqp-tool.h"
#endif

#include <amqp.h>
#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#define CHANNEL 1 /* the one channel each tool uses */

_Noreturn __attribute__((format(printf, 1, 2))) static void die(const char *fmt, ...) {
        va_list ap;

        fputs(AMQP_TOOL_NAME ": error: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        exit(1);
}

/* CLOCK_MONOTONIC, the clock Python's time.monotonic() reads, so callers can line times up. */
static inline double monotonic_s(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static inline const char *amqp_reply_text(amqp_rpc_reply_t r, char *buf, size_t n) {
        switch (r.reply_type) {
        case AMQP_RESPONSE_NORMAL:
                snprintf(buf, n, "ok");
                break;
        case AMQP_RESPONSE_NONE:
                snprintf(buf, n, "missing RPC reply");
                break;
        case AMQP_RESPONSE_LIBRARY_EXCEPTION:
                snprintf(buf, n, "%s", amqp_error_string2(r.library_error));
                break;
        case AMQP_RESPONSE_SERVER_EXCEPTION:
                if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
                        const amqp_connection_close_t *m = r.reply.decoded;
                        snprintf(buf, n, "connection closed by broker: %u %.*s", m->reply_code,
                                 (int) m->reply_text.len, (const char *) m->reply_text.bytes);
                } else if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
                        const amqp_channel_close_t *m = r.reply.decoded;
                        snprintf(buf, n, "channel closed by broker: %u %.*s", m->reply_code,
                                 (int) m->reply_text.len, (const char *) m->reply_text.bytes);
                } else
                        snprintf(buf, n, "broker error, method 0x%08X", r.reply.id);
                break;
        }
        return buf;
}

/* Dies unless the last RPC on conn succeeded. */
static inline void check_rpc(amqp_connection_state_t conn, const char *what) {
        char buf[512];
        amqp_rpc_reply_t r = amqp_get_rpc_reply(conn);

        if (r.reply_type != AMQP_RESPONSE_NORMAL)
                die("%s: %s", what, amqp_reply_text(r, buf, sizeof buf));
}

struct amqp_tool_connect_options {
        const char *cacert;                /* amqps://: extra CA file; NULL: the system's */
        const struct timeval *rpc_timeout; /* NULL: RPCs wait as long as it takes */
        bool allow_tls;                    /* false: amqps:// is refused */
};

/* Connects to url, logs in (frame_max 131072 as the daemon asks, no heartbeats: the tools are
 * never idle for long) and opens CHANNEL; dies with a line saying why if any step fails. */
static inline amqp_connection_state_t amqp_tool_connect(const char *url, const struct amqp_tool_connect_options *o) {
        struct amqp_connection_info ci;
        struct timeval connect_timeout = {.tv_sec = 10};
        char buf[512];
        char *copy = strdup(url); /* amqp_parse_url() points ci into it */
        int r;

        if (!copy)
                die("out of memory");
        amqp_default_connection_info(&ci);
        r = amqp_parse_url(copy, &ci);
        if (r != AMQP_STATUS_OK)
                die("bad --url: %s", amqp_error_string2(r));
        /* amqp_parse_url() turns "amqp://host:5672/" into vhost "" (AMQP URI spec), but the product's
         * default URL ends in "/" and means the default vhost, as pika and the Python service read it. */
        if (ci.vhost[0] == '\0')
                ci.vhost = "/";
        if (ci.ssl && !o->allow_tls)
                die("amqps:// is not supported by this tool");

        amqp_connection_state_t conn = amqp_new_connection();
        amqp_socket_t *sock;
        if (!conn)
                die("out of memory");
        if (ci.ssl) {
                sock = amqp_ssl_socket_new(conn);
                if (!sock)
                        die("cannot create TLS socket");
                if (o->cacert && amqp_ssl_socket_set_cacert(sock, o->cacert) != AMQP_STATUS_OK)
                        die("cannot load CA %s", o->cacert);
                amqp_ssl_socket_set_verify_peer(sock, 1);
                amqp_ssl_socket_set_verify_hostname(sock, 1);
        } else {
                sock = amqp_tcp_socket_new(conn);
                if (!sock)
                        die("cannot create socket");
        }
        r = amqp_socket_open_noblock(sock, ci.host, ci.port, &connect_timeout);
        if (r != AMQP_STATUS_OK)
                die("cannot connect to %s:%d: %s", ci.host, ci.port, amqp_error_string2(r));
        if (o->rpc_timeout && amqp_set_rpc_timeout(conn, o->rpc_timeout) != AMQP_STATUS_OK)
                die("cannot set the RPC timeout");
        amqp_rpc_reply_t lr = amqp_login(conn, ci.vhost, 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, ci.user, ci.password);
        if (lr.reply_type != AMQP_RESPONSE_NORMAL)
                die("login to %s:%d as %s failed: %s", ci.host, ci.port, ci.user, amqp_reply_text(lr, buf, sizeof buf));
        amqp_channel_open(conn, CHANNEL);
        check_rpc(conn, "channel.open");
        free(copy);
        return conn;
}
