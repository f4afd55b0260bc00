/* SPDX-License-Identifier: MIT */
#include <criterion/criterion.h>

#include "core/proc-stat.h"

/* A real line (from cat), fields 25 on as the kernel writes them. */
#define STAT_TAIL_25                                                                                 \
        " 18446744073709551615 94719144554496 94719144574377 140720830711920 0 0 0 0 0 0 0 0 0 17 1 " \
        "0 0 0 0 0 94719144590384 94719144592000 94720089112576 140720830720651 140720830720671 "      \
        "140720830720671 140720830722027 0\n"

Test(proc_stat, parse_stat) {
        ProcStat st;

        cr_assert_eq(proc_stat_parse("7551 (cat) R 7549 7549 6536 0 -1 4194304 100 0 0 0 3 5 0 0 20 0 1 0 "
                                     "62432 3133440 383" STAT_TAIL_25, &st), 0);
        cr_assert_eq(st.utime, 3);
        cr_assert_eq(st.stime, 5);
        cr_assert_eq(st.starttime, 62432);
        cr_assert_eq(st.vsize, 3133440);
        cr_assert_eq(st.rss, 383);

        /* comm is the process's to choose: spaces, parentheses, a ") " that looks like the end. */
        cr_assert_eq(proc_stat_parse("42 (a) R (b) c)) S 1 42 42 0 -1 4194560 2000 0 0 0 1234 56 -7 -8 "
                                     "20 -5 4 0 987654321 1099511627776 262144" STAT_TAIL_25, &st), 0);
        cr_assert_eq(st.utime, 1234);
        cr_assert_eq(st.stime, 56);
        cr_assert_eq(st.starttime, 987654321);
        cr_assert_eq(st.vsize, 1099511627776ULL);
        cr_assert_eq(st.rss, 262144);

        /* A newline in comm, and a line that ends right after rss. */
        cr_assert_eq(proc_stat_parse("9 (x\ny) S 1 1 1 0 -1 0 0 0 0 0 18446744073709551615 0 0 0 20 0 1 0 "
                                     "1 2 3\n", &st), 0);
        cr_assert_eq(st.utime, UINT64_MAX);
        cr_assert_eq(st.rss, 3);
        cr_assert_eq(proc_stat_parse("9 (x) S 1 1 1 0 -1 0 0 0 0 0 1 0 0 0 20 0 1 0 1 2 3", &st), 0);

        /* Not a stat line. */
        cr_assert_eq(proc_stat_parse("", &st), -EINVAL);
        cr_assert_eq(proc_stat_parse("7551 cat R 7549", &st), -EINVAL);
        cr_assert_eq(proc_stat_parse("7551 )cat( R 7549", &st), -EINVAL);
        cr_assert_eq(proc_stat_parse("7551 (cat) R 7549 7549 6536 0 -1 4194304 100 0 0 0 3 5 0 0 20 0 1 0 "
                                     "62432 3133440", &st), -EINVAL);                  /* truncated */
        cr_assert_eq(proc_stat_parse("7551 (cat) R 7549 7549 6536 0 -1 4194304 100 0 0 0 x 5 0 0 20 0 1 0 "
                                     "62432 3133440 383", &st), -EINVAL);              /* utime */
        cr_assert_eq(proc_stat_parse("7551 (cat) R 7549 7549 6536 0 -1 4194304 100 0 0 0 -3 5 0 0 20 0 1 0 "
                                     "62432 3133440 383", &st), -EINVAL);
        cr_assert_eq(proc_stat_parse("7551 (cat) R 7549 7549 6536 0 -1 4194304 100 0 0 0 "
                                     "18446744073709551616 5 0 0 20 0 1 0 62432 3133440 383", &st),
                     -EINVAL);                                                           /* overflow */
        cr_assert_eq(proc_stat_parse("7551 (cat) R 7549 7549 6536 0 -1 4194304 100 0 0 0 3  5 0 0 20 0 1 0 "
                                     "62432 3133440 383", &st), -EINVAL);              /* empty field */
}

Test(proc_stat, start_time_compute) {
        /* Booted at 1796159000.25 (realtime 1796160000.5 s, 1000.25 s after boot), started
         * 62432 ticks of 100 Hz after boot. */
        cr_assert_float_eq(process_start_time_compute(62432, 100, 1796160000500000ULL, 1000250000ULL),
                           1796159624.57, 1e-6);
        /* Other tick rates, and a process started at boot. */
        cr_assert_float_eq(process_start_time_compute(1500, 1000, 2000000000ULL, 1000000000ULL), 1001.5, 1e-9);
        cr_assert_float_eq(process_start_time_compute(0, 100, 1700000000000000ULL, 5000000ULL), 1699999995.0,
                           1e-6);
        /* A wall clock set to before the boot's length gives a negative boot time, not a wrap. */
        cr_assert_float_eq(process_start_time_compute(100, 100, 1000000ULL, 3000000ULL), -1.0, 1e-9);
}
