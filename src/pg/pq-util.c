/* SPDX-License-Identifier: MIT */
#include "os/log.h"
#include "pg/pq-util.h"

const char *pq_error(PGconn *conn) {
        const char *m = conn ? PQerrorMessage(conn) : NULL;
        return isempty(m) ? "connection failed" : m;
}

char *pq_one_line(char *s) {
        char *w = s;

        for (const char *c = s; *c; c++) {
                bool space = *c == '\n' || *c == '\t' || *c == ' ' || *c == '\r';

                if (!space || (w > s && w[-1] != ' '))
                        *w++ = space ? ' ' : *c;
        }
        *w = '\0';
        return strstrip(s);
}

void pq_notice_to_debug(void *userdata, const char *message) {
        log_debug("PostgreSQL: %s", message);
}
