/* SPDX-License-Identifier: MIT */
#pragma once

/* Parsers of what /proc says about a process, fed the text so that tests can use fixed strings. */

#include "util/util.h"

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
