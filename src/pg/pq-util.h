/* SPDX-License-Identifier: MIT */
#pragma once

/* What the files of src/pg share about libpq: cleanup helpers (PQfinish() and PQclear() accept
 * NULL), the error message, the notice processor. */

#include <libpq-fe.h>

#include "util/util.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(PGconn *, PQfinish);
DEFINE_TRIVIAL_CLEANUP_FUNC(PGresult *, PQclear);

/* The connection's error message, or a generic one when libpq has none (conn may be NULL). */
const char *pq_error(PGconn *conn);

/* libpq's messages may span lines ("...failed: Connection refused\n\tIs the server running..."):
 * folds every run of whitespace to one space and trims, so that a message is one log line.
 * In place; returns s. */
char *pq_one_line(char *s);

/* A PQnoticeProcessor: the server's notices at debug level. */
void pq_notice_to_debug(void *userdata, const char *message);
