/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>

#include "core/metrics.h"

struct Metric {
        MetricType type;
        char *name;
        char *help;
        char *label_name;               /* NULL: unlabelled */

        /* counter, gauge */
        MetricSeries *series;
        MetricSeries *series_tail;

        /* histogram: counts are per bucket here, made cumulative on output; counts[n_bounds] is +Inf */
        double *bounds;
        uint64_t *counts;
        size_t n_bounds;
        uint64_t count;
        double sum;

        /* callback */
        MetricCallback callback;
        void *userdata;

        Metric *next;
};

typedef struct Collector {
        MetricsCollector collect;
        void *userdata;
        void (*destroy)(void *);
        struct Collector *next;
} Collector;

struct MetricsRegistry {
        Metric *metrics;
        Metric *metrics_tail;
        Collector *collectors;
        Collector *collectors_tail;
};

static const char *const metric_type_table[_METRIC_TYPE_MAX] = {
        [METRIC_COUNTER] = "counter",
        [METRIC_GAUGE] = "gauge",
        [METRIC_HISTOGRAM] = "histogram",
};

const char *metric_type_to_string(MetricType t) {
        if ((unsigned) t >= _METRIC_TYPE_MAX)
                return NULL;
        return metric_type_table[t];
}

static bool ascii_alpha(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool ascii_digit(char c) {
        return c >= '0' && c <= '9';
}

bool metrics_name_is_valid(const char *name) {
        if (isempty(name))
                return false;
        if (!ascii_alpha(name[0]) && name[0] != '_' && name[0] != ':')
                return false;
        for (const char *p = name + 1; *p; p++)
                if (!ascii_alpha(*p) && !ascii_digit(*p) && *p != '_' && *p != ':')
                        return false;
        return true;
}

bool metrics_label_name_is_valid(const char *name) {
        if (isempty(name))
                return false;
        if (!ascii_alpha(name[0]) && name[0] != '_')
                return false;
        for (const char *p = name + 1; *p; p++)
                if (!ascii_alpha(*p) && !ascii_digit(*p) && *p != '_')
                        return false;
        /* Prometheus keeps names starting with "__" for itself. */
        return !startswith(name, "__");
}

static bool endswith(const char *s, const char *suffix) {
        size_t ls = strlen(s), lx = strlen(suffix);
        return ls >= lx && memcmp(s + ls - lx, suffix, lx) == 0;
}

/* Prometheus rejects label values that are not UTF-8; the text format has no way to escape them. */
static bool utf8_is_valid(const char *s) {
        const unsigned char *p = (const unsigned char *) s;

        while (*p) {
                uint32_t cp;
                size_t n;

                if (*p < 0x80) {
                        p++;
                        continue;
                } else if ((*p & 0xe0) == 0xc0) {
                        n = 1;
                        cp = *p & 0x1f;
                } else if ((*p & 0xf0) == 0xe0) {
                        n = 2;
                        cp = *p & 0x0f;
                } else if ((*p & 0xf8) == 0xf0) {
                        n = 3;
                        cp = *p & 0x07;
                } else
                        return false;

                for (size_t i = 1; i <= n; i++) {
                        if ((p[i] & 0xc0) != 0x80)
                                return false; /* also stops at the NUL */
                        cp = (cp << 6) | (p[i] & 0x3f);
                }
                /* overlong forms, surrogates and values past U+10FFFF */
                if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
                    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
                        return false;
                p += n + 1;
        }
        return true;
}

int metrics_registry_new(MetricsRegistry **ret) {
        MetricsRegistry *reg;

        assert(ret);

        reg = calloc(1, sizeof(*reg));
        if (!reg)
                return -ENOMEM;
        *ret = reg;
        return 0;
}

static MetricSeries *series_free(MetricSeries *s) {
        if (!s)
                return NULL;
        free(s->label_value);
        return mfree(s);
}

static Metric *metric_free(Metric *m) {
        if (!m)
                return NULL;
        for (MetricSeries *s = m->series, *n; s; s = n) {
                n = s->next;
                series_free(s);
        }
        free(m->name);
        free(m->help);
        free(m->label_name);
        free(m->bounds);
        free(m->counts);
        return mfree(m);
}
DEFINE_TRIVIAL_CLEANUP_FUNC(Metric *, metric_free);

MetricsRegistry *metrics_registry_free(MetricsRegistry *reg) {
        if (!reg)
                return NULL;
        for (Metric *m = reg->metrics, *n; m; m = n) {
                n = m->next;
                metric_free(m);
        }
        for (Collector *c = reg->collectors, *n; c; c = n) {
                n = c->next;
                if (c->destroy)
                        c->destroy(c->userdata);
                free(c);
        }
        return mfree(reg);
}

int metrics_collector_add(MetricsRegistry *reg, MetricsCollector collect, void *userdata, void (*destroy)(void *)) {
        Collector *c;

        assert(reg);

        c = collect ? calloc(1, sizeof(*c)) : NULL;
        if (!c) {
                if (destroy)
                        destroy(userdata);
                return collect ? -ENOMEM : -EINVAL;
        }
        *c = (Collector) { .collect = collect, .userdata = userdata, .destroy = destroy };
        if (reg->collectors_tail)
                reg->collectors_tail->next = c;
        else
                reg->collectors = c;
        reg->collectors_tail = c;
        return 0;
}

static Metric *registry_find(const MetricsRegistry *reg, const char *name) {
        for (Metric *m = reg->metrics; m; m = m->next)
                if (streq(m->name, name))
                        return m;
        return NULL;
}

static int series_new(Metric *m, const char *label_value, MetricSeries **ret) {
        _cleanup_free_ MetricSeries *s = NULL;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        if (label_value) {
                s->label_value = strdup(label_value);
                if (!s->label_value)
                        return -ENOMEM;
        }

        if (m->series_tail)
                m->series_tail->next = s;
        else
                m->series = s;
        m->series_tail = s;
        *ret = TAKE_PTR(s);
        return 0;
}

/* Validates and allocates a family, not yet linked into the registry. */
static int metric_new(const MetricsRegistry *reg, MetricType type, const char *name, const char *help,
                      const char *label_name, Metric **ret) {
        _cleanup_(metric_freep) Metric *m = NULL;

        assert(reg);
        assert(ret);

        if (!metrics_name_is_valid(name) || isempty(help))
                return -EINVAL;
        /* promtool's lint: counters end in _total, and nothing else does. */
        if ((type == METRIC_COUNTER) != endswith(name, "_total"))
                return -EINVAL;
        /* The names of a histogram's own samples would clash on a scrape, and promtool flags them
         * on anything else too. */
        if (endswith(name, "_bucket") || endswith(name, "_count") || endswith(name, "_sum"))
                return -EINVAL;
        if (label_name && !metrics_label_name_is_valid(label_name))
                return -EINVAL;
        /* Reserved for histogram buckets and summary quantiles. */
        if (label_name && (streq(label_name, "le") || streq(label_name, "quantile")))
                return -EINVAL;
        if (registry_find(reg, name))
                return -EEXIST;

        m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        m->type = type;
        m->name = strdup(name);
        m->help = strdup(help);
        if (!m->name || !m->help)
                return -ENOMEM;
        if (label_name) {
                m->label_name = strdup(label_name);
                if (!m->label_name)
                        return -ENOMEM;
        }

        *ret = TAKE_PTR(m);
        return 0;
}

static void registry_link(MetricsRegistry *reg, Metric *m) {
        if (reg->metrics_tail)
                reg->metrics_tail->next = m;
        else
                reg->metrics = m;
        reg->metrics_tail = m;
}

static int metrics_value_new(MetricsRegistry *reg, MetricType type, const char *name, const char *help,
                             const char *label_name, Metric **ret) {
        _cleanup_(metric_freep) Metric *m = NULL;
        MetricSeries *s;
        int r;

        r = metric_new(reg, type, name, help, label_name, &m);
        if (r < 0)
                return r;
        if (!label_name) {
                r = series_new(m, NULL, &s);
                if (r < 0)
                        return r;
        }

        registry_link(reg, m);
        if (ret)
                *ret = m;
        TAKE_PTR(m);
        return 0;
}

int metrics_counter_new(MetricsRegistry *reg, const char *name, const char *help, const char *label_name,
                        Metric **ret) {
        return metrics_value_new(reg, METRIC_COUNTER, name, help, label_name, ret);
}

int metrics_gauge_new(MetricsRegistry *reg, const char *name, const char *help, const char *label_name,
                      Metric **ret) {
        return metrics_value_new(reg, METRIC_GAUGE, name, help, label_name, ret);
}

int metrics_histogram_new(MetricsRegistry *reg, const char *name, const char *help, const double *bounds,
                          size_t n_bounds, Metric **ret) {
        _cleanup_(metric_freep) Metric *m = NULL;
        int r;

        if (n_bounds > 0 && !bounds)
                return -EINVAL;
        if (n_bounds > 0 && isinf(bounds[n_bounds - 1]) && bounds[n_bounds - 1] > 0)
                n_bounds--;
        for (size_t i = 0; i < n_bounds; i++) {
                if (!isfinite(bounds[i]))
                        return -EINVAL;
                if (i > 0 && !(bounds[i] > bounds[i - 1]))
                        return -EINVAL;
        }
        r = metric_new(reg, METRIC_HISTOGRAM, name, help, NULL, &m);
        if (r < 0)
                return r;

        if (n_bounds > 0) {
                m->bounds = malloc(n_bounds * sizeof(double));
                if (!m->bounds)
                        return -ENOMEM;
                memcpy(m->bounds, bounds, n_bounds * sizeof(double));
        }
        m->n_bounds = n_bounds;
        m->counts = calloc(n_bounds + 1, sizeof(uint64_t));
        if (!m->counts)
                return -ENOMEM;

        registry_link(reg, m);
        if (ret)
                *ret = m;
        TAKE_PTR(m);
        return 0;
}

int metrics_callback_new(MetricsRegistry *reg, MetricType type, const char *name, const char *help,
                         MetricCallback callback, void *userdata, Metric **ret) {
        _cleanup_(metric_freep) Metric *m = NULL;
        int r;

        if ((type != METRIC_COUNTER && type != METRIC_GAUGE) || !callback)
                return -EINVAL;

        r = metric_new(reg, type, name, help, NULL, &m);
        if (r < 0)
                return r;
        m->callback = callback;
        m->userdata = userdata;

        registry_link(reg, m);
        if (ret)
                *ret = m;
        TAKE_PTR(m);
        return 0;
}

int metric_series(Metric *m, const char *label_value, MetricSeries **ret) {
        MetricSeries *s;
        int r;

        assert(m);

        if (m->type == METRIC_HISTOGRAM || m->callback)
                return -EOPNOTSUPP;
        if (!m->label_name != !label_value)
                return -EINVAL;

        for (s = m->series; s; s = s->next)
                if (streq_ptr(s->label_value, label_value))
                        break;
        if (!s) {
                if (!utf8_is_valid(label_value))
                        return -EINVAL;
                r = series_new(m, label_value, &s);
                if (r < 0)
                        return r;
        }

        if (ret)
                *ret = s;
        return 0;
}

int metric_counter_add(Metric *m, const char *label_value, double n) {
        MetricSeries *s;
        int r;

        assert(m);

        if (m->type != METRIC_COUNTER)
                return -EINVAL;
        /* Counters only go up: a negative step would read as a reset to rate(). */
        if (!(n >= 0))
                return -EINVAL;
        r = metric_series(m, label_value, &s);
        if (r < 0)
                return r;
        metric_series_add(s, n);
        return 0;
}

int metric_gauge_set(Metric *m, const char *label_value, double v) {
        MetricSeries *s;
        int r;

        assert(m);

        if (m->type != METRIC_GAUGE)
                return -EINVAL;
        r = metric_series(m, label_value, &s);
        if (r < 0)
                return r;
        metric_series_set(s, v);
        return 0;
}

int metric_gauge_add(Metric *m, const char *label_value, double delta) {
        MetricSeries *s;
        int r;

        assert(m);

        if (m->type != METRIC_GAUGE)
                return -EINVAL;
        r = metric_series(m, label_value, &s);
        if (r < 0)
                return r;
        metric_series_add(s, delta);
        return 0;
}

void metric_histogram_observe(Metric *m, double v) {
        size_t lo = 0, hi;

        assert(m);
        assert(m->type == METRIC_HISTOGRAM);

        /* The first bucket whose bound is >= v; n_bounds (+Inf) when none is, NaN included. */
        hi = m->n_bounds;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (v <= m->bounds[mid])
                        hi = mid;
                else
                        lo = mid + 1;
        }
        m->counts[lo]++;
        m->count++;
        m->sum += v;
}

