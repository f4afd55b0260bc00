/* publish: a fast test publisher of CloudEvents to RabbitMQ (rabbitmq-c 0.11), with publisher confirms.
 *
 *   publish --url amqp://discovery:discovery@127.0.0.1:5672/ --count 10000 --rate 0 \
 *           --declare-queue transmitter.approved --id-prefix run1
 *
 * Events are CloudEvents 1.0 JSON, 300 B .. 4 KiB (mean about 1 KiB), ids PREFIX-000001..., routing
 * keys approved.server / approved.database / approved.application in turn, data.published_at_us set
 * just before each publish (the test receiver turns it into a latency). Messages are persistent,
 * content_type application/json, mandatory (an unroutable message is a failure). Publisher confirms
 * are on and awaited in windows; the exit status is 0 only if every message was acked by the broker.
 *
 * Build: gcc -std=c11 -O2 -Wall -Wextra -Werror -I tests/env -o publish tests/env/publish.c \
 *        $(pkg-config --cflags --libs librabbitmq)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#define AMQP_TOOL_NAME "publish"
#include "amqp-tool.h"

#define MAX_EVENT 4096
#define MIN_EVENT 300

struct options {
        const char *url;
        const char *exchange;
        const char *routing_key; /* NULL: rotate */
        const char *id_prefix;
        const char *declare_queue;
        const char *dlx;
        const char *queue_type;
        const char *raw_file;
        const char *marker;
        const char *content_type;
        const char *cacert;
        amqp_table_entry_t headers[16]; /* --header K=V, string values */
        int n_headers;
        uint64_t count;
        uint64_t start;
        double rate;
        uint64_t seed;
        uint64_t marker_every;
        unsigned window;
        bool mandatory;
        bool quiet;
        bool count_given;
        bool dry_run;
};

struct confirms {
        uint64_t next_seq;  /* delivery tag of the next publish */
        uint64_t low;       /* lowest tag not yet settled */
        uint64_t acked, nacked, returned;
        unsigned window;
        unsigned char *settled; /* ring of `window` flags, index tag % window */
};

