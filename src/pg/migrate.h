/* SPDX-License-Identifier: MIT */
#pragma once

/* The schema of the ledger (transmitter.batches): the migrations of db/, applied by --migrate and by
 * DATABASE_MIGRATE=true at start. Blocking, on a connection of its own; the event loop does not
 * run yet. */

#include "util/util.h"

/* Applies the .sql files of the migrations directory in order, each in its own transaction, recording them in
 * transmitter.schema_migrations, under an advisory lock so that hosts migrating at once take turns. */
int migrate_database(const char *url, const char *migrations_dir, usec_t connect_timeout);
