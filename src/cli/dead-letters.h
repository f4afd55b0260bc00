/* SPDX-License-Identifier: MIT */
#pragma once

/* `transmitter dead-letters list|show|replay|purge`: the operator's view of <RABBITMQ_QUEUE>.dead,
 * with the daemon's configuration (file, environment, credentials) and exit statuses. */

#include "util/util.h"

/* argv[0] is "dead-letters". config_path: from the options before it (--config), which may also
 * come after it. Returns the exit status: 0, 1 (failed, interrupted, or nothing matched),
 * EX_USAGE, EX_CONFIG. */
int dead_letters_main(int argc, char *argv[], const char *config_path, bool config_path_explicit);