static int64_t wall_us(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* xorshift64*: deterministic given --seed */
static uint64_t rng_state = 88172645463325252ULL;
static uint64_t rnd(void) {
        rng_state ^= rng_state >> 12;
        rng_state ^= rng_state << 25;
        rng_state ^= rng_state >> 27;
        return rng_state * 2685821657736338717ULL;
}
static unsigned rnd_below(unsigned n) {
        return (unsigned) (rnd() % n);
}
static double rnd_unit(void) {
        return (double) (rnd() >> 11) / 9007199254740992.0; /* [0,1) */
}

static bool server_code(amqp_rpc_reply_t r, unsigned *ret_code) {
        if (r.reply_type != AMQP_RESPONSE_SERVER_EXCEPTION || r.reply.id != AMQP_CHANNEL_CLOSE_METHOD)
                return false;
        *ret_code = ((amqp_channel_close_t *) r.reply.decoded)->reply_code;
        return true;
}

static void reopen_channel(amqp_connection_state_t conn) {
        amqp_channel_close_ok_t ok = {0};
        amqp_send_method(conn, CHANNEL, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
        amqp_channel_open(conn, CHANNEL);
        check_rpc(conn, "channel.open");
}

/* What the daemon declares at every connect (architecture §5). */
static void declare_topology(amqp_connection_state_t conn, const struct options *o) {
        char dead[512], buf[512];
        amqp_rpc_reply_t r;
        unsigned code;

        amqp_exchange_declare(conn, CHANNEL, amqp_cstring_bytes(o->exchange), amqp_cstring_bytes("topic"),
                              0, 1, 0, 0, amqp_empty_table);
        check_rpc(conn, "exchange.declare");
        amqp_exchange_declare(conn, CHANNEL, amqp_cstring_bytes(o->dlx), amqp_cstring_bytes("fanout"), 0, 1,
                              0, 0, amqp_empty_table);
        check_rpc(conn, "exchange.declare (dead-letter)");
        snprintf(dead, sizeof dead, "%s.dead", o->declare_queue);
        amqp_queue_declare(conn, CHANNEL, amqp_cstring_bytes(dead), 0, 1, 0, 0, amqp_empty_table);
        check_rpc(conn, "queue.declare (dead-letter queue)");
        amqp_queue_bind(conn, CHANNEL, amqp_cstring_bytes(dead), amqp_cstring_bytes(o->dlx),
                        amqp_cstring_bytes(""), amqp_empty_table);
        check_rpc(conn, "queue.bind (dead-letter queue)");

        amqp_table_entry_t entries[2];
        entries[0].key = amqp_cstring_bytes("x-dead-letter-exchange");
        entries[0].value.kind = AMQP_FIELD_KIND_UTF8;
        entries[0].value.value.bytes = amqp_cstring_bytes(o->dlx);
        int n = 1;
        if (o->queue_type && strcmp(o->queue_type, "classic") != 0) {
                entries[1].key = amqp_cstring_bytes("x-queue-type");
                entries[1].value.kind = AMQP_FIELD_KIND_UTF8;
                entries[1].value.value.bytes = amqp_cstring_bytes(o->queue_type);
                n = 2;
        }
        amqp_table_t args = {.num_entries = n, .entries = entries};
        amqp_queue_declare(conn, CHANNEL, amqp_cstring_bytes(o->declare_queue), 0, 1, 0, 0, args);
        r = amqp_get_rpc_reply(conn);
        if (server_code(r, &code) && code == 406) {
                /* Exists with other arguments (e.g. DLX set by policy): use it as it is, like the daemon. */
                fprintf(stderr, "publish: warning: queue %s exists with other arguments (%s); using it\n",
                        o->declare_queue, amqp_reply_text(r, buf, sizeof buf));
                reopen_channel(conn);
        } else if (r.reply_type != AMQP_RESPONSE_NORMAL)
                die("queue.declare %s: %s", o->declare_queue, amqp_reply_text(r, buf, sizeof buf));
        amqp_queue_bind(conn, CHANNEL, amqp_cstring_bytes(o->declare_queue), amqp_cstring_bytes(o->exchange),
                        amqp_cstring_bytes("approved.*"), amqp_empty_table);
        check_rpc(conn, "queue.bind");
}

/* ---- confirms */

static void settle(struct confirms *c, uint64_t tag, bool multiple, bool ack) {
        if (tag >= c->next_seq)
                die("broker confirmed delivery tag %" PRIu64 " that was never published", tag);
        uint64_t from = multiple ? c->low : tag;
        for (uint64_t t = from; t <= tag; t++) {
                unsigned char *f = &c->settled[t % c->window];
                if (t < c->low || *f)
                        continue;
                *f = 1;
                if (ack)
                        c->acked++;
                else
                        c->nacked++;
        }
        while (c->low < c->next_seq && c->settled[c->low % c->window]) {
                c->settled[c->low % c->window] = 0;
                c->low++;
        }
}

static uint64_t outstanding(const struct confirms *c) {
        return c->next_seq - c->low;
}

/* Reads one frame (waiting at most `timeout_s`, <0: forever, 0: poll). Returns false on timeout. */
static bool pump(amqp_connection_state_t conn, struct confirms *c, double timeout_s) {
        amqp_frame_t frame;
        struct timeval tv, *tvp = NULL;
        char buf[512];
        if (timeout_s >= 0) {
                tv.tv_sec = (time_t) timeout_s;
                tv.tv_usec = (suseconds_t) ((timeout_s - (double) tv.tv_sec) * 1e6);
                tvp = &tv;
        }
        int r = amqp_simple_wait_frame_noblock(conn, &frame, tvp);
        if (r == AMQP_STATUS_TIMEOUT)
                return false;
        if (r != AMQP_STATUS_OK)
                die("reading from broker: %s (%" PRIu64 " of %" PRIu64 " confirmed)", amqp_error_string2(r),
                    c->acked, c->next_seq - 1);
        if (frame.frame_type != AMQP_FRAME_METHOD)
                return true;
        switch (frame.payload.method.id) {
        case AMQP_BASIC_ACK_METHOD: {
                amqp_basic_ack_t *m = frame.payload.method.decoded;
                settle(c, m->delivery_tag, m->multiple, true);
                break;
        }
        case AMQP_BASIC_NACK_METHOD: {
                amqp_basic_nack_t *m = frame.payload.method.decoded;
                settle(c, m->delivery_tag, m->multiple, false);
                break;
        }
        case AMQP_BASIC_RETURN_METHOD: {
                amqp_basic_return_t *m = frame.payload.method.decoded;
                amqp_message_t msg;
                fprintf(stderr, "publish: message returned by broker: %u %.*s (exchange %.*s, key %.*s)\n",
                        m->reply_code, (int) m->reply_text.len, (const char *) m->reply_text.bytes,
                        (int) m->exchange.len, (const char *) m->exchange.bytes, (int) m->routing_key.len,
                        (const char *) m->routing_key.bytes);
                c->returned++;
                amqp_rpc_reply_t rr = amqp_read_message(conn, frame.channel, &msg, 0);
                if (rr.reply_type != AMQP_RESPONSE_NORMAL)
                        die("reading returned message: %s", amqp_reply_text(rr, buf, sizeof buf));
                amqp_destroy_message(&msg);
                break;
        }
        case AMQP_CHANNEL_CLOSE_METHOD: {
                amqp_channel_close_t *m = frame.payload.method.decoded;
                die("channel closed by broker: %u %.*s", m->reply_code, (int) m->reply_text.len,
                    (const char *) m->reply_text.bytes);
        }
        case AMQP_CONNECTION_CLOSE_METHOD: {
                amqp_connection_close_t *m = frame.payload.method.decoded;
                die("connection closed by broker: %u %.*s", m->reply_code, (int) m->reply_text.len,
                    (const char *) m->reply_text.bytes);
        }
        default:
                break;
        }
        amqp_maybe_release_buffers(conn);
        return true;
}

/* ---- events */

static const char *const kinds[] = {"server", "database", "application"};
static const char *const words[] = {"alpha", "bravo", "cedar", "delta", "ember", "falcon", "granite", "harbor",
                                    "indigo", "juniper", "kestrel", "lumen", "meadow", "nimbus", "onyx", "pine",
                                    "quartz", "raven", "sierra", "tundra", "umber", "vertex", "willow", "zephyr"};
static const char *const pkgs[] = {"openssl", "libc6", "systemd", "openssh-server", "nginx", "postgresql-15",
                                   "python3", "curl", "zlib1g", "libpq5", "rabbitmq-server", "bash", "coreutils",
                                   "tzdata", "ca-certificates", "libssl3", "gzip", "procps", "sudo", "rsyslog"};
#define N_WORDS (sizeof words / sizeof words[0])
#define N_PKGS (sizeof pkgs / sizeof pkgs[0])

struct buf {
        char *p;
        size_t len, cap;
};

static void put(struct buf *b, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0 || (size_t) n >= b->cap - b->len)
                die("event buffer overflow");
        b->len += (size_t) n;
}

static void put_json_string(struct buf *b, const char *s) {
        put(b, "\"");
        for (; *s; s++) {
                unsigned char ch = (unsigned char) *s;
                if (ch == '"' || ch == '\\')
                        put(b, "\\%c", ch);
                else if (ch < 0x20)
                        put(b, "\\u%04x", ch);
                else
                        put(b, "%c", ch);
        }
        put(b, "\"");
}

static void rfc3339_now(char *out, size_t n) {
        struct timespec ts;
        struct tm tm;
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        size_t k = strftime(out, n, "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(out + k, n - k, ".%06ldZ", ts.tv_nsec / 1000);
}

/* Target body size, skewed small like real discoveries: 75 % in 300..1000 B, 20 % in 1000..2500 B,
 * 5 % in 2500..4000 B; mean about 1 KiB. (No libm: the helper links with librabbitmq alone.) */
static size_t target_size(void) {
        double u = rnd_unit(), v = rnd_unit();
        if (u < 0.75)
                return MIN_EVENT + (size_t) (v * 700.0);
        if (u < 0.95)
                return 1000 + (size_t) (v * 1500.0);
        return 2500 + (size_t) (v * 1500.0);
}

static void make_event(struct buf *b, const struct options *o, uint64_t index, unsigned kind, bool marked) {
        char ts[64];
        size_t target = target_size();
        unsigned agent = rnd_below(64), host = rnd_below(10000);
        const char *w1 = words[rnd_below(N_WORDS)], *w2 = words[rnd_below(N_WORDS)];

        b->len = 0;
        rfc3339_now(ts, sizeof ts);
        put(b, "{\"specversion\":\"1.0\",\"id\":");
        char id[256];
        snprintf(id, sizeof id, "%s-%06" PRIu64, o->id_prefix, index);
        put_json_string(b, id);
        put(b,
            ",\"source\":\"/discovery/agent-%02u\",\"type\":\"com.example.discovery.%s.approved\","
            "\"time\":\"%s\",\"datacontenttype\":\"application/json\",\"data\":{",
            agent, kinds[kind], ts);
        put(b, "\"kind\":\"%s\",\"hostname\":\"%s-%s-%04u.dc%u.example.com\",", kinds[kind], w1, w2, host,
            1 + rnd_below(4));
        put(b, "\"ip_addresses\":[\"10.%u.%u.%u\",\"fd00::%x:%x\"],", rnd_below(256), rnd_below(256),
            1 + rnd_below(254), rnd_below(65536), 1 + rnd_below(65535));
        if (marked) {
                put(b, "\"note\":");
                put_json_string(b, o->marker);
                put(b, ",");
        }
        put(b, "\"seq\":%" PRIu64 ",", index);
        if (kind == 0) {
                put(b, "\"os\":{\"name\":\"debian\",\"version\":\"12.%u\"},\"packages\":[", rnd_below(8));
        } else if (kind == 1) {
                put(b, "\"engine\":\"postgresql\",\"ports\":[5432,%u],\"databases\":[", 9000 + rnd_below(1000));
        } else {
                put(b, "\"runtime\":\"python3.11\",\"ports\":[%u,%u],\"dependencies\":[", 8000 + rnd_below(100),
                    443);
        }
        /* Fill the list until the target size is reached (room kept for the closing fields). */
        const size_t tail = 48;
        for (unsigned i = 0; i == 0 || b->len + tail + 64 < target; i++) {
                if (i)
                        put(b, ",");
                if (kind == 1)
                        put(b, "{\"name\":\"%s_%s_%u\",\"size_mb\":%u}", words[rnd_below(N_WORDS)],
                            words[rnd_below(N_WORDS)], rnd_below(100), rnd_below(100000));
                else
                        put(b, "{\"name\":\"%s\",\"version\":\"%u.%u.%u-%u\"}", pkgs[rnd_below(N_PKGS)],
                            rnd_below(10), rnd_below(30), rnd_below(100), 1 + rnd_below(9));
        }
        put(b, "],\"published_at_us\":%" PRId64 "}}", wall_us());
}

/* ---- main */

static void usage(FILE *f) {
        fputs("usage: publish [options]\n"
              "  --url URL               amqp[s]://user:pass@host:port/vhost (default\n"
              "                          amqp://discovery:discovery@localhost:5672/, or $RABBITMQ_URL)\n"
              "  --exchange NAME         topic exchange (default discovery.events; declared durable)\n"
              "  --count N               events to publish (default 1000; 1 with --raw)\n"
              "  --rate R                events/s, 0 = as fast as possible (default 0)\n"
              "  --id-prefix P           event ids P-000001, P-000002, ... (default evt)\n"
              "  --start N               first index (default 1)\n"
              "  --seed S                seed of the generator (default 1)\n"
              "  --routing-key KEY       fixed routing key (default: approved.server/database/application)\n"
              "  --declare-queue NAME    declare NAME (durable, x-dead-letter-exchange), bound with approved.*,\n"
              "                          the fanout dead-letter exchange and NAME.dead, as the daemon does\n"
              "  --dlx NAME              dead-letter exchange (default discovery.events.dlx)\n"
              "  --queue-type T          classic (default) or quorum, with --declare-queue\n"
              "  --raw FILE              publish FILE's bytes as the message body (COUNT times)\n"
              "  --content-type T        content_type property (default application/json)\n"
              "  --header K=V            add header K (any bytes, empty too) with the string value V (repeatable)\n"
              "  --marker STRING         put STRING into data.note of every Kth event\n"
              "  --marker-every K        (default 1: every event; events K, 2K, ... are marked)\n"
              "  --window N              unconfirmed messages allowed in flight (default 1024)\n"
              "  --no-mandatory          do not treat unroutable messages as failures\n"
              "  --cacert FILE           CA for amqps://\n"
              "  --dry-run               print the events to stdout, one a line, without a broker\n"
              "  --quiet                 no summary line\n",
              f);
}

static uint64_t parse_u64(const char *opt, const char *s) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno || end == s || *end || s[0] == '-')
                die("%s: not a non-negative integer: %s", opt, s);
        return (uint64_t) v;
}

