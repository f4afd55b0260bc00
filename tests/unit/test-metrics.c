/* SPDX-License-Identifier: MIT */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <sys/wait.h>

#include "core/metrics.h"
#include "core/telemetry.h"

/* The registry's exposition as a C string, for comparing with the expected text. */
static char *format_text(const MetricsRegistry *reg) {
        Buffer b = { 0 };
        char *s;

        cr_assert_eq(metrics_format(reg, &b), 0);
        s = strndup((const char *) b.data ? (const char *) b.data : "", b.size);
        cr_assert_not_null(s);
        buffer_done(&b);
        return s;
}

static void expect_text(const MetricsRegistry *reg, const char *expected) {
        _cleanup_free_ char *s = format_text(reg);
        cr_assert_str_eq(s, expected);
}

static const char *fmt(double v) {
        static char buf[METRICS_FLOAT_MAX];
        return metrics_format_float(v, buf);
}

Test(metrics, float_format) {
        cr_assert_str_eq(fmt(0), "0");
        cr_assert_str_eq(fmt(-0.0), "0");
        cr_assert_str_eq(fmt(1), "1");
        cr_assert_str_eq(fmt(-3), "-3");
        cr_assert_str_eq(fmt(0.5), "0.5");
        cr_assert_str_eq(fmt(0.1), "0.1");
        cr_assert_str_eq(fmt(2.5e-3), "0.0025");
        cr_assert_str_eq(fmt(1e-9), "1e-09");
        cr_assert_str_eq(fmt(12345678901.0), "12345678901");
        cr_assert_str_eq(fmt(9007199254740993.0), "9007199254740992"); /* 2^53 + 1 rounds to even */
        cr_assert_str_eq(fmt(1.0 / 3.0), "0.3333333333333333");
        cr_assert_str_eq(fmt(0x1p63), "9.223372036854776e+18");
        cr_assert_str_eq(fmt(1e300), "1e+300");
        cr_assert_str_eq(fmt(INFINITY), "+Inf");
        cr_assert_str_eq(fmt(-INFINITY), "-Inf");
        cr_assert_str_eq(fmt(NAN), "NaN");
        cr_assert_str_eq(fmt(-1.7976931348623157e308), "-1.7976931348623157e+308");

        /* Whatever the form, it reads back exactly. */
        const double samples[] = {
                0.1 + 0.2, 1e-300, 5e-324, 123.456, 6.02214076e23, -1e-5, 0x1p63 + 0x1p11,
        };
        for (size_t i = 0; i < ELEMENTSOF(samples); i++)
                cr_assert_eq(strtod(fmt(samples[i]), NULL), samples[i], "%s", fmt(samples[i]));
}

