/* amqp-get: prints the messages of a RabbitMQ queue as JSON lines, with their headers, for the
 * integration tests (Python here has no AMQP client; rabbitmqctl shows counts, not headers).
 *
 *   amqp-get --url amqp://discovery:discovery@127.0.0.1:5672/ --queue transmitter.approved.dead
 *            [--max N] [--body-max BYTES] [--ack]
 *
 * One line per message, in queue order:
 *   {"exchange":"...","routing_key":"...","redelivered":false,"content_type":"application/json",
 *    "headers":{"x-transmitter-reason":"http_400","x-transmitter-http-status":400,...},
 *    "body_len":1234,"body":"<the first --body-max bytes (default 65536), each byte as one char>"}
 * then a last line {"count":N}. Bytes of the body that are not printable ASCII are written as
 * \u00XX, so a reader gets the raw bytes back with s.encode("latin-1").
 *
 * Without --ack (the default) nothing is taken away: the messages are fetched with basic.get
 * (manual ack) and go back to the queue, in their order, when the channel closes. With --ack
 * they are acked (removed).
 *
 * Build: gcc -std=c11 -O2 -Wall -Wextra -Werror -o amqp-get amqp-get.c $(pkg-config --cflags --libs librabbitmq)
 * Single file on purpose (a test helper): no project headers.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#define CHANNEL 1

_Noreturn static void die(const char *fmt, ...) {
        va_list ap;

        fputs("amqp-get: error: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        exit(1);
}

static const char *reply_text(amqp_rpc_reply_t r, char *buf, size_t n) {
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
                        snprintf(buf, n, "connection closed: %u %.*s", m->reply_code, (int) m->reply_text.len,
                                 (const char *) m->reply_text.bytes);
                } else if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
                        const amqp_channel_close_t *m = r.reply.decoded;
                        snprintf(buf, n, "channel closed: %u %.*s", m->reply_code, (int) m->reply_text.len,
                                 (const char *) m->reply_text.bytes);
                } else
                        snprintf(buf, n, "unexpected method 0x%08x", r.reply.id);
                break;
        }
        return buf;
}

static void check(amqp_connection_state_t conn, const char *what) {
        char buf[512];
        amqp_rpc_reply_t r = amqp_get_rpc_reply(conn);

        if (r.reply_type != AMQP_RESPONSE_NORMAL)
                die("%s: %s", what, reply_text(r, buf, sizeof buf));
}

static void put_string(const void *data, size_t len) {
        const unsigned char *p = data;

        putchar('"');
        for (size_t i = 0; i < len; i++) {
                unsigned char c = p[i];

                if (c == '"' || c == '\\')
                        printf("\\%c", c);
                else if (c >= 0x20 && c < 0x7f)
                        putchar(c);
                else
                        printf("\\u%04x", c);
        }
        putchar('"');
}

static void put_value(const amqp_field_value_t *v);

static void put_table(const amqp_table_t *t) {
        putchar('{');
        for (int i = 0; i < t->num_entries; i++) {
                if (i)
                        putchar(',');
                put_string(t->entries[i].key.bytes, t->entries[i].key.len);
                putchar(':');
                put_value(&t->entries[i].value);
        }
        putchar('}');
}

static void put_value(const amqp_field_value_t *v) {
        switch (v->kind) {
        case AMQP_FIELD_KIND_BOOLEAN:
                fputs(v->value.boolean ? "true" : "false", stdout);
                break;
        case AMQP_FIELD_KIND_I8:
                printf("%d", v->value.i8);
                break;
        case AMQP_FIELD_KIND_U8:
                printf("%u", v->value.u8);
                break;
        case AMQP_FIELD_KIND_I16:
                printf("%d", v->value.i16);
                break;
        case AMQP_FIELD_KIND_U16:
                printf("%u", v->value.u16);
                break;
        case AMQP_FIELD_KIND_I32:
                printf("%" PRId32, v->value.i32);
                break;
        case AMQP_FIELD_KIND_U32:
                printf("%" PRIu32, v->value.u32);
                break;
        case AMQP_FIELD_KIND_I64:
                printf("%" PRId64, v->value.i64);
                break;
        case AMQP_FIELD_KIND_U64:
        case AMQP_FIELD_KIND_TIMESTAMP:
                printf("%" PRIu64, v->value.u64);
                break;
        case AMQP_FIELD_KIND_F32:
                printf("%g", (double) v->value.f32);
                break;
        case AMQP_FIELD_KIND_F64:
                printf("%g", v->value.f64);
                break;
        case AMQP_FIELD_KIND_UTF8:
        case AMQP_FIELD_KIND_BYTES:
                put_string(v->value.bytes.bytes, v->value.bytes.len);
                break;
        case AMQP_FIELD_KIND_TABLE:
                put_table(&v->value.table);
                break;
        case AMQP_FIELD_KIND_ARRAY:
                putchar('[');
                for (int i = 0; i < v->value.array.num_entries; i++) {
                        if (i)
                                putchar(',');
                        put_value(&v->value.array.entries[i]);
                }
                putchar(']');
                break;
        default:
                fputs("null", stdout);
                break;
        }
}

static void usage(FILE *f) {
        fputs("usage: amqp-get --url URL --queue NAME [--max N] [--body-max BYTES] [--ack]\n", f);
}

int main(int argc, char **argv) {
        static const struct option options[] = {
                { "url", required_argument, NULL, 'u' },      { "queue", required_argument, NULL, 'q' },
                { "max", required_argument, NULL, 'm' },      { "body-max", required_argument, NULL, 'b' },
                { "ack", no_argument, NULL, 'a' },            { "help", no_argument, NULL, 'h' },
                { 0 },
        };
        const char *url_arg = getenv("RABBITMQ_URL"), *queue = NULL;
        unsigned long long max = ULLONG_MAX, body_max = 65536;
        bool ack = false;
        struct amqp_connection_info ci;
        amqp_connection_state_t conn;
        amqp_socket_t *sock;
        struct timeval tv = { .tv_sec = 10 };
        char buf[512], *url;
        uint64_t count = 0;
        int c, r;

        while ((c = getopt_long(argc, argv, "", options, NULL)) >= 0)
                switch (c) {
                case 'u':
                        url_arg = optarg;
                        break;
                case 'q':
                        queue = optarg;
                        break;
                case 'm':
                        max = strtoull(optarg, NULL, 10);
                        break;
                case 'b':
                        body_max = strtoull(optarg, NULL, 10);
                        break;
                case 'a':
                        ack = true;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
        if (!url_arg || !queue) {
                usage(stderr);
                return 2;
        }

        url = strdup(url_arg);
        if (!url)
                die("out of memory");
        amqp_default_connection_info(&ci);
        r = amqp_parse_url(url, &ci);
        if (r != AMQP_STATUS_OK)
                die("bad --url: %s", amqp_error_string2(r));
        if (ci.ssl)
                die("amqps:// is not supported by this helper");
        /* "amqp://host/" is vhost "" by the letter of the AMQP URI spec; everyone means "/". */
        if (ci.vhost[0] == '\0')
                ci.vhost = "/";

        conn = amqp_new_connection();
        sock = amqp_tcp_socket_new(conn);
        if (!sock)
                die("cannot create socket");
        r = amqp_socket_open_noblock(sock, ci.host, ci.port, &tv);
        if (r != AMQP_STATUS_OK)
                die("cannot connect to %s:%d: %s", ci.host, ci.port, amqp_error_string2(r));
        (void) amqp_set_rpc_timeout(conn, &tv);
        {
                amqp_rpc_reply_t lr = amqp_login(conn, ci.vhost, 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, ci.user,
                                                 ci.password);
                if (lr.reply_type != AMQP_RESPONSE_NORMAL)
                        die("login: %s", reply_text(lr, buf, sizeof buf));
        }
        amqp_channel_open(conn, CHANNEL);
        check(conn, "channel.open");

        while (count < max) {
                amqp_rpc_reply_t gr = amqp_basic_get(conn, CHANNEL, amqp_cstring_bytes(queue), 0);
                const amqp_basic_get_ok_t *ok;
                const amqp_basic_properties_t *p;
                amqp_message_t m;

                if (gr.reply_type != AMQP_RESPONSE_NORMAL)
                        die("basic.get from %s: %s", queue, reply_text(gr, buf, sizeof buf));
                if (gr.reply.id == AMQP_BASIC_GET_EMPTY_METHOD)
                        break;
                if (gr.reply.id != AMQP_BASIC_GET_OK_METHOD)
                        die("basic.get: unexpected method 0x%08x", gr.reply.id);
                ok = gr.reply.decoded;

                /* The method lives in the connection's pool, which reading the body reuses. */
                printf("{\"exchange\":");
                put_string(ok->exchange.bytes, ok->exchange.len);
                printf(",\"routing_key\":");
                put_string(ok->routing_key.bytes, ok->routing_key.len);
                printf(",\"redelivered\":%s", ok->redelivered ? "true" : "false");
                {
                        uint64_t tag = ok->delivery_tag;
                        gr = amqp_read_message(conn, CHANNEL, &m, 0);
                        if (gr.reply_type != AMQP_RESPONSE_NORMAL)
                                die("reading a message: %s", reply_text(gr, buf, sizeof buf));
                        if (ack && amqp_basic_ack(conn, CHANNEL, tag, 0) != AMQP_STATUS_OK)
                                die("basic.ack failed");
                }
                p = &m.properties;
                printf(",\"content_type\":");
                if (p->_flags & AMQP_BASIC_CONTENT_TYPE_FLAG)
                        put_string(p->content_type.bytes, p->content_type.len);
                else
                        fputs("null", stdout);
                printf(",\"delivery_mode\":%u", (p->_flags & AMQP_BASIC_DELIVERY_MODE_FLAG) ? p->delivery_mode : 0);
                printf(",\"headers\":");
                if (p->_flags & AMQP_BASIC_HEADERS_FLAG)
                        put_table(&p->headers);
                else
                        fputs("{}", stdout);
                printf(",\"body_len\":%zu,\"body\":", m.body.len);
                put_string(m.body.bytes, m.body.len < body_max ? m.body.len : (size_t) body_max);
                printf("}\n");
                amqp_destroy_message(&m);
                amqp_maybe_release_buffers(conn);
                count++;
        }
        printf("{\"count\":%" PRIu64 "}\n", count);
        fflush(stdout);

        /* Unacked messages go back to the queue, in order, with the channel. */
        amqp_channel_close(conn, CHANNEL, AMQP_REPLY_SUCCESS);
        amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
        amqp_destroy_connection(conn);
        free(url);
        return 0;
}
