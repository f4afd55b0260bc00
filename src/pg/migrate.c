/* SPDX-License-Identifier: MIT */
#include <inttypes.h>
#include <stdio.h>

#include "os/log.h"
#include "pg/migrate.h"
#include "pg/migrations.h"
#include "pg/pq-util.h"

/* pg_advisory_lock key: migrations by several hosts at once run one after the other. */
#define MIGRATION_LOCK_KEY "7416349817"

static int exec_ok(PGconn *conn, const char *sql, const char *what) {
        PGresult *res = PQexec(conn, sql);
        ExecStatusType st = PQresultStatus(res);
        int r = 0;

        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
                r = log_error_errno(SYNTHETIC_ERRNO(EIO), "Failed to %s: %s", what, PQresultErrorMessage(res));
        PQclear(res);
        return r;
}

int migrate_database(const char *url, usec_t connect_timeout) {
        char timeout[24];
        const char *keys[] = { "dbname", "connect_timeout", "fallback_application_name", NULL };
        const char *values[] = { url, timeout, "transmitter-migrate", NULL };
        size_t applied = 0;
        PGconn *conn;
        int r;

        snprintf(timeout, sizeof timeout, "%" PRIu64, MAX(connect_timeout / USEC_PER_SEC, (usec_t) 1));

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

        for (size_t i = 0; i < migrations_count; i++) {
                const Migration *m = &migrations[i];
                PGresult *res;
                bool done;

                res = PQexecParams(conn, "SELECT 1 FROM transmitter.schema_migrations WHERE version = $1", 1, NULL,
                                   (const char *[]) { m->name }, NULL, NULL, 0);
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

                if ((r = exec_ok(conn, "BEGIN", "begin a transaction")) < 0)
                        goto finish;
                if ((r = exec_ok(conn, m->sql, m->name)) < 0) {
                        (void) exec_ok(conn, "ROLLBACK", "roll back");
                        goto finish;
                }
                res = PQexecParams(conn, "INSERT INTO transmitter.schema_migrations (version) VALUES ($1)", 1, NULL,
                                   (const char *[]) { m->name }, NULL, NULL, 0);
                if (PQresultStatus(res) != PGRES_COMMAND_OK) {
                        r = log_error_errno(SYNTHETIC_ERRNO(EIO), "Failed to record migration %s: %s", m->name,
                                            PQresultErrorMessage(res));
                        PQclear(res);
                        (void) exec_ok(conn, "ROLLBACK", "roll back");
                        goto finish;
                }
                PQclear(res);
                if ((r = exec_ok(conn, "COMMIT", "commit")) < 0)
                        goto finish;
                log_info("Applied migration %s", m->name);
                applied++;
        }
        log_info("Database schema is up to date (%zu migration(s) applied now, %zu in all)", applied,
                 migrations_count);
        r = 0;

finish:
        PQfinish(conn);
        return r;
}