Test(metrics, exposition) {
        _cleanup_(metrics_registry_freep) MetricsRegistry *reg = NULL;
        Metric *batches, *events, *pending, *up, *latency;
        MetricSeries *sent;

        cr_assert_eq(metrics_registry_new(&reg), 0);
        expect_text(reg, "");

        cr_assert_eq(metrics_counter_new(reg, "transmitter_batches_total", "Batches by outcome.", "outcome",
                                         &batches), 0);
        cr_assert_eq(metrics_counter_new(reg, "transmitter_events_received_total", "Events consumed.", NULL,
                                         &events), 0);
        cr_assert_eq(metrics_gauge_new(reg, "transmitter_pending_events", "Events in the open batch.", NULL,
                                       &pending), 0);
        cr_assert_eq(metrics_gauge_new(reg, "transmitter_up", "Whether a peer is connected.", "peer", &up),
                     0);
        cr_assert_eq(metrics_histogram_new(reg, "transmitter_request_duration_seconds",
                                           "Latency of requests to the API.",
                                           (const double[]) { 0.005, 0.25, 1, 10 }, 4, &latency), 0);

        /* Declared: shown at 0 before any event; then a handle for the hot path. */
        cr_assert_eq(metric_declare(batches, "sent"), 0);
        cr_assert_eq(metric_declare(batches, "failed"), 0);
        cr_assert_eq(metric_series(batches, "sent", &sent), 0);
        metric_series_add(sent, 1);
        metric_series_add(sent, 2);
        cr_assert_eq(metric_counter_add(batches, "dead_lettered", 1), 0); /* created on first use */
        cr_assert_eq(metric_declare(batches, "sent"), 0);                 /* idempotent */

        cr_assert_eq(metric_counter_add(events, NULL, 12345678901.0), 0);
        cr_assert_eq(metric_gauge_set(pending, NULL, 7), 0);
        cr_assert_eq(metric_gauge_add(pending, NULL, -2.5), 0);
        cr_assert_eq(metric_gauge_set(up, "rabbitmq", 1), 0);
        cr_assert_eq(metric_gauge_set(up, "postgresql", 0), 0);

        /* Binary fractions, so that the sum is exact. */
        metric_histogram_observe(latency, 0.00390625);
        metric_histogram_observe(latency, 0.25); /* le is inclusive */
        metric_histogram_observe(latency, 0.125);
        metric_histogram_observe(latency, 0.5);
        metric_histogram_observe(latency, 2);
        metric_histogram_observe(latency, 60); /* +Inf only */

        expect_text(reg,
                    "# HELP transmitter_batches_total Batches by outcome.\n"
                    "# TYPE transmitter_batches_total counter\n"
                    "transmitter_batches_total{outcome=\"sent\"} 3\n"
                    "transmitter_batches_total{outcome=\"failed\"} 0\n"
                    "transmitter_batches_total{outcome=\"dead_lettered\"} 1\n"
                    "# HELP transmitter_events_received_total Events consumed.\n"
                    "# TYPE transmitter_events_received_total counter\n"
                    "transmitter_events_received_total 12345678901\n"
                    "# HELP transmitter_pending_events Events in the open batch.\n"
                    "# TYPE transmitter_pending_events gauge\n"
                    "transmitter_pending_events 4.5\n"
                    "# HELP transmitter_up Whether a peer is connected.\n"
                    "# TYPE transmitter_up gauge\n"
                    "transmitter_up{peer=\"rabbitmq\"} 1\n"
                    "transmitter_up{peer=\"postgresql\"} 0\n"
                    "# HELP transmitter_request_duration_seconds Latency of requests to the API.\n"
                    "# TYPE transmitter_request_duration_seconds histogram\n"
                    "transmitter_request_duration_seconds_bucket{le=\"0.005\"} 1\n"
                    "transmitter_request_duration_seconds_bucket{le=\"0.25\"} 3\n"
                    "transmitter_request_duration_seconds_bucket{le=\"1\"} 4\n"
                    "transmitter_request_duration_seconds_bucket{le=\"10\"} 5\n"
                    "transmitter_request_duration_seconds_bucket{le=\"+Inf\"} 6\n"
                    "transmitter_request_duration_seconds_sum 62.87890625\n"
                    "transmitter_request_duration_seconds_count 6\n");
}

Test(metrics, fresh_families) {
        _cleanup_(metrics_registry_freep) MetricsRegistry *reg = NULL;

        cr_assert_eq(metrics_registry_new(&reg), 0);
        /* Unlabelled: one series at 0. Labelled, nothing declared: the family alone. */
        cr_assert_eq(metrics_counter_new(reg, "a_total", "A.", NULL, NULL), 0);
        cr_assert_eq(metrics_counter_new(reg, "b_total", "B.", "kind", NULL), 0);
        cr_assert_eq(metrics_histogram_new(reg, "c_seconds", "C.", NULL, 0, NULL), 0);
        cr_assert_eq(metrics_histogram_new(reg, "d_bytes", "D.", (const double[]) { 1024, INFINITY }, 2,
                                           NULL), 0);

        expect_text(reg,
                    "# HELP a_total A.\n"
                    "# TYPE a_total counter\n"
                    "a_total 0\n"
                    "# HELP b_total B.\n"
                    "# TYPE b_total counter\n"
                    "# HELP c_seconds C.\n"
                    "# TYPE c_seconds histogram\n"
                    "c_seconds_bucket{le=\"+Inf\"} 0\n"
                    "c_seconds_sum 0\n"
                    "c_seconds_count 0\n"
                    "# HELP d_bytes D.\n"
                    "# TYPE d_bytes histogram\n"
                    "d_bytes_bucket{le=\"1024\"} 0\n"
                    "d_bytes_bucket{le=\"+Inf\"} 0\n"
                    "d_bytes_sum 0\n"
                    "d_bytes_count 0\n");
}