static unsigned char *read_file(const char *path, size_t *ret_len) {
        FILE *f = fopen(path, "rb");
        if (!f)
                die("cannot open %s: %s", path, strerror(errno));
        size_t cap = 65536, len = 0;
        unsigned char *p = malloc(cap);
        if (!p)
                die("out of memory");
        for (;;) {
                size_t n = fread(p + len, 1, cap - len, f);
                len += n;
                if (len < cap)
                        break;
                cap *= 2;
                p = realloc(p, cap);
                if (!p)
                        die("out of memory");
        }
        if (ferror(f))
                die("reading %s failed", path);
        fclose(f);
        *ret_len = len;
        return p;
}

int main(int argc, char **argv) {
        struct options o = {
                .url = getenv("RABBITMQ_URL") ? getenv("RABBITMQ_URL") : "amqp://discovery:discovery@localhost:5672/",
                .exchange = "discovery.events",
                .id_prefix = "evt",
                .dlx = "discovery.events.dlx",
                .queue_type = "classic",
                .content_type = "application/json",
                .count = 1000,
                .start = 1,
                .seed = 1,
                .marker_every = 1,
                .window = 1024,
                .mandatory = true,
        };
        enum { O_URL = 256, O_EXCHANGE, O_COUNT, O_RATE, O_PREFIX, O_START, O_SEED, O_RKEY, O_DECLARE, O_DLX,
               O_QTYPE, O_RAW, O_CTYPE, O_MARKER, O_MARKER_EVERY, O_WINDOW, O_NO_MANDATORY, O_CACERT, O_QUIET,
               O_DRY_RUN, O_HEADER, O_HELP };
        static const struct option longopts[] = {
                {"url", required_argument, NULL, O_URL},
                {"exchange", required_argument, NULL, O_EXCHANGE},
                {"count", required_argument, NULL, O_COUNT},
                {"rate", required_argument, NULL, O_RATE},
                {"id-prefix", required_argument, NULL, O_PREFIX},
                {"start", required_argument, NULL, O_START},
                {"seed", required_argument, NULL, O_SEED},
                {"routing-key", required_argument, NULL, O_RKEY},
                {"declare-queue", required_argument, NULL, O_DECLARE},
                {"dlx", required_argument, NULL, O_DLX},
                {"queue-type", required_argument, NULL, O_QTYPE},
                {"raw", required_argument, NULL, O_RAW},
                {"content-type", required_argument, NULL, O_CTYPE},
                {"marker", required_argument, NULL, O_MARKER},
                {"marker-every", required_argument, NULL, O_MARKER_EVERY},
                {"window", required_argument, NULL, O_WINDOW},
                {"no-mandatory", no_argument, NULL, O_NO_MANDATORY},
                {"cacert", required_argument, NULL, O_CACERT},
                {"quiet", no_argument, NULL, O_QUIET},
                {"dry-run", no_argument, NULL, O_DRY_RUN},
                {"header", required_argument, NULL, O_HEADER},
                {"help", no_argument, NULL, O_HELP},
                {NULL, 0, NULL, 0},
        };
        int c;
        while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
                switch (c) {
                case O_URL: o.url = optarg; break;
                case O_EXCHANGE: o.exchange = optarg; break;
                case O_COUNT: o.count = parse_u64("--count", optarg); o.count_given = true; break;
                case O_RATE: {
                        char *end;
                        o.rate = strtod(optarg, &end);
                        if (end == optarg || *end || o.rate < 0)
                                die("--rate: not a non-negative number: %s", optarg);
                        break;
                }
                case O_PREFIX: o.id_prefix = optarg; break;
                case O_START: o.start = parse_u64("--start", optarg); break;
                case O_SEED: o.seed = parse_u64("--seed", optarg); break;
                case O_RKEY: o.routing_key = optarg; break;
                case O_DECLARE: o.declare_queue = optarg; break;
                case O_DLX: o.dlx = optarg; break;
                case O_QTYPE:
                        if (strcmp(optarg, "classic") != 0 && strcmp(optarg, "quorum") != 0)
                                die("--queue-type: classic or quorum, not %s", optarg);
                        o.queue_type = optarg;
                        break;
                case O_RAW: o.raw_file = optarg; break;
                case O_CTYPE: o.content_type = optarg; break;
                case O_MARKER: o.marker = optarg; break;
                case O_MARKER_EVERY:
                        o.marker_every = parse_u64("--marker-every", optarg);
                        if (o.marker_every == 0)
                                die("--marker-every must be at least 1");
                        break;
                case O_WINDOW: {
                        uint64_t w = parse_u64("--window", optarg);
                        if (w < 1 || w > 1000000)
                                die("--window: 1..1000000, not %s", optarg);
                        o.window = (unsigned) w;
                        break;
                }
                case O_NO_MANDATORY: o.mandatory = false; break;
                case O_CACERT: o.cacert = optarg; break;
                case O_QUIET: o.quiet = true; break;
                case O_DRY_RUN: o.dry_run = true; break;
                case O_HEADER: {
                        char *eq = strchr(optarg, '=');
                        if (!eq)
                                die("--header: K=V, not %s", optarg);
                        if (o.n_headers >= 16)
                                die("--header: at most 16");
                        o.headers[o.n_headers++] = (amqp_table_entry_t){
                                .key = {.len = (size_t) (eq - optarg), .bytes = optarg},
                                .value = {.kind = AMQP_FIELD_KIND_UTF8, .value.bytes = amqp_cstring_bytes(eq + 1)},
                        };
                        break;
                }
                case O_HELP: usage(stdout); return 0;
                default: usage(stderr); return 2;
                }
        }
        if (optind < argc)
                die("unexpected argument: %s", argv[optind]);
        if (o.raw_file && !o.count_given)
                o.count = 1;
        rng_state ^= o.seed * 0x9E3779B97F4A7C15ULL;
        if (rng_state == 0)
                rng_state = 1;

        size_t raw_len = 0;
        unsigned char *raw = o.raw_file ? read_file(o.raw_file, &raw_len) : NULL;

        if (o.dry_run) {
                struct buf b = {.p = malloc(MAX_EVENT + 512), .cap = MAX_EVENT + 512};
                if (!b.p)
                        die("out of memory");
                for (uint64_t i = 0; i < o.count; i++) {
                        uint64_t index = o.start + i;
                        make_event(&b, &o, index, (unsigned) (index % 3),
                                   o.marker && index % o.marker_every == 0);
                        fwrite(b.p, 1, b.len, stdout);
                        fputc('\n', stdout);
                }
                free(b.p);
                free(raw);
                return 0;
        }

        /* connect */
        amqp_connection_state_t conn = amqp_tool_connect(
                o.url, &(struct amqp_tool_connect_options){.cacert = o.cacert, .allow_tls = true});
        if (o.declare_queue)
                declare_topology(conn, &o);
        else if (o.exchange[0]) {
                amqp_exchange_declare(conn, CHANNEL, amqp_cstring_bytes(o.exchange), amqp_cstring_bytes("topic"),
                                      0, 1, 0, 0, amqp_empty_table);
                check_rpc(conn, "exchange.declare");
        }
        amqp_confirm_select(conn, CHANNEL);
        check_rpc(conn, "confirm.select");

        struct confirms cf = {.next_seq = 1, .low = 1, .window = o.window};
        cf.settled = calloc(o.window, 1);
        struct buf ev = {.p = malloc(MAX_EVENT + 512), .cap = MAX_EVENT + 512};
        if (!cf.settled || !ev.p)
                die("out of memory");

        amqp_basic_properties_t props = {0};
        props._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG;
        props.content_type = amqp_cstring_bytes(o.content_type);
        props.delivery_mode = AMQP_DELIVERY_PERSISTENT;
        if (o.n_headers > 0) {
                props._flags |= AMQP_BASIC_HEADERS_FLAG;
                props.headers = (amqp_table_t){.num_entries = o.n_headers, .entries = o.headers};
        }

        uint64_t bytes = 0, marked = 0;
        size_t min_len = SIZE_MAX, max_len = 0;
        const double t0 = monotonic_s();
        for (uint64_t i = 0; i < o.count; i++) {
                uint64_t index = o.start + i;
                unsigned kind = (unsigned) (index % 3);
                if (o.rate > 0) {
                        double due = t0 + (double) i / o.rate, wait = due - monotonic_s();
                        /* Sleep, then take what confirms came: waiting in pump() spins, because
                         * rabbitmq-c's poll() rounds sub-millisecond timeouts down to 0. */
                        if (wait > 0) {
                                struct timespec ts = {.tv_sec = (time_t) wait,
                                                      .tv_nsec = (long) ((wait - (double) (time_t) wait) * 1e9)};
                                nanosleep(&ts, NULL);
                        }
                        while (pump(conn, &cf, 0))
                                ;
                }
                while (outstanding(&cf) >= o.window)
                        pump(conn, &cf, -1);

                amqp_bytes_t body;
                if (raw) {
                        body.bytes = raw;
                        body.len = raw_len;
                } else {
                        bool m = o.marker && index % o.marker_every == 0;
                        marked += m;
                        make_event(&ev, &o, index, kind, m);
                        body.bytes = ev.p;
                        body.len = ev.len;
                }
                const char *key = o.routing_key ? o.routing_key
                                  : raw         ? "approved.server"
                                                : (kind == 0 ? "approved.server"
                                                   : kind == 1 ? "approved.database"
                                                               : "approved.application");
                int r = amqp_basic_publish(conn, CHANNEL, amqp_cstring_bytes(o.exchange),
                                           amqp_cstring_bytes(key), o.mandatory, 0, &props, body);
                if (r != AMQP_STATUS_OK)
                        die("publish #%" PRIu64 " failed: %s (%" PRIu64 " confirmed so far)", i + 1,
                            amqp_error_string2(r), cf.acked);
                cf.next_seq++;
                bytes += body.len;
                if (body.len < min_len)
                        min_len = body.len;
                if (body.len > max_len)
                        max_len = body.len;
                /* Keep confirms flowing without waiting. */
                if ((i & 63) == 63)
                        while (pump(conn, &cf, 0))
                                ;
        }
        while (outstanding(&cf) > 0)
                if (!pump(conn, &cf, 30.0))
                        die("no confirm from broker for 30 s (%" PRIu64 " outstanding)", outstanding(&cf));
        const double secs = monotonic_s() - t0;

        amqp_channel_close(conn, CHANNEL, AMQP_REPLY_SUCCESS);
        amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
        amqp_destroy_connection(conn);

        if (!o.quiet)
                printf("published %" PRIu64 " events (%" PRIu64 " marked), %" PRIu64
                       " bytes (mean %.0f, min %zu, max %zu), %.3f s, %.0f events/s, acked %" PRIu64
                       ", nacked %" PRIu64 ", returned %" PRIu64 "\n",
                       o.count, marked, bytes, o.count ? (double) bytes / (double) o.count : 0.0,
                       o.count ? min_len : 0, max_len, secs, secs > 0 ? (double) o.count / secs : 0.0, cf.acked,
                       cf.nacked, cf.returned);
        free(cf.settled);
        free(ev.p);
        free(raw);
        if (cf.nacked || cf.returned) {
                fprintf(stderr, "publish: error: %" PRIu64 " nacked, %" PRIu64 " returned (unroutable)\n",
                        cf.nacked, cf.returned);
                return 1;
        }
        return 0;
}
