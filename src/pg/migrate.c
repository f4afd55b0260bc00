/* SPDX-License-Identifier: MIT */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>

#include "os/log.h"
#include "pg/migrate.h"
#include "pg/migrations.h"
#include "pg/pq-util.h"

/* pg_advisory_lock key: migrations by several hosts at once run one after the other. */
#define MIGRATION_LOCK_KEY "7416349817"

/* One line into error (MIGRATE_ERROR_MAX); returns r. */
static _printf_(3, 4) int migrate_error(char *error, int r, const char *format, ...) {
        va_list ap;

        va_start(ap, format);
        (void) vsnprintf(error, MIGRATE_ERROR_MAX, format, ap);
        va_end(ap);
        pq_one_line(error);
        return r;
}

static int exec_ok(PGconn *conn, const char *sql, const char *what, char *error) {
        _cleanup_(PQclearp) PGresult *res = PQexec(conn, sql);
        ExecStatusType st = PQresultStatus(res);

        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
                return migrate_error(error, -EIO, "Failed to %s: %s", what, PQresultErrorMessage(res));
        return 0;
}

/* Whether transmitter.schema_migrations records the migration: 1 yes, 0 no. */
static int migration_recorded(PGconn *conn, const Migration *m, char *error) {
        _cleanup_(PQclearp) PGresult *res = PQexecParams(
                conn, "SELECT 1 FROM transmitter.schema_migrations WHERE version = $1", 1, NULL,
                (const char *[]) { m->name }, NULL, NULL, 0);

        if (PQresultStatus(res) != PGRES_TUPLES_OK)
                return migrate_error(error, -EIO, "Failed to read transmitter.schema_migrations: %s",
                                     PQresultErrorMessage(res));
        return PQntuples(res) > 0;
}

/* The migration and its record, in one transaction: a failure leaves neither. */
static int migration_apply(PGconn *conn, const Migration *m, char *error) {
        char what[256];
        int r;

        r = exec_ok(conn, "BEGIN", "begin a transaction", error);
        if (r < 0)
                return r;
        (void) snprintf(what, sizeof what, "apply migration %s", m->name);
        r = exec_ok(conn, m->sql, what, error);
        if (r >= 0) {
                _cleanup_(PQclearp) PGresult *res = PQexecParams(
                        conn, "INSERT INTO transmitter.schema_migrations (version) VALUES ($1)", 1, NULL,
                        (const char *[]) { m->name }, NULL, NULL, 0);

                if (PQresultStatus(res) != PGRES_COMMAND_OK)
                        r = migrate_error(error, -EIO, "Failed to record migration %s: %s", m->name,
                                          PQresultErrorMessage(res));
        }
        if (r < 0) {
                char ignored[MIGRATE_ERROR_MAX];

                /* The first error is the one to tell; the connection closes after it anyway, which
                 * rolls back too. */
                (void) exec_ok(conn, "ROLLBACK", "roll back", ignored);
                return r;
        }
        return exec_ok(conn, "COMMIT", "commit", error);
}

int migrate_database(const char *url, usec_t connect_timeout, char error[static MIGRATE_ERROR_MAX]) {
        char timeout[24];
        const char *keys[] = { "dbname", "connect_timeout", "fallback_application_name", NULL };
        const char *values[] = { url, timeout, "transmitter-migrate", NULL };
        _cleanup_(PQfinishp) PGconn *conn = NULL;
        size_t applied = 0;
        int r;

        error[0] = '\0';
        snprintf(timeout, sizeof timeout, "%" PRIu64, MAX(connect_timeout / USEC_PER_SEC, (usec_t) 1));

        conn = PQconnectdbParams(keys, values, 1);
        if (PQstatus(conn) != CONNECTION_OK)
                return migrate_error(error, -ECONNREFUSED, "Failed to connect to PostgreSQL: %s", pq_error(conn));
        (void) PQsetNoticeProcessor(conn, pq_notice_to_debug, NULL);

        r = exec_ok(conn, "SELECT pg_advisory_lock(" MIGRATION_LOCK_KEY ")", "take the migration lock", error);
        if (r < 0)
                return r;
        r = exec_ok(conn,
                    "CREATE SCHEMA IF NOT EXISTS transmitter; "
                    "CREATE TABLE IF NOT EXISTS transmitter.schema_migrations ("
                    "version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
                    "create transmitter.schema_migrations", error);
        if (r < 0)
                return r;

        for (size_t i = 0; i < migrations_count; i++) {
                r = migration_recorded(conn, &migrations[i], error);
                if (r < 0)
                        return r;
                if (r > 0)
                        continue;
                r = migration_apply(conn, &migrations[i], error);
                if (r < 0)
                        return r;
                log_info("Applied migration %s", migrations[i].name);
                applied++;
        }
        log_info("Database schema is up to date (%zu migration(s) applied now, %zu in all)", applied,
                 migrations_count);
        return 0;
}
