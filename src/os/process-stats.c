/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <dirent.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "os/process-stats.h"

/* /proc/self/stat is one line of well under 1 KiB; the slack is for future fields. */
#define PROC_STAT_MAX (16U * 1024U)

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
        struct stat st;
        uint64_t n = 0;
        int self;

        assert(ret);

        /* Since Linux 6.2 the directory's size is the number of open descriptors: no listing,
         * which costs a dentry per descriptor (a fifth of a /metrics request with 40 of them).
         * Older kernels say 0, and a process that asks has at least one open. */
        if (stat("/proc/self/fd", &st) >= 0 && st.st_size > 0) {
                *ret = (uint64_t) st.st_size;
                return 0;
        }

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

int process_start_time_read(double *ret) {
        usec_t boottime, realtime;
        uint64_t hz;
        ProcStat st;
        int r;

        assert(ret);

        r = clock_ticks(&hz);
        if (r < 0)
                return r;
        r = proc_self_stat_read(&st);
        if (r < 0)
                return r;
        /* Not /proc/stat's btime: ProcSubset=pid hides /proc/stat, and btime is rounded down to a
         * second anyway. starttime counts CLOCK_BOOTTIME (suspend included, and shifted by the
         * time namespace as that clock is), so the two clocks read back to back give the epoch
         * time of boot. */
        boottime = now(CLOCK_BOOTTIME);
        realtime = now(CLOCK_REALTIME);
        *ret = process_start_time_compute(st.starttime, hz, realtime, boottime);
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

/* One read of /proc/self/stat and of the descriptor count per exposition, shared by the
 * callbacks: they run right after the collector, within the same metrics_format(). */
typedef struct ProcessSample {
        int stat_r; /* < 0: the callbacks leave their samples out */
        ProcStat stat;
        int fds_r;
        uint64_t fds;
} ProcessSample;

static void sample_collect(void *userdata) {
        ProcessSample *s = userdata;

        s->stat_r = proc_self_stat_read(&s->stat);
        s->fds_r = process_open_fds_read(&s->fds);
}

static int cpu_seconds_cb(void *userdata, double *ret) {
        const ProcessSample *s = userdata;
        uint64_t hz;
        int r;

        if (s->stat_r < 0)
                return s->stat_r;
        r = clock_ticks(&hz);
        if (r < 0)
                return r;
        *ret = (double) (s->stat.utime + s->stat.stime) / (double) hz;
        return 0;
}

static int resident_memory_cb(void *userdata, double *ret) {
        const ProcessSample *s = userdata;
        uint64_t ps;
        int r;

        if (s->stat_r < 0)
                return s->stat_r;
        r = page_size(&ps);
        if (r < 0)
                return r;
        *ret = (double) (s->stat.rss * ps);
        return 0;
}

static int virtual_memory_cb(void *userdata, double *ret) {
        const ProcessSample *s = userdata;

        if (s->stat_r < 0)
                return s->stat_r;
        *ret = (double) s->stat.vsize;
        return 0;
}

static int open_fds_cb(void *userdata, double *ret) {
        const ProcessSample *s = userdata;

        if (s->fds_r < 0)
                return s->fds_r;
        *ret = (double) s->fds;
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
        ProcessSample *sample;
        Metric *start;
        double t;
        int r;

        assert(reg);

        /* Fixed for the life of the process: read once, and first, so that a /proc without
         * /proc/self/stat fails before anything is registered. */
        r = process_start_time_read(&t);
        if (r < 0)
                return r;

        /* The registry owns the sample from here on, even when adding fails. Until the first
         * collection it reads as "not available". */
        sample = calloc(1, sizeof *sample);
        if (!sample)
                return -ENOMEM;
        sample->stat_r = sample->fds_r = -ENODATA;
        r = metrics_collector_add(reg, sample_collect, sample, free);
        if (r < 0)
                return r;

        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                r = metrics_callback_new(reg, table[i].type, table[i].name, table[i].help,
                                         table[i].callback, sample, NULL);
                if (r < 0)
                        return r;
        }

        r = metrics_gauge_new(reg, "process_start_time_seconds",
                              "Start time of the process since unix epoch in seconds.", NULL, &start);
        if (r < 0)
                return r;
        return metric_gauge_set(start, NULL, t);
}
