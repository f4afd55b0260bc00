/* ceiling: the fastest a consumer can drain a queue from this broker (rabbitmq-c 0.11).
 *
 *   ceiling --url amqp://discovery:discovery@127.0.0.1:5672/ --queue Q --count N \
 *           [--prefetch P] [--ack-every K] [--idle-timeout S]
 *
 * The benchmark's ceiling (issue 7): a bare consumer with what the transmitter has to do at
 * the least -- manual acks, the same prefetch window, acks with multiple=true -- and nothing
 * else: frames are read straight from rabbitmq-c's frame pool, bodies are counted but neither
 * copied nor parsed, one ack (multiple=true) goes out every K deliveries and after the last one.
 * It stops after N deliveries (or S seconds without one) and prints one JSON line:
 *
 *   {"received":N,"bytes":B,"t_start":T0,"t_consume":T1,"t_first":T2,"t_last":T3,"seconds":T3-T0,
 *    "events_per_s":..,"utime_s":..,"stime_s":..,"acks":..}
 *
 * Times are CLOCK_MONOTONIC seconds, the clock Python's time.monotonic() reads, so the caller can
 * line them up with its own. `seconds` runs from the start of the program (connect and login
 * included, as the transmitter's figure includes its start) to the last ack written.
 *
 * Build: gcc -std=c11 -O2 -Wall -Wextra -Werror -I tests/env -o ceiling tests/bench/ceiling.c \
 *        $(pkg-config --cflags --libs librabbitmq)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <time.h>

#define AMQP_TOOL_NAME "ceiling"
#include "amqp-tool.h"

static uint64_t parse_u64(const char *opt, const char *s) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno || end == s || *end || s[0] == '-')
                die("%s: not a non-negative integer: %s", opt, s);
        return (uint64_t) v;
}

static void usage(FILE *f) {
        fputs("usage: ceiling --queue Q --count N [options]\n"
              "  --url URL            amqp://user:pass@host:port/vhost (default $RABBITMQ_URL)\n"
              "  --queue Q            queue to drain (must exist)\n"
              "  --count N            stop after N deliveries\n"
              "  --prefetch P         basic.qos prefetch count (default 300)\n"
              "  --ack-every K        one multiple=true ack every K deliveries (default 100)\n"
              "  --idle-timeout S     give up after S seconds without a delivery (default 30)\n",
              f);
}

int main(int argc, char **argv) {
        const double t_start = monotonic_s();
        const char *url_arg = getenv("RABBITMQ_URL"), *queue = NULL;
        uint64_t count = 0, prefetch = 300, ack_every = 100, idle_timeout = 30;
        enum { O_URL = 256, O_QUEUE, O_COUNT, O_PREFETCH, O_ACK_EVERY, O_IDLE, O_HELP };
        static const struct option longopts[] = {
                {"url", required_argument, NULL, O_URL},
                {"queue", required_argument, NULL, O_QUEUE},
                {"count", required_argument, NULL, O_COUNT},
                {"prefetch", required_argument, NULL, O_PREFETCH},
                {"ack-every", required_argument, NULL, O_ACK_EVERY},
                {"idle-timeout", required_argument, NULL, O_IDLE},
                {"help", no_argument, NULL, O_HELP},
                {NULL, 0, NULL, 0},
        };
        int c;

        while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
                switch (c) {
                case O_URL: url_arg = optarg; break;
                case O_QUEUE: queue = optarg; break;
                case O_COUNT: count = parse_u64("--count", optarg); break;
                case O_PREFETCH: prefetch = parse_u64("--prefetch", optarg); break;
                case O_ACK_EVERY: ack_every = parse_u64("--ack-every", optarg); break;
                case O_IDLE: idle_timeout = parse_u64("--idle-timeout", optarg); break;
                case O_HELP: usage(stdout); return 0;
                default: usage(stderr); return 2;
                }
        }
        if (!queue || count == 0 || !url_arg) {
                usage(stderr);
                return 2;
        }
        if (prefetch == 0 || prefetch > 65535)
                die("--prefetch: 1..65535");
        if (ack_every == 0 || ack_every > prefetch)
                die("--ack-every: 1..prefetch (a larger K would stall the window)");

        /* No heartbeats (the run is short and never idle), no RPC timeout. */
        amqp_connection_state_t conn = amqp_tool_connect(url_arg, &(struct amqp_tool_connect_options){0});
        amqp_basic_qos(conn, CHANNEL, 0, (uint16_t) prefetch, 0);
        check_rpc(conn, "basic.qos");
        amqp_basic_consume(conn, CHANNEL, amqp_cstring_bytes(queue), amqp_empty_bytes, 0, 0, 0, amqp_empty_table);
        check_rpc(conn, "basic.consume");
        const double t_consume = monotonic_s();

        uint64_t received = 0, bytes = 0, last_tag = 0, acked_tag = 0, acks = 0;
        uint64_t body_left = 0; /* of the message being read */
        bool in_message = false;
        double t_first = 0, t_last = 0;

        while (received < count) {
                amqp_frame_t frame;
                struct timeval wait = {.tv_sec = (time_t) idle_timeout};

                amqp_maybe_release_buffers(conn);
                int r = amqp_simple_wait_frame_noblock(conn, &frame, &wait);
                if (r == AMQP_STATUS_TIMEOUT) {
                        fprintf(stderr, "ceiling: no delivery for %" PRIu64 " s after %" PRIu64 " of %" PRIu64 "\n",
                                idle_timeout, received, count);
                        break;
                }
                if (r != AMQP_STATUS_OK)
                        die("reading: %s (after %" PRIu64 " deliveries)", amqp_error_string2(r), received);

                bool complete = false;
                switch (frame.frame_type) {
                case AMQP_FRAME_METHOD:
                        if (frame.payload.method.id == AMQP_BASIC_DELIVER_METHOD) {
                                const amqp_basic_deliver_t *m = frame.payload.method.decoded;
                                last_tag = m->delivery_tag;
                                in_message = true;
                        } else if (frame.payload.method.id == AMQP_CHANNEL_CLOSE_METHOD ||
                                   frame.payload.method.id == AMQP_CONNECTION_CLOSE_METHOD)
                                die("closed by broker after %" PRIu64 " deliveries", received);
                        break;
                case AMQP_FRAME_HEADER:
                        if (in_message) {
                                body_left = frame.payload.properties.body_size;
                                complete = body_left == 0;
                        }
                        break;
                case AMQP_FRAME_BODY:
                        if (in_message) {
                                size_t n = frame.payload.body_fragment.len;
                                bytes += n;
                                body_left = n >= body_left ? 0 : body_left - n;
                                complete = body_left == 0;
                        }
                        break;
                default:
                        break;
                }
                if (!complete)
                        continue;

                in_message = false;
                received++;
                t_last = monotonic_s();
                if (received == 1)
                        t_first = t_last;
                if (last_tag - acked_tag >= ack_every || received == count) {
                        r = amqp_basic_ack(conn, CHANNEL, last_tag, 1);
                        if (r != AMQP_STATUS_OK)
                                die("ack: %s", amqp_error_string2(r));
                        acked_tag = last_tag;
                        acks++;
                }
        }
        if (acked_tag < last_tag) {
                (void) amqp_basic_ack(conn, CHANNEL, last_tag, 1);
                acks++;
        }
        const double t_end = monotonic_s();

        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        const double seconds = t_end - t_start;
        printf("{\"received\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"t_start\":%.6f,\"t_consume\":%.6f,\"t_first\":%.6f,"
               "\"t_last\":%.6f,\"t_end\":%.6f,\"seconds\":%.6f,\"events_per_s\":%.1f,\"utime_s\":%.3f,"
               "\"stime_s\":%.3f,\"acks\":%" PRIu64 ",\"prefetch\":%" PRIu64 ",\"ack_every\":%" PRIu64 "}\n",
               received, bytes, t_start, t_consume, t_first, t_last, t_end, seconds,
               seconds > 0 ? (double) received / seconds : 0.0,
               (double) ru.ru_utime.tv_sec + (double) ru.ru_utime.tv_usec / 1e6,
               (double) ru.ru_stime.tv_sec + (double) ru.ru_stime.tv_usec / 1e6, acks, prefetch, ack_every);
        fflush(stdout);

        /* Closing the channel first would requeue nothing (all acked); the broker gets a clean close. */
        (void) amqp_channel_close(conn, CHANNEL, AMQP_REPLY_SUCCESS);
        (void) amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
        amqp_destroy_connection(conn);
        return received == count ? 0 : 1;
}
