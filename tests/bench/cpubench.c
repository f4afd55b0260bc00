/* cpubench: the transmitter's per-event CPU budget, stage by stage, on publish.c's events, without a
 * broker: what each stage costs in ns of thread CPU time per event, so a change to one stage can be
 * judged on its own (issue 7's 20 µs/event target), and what the alternatives to zlib would cost.
 *
 *   publish --dry-run --count 20000 > events.ndjson
 *   cpubench events.ndjson [--batch 100] [--level 6] [--min-seconds 1]
 *
 * Stages, each over every event of the file, repeated until --min-seconds of CPU:
 *   json_check       json_check_event() on each body (src/core/json-check.c, the daemon's own code)
 *   batch_id         the UUIDv5 batch id over the event ids (src/core/uuid.c)
 *   envelope         envelope_encode() (src/core/envelope.c) as the daemon does it, with the daemon's engine:
 *                    libdeflate (one assembled buffer, its level one below --level) built with
 *                    -DHAVE_LIBDEFLATE, else zlib fed body by body
 *   copy             one memcpy of each body into a contiguous batch buffer (the envelope assembled raw)
 *   zlib_oneshot     that buffer through one deflate() call (same level, same window)
 *   libdeflate       libdeflate_gzip_compress() of that buffer (same level)       [-DBENCH_LIBDEFLATE]
 *   isal_lN          ISA-L igzip, levels 1..3, of that buffer                     [-DBENCH_ISAL]
 * Each line: ns/event, and for the compressors the ratio raw/compressed. One JSON line per stage
 * ("CPUBENCH {...}") follows the table.
 *
 * Build (with the daemon's own sources; tests/bench/run.sh does this):
 *   gcc -std=c11 -O2 -D_GNU_SOURCE -Isrc -o cpubench tests/bench/cpubench.c src/core/json-check.c src/core/uuid.c \
 *       src/core/envelope.c src/util/buffer.c src/util/util.c -lz -lcrypto [-DHAVE_LIBDEFLATE] [-DBENCH_LIBDEFLATE -ldeflate] [-DBENCH_ISAL -lisal]
 * (libdeflate-dev and libisal-dev are optional: without them those lines are left out.)
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <zlib.h>

#if defined(BENCH_LIBDEFLATE) || defined(HAVE_LIBDEFLATE)
#include <libdeflate.h>
#endif
#ifdef BENCH_ISAL
#include <isa-l/igzip_lib.h>
#endif

#include "core/envelope.h"
#include "core/json-check.h"
#include "core/uuid.h"

typedef struct Event {
        const char *body;
        size_t size;
        JsonEventId id;
} Event;

static Event *events;
static size_t n_events;
static size_t batch = 100;
static int level = 6;
static double min_seconds = 1.0;
static volatile size_t sink;

static double cpu_now(void) {
        struct timespec ts;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

_Noreturn static void die(const char *msg) {
        fprintf(stderr, "cpubench: %s\n", msg);
        exit(1);
}

static void load(const char *path) {
        FILE *f = fopen(path, "rb");
        size_t cap = 1u << 20, len = 0, allocated = 1024;
        char *data;

        if (!f)
                die("cannot open the events file");
        data = malloc(cap);
        for (;;) {
                size_t k = fread(data + len, 1, cap - len, f);
                len += k;
                if (len < cap)
                        break;
                cap *= 2;
                data = realloc(data, cap);
                if (!data)
                        die("out of memory");
        }
        fclose(f);
        events = malloc(allocated * sizeof *events);
        for (char *p = data, *end = data + len; p < end;) {
                char *nl = memchr(p, '\n', (size_t) (end - p));
                size_t l = nl ? (size_t) (nl - p) : (size_t) (end - p);
                if (l > 0) {
                        if (n_events == allocated) {
                                allocated *= 2;
                                events = realloc(events, allocated * sizeof *events);
                                if (!events)
                                        die("out of memory");
                        }
                        events[n_events++] = (Event) { .body = p, .size = l };
                }
                p += l + 1;
        }
        n_events -= n_events % batch;
        if (n_events == 0)
                die("fewer events than one batch");
}

typedef struct Result {
        const char *name;
        double ns_per_event;
        double ratio; /* 0: not a compressor */
} Result;

static Result results[32];
static size_t n_results;

/* Runs one pass over all events (fn does one batch) until min_seconds; returns ns/event. */
typedef size_t (*BatchFn)(size_t first, size_t n, void *ctx); /* returns compressed bytes (or anything) */

