/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <dirent.h>
#include <stdio.h>
#include <sys/resource.h>

#include "process-stats.h"

/* /proc/self/stat is one line of well under 1 KiB; the slack is for future fields. */
#define PROC_STAT_MAX (16U * 1024U)

DEFINE_TRIVIAL_CLEANUP_FUNC(DIR *, closedir);
DEFINE_TRIVIAL_CLEANUP_FUNC(FILE *, fclose);

/* Decimal digits only, as the kernel writes them: no sign, no spaces, no overflow. */
static int parse_u64(const char *s, size_t n, uint64_t *ret) {
        uint64_t v = 0;

        if (n == 0)
                return -EINVAL;
        for (size_t i = 0; i < n; i++) {
                unsigned d;

                if (s[i] < '0' || s[i] > '9')
                        return -EINVAL;
                d = (unsigned) (s[i] - '0');
                if (v > (UINT64_MAX - d) / 10)
                        return -ERANGE;
                v = v * 10 + d;
        }
        *ret = v;
        return 0;
}

int proc_stat_parse(const char *text, ProcStat *ret) {
        const char *open, *p;
        ProcStat st = { 0 };
        int r;

        assert(text);
        assert(ret);

        /* comm is whatever the process named itself (prctl(PR_SET_NAME), argv[0]): spaces, ')' and
         * even newlines are allowed, but the fields after it hold none of these, so the last ')'
         * ends it. */
        open = strchr(text, '(');
        p = strrchr(text, ')');
        if (!open || !p || p < open)
                return -EINVAL;
        p++;

        /* Fields are numbered as in proc(5): 1 pid, 2 comm, 3 state, ... */
        for (unsigned field = 3; field <= 24; field++) {
                size_t n;

                if (*p != ' ')
                        return -EINVAL;
                p++;
                n = strcspn(p, " \n");
                if (n == 0)
                        return -EINVAL;

                switch (field) {
                case 14:
                        r = parse_u64(p, n, &st.utime);
                        break;
                case 15:
                        r = parse_u64(p, n, &st.stime);
                        break;
                case 22:
                        r = parse_u64(p, n, &st.starttime);
                        break;
                case 23:
                        r = parse_u64(p, n, &st.vsize);
                        break;
                case 24:
                        r = parse_u64(p, n, &st.rss);
                        break;
                default:
                        r = 0;
                }
                if (r < 0)
                        return -EINVAL;
                p += n;
        }

        *ret = st;
        return 0;
}

int proc_stat_btime_parse(const char *text, uint64_t *ret) {
        assert(text);
        assert(ret);

        for (const char *line = text; *line;) {
                const char *v = startswith(line, "btime ");
                size_t n = strcspn(line, "\n");

                if (v) {
                        size_t m = strcspn(v, " \n");
                        if (v[m] == ' ')
                                return -EINVAL;
                        return parse_u64(v, m, ret) < 0 ? -EINVAL : 0;
                }
                line += n;
                if (*line)
                        line++;
        }
        return -EINVAL;
}

static int clock_ticks(uint64_t *ret) {
        long t = sysconf(_SC_CLK_TCK);

        if (t <= 0)
                return -EINVAL;
        *ret = (uint64_t) t;
        return 0;
}

int proc_self_stat_read(ProcStat *ret) {
        _cleanup_free_ char *text = NULL;
        int r;

        assert(ret);

        r = read_full_file("/proc/self/stat", PROC_STAT_MAX, &text, NULL);
        if (r < 0)
                return r;
        return proc_stat_parse(text, ret);
}

int process_open_fds_read(uint64_t *ret) {
        _cleanup_(closedirp) DIR *d = NULL;
        uint64_t n = 0;
        int self;

        assert(ret);

        d = opendir("/proc/self/fd");
        if (!d)
                return negative_errno();
        self = dirfd(d);

        for (;;) {
                struct dirent *de;
                char *end;
                long fd;

                errno = 0;
                de = readdir(d);
                if (!de) {
                        if (errno != 0)
                                return negative_errno();
                        break;
                }
                if (de->d_name[0] == '.')
                        continue;
                /* The directory stream's own descriptor is listed too; it is ours, not the daemon's. */
                fd = strtol(de->d_name, &end, 10);
                if (*end == '\0' && fd == self)
                        continue;
                n++;
        }

        *ret = n;
        return 0;
}

int process_max_fds_read(uint64_t *ret) {
        struct rlimit rl;

        assert(ret);

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
                return negative_errno();
        *ret = (uint64_t) rl.rlim_cur;
        return 0;
}

static int proc_btime_read(uint64_t *ret) {
        _cleanup_(fclosep) FILE *f = NULL;
        _cleanup_free_ char *line = NULL;
        size_t allocated = 0;

        /* Line by line, not read_full_file(): on a large machine the "intr" line before "btime"
         * can run to hundreds of KiB. */
        f = fopen("/proc/stat", "re");
        if (!f)
                return negative_errno();
        for (;;) {
                errno = 0;
                if (getline(&line, &allocated, f) < 0)
                        return errno != 0 ? negative_errno() : -ENODATA;
                if (startswith(line, "btime "))
                        return proc_stat_btime_parse(line, ret);
        }
}