char *metrics_format_float(double v, char buf[static METRICS_FLOAT_MAX]) {
        if (isnan(v))
                return strcpy(buf, "NaN");
        if (isinf(v))
                return strcpy(buf, v > 0 ? "+Inf" : "-Inf");

        /* Counts are the common case: plain digits read better than 1.2345678901e+10, and are exact
         * for every integral double in int64 range. 0x1p63 itself would overflow the cast. */
        if (v == trunc(v) && fabs(v) < 0x1p63) {
                snprintf(buf, METRICS_FLOAT_MAX, "%" PRId64, (int64_t) v);
                return buf;
        }

        /* The shortest of %.15g..%.17g that parses back to v; %.17g always does. */
        for (int prec = 15; prec < 17; prec++) {
                snprintf(buf, METRICS_FLOAT_MAX, "%.*g", prec, v);
                if (strtod(buf, NULL) == v)
                        return buf;
        }
        snprintf(buf, METRICS_FLOAT_MAX, "%.17g", v);
        return buf;
}

static int append_str(Buffer *out, const char *s) {
        return buffer_append(out, s, strlen(s));
}

/* HELP text escapes backslash and newline; label values also the double quote (format 0.0.4). */
static int append_escaped(Buffer *out, const char *s, bool quote) {
        int r;

        for (const char *p = s; *p;) {
                size_t n = strcspn(p, quote ? "\\\n\"" : "\\\n");
                const char *esc;

                r = buffer_append(out, p, n);
                if (r < 0)
                        return r;
                p += n;
                if (!*p)
                        break;
                esc = *p == '\\' ? "\\\\" : *p == '\n' ? "\\n" : "\\\"";
                r = buffer_append(out, esc, 2);
                if (r < 0)
                        return r;
                p++;
        }
        return 0;
}

