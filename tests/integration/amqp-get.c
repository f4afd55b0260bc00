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
 * (manual ack) and handed back (basic.nack, requeue) in the order they came, which keeps their
 * order in a classic and in a quorum queue alike (see return_held()). With --ack they are acked
 * (removed).
 *
 * Build: gcc -std=c11 -O2 -Wall -Wextra -Werror -I tests/env -o amqp-get tests/integration/amqp-get.c \
 *        $(pkg-config --cflags --libs librabbitmq)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#define AMQP_TOOL_NAME "amqp-get"
#include "amqp-tool.h"

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

static int64_t ready_count(amqp_connection_state_t conn, const char *queue) {
        amqp_queue_declare_ok_t *ok =
                amqp_queue_declare(conn, CHANNEL, amqp_cstring_bytes(queue), 1, 0, 0, 0, amqp_empty_table);
        return ok ? (int64_t) ok->message_count : -1;
}

/* As src/amqp/dead-letter-queue.c does: basic.nack (requeue) in the order fetched, 32 at a time,
 * each window once the queue counts the one before as ready again: a quorum queue keeps the
 * order of at most 32 returns on their way, and puts a closed channel's messages back in any
 * order. */
static void return_held(amqp_connection_state_t conn, const char *queue, const uint64_t *held, uint64_t count) {
        int64_t ready = count > 32 ? ready_count(conn, queue) : 0;

        for (uint64_t i = 0; i < count; i += 32) {
                uint64_t n = count - i < 32 ? count - i : 32;

                for (uint64_t j = i; j < i + n; j++)
                        if (amqp_basic_nack(conn, CHANNEL, held[j], 0, 1) != AMQP_STATUS_OK)
                                die("basic.nack failed");
                if (i + n == count)
                        break;
                for (int tries = 0; tries < 5000 && ready_count(conn, queue) < ready + (int64_t) n; tries++)
                        usleep(1000);
                ready += (int64_t) n;
        }
}

static void usage(FILE *f) {
        fputs("usage: amqp-get --url URL --queue NAME [--max N] [--body-max BYTES] [--ack]\n", f);
}

/* amqp_read_message() without its amqp_table_clone(), which refuses a header with an empty name
 * (test_fault_headers.py publishes one): the properties stay in the connection's pool until
 * amqp_maybe_release_buffers(), the body is malloc()ed. */
static void read_message(amqp_connection_state_t conn, const amqp_basic_properties_t **ret_properties,
                         uint8_t **ret_body, size_t *ret_len) {
        amqp_frame_t frame;
        uint8_t *body;
        size_t size, got = 0;

        if (amqp_simple_wait_frame(conn, &frame) != AMQP_STATUS_OK || frame.frame_type != AMQP_FRAME_HEADER)
                die("reading a message: no content header");
        *ret_properties = frame.payload.properties.decoded;
        size = (size_t) frame.payload.properties.body_size;
        body = malloc(size > 0 ? size : 1);
        if (!body)
                die("out of memory");
        while (got < size) {
                if (amqp_simple_wait_frame(conn, &frame) != AMQP_STATUS_OK || frame.frame_type != AMQP_FRAME_BODY ||
                    frame.payload.body_fragment.len > size - got)
                        die("reading a message: bad body frame");
                memcpy(body + got, frame.payload.body_fragment.bytes, frame.payload.body_fragment.len);
                got += frame.payload.body_fragment.len;
        }
        *ret_body = body;
        *ret_len = size;
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
        const struct timeval rpc_timeout = {.tv_sec = 10};
        amqp_connection_state_t conn;
        char buf[512];
        uint64_t count = 0, *held = NULL;
        int c;

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

        conn = amqp_tool_connect(url_arg, &(struct amqp_tool_connect_options){.rpc_timeout = &rpc_timeout});

        while (count < max) {
                amqp_rpc_reply_t gr = amqp_basic_get(conn, CHANNEL, amqp_cstring_bytes(queue), 0);
                const amqp_basic_get_ok_t *ok;
                const amqp_basic_properties_t *p;
                uint8_t *body;
                size_t body_len;

                if (gr.reply_type != AMQP_RESPONSE_NORMAL)
                        die("basic.get from %s: %s", queue, amqp_reply_text(gr, buf, sizeof buf));
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
                        read_message(conn, &p, &body, &body_len);
                        if (ack && amqp_basic_ack(conn, CHANNEL, tag, 0) != AMQP_STATUS_OK)
                                die("basic.ack failed");
                        if (!ack) {
                                held = realloc(held, (count + 1) * sizeof *held);
                                if (!held)
                                        die("out of memory");
                                held[count] = tag;
                        }
                }
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
                printf(",\"body_len\":%zu,\"body\":", body_len);
                put_string(body, body_len < body_max ? body_len : (size_t) body_max);
                printf("}\n");
                free(body);
                amqp_maybe_release_buffers(conn);
                count++;
        }
        printf("{\"count\":%" PRIu64 "}\n", count);
        fflush(stdout);

        /* Unacked messages go back to the queue in order; channel.close-ok comes after the nacks. */
        if (!ack)
                return_held(conn, queue, held, count);
        free(held);
        amqp_channel_close(conn, CHANNEL, AMQP_REPLY_SUCCESS);
        amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
        amqp_destroy_connection(conn);
        return 0;
}