int process_start_time_read(double *ret) {
        uint64_t btime, hz;
        ProcStat st;
        int r;

        assert(ret);

        r = clock_ticks(&hz);
        if (r < 0)
                return r;
        r = proc_self_stat_read(&st);
        if (r < 0)
                return r;
        r = proc_btime_read(&btime);
        if (r < 0)
                return r;
        *ret = (double) btime + (double) st.starttime / (double) hz;
        return 0;
}

static int page_size(uint64_t *ret) {
        long p = sysconf(_SC_PAGESIZE);

        if (p <= 0)
                return -EINVAL;
        *ret = (uint64_t) p;
        return 0;
}

int process_stats_read(ProcessStats *ret) {
        ProcessStats s = { 0 };
        uint64_t hz, ps;
        ProcStat st;
        int r;

        assert(ret);

        r = clock_ticks(&hz);
        if (r < 0)
                return r;
        r = page_size(&ps);
        if (r < 0)
                return r;
        r = proc_self_stat_read(&st);
        if (r < 0)
                return r;
        s.cpu_seconds = (double) (st.utime + st.stime) / (double) hz;
        s.resident_memory_bytes = st.rss * ps;
        s.virtual_memory_bytes = st.vsize;

        r = process_open_fds_read(&s.open_fds);
        if (r < 0)
                return r;
        r = process_max_fds_read(&s.max_fds);
        if (r < 0)
                return r;
        r = process_start_time_read(&s.start_time_seconds);
        if (r < 0)
                return r;

        *ret = s;
        return 0;
}

/* Each callback reads only what it reports: a scrape every few seconds makes the repeated
 * /proc/self/stat reads negligible, and no value is ever stale. */

static int cpu_seconds_cb(_unused_ void *userdata, double *ret) {
        uint64_t hz;
        ProcStat st;
        int r;

        r = clock_ticks(&hz);
        if (r < 0)
                return r;
        r = proc_self_stat_read(&st);
        if (r < 0)
                return r;
        *ret = (double) (st.utime + st.stime) / (double) hz;
        return 0;
}

static int resident_memory_cb(_unused_ void *userdata, double *ret) {
        uint64_t ps;
        ProcStat st;
        int r;

        r = page_size(&ps);
        if (r < 0)
                return r;
        r = proc_self_stat_read(&st);
        if (r < 0)
                return r;
        *ret = (double) (st.rss * ps);
        return 0;
}

static int virtual_memory_cb(_unused_ void *userdata, double *ret) {
        ProcStat st;
        int r;

        r = proc_self_stat_read(&st);
        if (r < 0)
                return r;
        *ret = (double) st.vsize;
        return 0;
}

static int open_fds_cb(_unused_ void *userdata, double *ret) {
        uint64_t n;
        int r;

        r = process_open_fds_read(&n);
        if (r < 0)
                return r;
        *ret = (double) n;
        return 0;
}

static int max_fds_cb(_unused_ void *userdata, double *ret) {
        uint64_t n;
        int r;

        r = process_max_fds_read(&n);
        if (r < 0)
                return r;
        *ret = (double) n;
        return 0;
}

int process_stats_register(MetricsRegistry *reg) {
        static const struct {
                MetricType type;
                const char *name;
                const char *help;
                MetricCallback callback;
        } table[] = {
                { METRIC_COUNTER, "process_cpu_seconds_total",
                  "Total user and system CPU time spent in seconds.", cpu_seconds_cb },
                { METRIC_GAUGE, "process_resident_memory_bytes",
                  "Resident memory size in bytes.", resident_memory_cb },
                { METRIC_GAUGE, "process_virtual_memory_bytes",
                  "Virtual memory size in bytes.", virtual_memory_cb },
                { METRIC_GAUGE, "process_open_fds",
                  "Number of open file descriptors.", open_fds_cb },
                { METRIC_GAUGE, "process_max_fds",
                  "Maximum number of open file descriptors.", max_fds_cb },
        };
        Metric *start;
        double t;
        int r;

        assert(reg);

        /* Fixed for the life of the process: read once, and first, so that a /proc without it
         * fails before anything is registered. */
        r = process_start_time_read(&t);
        if (r < 0)
                return r;

        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                r = metrics_callback_new(reg, table[i].type, table[i].name, table[i].help,
                                         table[i].callback, NULL, NULL);
                if (r < 0)
                        return r;
        }

        r = metrics_gauge_new(reg, "process_start_time_seconds",
                              "Start time of the process since unix epoch in seconds.", NULL, &start);
        if (r < 0)
                return r;
        return metric_gauge_set(start, NULL, t);
}
