/* SPDX-License-Identifier: MIT */
#pragma once

/* The standard process_* metrics of Prometheus' client libraries, read from /proc/self. The
 * parsers (core/proc-stat.h) take the text; the readers here are thin. */

#include "core/metrics.h"
#include "core/proc-stat.h"
#include "util/util.h"

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
