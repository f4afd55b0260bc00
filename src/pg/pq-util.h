/* SPDX-License-Identifier: MIT */
#pragma once

/* What the files of src/pg share about libpq. */

#include <libpq-fe.h>

#include "util/util.h"

/* The connection's error message, or a generic one when libpq has none (conn may be NULL). */
const char *pq_error(PGconn *conn);

/* A PQnoticeProcessor: the server's notices at debug level. */
void pq_notice_to_debug(void *userdata, const char *message);
