/* SPDX-License-Identifier: MIT */
#pragma once

/* The schema of the ledger (transmitter.batches): the migrations of db/, built into the binary
 * (pg/migrations.h), applied by --migrate and by DATABASE_MIGRATE=true at start. Blocking, on a
 * connection of its own; the event loop does not run yet. */

#include "util/util.h"

#define MIGRATE_ERROR_MAX 1024

/* Applies the migrations not yet recorded in transmitter.schema_migrations, in order, each in its own
 * transaction with its record, under an advisory lock so that hosts migrating at once take turns.
 * Logs what it applies. On failure returns a negative errno and leaves the logging to the caller,
 * which decides what the failure means: one line into error, e.g. "Failed to apply migration
 * 002_add_instance_and_indexes.sql: ERROR: ...". */
int migrate_database(const char *url, usec_t connect_timeout, char error[static MIGRATE_ERROR_MAX]);