static void measure(const char *name, BatchFn fn, void *ctx, bool compressor) {
        double t0, t;
        size_t passes = 0, out = 0, raw = 0;

        for (size_t i = 0; i < n_events; i += batch) /* warm-up */
                sink += fn(i, batch, ctx);
        t0 = cpu_now();
        do {
                out = 0;
                for (size_t i = 0; i < n_events; i += batch)
                        out += fn(i, batch, ctx);
                passes++;
                t = cpu_now();
        } while (t - t0 < min_seconds);
        for (size_t i = 0; i < n_events; i++)
                raw += events[i].size;
        raw += (n_events / batch) * envelope_overhead(batch);
        results[n_results++] = (Result) {
                .name = name,
                .ns_per_event = (t - t0) * 1e9 / (double) (passes * n_events),
                .ratio = compressor && out ? (double) raw / (double) out : 0,
        };
}

static size_t do_json_check(size_t first, size_t n, void *ctx) {
        size_t ok = 0;
        (void) ctx;
        for (size_t i = first; i < first + n; i++)
                ok += json_check_event(events[i].body, events[i].size, &events[i].id) == JSON_CHECK_OK;
        if (ok != n)
                die("an event failed json_check_event");
        return ok;
}

static char batch_ids[1 << 16][UUID_STRING_MAX];

static size_t do_batch_id(size_t first, size_t n, void *ctx) {
        BatchIdBuilder b;
        Uuid u;
        (void) ctx;
        (void) batch_id_begin(&b); /* its error, if any, comes back from batch_id_end() */
        for (size_t i = first; i < first + n; i++)
                batch_id_add(&b, events[i].id.id, events[i].id.id_len, events[i].body, events[i].size);
        if (batch_id_end(&b, &u) < 0)
                die("batch_id_end failed");
        uuid_to_string(&u, batch_ids[(first / batch) % (1 << 16)]);
        return u.bytes[0];
}

static struct iovec *iov;
static Buffer out_buf;

static size_t do_envelope(size_t first, size_t n, void *ctx) {
        Envelope *e = ctx;
        size_t raw;
        for (size_t i = 0; i < n; i++)
                iov[i] = (struct iovec) { .iov_base = (void *) events[first + i].body, .iov_len = events[first + i].size };
        if (envelope_encode(e, batch_ids[(first / batch) % (1 << 16)], iov, n, &out_buf, &raw) < 0)
                die("envelope_encode failed");
        return out_buf.size;
}

/* The raw envelope, assembled by one copy of each body. */
static uint8_t *raw_buf;
static size_t raw_len;

static size_t do_copy(size_t first, size_t n, void *ctx) {
        static const char head[] = "{\"batch_id\":\"", mid[] = "\",\"discoveries\":[";
        uint8_t *p = raw_buf;
        (void) ctx;
        memcpy(p, head, sizeof head - 1), p += sizeof head - 1;
        memcpy(p, batch_ids[(first / batch) % (1 << 16)], 36), p += 36;
        memcpy(p, mid, sizeof mid - 1), p += sizeof mid - 1;
        for (size_t i = first; i < first + n; i++) {
                if (i > first)
                        *p++ = ',';
                memcpy(p, events[i].body, events[i].size);
                p += events[i].size;
        }
        *p++ = ']';
        *p++ = '}';
        raw_len = (size_t) (p - raw_buf);
        return raw_len;
}

static uint8_t *comp_buf;
static size_t comp_cap;

static size_t do_zlib_oneshot(size_t first, size_t n, void *ctx) {
        z_stream *z = ctx;
        do_copy(first, n, NULL);
        if (deflateReset(z) != Z_OK)
                die("deflateReset");
        z->next_in = raw_buf;
        z->avail_in = (uInt) raw_len;
        z->next_out = comp_buf;
        z->avail_out = (uInt) comp_cap;
        if (deflate(z, Z_FINISH) != Z_STREAM_END)
                die("deflate did not finish");
        return comp_cap - z->avail_out;
}

#ifdef BENCH_LIBDEFLATE
static size_t do_libdeflate(size_t first, size_t n, void *ctx) {
        size_t r;
        do_copy(first, n, NULL);
        r = libdeflate_gzip_compress(ctx, raw_buf, raw_len, comp_buf, comp_cap);
        if (r == 0)
                die("libdeflate_gzip_compress");
        return r;
}
#endif

#ifdef BENCH_ISAL
typedef struct IsalCtx {
        int level;
        uint8_t *level_buf;
        uint32_t level_buf_size;
} IsalCtx;

