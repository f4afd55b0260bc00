/* SPDX-License-Identifier: MIT */
#pragma once

/* Gathers the configuration sources of this process (the file, the environment, the
 * credentials directory, the host name) and hands them to config_load(). */

#include "core/config.h"

/* A missing file is an error only when its path was given explicitly (--config). */
int config_read(const char *path, bool path_explicit, Config **ret, char error[static CONFIG_ERROR_MAX]);
Config *config_free(Config *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(Config *, config_free);
