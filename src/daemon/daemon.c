/* SPDX-License-Identifier: MIT */
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sysexits.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>

#include "api/server.h"
#include "core/envelope.h"
#include "core/status.h"
#include "core/telemetry.h"
#include "daemon/config-read.h"
#include "daemon/daemon.h"
#include "pipeline/pipeline.h"
#include "daemon/routes.h"
#include "os/log.h"
#include "os/notify.h"
#include "os/process-stats.h"
#include "pg/schema-watch.h"
#include "version.h"

/* STATUS= is sent at most this often, and only when the line changed. */
#define STATUS_INTERVAL USEC_PER_SEC
/* While the database's schema is missing or older, it is read again this often. */
#define SCHEMA_INTERVAL (5 * USEC_PER_SEC)
/* Beyond SHUTDOWN_TIMEOUT_S: what the stop may take after the drain gave up (closing
 * connections, freeing) before systemd may send SIGKILL. */
#define STOP_SLACK (5 * USEC_PER_SEC)

typedef struct Daemon {
        sd_event *event;
        const char *config_path;
        bool config_path_explicit;
        Config *config;
        Pipeline *pipeline;
        SchemaWatch *schema;
        Telemetry *telemetry;
        Api *api;
        ApiContext api_context;
        sd_event_source *status_timer;
        sd_event_source *signals[3];
        bool stopping;
} Daemon;

static void update_status(Daemon *d) {
        StatusSnapshot s;
        char line[512]; /* the broker URL may be long */

        status_snapshot_take(&d->api_context, &s);
        if (d->stopping)
                /* What the drain still waits for, so that a slow stop explains itself. */
                (void) snprintf(line, sizeof line, "stopping: %u batch(es) in flight, %zu event(s) unsettled",
                                s.in_flight, s.pending_events);
        else
                status_line(&s, line, sizeof line);
        notify_status(line);
}

/* strsignal() may format into a static buffer; the loop is not the only thread. */
static const char *signal_name(int signo) {
        const char *s = sigdescr_np(signo);
        return s ? s : "a signal";
}

static int on_status_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        update_status(userdata);
        (void) sd_event_source_set_time_relative(s, STATUS_INTERVAL);
        return 0;
}

static void on_schema_current(SchemaWatch *w, void *userdata) {
        Daemon *d = userdata;
        int r;

        if (d->stopping)
                return;
        r = pipeline_start(d->pipeline);
        if (r < 0) {
                log_error_errno(r, "Failed to start the pipeline: %s", STRERROR(r));
                (void) sd_event_exit(d->event, EXIT_FAILURE);
        }
}

static void on_stopped(Pipeline *p, bool clean, void *userdata) {
        Daemon *d = userdata;

        log_info("Stopped%s", clean ? ": everything in flight was settled" : " at the shutdown timeout");
        (void) sd_event_exit(d->event, EXIT_SUCCESS);
}

static int on_terminate(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Daemon *d = userdata;

        if (d->stopping) {
                log_notice("Second %s: exiting now; unsettled events go back to the queue", signal_name((int) si->ssi_signo));
                return sd_event_exit(d->event, EXIT_SUCCESS);
        }
        d->stopping = true;
        log_info("Received %s: stopping consumption, sending the open batch, waiting up to %us",
                 signal_name((int) si->ssi_signo), d->config->shutdown_timeout_s);
        notify_stopping("stopping: sending what is in flight");
        /* The drain's own bound is authoritative: should SHUTDOWN_TIMEOUT_S exceed TimeoutStopSec=,
         * systemd waits for it rather than SIGKILL a drain that is still settling events. (This
         * never shortens the unit's timeout.) */
        notify_extend_timeout((usec_t) d->config->shutdown_timeout_s * USEC_PER_SEC + STOP_SLACK);
        pipeline_stop(d->pipeline, (usec_t) d->config->shutdown_timeout_s * USEC_PER_SEC, on_stopped, d);
        return 0;
}

static int on_reload(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Daemon *d = userdata;
        _cleanup_(config_freep) Config *c = NULL;
        char error[CONFIG_ERROR_MAX], restart[CONFIG_ERROR_MAX];
        int r;

        if (d->stopping) {
                /* A READY=1 now would tell systemd the stop was over. */
                log_notice("Received SIGHUP while stopping: not reloading");
                return 0;
        }
        notify_reloading();
        r = config_read(d->config_path, d->config_path_explicit, &c, error);
        if (r < 0) {
                log_error("Reload failed, keeping the running configuration: %s", error);
                goto finish;
        }
        if (config_reload_check(d->config, c, restart, sizeof restart) > 0)
                log_warning("Reload: these settings change only at restart and keep their running values: %s", restart);
        r = config_copy_restart_settings(c, d->config);
        if (r < 0) {
                log_error_errno(r, "Reload failed, keeping the running configuration: %s", STRERROR(r));
                goto finish;
        }

        r = pipeline_reconfigure(d->pipeline, c);
        if (r < 0) {
                log_error_errno(r, "Reload failed, keeping the running configuration: %s", STRERROR(r));
                (void) pipeline_reconfigure(d->pipeline, d->config);
                goto finish;
        }
        /* The confirmation shows under the more verbose of the two levels: an operator who turns
         * logging down to WARNING still sees that the reload happened. */
        if (c->log_level < d->config->log_level)
                log_info("Configuration reloaded (log level %s)", log_level_to_string(c->log_level));
        log_set_max_level(c->log_level);
        if (c->log_level >= d->config->log_level)
                log_info("Configuration reloaded (log level %s)", log_level_to_string(c->log_level));
        config_free(d->config);
        d->config = TAKE_PTR(c);

finish:
        {
                StatusSnapshot snap;
                char line[512]; /* the broker URL may be long */

                status_snapshot_take(&d->api_context, &snap);
                status_line(&snap, line, sizeof line);
                notify_ready(line);
        }
        return 0;
}

