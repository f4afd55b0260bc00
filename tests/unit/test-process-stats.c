/* SPDX-License-Identifier: MIT */
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "core/metrics.h"
#include "os/process-stats.h"

/* /proc/stat's btime, where this sandbox shows it: the old way, as a cross-check. */
static bool btime_read(uint64_t *ret) {
        _cleanup_free_ char *line = NULL;
        size_t allocated = 0;
        bool found = false;
        FILE *f;

        f = fopen("/proc/stat", "re");
        if (!f)
                return false;
        while (!found && getline(&line, &allocated, f) >= 0)
                found = sscanf(line, "btime %" SCNu64, ret) == 1;
        fclose(f);
        return found;
}

static uint64_t count_fds_by_listing(void) {
        DIR *d = opendir("/proc/self/fd");
        struct dirent *de;
        uint64_t n = 0;

        cr_assert_not_null(d);
        while ((de = readdir(d)))
                if (de->d_name[0] != '.' && atoi(de->d_name) != dirfd(d))
                        n++;
        closedir(d);
        return n;
}

Test(process_stats, live) {
        struct rlimit rl;
        ProcessStats s;
        uint64_t before, after, btime;
        double wall;
        int fd;

        cr_assert_eq(process_stats_read(&s), 0);
        cr_assert_gt(s.open_fds, 0);
        cr_assert_gt(s.resident_memory_bytes, 0);
        cr_assert_geq(s.virtual_memory_bytes, s.resident_memory_bytes);
        cr_assert_geq(s.cpu_seconds, 0);
        cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
        cr_assert_eq(s.max_fds, (uint64_t) rl.rlim_cur);
        cr_assert_geq(s.max_fds, s.open_fds);

        /* This test's process started a moment ago (criterion runs each test in a process of its
         * own); the margin is for a slow sanitizer or valgrind run. */
        wall = (double) now(CLOCK_REALTIME) / (double) USEC_PER_SEC;
        cr_assert_leq(s.start_time_seconds, wall + 0.1, "%f %f", s.start_time_seconds, wall);
        cr_assert_geq(s.start_time_seconds, wall - 300, "%f %f", s.start_time_seconds, wall);
        /* And it agrees with btime + starttime where /proc/stat can be read: btime is rounded
         * down to a second, and the two drift apart with NTP adjustments since boot. */
        if (btime_read(&btime)) {
                ProcStat st;
                double old;

                cr_assert_eq(proc_self_stat_read(&st), 0);
                old = (double) btime + (double) st.starttime / (double) sysconf(_SC_CLK_TCK);
                cr_assert_float_eq(s.start_time_seconds, old, 5.0, "%f %f", s.start_time_seconds, old);
        }

        /* The count is of the process's descriptors, not of the one reading the directory. */
        cr_assert_eq(process_open_fds_read(&before), 0);
        fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        cr_assert_geq(fd, 0);
        cr_assert_eq(process_open_fds_read(&after), 0);
        (void) close(fd);
        cr_assert_eq(after, before + 1);
        cr_assert_eq(before, s.open_fds);
        /* Whichever way it counts (the directory's size since Linux 6.2, or its listing), it is
         * the listing's count, less the descriptor of the listing itself. */
        cr_assert_eq(before, count_fds_by_listing());
}

static char *format_text(MetricsRegistry *reg) {
        Buffer b = { 0 };
        char *s;

        cr_assert_eq(metrics_format(reg, &b), 0);
        s = strndup(b.data ? (const char *) b.data : "", b.size);
        cr_assert_not_null(s);
        buffer_done(&b);
        return s;
}

Test(process_stats, registered) {
        _cleanup_(metrics_registry_freep) MetricsRegistry *reg = NULL;
        _cleanup_free_ char *text = NULL;
        static const char *const names[] = {
                "\nprocess_cpu_seconds_total ",    "\nprocess_resident_memory_bytes ",
                "\nprocess_virtual_memory_bytes ", "\nprocess_open_fds ",
                "\nprocess_max_fds ",              "\nprocess_start_time_seconds ",
        };

        cr_assert_eq(metrics_registry_new(&reg), 0);
        cr_assert_eq(process_stats_register(reg), 0);
        cr_assert_eq(process_stats_register(reg), -EEXIST);
        text = format_text(reg);
        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                cr_assert_not_null(strstr(text, names[i]), "%s missing in:\n%s", names[i] + 1, text);
        cr_assert_not_null(strstr(text, "# TYPE process_cpu_seconds_total counter\n"));
        cr_assert_not_null(strstr(text, "# TYPE process_open_fds gauge\n"));
        cr_assert_null(strstr(text, "e+"), "%s", text); /* byte counts in plain digits */

        /* Read at each exposition, not at registration: a new descriptor shows in the next one. */
        {
                _cleanup_free_ char *again = NULL;
                uint64_t fds_before, fds_after;
                int fd;

                cr_assert_eq(sscanf(strstr(text, "\nprocess_open_fds "), "\nprocess_open_fds %" SCNu64,
                                    &fds_before), 1);
                fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
                cr_assert_geq(fd, 0);
                again = format_text(reg);
                (void) close(fd);
                cr_assert_eq(sscanf(strstr(again, "\nprocess_open_fds "), "\nprocess_open_fds %" SCNu64,
                                    &fds_after), 1);
                cr_assert_eq(fds_after, fds_before + 1, "%s", again);
        }
}