/* name[suffix][{label="value"}] value\n */
static int append_sample(Buffer *out, const char *name, const char *suffix, const char *label_name,
                         const char *label_value, double v) {
        char num[METRICS_FLOAT_MAX];
        int r;

        r = append_str(out, name);
        if (r >= 0 && suffix)
                r = append_str(out, suffix);
        if (r >= 0 && label_name) {
                r = append_str(out, "{");
                if (r >= 0)
                        r = append_str(out, label_name);
                if (r >= 0)
                        r = append_str(out, "=\"");
                if (r >= 0)
                        r = append_escaped(out, label_value, true);
                if (r >= 0)
                        r = append_str(out, "\"}");
        }
        if (r >= 0)
                r = append_str(out, " ");
        if (r >= 0)
                r = append_str(out, metrics_format_float(v, num));
        if (r >= 0)
                r = append_str(out, "\n");
        return r;
}

static int format_family(const Metric *m, Buffer *out) {
        char le[METRICS_FLOAT_MAX];
        int r;

        r = append_str(out, "# HELP ");
        if (r >= 0)
                r = append_str(out, m->name);
        if (r >= 0)
                r = append_str(out, " ");
        if (r >= 0)
                r = append_escaped(out, m->help, false);
        if (r >= 0)
                r = append_str(out, "\n# TYPE ");
        if (r >= 0)
                r = append_str(out, m->name);
        if (r >= 0)
                r = append_str(out, " ");
        if (r >= 0)
                r = append_str(out, metric_type_to_string(m->type));
        if (r >= 0)
                r = append_str(out, "\n");
        if (r < 0)
                return r;

        if (m->callback) {
                double v;

                /* A source that cannot be read now (a /proc file, say) costs its sample, not the scrape. */
                if (m->callback(m->userdata, &v) < 0)
                        return 0;
                return append_sample(out, m->name, NULL, NULL, NULL, v);
        }

        if (m->type == METRIC_HISTOGRAM) {
                uint64_t cumulative = 0;

                for (size_t i = 0; i < m->n_bounds; i++) {
                        cumulative += m->counts[i];
                        r = append_sample(out, m->name, "_bucket", "le",
                                          metrics_format_float(m->bounds[i], le), (double) cumulative);
                        if (r < 0)
                                return r;
                }
                r = append_sample(out, m->name, "_bucket", "le", "+Inf", (double) m->count);
                if (r >= 0)
                        r = append_sample(out, m->name, "_sum", NULL, NULL, m->sum);
                if (r >= 0)
                        r = append_sample(out, m->name, "_count", NULL, NULL, (double) m->count);
                return r;
        }

        for (const MetricSeries *s = m->series; s; s = s->next) {
                r = append_sample(out, m->name, NULL, m->label_name, s->label_value, s->value);
                if (r < 0)
                        return r;
        }
        return 0;
}

int metrics_format(const MetricsRegistry *reg, Buffer *out) {
        size_t saved;
        int r;

        assert(reg);
        assert(out);

        for (const Collector *c = reg->collectors; c; c = c->next)
                c->collect(c->userdata);

        saved = out->size;
        for (const Metric *m = reg->metrics; m; m = m->next) {
                r = format_family(m, out);
                if (r < 0) {
                        out->size = saved;
                        return r;
                }
        }
        return 0;
}