/* "127.0.0.1:8020", "[::]:8020", a socket path, or "?" */
static void describe_socket(int fd, char *buf, size_t size) {
        struct sockaddr_storage sa;
        socklen_t len = sizeof sa;
        char host[NI_MAXHOST], port[NI_MAXSERV];

        if (getsockname(fd, (struct sockaddr *) &sa, &len) < 0) {
                (void) snprintf(buf, size, "?");
                return;
        }
        if (sa.ss_family == AF_UNIX) {
                (void) snprintf(buf, size, "%s", ((struct sockaddr_un *) &sa)->sun_path);
                return;
        }
        if (getnameinfo((struct sockaddr *) &sa, len, host, sizeof host, port, sizeof port,
                        NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
                (void) snprintf(buf, size, "?");
                return;
        }
        (void) snprintf(buf, size, sa.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host, port);
}

/* The socket systemd passed (transmitter.socket), else one bound here. -ENOTSOCK for what a
 * restart cannot fix: the unit passed something other than one listening stream socket. */
static int take_listen_socket(const Config *c, int *ret_fd) {
        char where[NI_MAXHOST + NI_MAXSERV + 4];
        int n, r;

        n = sd_listen_fds(1);
        if (n < 0)
                return log_error_errno(n, "Failed to read the sockets passed by systemd: %s", STRERROR(n));
        if (n > 1) {
                /* Ours to close: nothing else will use them. */
                for (int fd = SD_LISTEN_FDS_START; fd < SD_LISTEN_FDS_START + n; fd++)
                        safe_close(fd);
                return log_error_errno(SYNTHETIC_ERRNO(ENOTSOCK),
                                       "systemd passed %d sockets; expected exactly one listening stream socket "
                                       "(one ListenStream= in transmitter.socket)", n);
        }
        if (n == 1) {
                r = sd_is_socket(SD_LISTEN_FDS_START, AF_UNSPEC, SOCK_STREAM, 1);
                if (r < 0)
                        return log_error_errno(r, "Failed to check the socket passed by systemd: %s", STRERROR(r));
                if (r == 0) {
                        safe_close(SD_LISTEN_FDS_START);
                        return log_error_errno(SYNTHETIC_ERRNO(ENOTSOCK),
                                               "The socket passed by systemd is not a listening stream socket "
                                               "(transmitter.socket needs ListenStream=, not ListenDatagram= or "
                                               "Accept=yes)");
                }
                describe_socket(SD_LISTEN_FDS_START, where, sizeof where);
                log_info("Listening on %s, the socket passed by systemd", where);
                *ret_fd = SD_LISTEN_FDS_START;
                return 0;
        }

        r = api_listen(c->server_host, c->server_port, ret_fd);
        if (r < 0)
                return log_error_errno(r, "Failed to listen on %s:%u: %s", c->server_host, c->server_port, STRERROR(r));
        log_info("Listening on %s:%u", c->server_host, c->server_port);
        return 0;
}

static Daemon *daemon_free(Daemon *d) {
        if (!d)
                return NULL;
        api_free(d->api);
        schema_watch_free(d->schema);
        pipeline_free(d->pipeline);
        telemetry_free(d->telemetry);
        sd_event_source_disable_unref(d->status_timer);
        for (size_t i = 0; i < ELEMENTSOF(d->signals); i++)
                sd_event_source_disable_unref(d->signals[i]);
        sd_event_unref(d->event);
        config_free(d->config);
        return mfree(d);
}
DEFINE_TRIVIAL_CLEANUP_FUNC(Daemon *, daemon_free);

/* Creates the loop with SIGTERM, SIGINT and SIGHUP as its sources. Call before any thread
 * exists: they all inherit the blocked mask, so that only the loop hears these signals. */
static int daemon_watch_signals(Daemon *d) {
        static const struct {
                int signo;
                sd_event_signal_handler_t handler;
                const char *name;
        } watched[] = {
                { SIGTERM, on_terminate, "signal-term" },
                { SIGINT, on_terminate, "signal-int" },
                { SIGHUP, on_reload, "signal-hup" },
        };
        sigset_t mask;
        int r;

        _Static_assert(ELEMENTSOF(watched) == ELEMENTSOF(d->signals), "one source per watched signal");

        sigemptyset(&mask);
        for (size_t i = 0; i < ELEMENTSOF(watched); i++)
                sigaddset(&mask, watched[i].signo);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0) {
                r = negative_errno();
                return log_error_errno(r, "Failed to block signals: %s", STRERROR(r));
        }
        (void) signal(SIGPIPE, SIG_IGN);

        r = sd_event_default(&d->event);
        if (r < 0)
                return log_error_errno(r, "Failed to create the event loop: %s", STRERROR(r));
        for (size_t i = 0; i < ELEMENTSOF(watched); i++) {
                r = sd_event_add_signal(d->event, &d->signals[i], watched[i].signo, watched[i].handler, d);
                if (r < 0)
                        return log_error_errno(r, "Failed to watch signals: %s", STRERROR(r));
                (void) sd_event_source_set_description(d->signals[i], watched[i].name);
        }
        return 0;
}

