/* SPDX-License-Identifier: MIT */
#pragma once

/* The names of syslog levels as LOG_LEVEL takes and shows them. */

#include <syslog.h>

/* Accepts DEBUG, INFO, NOTICE, WARNING (WARN), ERROR, CRITICAL, any case; -EINVAL otherwise. */
int log_level_from_string(const char *s);
const char *log_level_to_string(int level);