static char *find_in_path(const char *name) {
        const char *path = getenv("PATH");

        for (const char *p = path ? path : "/usr/bin:/bin"; *p;) {
                size_t n = strcspn(p, ":");
                char *candidate;

                if (asprintf(&candidate, "%.*s/%s", (int) n, p, name) < 0)
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

static int read_nothing(_unused_ void *userdata, double *ret) {
        *ret = 2;
        return 0;
}

/* architecture §8: "promtool check metrics finds nothing" — its parser and its lint, on the kind of
 * families the daemon exposes. */
Test(process_stats, promtool) {
        _cleanup_(metrics_registry_freep) MetricsRegistry *reg = NULL;
        _cleanup_free_ char *promtool = NULL, *text = NULL, *cmd = NULL;
        char path[] = "/tmp/test-metrics-promtool.XXXXXX", output[4096];
        Metric *batches, *up, *latency, *bytes, *pending;
        size_t n;
        FILE *p;
        int fd, status;

        promtool = find_in_path("promtool");
        if (!promtool)
                cr_skip_test("promtool not found (Debian package prometheus)");

        cr_assert_eq(metrics_registry_new(&reg), 0);
        cr_assert_eq(metrics_counter_new(reg, "transmitter_batches_total", "Batches by outcome.", "outcome",
                                         &batches), 0);
        cr_assert_eq(metric_declare(batches, "sent"), 0);
        cr_assert_eq(metric_declare(batches, "failed"), 0);
        cr_assert_eq(metric_counter_add(batches, "sent", 12345678901.0), 0);
        cr_assert_eq(metric_counter_add(batches, "weird \"value\"\\\nwith escapes", 1), 0);
        cr_assert_eq(metrics_counter_new(reg, "transmitter_events_dead_lettered_total",
                                         "Events dead-lettered, by reason.\nSecond \\ line.", "reason", NULL),
                     0);
        cr_assert_eq(metrics_gauge_new(reg, "transmitter_up", "Whether a peer is connected (1) or not (0).",
                                       "peer", &up), 0);
        cr_assert_eq(metric_gauge_set(up, "rabbitmq", 1), 0);
        cr_assert_eq(metric_gauge_set(up, "postgresql", 0), 0);
        cr_assert_eq(metrics_gauge_new(reg, "transmitter_pending_events", "Events in the open batch.", NULL,
                                       &pending), 0);
        cr_assert_eq(metric_gauge_set(pending, NULL, -0.5), 0);
        cr_assert_eq(metrics_callback_new(reg, METRIC_GAUGE, "transmitter_in_flight_batches",
                                          "Batches on the wire.", read_nothing, NULL, NULL), 0);
        cr_assert_eq(metrics_histogram_new(reg, "transmitter_request_duration_seconds",
                                           "Latency of requests to the discovery API.",
                                           (const double[]) { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                                              2.5, 5, 10 }, 11, &latency), 0);
        for (unsigned i = 0; i < 100; i++)
                metric_histogram_observe(latency, i * 0.137);
        cr_assert_eq(metrics_histogram_new(reg, "transmitter_batch_compressed_bytes",
                                           "Size of a batch after gzip.", NULL, 0, &bytes), 0);
        metric_histogram_observe(bytes, 1e-9);
        cr_assert_eq(process_stats_register(reg), 0);

        text = format_text(reg);
        fd = mkstemp(path);
        cr_assert_geq(fd, 0);
        cr_assert_eq(write(fd, text, strlen(text)), (ssize_t) strlen(text));
        (void) close(fd);

        cr_assert_geq(asprintf(&cmd, "'%s' check metrics < '%s' 2>&1", promtool, path), 0);
        p = popen(cmd, "r");
        cr_assert_not_null(p);
        n = fread(output, 1, sizeof(output) - 1, p);
        output[n] = '\0';
        status = pclose(p);
        (void) unlink(path);

        cr_assert_str_eq(output, "", "promtool on:\n%s\nsaid:\n%s", text, output);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d on:\n%s", status, text);
}
