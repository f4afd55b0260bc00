/* SPDX-License-Identifier: MIT */
#include <strings.h>

#include "core/log-level.h"
#include "util/util.h"

static const struct {
        const char *name;
        int level;
} level_names[] = {
        { "DEBUG", LOG_DEBUG },   { "INFO", LOG_INFO },      { "NOTICE", LOG_NOTICE },
        { "WARNING", LOG_WARNING }, { "WARN", LOG_WARNING }, { "ERROR", LOG_ERR },
        { "CRITICAL", LOG_CRIT },
};

int log_level_from_string(const char *s) {
        for (size_t i = 0; i < ELEMENTSOF(level_names); i++)
                if (strcasecmp(s, level_names[i].name) == 0)
                        return level_names[i].level;
        return -EINVAL;
}

const char *log_level_to_string(int level) {
        for (size_t i = 0; i < ELEMENTSOF(level_names); i++)
                if (level_names[i].level == level)
                        return level_names[i].name;
        return level < LOG_CRIT ? "CRITICAL" : "DEBUG";
}
