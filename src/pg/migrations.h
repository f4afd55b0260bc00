/* SPDX-License-Identifier: MIT */
#pragma once

/* The migrations of db/, built into the binary (migrations.c is generated from the .sql files of db/ by
 * src/pg/embed-migrations.py), so that --migrate works from a build tree and an installed binary
 * never meets another version's SQL. db/ is still installed, for reading. */

#include <stddef.h>

typedef struct Migration {
        const char *name; /* the file name, as transmitter.schema_migrations records it */
        const char *sql;
} Migration;

/* In the order of their names; never empty. */
extern const Migration migrations[];
extern const size_t migrations_count;