Test(metrics, escaping) {
        _cleanup_(metrics_registry_freep) MetricsRegistry *reg = NULL;
        Metric *m;

        cr_assert_eq(metrics_registry_new(&reg), 0);
        cr_assert_eq(metrics_counter_new(reg, "x_total", "Back\\slash, \"quotes\" stay,\nnew line.", "v", &m),
                     0);
        cr_assert_eq(metric_counter_add(m, "a\"b\\c", 1), 0);
        cr_assert_eq(metric_counter_add(m, "line\nbreak", 2), 0);
        cr_assert_eq(metric_counter_add(m, "", 3), 0);
        cr_assert_eq(metric_counter_add(m, "caf\xc3\xa9", 4), 0);

        expect_text(reg,
                    "# HELP x_total Back\\\\slash, \"quotes\" stay,\\nnew line.\n"
                    "# TYPE x_total counter\n"
                    "x_total{v=\"a\\\"b\\\\c\"} 1\n"
                    "x_total{v=\"line\\nbreak\"} 2\n"
                    "x_total{v=\"\"} 3\n"
                    "x_total{v=\"caf\xc3\xa9\"} 4\n");
}

Test(metrics, names) {
        cr_assert(metrics_name_is_valid("transmitter_up"));
        cr_assert(metrics_name_is_valid(":job:rate5m"));
        cr_assert(metrics_name_is_valid("_x9"));
        cr_assert_not(metrics_name_is_valid(""));
        cr_assert_not(metrics_name_is_valid(NULL));
        cr_assert_not(metrics_name_is_valid("9lives"));
        cr_assert_not(metrics_name_is_valid("a-b"));
        cr_assert_not(metrics_name_is_valid("a b"));
        cr_assert_not(metrics_name_is_valid("caf\xc3\xa9"));

        cr_assert(metrics_label_name_is_valid("outcome"));
        cr_assert(metrics_label_name_is_valid("_x"));
        cr_assert_not(metrics_label_name_is_valid("__name__"));
        cr_assert_not(metrics_label_name_is_valid("a:b"));
        cr_assert_not(metrics_label_name_is_valid("1a"));
        cr_assert_not(metrics_label_name_is_valid(""));
}

static int read_zero(_unused_ void *userdata, double *ret) {
        *ret = 0;
        return 0;
}

