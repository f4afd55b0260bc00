/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>

#include "os/log.h"
#include "pg/migrate.h"
#include "pg/pq-util.h"

#define MIGRATION_FILE_MAX (4u * 1024 * 1024)
/* pg_advisory_lock key: migrations by several hosts at once run one after the other. */
#define MIGRATION_LOCK_KEY "7416349817"

static int compare_names(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

static void free_names(char **names, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(names[i]);
        free(names);
}

static int list_migrations(const char *dir, char ***ret, size_t *ret_n) {
        _cleanup_(closedirp) DIR *d = opendir(dir);
        char **names = NULL;
        size_t n = 0;
        struct dirent *de;

        if (!d)
                return negative_errno();
        while ((de = readdir(d))) {
                size_t l = strlen(de->d_name);
                char **p;

                if (de->d_name[0] == '.' || l < 5 || !streq(de->d_name + l - 4, ".sql"))
                        continue;
                p = realloc(names, (n + 1) * sizeof *names);
                if (!p || !(p[n] = strdup(de->d_name))) {
                        free_names(p ? p : names, n);
                        return -ENOMEM;
                }
                names = p;
                n++;
        }
        if (n > 0)
                qsort(names, n, sizeof *names, compare_names);
        *ret = names;
        *ret_n = n;
        return 0;
}

static int exec_ok(PGconn *conn, const char *sql, const char *what) {
        PGresult *res = PQexec(conn, sql);
        ExecStatusType st = PQresultStatus(res);
        int r = 0;

        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
                r = log_error_errno(SYNTHETIC_ERRNO(EIO), "Failed to %s: %s", what, PQresultErrorMessage(res));
        PQclear(res);
        return r;
}

int migrate_database(const char *url, const char *dir, usec_t connect_timeout) {
        char timeout[24];
        const char *keys[] = { "dbname", "connect_timeout", "fallback_application_name", NULL };
        const char *values[] = { url, timeout, "transmitter-migrate", NULL };
        char **names = NULL;
        size_t n = 0, applied = 0;
        PGconn *conn;
        int r;

        snprintf(timeout, sizeof timeout, "%" PRIu64, MAX(connect_timeout / USEC_PER_SEC, (usec_t) 1));
        r = list_migrations(dir, &names, &n);
        if (r < 0)
                return log_error_errno(r, "Failed to read migrations from %s: %s", dir, STRERROR(r));
        if (n == 0) {
                free_names(names, n);
                return log_error_errno(SYNTHETIC_ERRNO(ENOENT), "No migrations (*.sql) in %s", dir);
        }

        conn = PQconnectdbParams(keys, values, 1);
        if (PQstatus(conn) != CONNECTION_OK) {
                r = log_error_errno(SYNTHETIC_ERRNO(ECONNREFUSED), "Failed to connect to PostgreSQL: %s", pq_error(conn));
                goto finish;
        }
        (void) PQsetNoticeProcessor(conn, pq_notice_to_debug, NULL);

        if ((r = exec_ok(conn, "SELECT pg_advisory_lock(" MIGRATION_LOCK_KEY ")", "take the migration lock")) < 0 ||
            (r = exec_ok(conn,
                         "CREATE SCHEMA IF NOT EXISTS transmitter; "
                         "CREATE TABLE IF NOT EXISTS transmitter.schema_migrations ("
                         "version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
                         "create transmitter.schema_migrations")) < 0)
                goto finish;

        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *sql = NULL;
                char path[4096];
                PGresult *res;
                bool done;

                res = PQexecParams(conn, "SELECT 1 FROM transmitter.schema_migrations WHERE version = $1", 1, NULL,
                                   (const char *[]) { names[i] }, NULL, NULL, 0);
                if (PQresultStatus(res) != PGRES_TUPLES_OK) {
                        r = log_error_errno(SYNTHETIC_ERRNO(EIO), "Failed to read transmitter.schema_migrations: %s",
                                            PQresultErrorMessage(res));
                        PQclear(res);
                        goto finish;
                }
                done = PQntuples(res) > 0;
                PQclear(res);
                if (done)
                        continue;

                snprintf(path, sizeof path, "%s/%s", dir, names[i]);
                r = read_full_file(path, MIGRATION_FILE_MAX, &sql, NULL);
                if (r < 0) {
                        log_error_errno(r, "Failed to read %s: %s", path, STRERROR(r));
                        goto finish;
                }
                if ((r = exec_ok(conn, "BEGIN", "begin a transaction")) < 0)
                        goto finish;
                if ((r = exec_ok(conn, sql, names[i])) < 0) {
                        (void) exec_ok(conn, "ROLLBACK", "roll back");
                        goto finish;
                }
                res = PQexecParams(conn, "INSERT INTO transmitter.schema_migrations (version) VALUES ($1)", 1, NULL,
                                   (const char *[]) { names[i] }, NULL, NULL, 0);
                if (PQresultStatus(res) != PGRES_COMMAND_OK) {
                        r = log_error_errno(SYNTHETIC_ERRNO(EIO), "Failed to record migration %s: %s", names[i],
                                            PQresultErrorMessage(res));
                        PQclear(res);
                        (void) exec_ok(conn, "ROLLBACK", "roll back");
                        goto finish;
                }
                PQclear(res);
                if ((r = exec_ok(conn, "COMMIT", "commit")) < 0)
                        goto finish;
                log_info("Applied migration %s", names[i]);
                applied++;
        }
        log_info("Database schema is up to date (%zu migration(s) applied now, %zu in all)", applied, n);
        r = 0;

finish:
        PQfinish(conn);
        free_names(names, n);
        return r;
}