static size_t do_isal(size_t first, size_t n, void *ctx) {
        IsalCtx *c = ctx;
        struct isal_zstream s;
        do_copy(first, n, NULL);
        isal_deflate_init(&s);
        s.gzip_flag = IGZIP_GZIP;
        s.level = (uint32_t) c->level;
        s.level_buf = c->level_buf;
        s.level_buf_size = c->level_buf_size;
        s.end_of_stream = 1;
        s.flush = NO_FLUSH;
        s.next_in = raw_buf;
        s.avail_in = (uint32_t) raw_len;
        s.next_out = comp_buf;
        s.avail_out = (uint32_t) comp_cap;
        if (isal_deflate(&s) != COMP_OK || s.internal_state.state != ZSTATE_END)
                die("isal_deflate");
        return comp_cap - s.avail_out;
}
#endif

int main(int argc, char **argv) {
        enum { O_BATCH = 256, O_LEVEL, O_MIN };
        static const struct option longopts[] = {
                {"batch", required_argument, NULL, O_BATCH},
                {"level", required_argument, NULL, O_LEVEL},
                {"min-seconds", required_argument, NULL, O_MIN},
                {NULL, 0, NULL, 0},
        };
        int c;
        while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
                switch (c) {
                case O_BATCH: batch = strtoul(optarg, NULL, 10); break;
                case O_LEVEL: level = atoi(optarg); break;
                case O_MIN: min_seconds = strtod(optarg, NULL); break;
                default:
                        fprintf(stderr, "usage: cpubench EVENTS.ndjson [--batch N] [--level L] [--min-seconds S]\n");
                        return 2;
                }
        }
        if (optind >= argc || batch == 0 || level < 0 || level > 9)
                die("usage: cpubench EVENTS.ndjson [--batch N] [--level L] [--min-seconds S]");
        load(argv[optind]);

        size_t max_raw = 0;
        for (size_t i = 0; i < n_events; i += batch) {
                size_t r = envelope_overhead(batch);
                for (size_t k = i; k < i + batch; k++)
                        r += events[k].size;
                if (r > max_raw)
                        max_raw = r;
        }
        raw_buf = malloc(max_raw + 64);
        comp_cap = compressBound(max_raw) + 1024;
        comp_buf = malloc(comp_cap);
        iov = malloc(batch * sizeof *iov);

        measure("json_check", do_json_check, NULL, false);
        measure("batch_id", do_batch_id, NULL, false);

        Envelope *e;
        if (envelope_new(level, &e) < 0)
                die("envelope_new");
        measure("envelope", do_envelope, e, true);
        measure("copy", do_copy, NULL, false);

        z_stream z = { 0 };
        if (deflateInit2(&z, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
                die("deflateInit2");
        measure("zlib_oneshot", do_zlib_oneshot, &z, true);
        deflateEnd(&z);

#ifdef BENCH_LIBDEFLATE
        struct libdeflate_compressor *ld = libdeflate_alloc_compressor(level);
        if (!ld)
                die("libdeflate_alloc_compressor");
        measure("libdeflate", do_libdeflate, ld, true);
        libdeflate_free_compressor(ld);
#endif
#ifdef BENCH_ISAL
        static const char *const isal_names[] = { "isal_l0", "isal_l1", "isal_l2", "isal_l3" };
        static const uint32_t isal_sizes[] = { ISAL_DEF_LVL0_DEFAULT, ISAL_DEF_LVL1_DEFAULT, ISAL_DEF_LVL2_DEFAULT,
                                               ISAL_DEF_LVL3_DEFAULT };
        for (int l = 1; l <= 3; l++) {
                IsalCtx ic = { .level = l, .level_buf_size = isal_sizes[l] };
                ic.level_buf = malloc(ic.level_buf_size);
                measure(isal_names[l], do_isal, &ic, true);
                free(ic.level_buf);
        }
#endif

        double mean = 0;
        for (size_t i = 0; i < n_events; i++)
                mean += (double) events[i].size;
        mean /= (double) n_events;
        printf("%zu events (mean %.0f B), batches of %zu, level %d; envelope: %s at its level %d (ns of thread CPU "
               "per event)\n", n_events, mean, batch, level, envelope_engine(), envelope_engine_level(level));
        for (size_t i = 0; i < n_results; i++) {
                if (results[i].ratio > 0)
                        printf("  %-14s %9.0f ns/event   ratio %.2f\n", results[i].name, results[i].ns_per_event,
                               results[i].ratio);
                else
                        printf("  %-14s %9.0f ns/event\n", results[i].name, results[i].ns_per_event);
        }
        for (size_t i = 0; i < n_results; i++)
                printf("CPUBENCH {\"stage\":\"%s\",\"batch_size\":%zu,\"level\":%d,\"ns_per_event\":%.1f,\"ratio\":%.3f}\n",
                       results[i].name, batch, level, results[i].ns_per_event, results[i].ratio);
        envelope_free(e);
        return (int) (sink & 0);
}