Test(metrics, rejected) {
        _cleanup_(metrics_registry_freep) MetricsRegistry *reg = NULL;
        Metric *c, *g, *h;
        MetricSeries *s;

        cr_assert_eq(metrics_registry_new(&reg), 0);

        cr_assert_eq(metrics_counter_new(reg, "bad-name_total", "H.", NULL, NULL), -EINVAL);
        cr_assert_eq(metrics_counter_new(reg, "9_total", "H.", NULL, NULL), -EINVAL);
        cr_assert_eq(metrics_counter_new(reg, "batches", "H.", NULL, NULL), -EINVAL);        /* no _total */
        cr_assert_eq(metrics_counter_new(reg, "batches_totals", "H.", NULL, NULL), -EINVAL);
        cr_assert_eq(metrics_gauge_new(reg, "pending_total", "H.", NULL, NULL), -EINVAL); /* _total, a gauge */
        cr_assert_eq(metrics_counter_new(reg, "a_total", "H.", "bad-label", NULL), -EINVAL);
        cr_assert_eq(metrics_counter_new(reg, "a_total", "H.", "__reserved", NULL), -EINVAL);
        cr_assert_eq(metrics_counter_new(reg, "a_total", "", NULL, NULL), -EINVAL);
        cr_assert_eq(metrics_counter_new(reg, "a_total", NULL, NULL, NULL), -EINVAL);
        cr_assert_eq(metrics_counter_new(reg, NULL, "H.", NULL, NULL), -EINVAL);
        cr_assert_eq(metrics_histogram_new(reg, "h_seconds", "H.", (const double[]) { 1, 1 }, 2, NULL),
                     -EINVAL);
        cr_assert_eq(metrics_histogram_new(reg, "h_seconds", "H.", (const double[]) { 2, 1 }, 2, NULL),
                     -EINVAL);
        cr_assert_eq(metrics_histogram_new(reg, "h_seconds", "H.", (const double[]) { NAN }, 1, NULL),
                     -EINVAL);
        cr_assert_eq(metrics_histogram_new(reg, "h_seconds", "H.", (const double[]) { -INFINITY }, 1, NULL),
                     -EINVAL);
        cr_assert_eq(metrics_histogram_new(reg, "h_seconds", "H.", NULL, 1, NULL), -EINVAL);
        cr_assert_eq(metrics_histogram_new(reg, "h_total", "H.", NULL, 0, NULL), -EINVAL);
        cr_assert_eq(metrics_histogram_new(reg, "h_count", "H.", NULL, 0, NULL), -EINVAL);
        cr_assert_eq(metrics_histogram_new(reg, "h_bucket", "H.", NULL, 0, NULL), -EINVAL);
        cr_assert_eq(metrics_gauge_new(reg, "pending_count", "H.", NULL, NULL), -EINVAL);
        cr_assert_eq(metrics_gauge_new(reg, "pending_sum", "H.", NULL, NULL), -EINVAL);
        cr_assert_eq(metrics_gauge_new(reg, "g", "H.", "le", NULL), -EINVAL);
        cr_assert_eq(metrics_counter_new(reg, "a_total", "H.", "quantile", NULL), -EINVAL);
        cr_assert_eq(metrics_callback_new(reg, METRIC_GAUGE, "cb_count", "H.", read_zero, NULL, NULL),
                     -EINVAL);
        cr_assert_eq(metrics_callback_new(reg, METRIC_HISTOGRAM, "cb", "H.", NULL, NULL, NULL), -EINVAL);
        expect_text(reg, ""); /* nothing half-registered */

        cr_assert_eq(metrics_counter_new(reg, "c_total", "C.", "k", &c), 0);
        cr_assert_eq(metrics_gauge_new(reg, "c_total", "Again.", NULL, NULL), -EINVAL);
        cr_assert_eq(metrics_counter_new(reg, "c_total", "Again.", NULL, NULL), -EEXIST);
        cr_assert_eq(metrics_gauge_new(reg, "g", "G.", NULL, &g), 0);
        cr_assert_eq(metrics_histogram_new(reg, "h_seconds", "H.", (const double[]) { 1 }, 1, &h), 0);

        cr_assert_eq(metric_counter_add(c, NULL, 1), -EINVAL);          /* labelled family, no value */
        cr_assert_eq(metric_counter_add(c, "x", -1), -EINVAL);         /* counters only go up */
        cr_assert_eq(metric_counter_add(c, "x", NAN), -EINVAL);
        cr_assert_eq(metric_counter_add(c, "\xff", 1), -EINVAL);       /* not UTF-8 */
        cr_assert_eq(metric_counter_add(c, "\xc0\xaf", 1), -EINVAL);   /* overlong */
        cr_assert_eq(metric_counter_add(c, "\xed\xa0\x80", 1), -EINVAL); /* surrogate */
        cr_assert_eq(metric_counter_add(c, "\xe2\x82", 1), -EINVAL);   /* truncated */
        cr_assert_eq(metric_gauge_set(c, "x", 1), -EINVAL);            /* not a gauge */
        cr_assert_eq(metric_gauge_set(g, "x", 1), -EINVAL);            /* unlabelled family, a value */
        cr_assert_eq(metric_counter_add(g, NULL, 1), -EINVAL);         /* not a counter */
        cr_assert_eq(metric_series(h, NULL, &s), -EOPNOTSUPP);
        cr_assert_eq(metrics_callback_new(reg, METRIC_GAUGE, "cb", "H.", NULL, NULL, NULL), -EINVAL);

        expect_text(reg,
                    "# HELP c_total C.\n"
                    "# TYPE c_total counter\n"
                    "# HELP g G.\n"
                    "# TYPE g gauge\n"
                    "g 0\n"
                    "# HELP h_seconds H.\n"
                    "# TYPE h_seconds histogram\n"
                    "h_seconds_bucket{le=\"1\"} 0\n"
                    "h_seconds_bucket{le=\"+Inf\"} 0\n"
                    "h_seconds_sum 0\n"
                    "h_seconds_count 0\n");
}

static int read_in_flight(void *userdata, double *ret) {
        *ret = *(const unsigned *) userdata;
        return 0;
}

static int read_failing(_unused_ void *userdata, _unused_ double *ret) {
        return -EIO;
}

static int read_inf(_unused_ void *userdata, double *ret) {
        *ret = INFINITY;
        return 0;
}

static void expect_callbacks(const MetricsRegistry *reg, unsigned in_flight, unsigned sent) {
        char expected[1024];

        snprintf(expected, sizeof(expected),
                 "# HELP transmitter_in_flight_batches Batches on the wire.\n"
                 "# TYPE transmitter_in_flight_batches gauge\n"
                 "transmitter_in_flight_batches %u\n"
                 "# HELP transmitter_sent_total Sent.\n"
                 "# TYPE transmitter_sent_total counter\n"
                 "transmitter_sent_total %u\n"
                 "# HELP transmitter_broken Unreadable.\n"
                 "# TYPE transmitter_broken gauge\n"
                 "# HELP transmitter_limit Unbounded.\n"
                 "# TYPE transmitter_limit gauge\n"
                 "transmitter_limit +Inf\n",
                 in_flight, sent);
        expect_text(reg, expected);
}

