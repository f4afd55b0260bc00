/* SPDX-License-Identifier: MIT */
#pragma once

/* Whether the database has the schema this transmitter writes to: the migrations it knows
 * against those transmitter.schema_migrations records. Pure: the adapter reads the table. */

#include "util/util.h"

typedef enum SchemaState {
        SCHEMA_UNKNOWN,  /* not read yet: the database was not reached */
        SCHEMA_MISSING,  /* no migration applied (no transmitter.schema_migrations, or empty) */
        SCHEMA_OLDER,    /* some of this transmitter's migrations are not applied */
        SCHEMA_CURRENT,  /* every one is (and maybe more, of a newer transmitter: its own business) */
        _SCHEMA_STATE_MAX,
} SchemaState;

/* expected: the migrations this transmitter knows, in order. applied: the versions recorded, in
 * any order; NULL with n_applied 0 when the table does not exist. ret_missing (may be NULL) gets
 * the first expected migration that is not applied (for SCHEMA_OLDER), else NULL. */
SchemaState schema_compare(const char *const *expected, size_t n_expected, const char *const *applied,
                           size_t n_applied, const char **ret_missing);

/* "unknown", "missing", "older", "current" */
const char *schema_state_to_string(SchemaState s);

/* What to tell the operator, e.g. "schema missing, run transmitter --migrate", or "schema older
 * than this transmitter (002_add_instance_and_indexes.sql not applied), run transmitter
 * --migrate"; "" for SCHEMA_CURRENT and SCHEMA_UNKNOWN. */
void schema_describe(SchemaState s, const char *missing, char *buf, size_t size);
