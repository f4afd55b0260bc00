/* SPDX-License-Identifier: MIT */
#pragma once

/* A Prometheus metrics registry and its text exposition (format 0.0.4, architecture §8). Pure: no sockets,
 * the HTTP adapter hands metrics_format() a Buffer. Not thread-safe: it lives on the event loop.
 *
 * Families are counters and gauges (unlabelled, or with one label whose values are series created on
 * first use or declared up front), histograms (fixed bounds, unlabelled), and callback counters and
 * gauges whose value is read when the text is formatted. Families are written in registration order,
 * series in creation order. */

#include "util/buffer.h"
#include "util/util.h"

typedef enum MetricType {
        METRIC_COUNTER,
        METRIC_GAUGE,
        METRIC_HISTOGRAM,
        _METRIC_TYPE_MAX,
} MetricType;

typedef struct MetricsRegistry MetricsRegistry;
typedef struct Metric Metric;

/* One sample of a counter or gauge. Public so that the hot path can hold a handle and bump it
 * without a lookup; only value is the caller's, the rest belongs to metrics.c. */
typedef struct MetricSeries {
        double value;
        char *label_value;              /* NULL in the series of an unlabelled family */
        struct MetricSeries *next;
} MetricSeries;

/* Reads a callback metric's value when the text is formatted. A negative return leaves the
 * sample out of this exposition (the family's HELP and TYPE are still written). */
typedef int (*MetricCallback)(void *userdata, double *ret_value);

int metrics_registry_new(MetricsRegistry **ret);
MetricsRegistry *metrics_registry_free(MetricsRegistry *reg);
DEFINE_TRIVIAL_CLEANUP_FUNC(MetricsRegistry *, metrics_registry_free);

/* Creating a family. name must match [a-zA-Z_:][a-zA-Z0-9_:]*, end in "_total" for counters and
 * not end in it otherwise, nor in "_bucket", "_count" or "_sum" (promtool's lint); label_name
 * (NULL: unlabelled) must match [a-zA-Z_][a-zA-Z0-9_]*, not start with "__" and be neither "le"
 * nor "quantile"; help must be non-empty (promtool wants it).
 * -EINVAL for any of these, -EEXIST for a name already registered, -ENOMEM. ret may be NULL; the
 * registry owns the Metric, which lives as long as it does. An unlabelled counter or gauge has
 * its one series from the start, at 0. */
int metrics_counter_new(MetricsRegistry *reg, const char *name, const char *help, const char *label_name,
                        Metric **ret);
int metrics_gauge_new(MetricsRegistry *reg, const char *name, const char *help, const char *label_name,
                      Metric **ret);
/* bounds: the buckets' upper bounds (inclusive, "le"), finite and strictly increasing; the +Inf
 * bucket is implied (a trailing +Inf in bounds is accepted and dropped). n_bounds may be 0. */
int metrics_histogram_new(MetricsRegistry *reg, const char *name, const char *help, const double *bounds,
                          size_t n_bounds, Metric **ret);
/* type is METRIC_COUNTER or METRIC_GAUGE; the family is unlabelled. */
int metrics_callback_new(MetricsRegistry *reg, MetricType type, const char *name, const char *help,
                         MetricCallback callback, void *userdata, Metric **ret);

/* Called at the start of every metrics_format(), in the order added, before any callback metric
 * is read: for a source that yields several values in one read (one /proc file for several
 * process_* metrics), read once per exposition. destroy (may be NULL) frees userdata with the
 * registry, and also when adding fails. -EINVAL without collect, -ENOMEM. */
typedef void (*MetricsCollector)(void *userdata);
int metrics_collector_add(MetricsRegistry *reg, MetricsCollector collect, void *userdata, void (*destroy)(void *));

/* The series of a counter or gauge for label_value (NULL exactly when the family is unlabelled),
 * created at 0 if new. The handle stays valid as long as the registry. -EINVAL when label_value
 * is given to an unlabelled family or missing for a labelled one, or is not UTF-8; -EOPNOTSUPP
 * for histograms and callback metrics; -ENOMEM. */
int metric_series(Metric *m, const char *label_value, MetricSeries **ret);
/* Makes a labelled series exist, so that it is exposed as 0 before its first event. */
static inline int metric_declare(Metric *m, const char *label_value) {
        return metric_series(m, label_value, NULL);
}

/* By lookup. n must be >= 0 (and not NaN) for counters: -EINVAL otherwise. */
int metric_counter_add(Metric *m, const char *label_value, double n);
int metric_gauge_set(Metric *m, const char *label_value, double v);
int metric_gauge_add(Metric *m, const char *label_value, double delta);

/* By handle, with no lookup. For a counter's series n must be >= 0; this is not checked here. */
static inline void metric_series_add(MetricSeries *s, double n) {
        s->value += n;
}
static inline void metric_series_set(MetricSeries *s, double v) {
        s->value = v;
}

/* O(log buckets), no allocation. NaN counts in +Inf only and makes the sum NaN, as in client_golang.
 * m must be a histogram. */
void metric_histogram_observe(Metric *m, double v);

/* Appends the exposition of every family to out. On -ENOMEM out is as it was before the call. */
int metrics_format(const MetricsRegistry *reg, Buffer *out);

/* Helpers of the format, exposed for the tests and for other text outputs. */

/* Writes v as Prometheus parses it: integral values (below 2^63) in plain digits, others in the
 * shortest form that reads back to the same double, "+Inf", "-Inf", "NaN". buf of at least
 * METRICS_FLOAT_MAX bytes; returns buf. */
#define METRICS_FLOAT_MAX 32
char *metrics_format_float(double v, char buf[static METRICS_FLOAT_MAX]);
bool metrics_name_is_valid(const char *name) _pure_;
bool metrics_label_name_is_valid(const char *name) _pure_;
const char *metric_type_to_string(MetricType t) _pure_;
