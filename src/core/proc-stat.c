/* SPDX-License-Identifier: MIT */
#include <assert.h>

#include "core/proc-stat.h"

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

double process_start_time_compute(uint64_t starttime, uint64_t ticks_per_second, usec_t realtime, usec_t boottime) {
        /* The epoch time of boot, then the ticks after it. Signed: a clock set before the boot
         * would be odd, not undefined. */
        double boot = ((double) realtime - (double) boottime) / (double) USEC_PER_SEC;

        return boot + (double) starttime / (double) ticks_per_second;
}