int daemon_run(Config *config, const char *config_path, bool config_path_explicit) {
        _cleanup_(daemon_freep) Daemon *d = NULL;
        _cleanup_close_ int listen_fd = -EBADF;
        int r;

        d = calloc(1, sizeof *d);
        if (!d) {
                config_free(config);
                return log_error_errno(SYNTHETIC_ERRNO(ENOMEM), "Out of memory");
        }
        d->config = config;
        d->config_path = config_path;
        d->config_path_explicit = config_path_explicit;

        r = daemon_watch_signals(d);
        if (r < 0)
                return r;
        r = sd_event_set_watchdog(d->event, true);
        if (r < 0)
                return log_error_errno(r, "Failed to enable the watchdog: %s", STRERROR(r));

        r = take_listen_socket(d->config, &listen_fd);
        if (r == -ENOTSOCK)
                return EX_CONFIG; /* a unit file to fix: restarting would not help */
        if (r < 0)
                return r;

        r = telemetry_new(&d->telemetry);
        if (r < 0)
                return log_error_errno(r, "Failed to set up metrics: %s", STRERROR(r));
        r = process_stats_register(telemetry_registry(d->telemetry));
        if (r < 0)
                return log_error_errno(r, "Failed to set up metrics: %s", STRERROR(r));

        r = pipeline_new(d->event, d->config, d->telemetry, &d->pipeline);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the pipeline: %s", STRERROR(r));

        /* Nothing is consumed before the database is known to have the schema (and with
         * DATABASE_MIGRATE=true the check applies it): what is delivered must be recorded. */
        r = schema_watch_new(d->event,
                             &(SchemaWatchSettings) {
                                     .url = d->config->database_url,
                                     .migrate = d->config->database_migrate,
                                     .connect_timeout = (usec_t) d->config->connect_timeout_s * USEC_PER_SEC,
                                     .interval = SCHEMA_INTERVAL,
                             },
                             on_schema_current, d, &d->schema);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the schema check: %s", STRERROR(r));

        d->api_context = (ApiContext) {
                .pipeline = d->pipeline,
                .telemetry = d->telemetry,
                .config = (const Config *const *) &d->config,
                .started_at = now(CLOCK_MONOTONIC),
                .stopping = &d->stopping,
                .schema = &d->schema,
        };
        r = api_new(d->event, TAKE_FD(listen_fd), api_routes, &d->api_context, &d->api);
        if (r < 0)
                return log_error_errno(r, "Failed to start the HTTP API: %s", STRERROR(r));

        r = schema_watch_start(d->schema);
        if (r < 0)
                return log_error_errno(r, "Failed to start the schema check: %s", STRERROR(r));

        r = sd_event_add_time_relative(d->event, &d->status_timer, CLOCK_MONOTONIC, STATUS_INTERVAL, 0,
                                       on_status_timer, d);
        if (r < 0)
                return log_error_errno(r, "Failed to arm the status timer: %s", STRERROR(r));
        (void) sd_event_source_set_description(d->status_timer, "status-timer");
        (void) sd_event_source_set_enabled(d->status_timer, SD_EVENT_ON);

        {
                _cleanup_free_ char *dest = url_redact(d->config->destination_url);
                log_info("transmitter %s started: delivering to %s in batches of up to %u events, gzip by %s (level %d "
                         "for COMPRESSION_LEVEL %d)",
                         TRANSMITTER_VERSION, strempty(dest), d->config->batch_size, envelope_engine(),
                         envelope_engine_level(d->config->compression_level), d->config->compression_level);
        }
        notify_ready("started, connecting to broker and database");

        r = sd_event_loop(d->event);
        if (r < 0)
                return log_error_errno(r, "Event loop failed: %s", STRERROR(r));
        return r;
}