Test(metrics, callbacks) {
        _cleanup_(metrics_registry_freep) MetricsRegistry *reg = NULL;
        unsigned in_flight = 3, sent = 41;
        Metric *m;

        cr_assert_eq(metrics_registry_new(&reg), 0);
        cr_assert_eq(metrics_callback_new(reg, METRIC_GAUGE, "transmitter_in_flight_batches",
                                          "Batches on the wire.", read_in_flight, &in_flight, &m), 0);
        cr_assert_eq(metrics_callback_new(reg, METRIC_COUNTER, "transmitter_sent_total", "Sent.",
                                          read_in_flight, &sent, NULL), 0);
        cr_assert_eq(metrics_callback_new(reg, METRIC_COUNTER, "transmitter_sent", "No suffix.",
                                          read_in_flight, &sent, NULL), -EINVAL);
        cr_assert_eq(metrics_callback_new(reg, METRIC_GAUGE, "transmitter_broken", "Unreadable.",
                                          read_failing, NULL, NULL), 0);
        cr_assert_eq(metrics_callback_new(reg, METRIC_GAUGE, "transmitter_limit", "Unbounded.",
                                          read_inf, NULL, NULL), 0);
        cr_assert_eq(metric_series(m, NULL, NULL), -EOPNOTSUPP);
        cr_assert_eq(metric_gauge_set(m, NULL, 1), -EOPNOTSUPP);

        expect_callbacks(reg, 3, 41);

        /* Read at every exposition, not at registration. */
        in_flight = 0;
        sent = 42;
        expect_callbacks(reg, 0, 42);
}

typedef struct Collected {
        unsigned collected, read, destroyed;
        double value;
} Collected;

static void collect_one(void *userdata) {
        Collected *c = userdata;

        c->collected++;
        c->value = c->collected * 10;
}

static int read_collected(void *userdata, double *ret) {
        Collected *c = userdata;

        c->read++;
        *ret = c->value;
        return 0;
}

static void destroy_collected(void *userdata) {
        ((Collected *) userdata)->destroyed++;
}

Test(metrics, collectors) {
        MetricsRegistry *reg = NULL;
        Collected c = { 0 }, lost = { 0 };

        cr_assert_eq(metrics_registry_new(&reg), 0);
        cr_assert_eq(metrics_collector_add(reg, NULL, &lost, destroy_collected), -EINVAL);
        cr_assert_eq(lost.destroyed, 1); /* ownership passed even when refused */
        cr_assert_eq(metrics_collector_add(reg, collect_one, &c, destroy_collected), 0);
        cr_assert_eq(metrics_callback_new(reg, METRIC_GAUGE, "a", "A.", read_collected, &c, NULL), 0);
        cr_assert_eq(metrics_callback_new(reg, METRIC_GAUGE, "b", "B.", read_collected, &c, NULL), 0);

        /* Once per exposition, before the callbacks: both read the same collection. */
        expect_text(reg, "# HELP a A.\n# TYPE a gauge\na 10\n# HELP b B.\n# TYPE b gauge\nb 10\n");
        cr_assert_eq(c.collected, 1);
        cr_assert_eq(c.read, 2);
        expect_text(reg, "# HELP a A.\n# TYPE a gauge\na 20\n# HELP b B.\n# TYPE b gauge\nb 20\n");
        cr_assert_eq(c.collected, 2);

        cr_assert_eq(c.destroyed, 0);
        metrics_registry_free(reg);
        cr_assert_eq(c.destroyed, 1);
}

Test(metrics, appends_and_many_series) {
        _cleanup_(metrics_registry_freep) MetricsRegistry *reg = NULL;
        Buffer b = { 0 };
        Metric *m;
        char label[32];

        cr_assert_eq(metrics_registry_new(&reg), 0);
        cr_assert_eq(metrics_gauge_new(reg, "g", "G.", "n", &m), 0);
        for (unsigned i = 0; i < 1000; i++) {
                snprintf(label, sizeof(label), "%u", i);
                cr_assert_eq(metric_gauge_set(m, label, i), 0);
        }

        cr_assert_eq(buffer_append(&b, "prefix\n", 7), 0);
        cr_assert_eq(metrics_format(reg, &b), 0);
        cr_assert_eq(memcmp(b.data, "prefix\n# HELP g G.\n", 19), 0);
        cr_assert_eq(memcmp(b.data + b.size - 15, "g{n=\"999\"} 999\n", 15), 0);
        buffer_done(&b);
}

