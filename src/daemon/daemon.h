/* SPDX-License-Identifier: MIT */
#pragma once

#include "core/config.h"

/* Runs the service until SIGTERM/SIGINT; takes config over. Returns the exit status
 * (0 after a clean stop) or a negative errno after a failure it has logged. */
int daemon_run(Config *config, const char *config_path, bool config_path_explicit);
