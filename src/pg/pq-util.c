/* SPDX-License-Identifier: MIT */
#include "os/log.h"
#include "pg/pq-util.h"

const char *pq_error(PGconn *conn) {
        const char *m = conn ? PQerrorMessage(conn) : NULL;
        return isempty(m) ? "connection failed" : m;
}

void pq_notice_to_debug(void *userdata, const char *message) {
        log_debug("PostgreSQL: %s", message);
}