Test(metrics, histogram_edges) {
        _cleanup_(metrics_registry_freep) MetricsRegistry *reg = NULL;
        Metric *h;

        cr_assert_eq(metrics_registry_new(&reg), 0);
        cr_assert_eq(metrics_histogram_new(reg, "h_bytes", "H.", (const double[]) { -1, 0, 1 }, 3, &h), 0);
        metric_histogram_observe(h, -5);
        metric_histogram_observe(h, -1);
        metric_histogram_observe(h, 0);
        metric_histogram_observe(h, 1);
        metric_histogram_observe(h, 1.0000001);
        metric_histogram_observe(h, INFINITY);
        expect_text(reg,
                    "# HELP h_bytes H.\n"
                    "# TYPE h_bytes histogram\n"
                    "h_bytes_bucket{le=\"-1\"} 2\n"
                    "h_bytes_bucket{le=\"0\"} 3\n"
                    "h_bytes_bucket{le=\"1\"} 4\n"
                    "h_bytes_bucket{le=\"+Inf\"} 6\n"
                    "h_bytes_sum +Inf\n"
                    "h_bytes_count 6\n");

        metric_histogram_observe(h, NAN);
        expect_text(reg,
                    "# HELP h_bytes H.\n"
                    "# TYPE h_bytes histogram\n"
                    "h_bytes_bucket{le=\"-1\"} 2\n"
                    "h_bytes_bucket{le=\"0\"} 3\n"
                    "h_bytes_bucket{le=\"1\"} 4\n"
                    "h_bytes_bucket{le=\"+Inf\"} 7\n"
                    "h_bytes_sum NaN\n"
                    "h_bytes_count 7\n");
}

/* The daemon's own registry (core/telemetry.c), fed like the pipeline feeds it. */

static char *promtool_path(void) {
        const char *path = getenv("PATH");

        for (const char *p = path ? path : "/usr/bin:/bin"; *p;) {
                size_t n = strcspn(p, ":");
                char *candidate;

                if (asprintf(&candidate, "%.*s/promtool", (int) n, p) < 0)
                        return NULL;
                if (access(candidate, X_OK) == 0)
                        return candidate;
                free(candidate);
                p += n;
                if (*p)
                        p++;
        }
        return NULL;
}

