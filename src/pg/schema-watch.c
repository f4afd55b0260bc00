/* SPDX-License-Identifier: MIT */
#include <inttypes.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/eventfd.h>

#include "os/log.h"
#include "pg/migrate.h"
#include "pg/migrations.h"
#include "pg/pq-util.h"
#include "pg/schema-watch.h"

#define STOP_GRACE_USEC (2 * USEC_PER_SEC)
/* A failed migration (permissions, a lock held, a bad statement) is retried, but not at every
 * reading: the error is logged each time. */
#define MIGRATE_BACKOFF_MAX (5 * 60 * USEC_PER_SEC)
#define SQLSTATE_UNDEFINED_TABLE "42P01"
#define SQLSTATE_INVALID_SCHEMA_NAME "3F000"

/* What the thread and the loop share. Freed by whichever lets go of it last: a thread stuck in
 * libpq may outlive the SchemaWatch. */
typedef struct Shared {
        atomic_int refs;
        atomic_bool stop;
        pthread_mutex_t lock;
        int event_fd;   /* the thread writes: a new reading */
        int wake_fd;    /* the loop writes: stop */

        /* Set before the thread starts, read-only then. */
        char *url;
        bool migrate;
        usec_t connect_timeout, interval;
        const char **expected; /* the names of the built-in migrations */
        size_t n_expected;

        /* Under lock. */
        SchemaState state;
        char missing[256];
        char error[512]; /* why the schema could not be read, "" when it could */
        uint64_t readings;
} Shared;

struct SchemaWatch {
        sd_event_source *event_source;
        SchemaWatchReady ready;
        void *userdata;
        Shared *shared;
        pthread_t thread;
        bool thread_started;
        bool announced_ready;

        /* Loop side: the last reading, and what was logged of it. */
        SchemaState state;
        char missing[256];
        char logged_error[512];
        SchemaState logged_state;
};

static void shared_unref(Shared *sh) {
        if (!sh || atomic_fetch_sub(&sh->refs, 1) != 1)
                return;
        safe_close(sh->event_fd);
        safe_close(sh->wake_fd);
        pthread_mutex_destroy(&sh->lock);
        free(sh->expected);
        free(sh->url);
        free(sh);
}

/* Thread side. Reads the versions recorded; ret_applied NULL and n 0 when the table is not there.
 * Returns the state, or SCHEMA_UNKNOWN with the reason in error. */
static SchemaState read_schema(Shared *sh, char *missing, size_t missing_size, char *error, size_t error_size) {
        char timeout[24];
        const char *keys[] = { "dbname", "connect_timeout", "fallback_application_name", NULL };
        const char *values[] = { sh->url, timeout, "transmitter-schema-check", NULL };
        _cleanup_(PQfinishp) PGconn *conn = NULL;
        _cleanup_(PQclearp) PGresult *res = NULL;
        _cleanup_free_ const char **applied = NULL;
        const char *first_missing = NULL;
        size_t n_applied;
        SchemaState state;

        snprintf(timeout, sizeof timeout, "%" PRIu64, MAX(sh->connect_timeout / USEC_PER_SEC, (usec_t) 1));
        conn = PQconnectdbParams(keys, values, 1);
        if (PQstatus(conn) != CONNECTION_OK) {
                snprintf(error, error_size, "%s", pq_error(conn));
                pq_one_line(error);
                return SCHEMA_UNKNOWN;
        }
        PQsetNoticeProcessor(conn, pq_notice_to_debug, NULL);
        res = PQexec(conn, "SELECT version FROM transmitter.schema_migrations");
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
                const char *code = PQresultErrorField(res, PG_DIAG_SQLSTATE);

                if (code && (streq(code, SQLSTATE_UNDEFINED_TABLE) || streq(code, SQLSTATE_INVALID_SCHEMA_NAME)))
                        return SCHEMA_MISSING;
                snprintf(error, error_size, "reading transmitter.schema_migrations: %s", PQresultErrorMessage(res));
                pq_one_line(error);
                return SCHEMA_UNKNOWN;
        }
        n_applied = (size_t) PQntuples(res);
        applied = calloc(MAX(n_applied, (size_t) 1), sizeof *applied);
        if (!applied) {
                snprintf(error, error_size, "out of memory");
                return SCHEMA_UNKNOWN;
        }
        for (size_t i = 0; i < n_applied; i++)
                applied[i] = PQgetvalue(res, (int) i, 0);
        state = schema_compare(sh->expected, sh->n_expected, applied, n_applied, &first_missing);
        snprintf(missing, missing_size, "%s", strempty(first_missing));
        return state;
}

static void wait_or_stop(Shared *sh, usec_t delay) {
        struct pollfd p = { .fd = sh->wake_fd, .events = POLLIN };

        if (!atomic_load(&sh->stop))
                (void) poll(&p, 1, (int) MIN(delay / USEC_PER_MSEC, (usec_t) INT32_MAX));
}

