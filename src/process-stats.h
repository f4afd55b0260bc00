/* SPDX-License-Identifier: MIT */
#pragma once

/* The standard process_* metrics of Prometheus' client libraries, read from /proc/self. The parsers
 * take the text, so that the tests can feed them fixed strings; the readers are thin. */

#include "metrics.h"
#include "util.h"

/* The fields of /proc/<pid>/stat (proc(5)) that the metrics need. */
typedef struct ProcStat {
        uint64_t utime;         /* clock ticks in user mode */
        uint64_t stime;         /* clock ticks in kernel mode */
        uint64_t starttime;     /* clock ticks after boot when the process started */
        uint64_t vsize;         /* bytes of virtual memory */
        uint64_t rss;           /* resident pages */
} ProcStat;

/* Parses a /proc/<pid>/stat line. comm may hold spaces and parentheses: the fields are counted
 * from its last ')'. -EINVAL when the text is not such a line. */
int proc_stat_parse(const char *text, ProcStat *ret);
/* The start time in seconds since the epoch, from starttime (clock ticks after boot, as in
 * /proc/<pid>/stat) and CLOCK_REALTIME and CLOCK_BOOTTIME read together. Needs no /proc/stat,
 * which ProcSubset=pid hides. */
double process_start_time_compute(uint64_t starttime, uint64_t ticks_per_second, usec_t realtime, usec_t boottime);

typedef struct ProcessStats {
        double cpu_seconds;             /* utime + stime */
        uint64_t resident_memory_bytes;
        uint64_t virtual_memory_bytes;
        uint64_t open_fds;
        uint64_t max_fds;               /* RLIMIT_NOFILE, soft */
        double start_time_seconds;      /* since the epoch */
} ProcessStats;

int proc_self_stat_read(ProcStat *ret);
int process_open_fds_read(uint64_t *ret);
int process_max_fds_read(uint64_t *ret);
int process_start_time_read(double *ret);
/* All of the above at once, for /api/v1/stats and the tests. */
int process_stats_read(ProcessStats *ret);

/* Registers process_cpu_seconds_total, process_resident_memory_bytes, process_virtual_memory_bytes,
 * process_open_fds, process_max_fds (callbacks, read at every exposition) and
 * process_start_time_seconds (read once, now). Errors as for metrics_*_new(), or reading /proc. */
int process_stats_register(MetricsRegistry *reg);