/* promtool check metrics on text: its output ("" when it finds nothing), or NULL without promtool. */
static char *promtool_check(const char *text) {
        _cleanup_free_ char *promtool = promtool_path(), *cmd = NULL;
        char path[] = "/tmp/test-metrics-telemetry.XXXXXX", output[8192];
        size_t n;
        FILE *p;
        int fd, status;

        if (!promtool)
                return NULL;
        fd = mkstemp(path);
        cr_assert_geq(fd, 0);
        cr_assert_eq(write(fd, text, strlen(text)), (ssize_t) strlen(text));
        (void) close(fd);
        cr_assert_geq(asprintf(&cmd, "'%s' check metrics < '%s' 2>&1", promtool, path), 0);
        p = popen(cmd, "r");
        cr_assert_not_null(p);
        n = fread(output, 1, sizeof output - 1, p);
        output[n] = '\0';
        status = pclose(p);
        (void) unlink(path);
        if (output[0] == '\0' && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
                snprintf(output, sizeof output, "(exit status %d)", status);
        return strdup(output);
}

static bool has_line(const char *text, const char *line) {
        size_t n = strlen(line);

        for (const char *p = text; (p = strstr(p, line)); p += n)
                if ((p == text || p[-1] == '\n') && p[n] == '\n')
                        return true;
        return false;
}

/* Every sample belongs to a family announced by HELP and TYPE before it. */
static void expect_help_and_type(const char *text) {
        char family[128] = "", type[16] = "";
        bool helped = false;

        for (const char *line = text; *line;) {
                size_t n = strcspn(line, "\n");
                char name[128];

                if (startswith(line, "# HELP ")) {
                        cr_assert_eq(sscanf(line, "# HELP %127s", family), 1);
                        helped = true;
                        type[0] = '\0';
                } else if (startswith(line, "# TYPE ")) {
                        cr_assert_eq(sscanf(line, "# TYPE %127s %15s", name, type), 2);
                        cr_assert(helped && streq(name, family), "TYPE %s without its HELP", name);
                } else {
                        size_t l = strcspn(line, "{ ");
                        bool own = l == strlen(family) && strncmp(line, family, l) == 0;

                        snprintf(name, sizeof name, "%.*s", (int) l, line);
                        if (!own && streq(type, "histogram")) {
                                const char *suffix = startswith(name, family);

                                own = suffix && (streq(suffix, "_bucket") || streq(suffix, "_sum") ||
                                                 streq(suffix, "_count"));
                        }
                        cr_assert(own && type[0], "sample %s outside its family (%s, %s)", name, family, type);
                }
                line += n;
                if (*line)
                        line++;
        }
}

Test(metrics, telemetry) {
        _cleanup_(telemetry_freep) Telemetry *t = NULL;
        _cleanup_free_ char *text = NULL, *said = NULL;
        PipelineStats st = {
                .events_received = 1234,
                .events_redelivered = 34,
                .events_sent = 1100,
                .batches_sent = 11,
                .batches_failed = 2,
                .batches_split = 1,
                .batches_held = 2,
                .events_returned_expiring = 5,
                .bytes_raw = 1000000,
                .bytes_compressed = 160000,
                .broker_reconnects = 3,
                .broker_cancels = 2,
        };
        static const char *const urls[] = { "amqp://gw:***@10.0.0.1:5672/", "amqp://gw:***@10.0.0.2:5672/" };
        StatusSnapshot snap = {
                .stats = &st,
                .broker_connected = true,
                .broker_urls = urls,
                .n_broker_urls = 2,
                .broker_url = 1,
                .database_connected = false,
                .database_reconnects = 5,
                .circuit = CIRCUIT_OPEN,
                .in_flight = 2,
                .pending_events = 250,
                .unacked = 300,
                .prefetch = 400,
                .ledger_backlog = 4,
        };
        Buffer b = { 0 };

        st.events_dead_lettered[DEAD_LETTER_NOT_JSON] = 7;
        st.events_dead_lettered[DEAD_LETTER_HTTP] = 3;
#ifdef PIPELINE_HTTP_STATUS_MAX
        st.events_dead_lettered_http[413] = 3;
#endif

        cr_assert_eq(telemetry_new(&t), 0);
        telemetry_request_done(t, 200, 100 * USEC_PER_MSEC);
        telemetry_request_done(t, 200, 3 * USEC_PER_MSEC);
        telemetry_request_done(t, 413, 20 * USEC_PER_MSEC);
        telemetry_request_done(t, 0, 30 * USEC_PER_SEC);
        telemetry_batch_formed(t, 100, 16000);
        telemetry_batch_formed(t, 1, 500);
        telemetry_delivery_received(t, 0);
        telemetry_delivery_received(t, 0);
        telemetry_delivery_received(t, 3);

        cr_assert_eq(telemetry_format(t, &snap, &b), 0);
        text = strndup((const char *) b.data, b.size);
        buffer_done(&b);

        /* Counters are the snapshot's, as they are. */
        cr_assert(has_line(text, "transmitter_events_received_total 1234"), "%s", text);
        cr_assert(has_line(text, "transmitter_events_sent_total 1100"));
        cr_assert(has_line(text, "transmitter_events_redelivered_total 34"));
        cr_assert(has_line(text, "transmitter_events_dead_lettered_total{reason=\"not_json\"} 7"));
        cr_assert(has_line(text, "transmitter_events_dead_lettered_total{reason=\"empty\"} 0"));
        cr_assert(has_line(text, "transmitter_events_dead_lettered_total{reason=\"too_large\"} 0"));
#ifdef PIPELINE_HTTP_STATUS_MAX
        cr_assert(has_line(text, "transmitter_events_dead_lettered_total{reason=\"http_413\"} 3"), "%s", text);
        cr_assert_null(strstr(text, "reason=\"http\""));
        cr_assert_null(strstr(text, "reason=\"http_400\""));
#else
        cr_assert(has_line(text, "transmitter_events_dead_lettered_total{reason=\"http\"} 3"), "%s", text);
#endif
        cr_assert(has_line(text, "transmitter_batches_total{outcome=\"sent\"} 11"));
        cr_assert(has_line(text, "transmitter_batches_total{outcome=\"failed\"} 2"));
        cr_assert(has_line(text, "transmitter_batches_total{outcome=\"split\"} 1"));
        cr_assert(has_line(text, "transmitter_batches_total{outcome=\"held\"} 2"));
        cr_assert(has_line(text, "transmitter_consumer_timeout_returns_total 5"));
        cr_assert(has_line(text, "transmitter_message_returns_bucket{le=\"0\"} 2"), "%s", text);
        cr_assert(has_line(text, "transmitter_message_returns_bucket{le=\"3\"} 3"));
        cr_assert(has_line(text, "transmitter_message_returns_sum 3"));
        cr_assert(has_line(text, "transmitter_payload_bytes_total{stage=\"raw\"} 1000000"));
        cr_assert(has_line(text, "transmitter_payload_bytes_total{stage=\"compressed\"} 160000"));
        cr_assert(has_line(text, "transmitter_reconnects_total{peer=\"rabbitmq\"} 3"));
        cr_assert(has_line(text, "transmitter_reconnects_total{peer=\"postgresql\"} 5"));
        cr_assert(has_line(text, "transmitter_broker_consumer_cancels_total 2"));
        /* Per code, from the hooks; "none" for no answer. */
        cr_assert(has_line(text, "transmitter_http_requests_total{code=\"200\"} 2"));
        cr_assert(has_line(text, "transmitter_http_requests_total{code=\"413\"} 1"));
        cr_assert(has_line(text, "transmitter_http_requests_total{code=\"none\"} 1"));
        /* Gauges. */
        cr_assert(has_line(text, "transmitter_circuit_state 1"));
        cr_assert(has_line(text, "transmitter_in_flight_batches 2"));
        cr_assert(has_line(text, "transmitter_pending_events 250"));
        cr_assert(has_line(text, "transmitter_unacked_messages 300"));
        cr_assert(has_line(text, "transmitter_prefetch_messages 400"));
        cr_assert(has_line(text, "transmitter_ledger_backlog_records 4"));
        cr_assert(has_line(text, "transmitter_up{peer=\"rabbitmq\"} 1"));
        cr_assert(has_line(text, "transmitter_up{peer=\"postgresql\"} 0"));
        /* The node in use 1, the other 0. */
        cr_assert(has_line(text, "transmitter_broker_connected_info{url=\"amqp://gw:***@10.0.0.2:5672/\"} 1"), "%s",
                  text);
        cr_assert(has_line(text, "transmitter_broker_connected_info{url=\"amqp://gw:***@10.0.0.1:5672/\"} 0"));
        /* Histograms: cumulative, +Inf equal to _count. */
        cr_assert(has_line(text, "transmitter_http_request_duration_seconds_bucket{le=\"0.005\"} 1"));
        cr_assert(has_line(text, "transmitter_http_request_duration_seconds_bucket{le=\"0.025\"} 2"));
        cr_assert(has_line(text, "transmitter_http_request_duration_seconds_bucket{le=\"0.1\"} 3"));
        cr_assert(has_line(text, "transmitter_http_request_duration_seconds_bucket{le=\"10\"} 3"));
        cr_assert(has_line(text, "transmitter_http_request_duration_seconds_bucket{le=\"30\"} 4"));
        cr_assert(has_line(text, "transmitter_http_request_duration_seconds_bucket{le=\"+Inf\"} 4"));
        cr_assert(has_line(text, "transmitter_http_request_duration_seconds_count 4"));
        cr_assert(has_line(text, "transmitter_http_request_duration_seconds_sum 30.123"));
        cr_assert(has_line(text, "transmitter_batch_events_bucket{le=\"1\"} 1"));
        cr_assert(has_line(text, "transmitter_batch_events_bucket{le=\"100\"} 2"));
        cr_assert(has_line(text, "transmitter_batch_events_sum 101"));
        cr_assert(has_line(text, "transmitter_batch_bytes_bucket{le=\"1024\"} 1"));
        cr_assert(has_line(text, "transmitter_batch_bytes_bucket{le=\"16384\"} 2"));
        cr_assert(has_line(text, "transmitter_batch_bytes_sum 16500"));

        expect_help_and_type(text);

        {
                /* Not connected: every node 0. */
                _cleanup_free_ char *down = NULL;

                snap.broker_connected = false;
                cr_assert_eq(telemetry_format(t, &snap, &b), 0);
                down = strndup((const char *) b.data, b.size);
                buffer_done(&b);
                cr_assert(has_line(down, "transmitter_broker_connected_info{url=\"amqp://gw:***@10.0.0.2:5672/\"} 0"));
                cr_assert(has_line(down, "transmitter_broker_connected_info{url=\"amqp://gw:***@10.0.0.1:5672/\"} 0"));
        }

        said = promtool_check(text);
        if (!said)
                cr_skip_test("promtool not found (Debian package prometheus)");
        cr_assert_str_eq(said, "", "promtool on:\n%s\nsaid:\n%s", text, said);
}