static void *watch_thread(void *userdata) {
        Shared *sh = userdata;
        usec_t migrate_backoff = 0, migrate_after = 0;
        bool migrated = false;

        while (!atomic_load(&sh->stop)) {
                char missing[256] = "", error[512] = "";
                SchemaState state = read_schema(sh, missing, sizeof missing, error, sizeof error);
                uint64_t one = 1;

                if ((state == SCHEMA_MISSING || state == SCHEMA_OLDER) && sh->migrate && !migrated &&
                    now(CLOCK_MONOTONIC) >= migrate_after && !atomic_load(&sh->stop)) {
                        /* Logs what it applies. Read again at once after it, and should that
                         * still not find the schema current, wait as after a failure. */
                        char why[MIGRATE_ERROR_MAX];

                        migrated = migrate_database(sh->url, sh->connect_timeout, why) >= 0;
                        if (migrated)
                                continue;
                        log_error("Applying the migrations failed, retrying in the background: %s", why);
                }
                if ((state == SCHEMA_MISSING || state == SCHEMA_OLDER) && sh->migrate && now(CLOCK_MONOTONIC) >= migrate_after) {
                        migrate_backoff = CLAMP(migrate_backoff * 2, sh->interval, MIGRATE_BACKOFF_MAX);
                        migrate_after = now(CLOCK_MONOTONIC) + migrate_backoff;
                        migrated = false;
                }

                pthread_mutex_lock(&sh->lock);
                sh->state = state;
                snprintf(sh->missing, sizeof sh->missing, "%s", missing);
                snprintf(sh->error, sizeof sh->error, "%s", error);
                sh->readings++;
                pthread_mutex_unlock(&sh->lock);
                (void) !write(sh->event_fd, &one, sizeof one);

                if (state == SCHEMA_CURRENT)
                        break;
                wait_or_stop(sh, sh->interval);
        }
        shared_unref(sh);
        return NULL;
}

/* Loop side. */
static void log_reading(SchemaWatch *w, SchemaState state, const char *error) {
        char why[256];

        if (state == w->logged_state && (state != SCHEMA_UNKNOWN || streq(error, w->logged_error)))
                return;
        w->logged_state = state;
        snprintf(w->logged_error, sizeof w->logged_error, "%s", error);

        switch (state) {
        case SCHEMA_MISSING:
        case SCHEMA_OLDER:
                schema_describe(state, w->missing, why, sizeof why);
                log_warning("Database %s%s; consuming nothing until it is there, checking again every %" PRIu64 " s",
                            why, w->shared->migrate ? " (DATABASE_MIGRATE=true: applying them failed)" : "",
                            w->shared->interval / USEC_PER_SEC);
                break;
        case SCHEMA_UNKNOWN:
                log_warning("Cannot read the database schema yet, consuming nothing until it is read: %s", error);
                break;
        case SCHEMA_CURRENT:
                log_info("Database schema is current");
                break;
        default:
                break;
        }
}

static int on_event(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        SchemaWatch *w = userdata;
        char error[512];
        uint64_t v;
        SchemaState state;

        (void) !read(fd, &v, sizeof v);
        pthread_mutex_lock(&w->shared->lock);
        state = w->shared->state;
        snprintf(w->missing, sizeof w->missing, "%s", w->shared->missing);
        snprintf(error, sizeof error, "%s", w->shared->error);
        pthread_mutex_unlock(&w->shared->lock);

        w->state = state;
        log_reading(w, state, error);
        if (state == SCHEMA_CURRENT && !w->announced_ready) {
                w->announced_ready = true;
                w->ready(w, w->userdata);
        }
        return 0;
}

int schema_watch_new(sd_event *e, const SchemaWatchSettings *s, SchemaWatchReady ready, void *userdata,
                     SchemaWatch **ret) {
        _cleanup_(schema_watch_freep) SchemaWatch *w = NULL;
        Shared *sh;
        int r;

        w = calloc(1, sizeof *w);
        if (!w)
                return -ENOMEM;
        *w = (SchemaWatch) { .ready = ready, .userdata = userdata, .logged_state = _SCHEMA_STATE_MAX };

        sh = calloc(1, sizeof *sh);
        if (!sh)
                return -ENOMEM;
        *sh = (Shared) {
                .refs = 1,
                .event_fd = -EBADF,
                .wake_fd = -EBADF,
                .migrate = s->migrate,
                .connect_timeout = s->connect_timeout,
                .interval = s->interval,
        };
        pthread_mutex_init(&sh->lock, NULL);
        w->shared = sh;

        sh->url = strdup(s->url);
        sh->expected = calloc(migrations_count, sizeof *sh->expected);
        if (!sh->url || !sh->expected)
                return -ENOMEM;
        for (size_t i = 0; i < migrations_count; i++)
                sh->expected[i] = migrations[i].name;
        sh->n_expected = migrations_count;

        sh->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        sh->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (sh->event_fd < 0 || sh->wake_fd < 0)
                return negative_errno();
        r = sd_event_add_io(e, &w->event_source, sh->event_fd, EPOLLIN, on_event, w);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(w->event_source, "schema-watch");

        *ret = TAKE_PTR(w);
        return 0;
}

int schema_watch_start(SchemaWatch *w) {
        int r;

        atomic_fetch_add(&w->shared->refs, 1); /* the thread's */
        r = pthread_create(&w->thread, NULL, watch_thread, w->shared);
        if (r != 0) {
                atomic_fetch_sub(&w->shared->refs, 1);
                return -r;
        }
        w->thread_started = true;
        return 0;
}

SchemaWatch *schema_watch_free(SchemaWatch *w) {
        if (!w)
                return NULL;
        if (w->thread_started) {
                struct timespec deadline;
                uint64_t one = 1;

                atomic_store(&w->shared->stop, true);
                (void) !write(w->shared->wake_fd, &one, sizeof one);
                clock_gettime(CLOCK_REALTIME, &deadline);
                deadline.tv_sec += (time_t) (STOP_GRACE_USEC / USEC_PER_SEC);
                if (pthread_timedjoin_np(w->thread, NULL, &deadline) != 0)
                        (void) pthread_detach(w->thread); /* it lets go of the shared part itself */
        }
        sd_event_source_disable_unref(w->event_source);
        shared_unref(w->shared);
        return mfree(w);
}

SchemaState schema_watch_state(const SchemaWatch *w) {
        return w->state;
}

const char *schema_watch_missing(const SchemaWatch *w) {
        return w->state == SCHEMA_OLDER ? w->missing : NULL;
}
