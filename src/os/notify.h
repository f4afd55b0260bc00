/* SPDX-License-Identifier: MIT */
#pragma once

/* sd_notify: readiness, reload and stop, and a STATUS= line sent only when it changed. All are
 * no-ops without $NOTIFY_SOCKET. */

#include "util/util.h"

void notify_ready(const char *status);
void notify_status(const char *status);
void notify_reloading(void);
void notify_stopping(const char *status);
void notify_extend_timeout(usec_t usec);
