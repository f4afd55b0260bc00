/* SPDX-License-Identifier: MIT */
#include <stdio.h>

#include "core/schema.h"

static const char *const schema_state_names[_SCHEMA_STATE_MAX] = {
        [SCHEMA_UNKNOWN] = "unknown",
        [SCHEMA_MISSING] = "missing",
        [SCHEMA_OLDER] = "older",
        [SCHEMA_CURRENT] = "current",
};

const char *schema_state_to_string(SchemaState s) {
        return s >= 0 && s < _SCHEMA_STATE_MAX ? schema_state_names[s] : "unknown";
}

SchemaState schema_compare(const char *const *expected, size_t n_expected, const char *const *applied,
                           size_t n_applied, const char **ret_missing) {
        if (ret_missing)
                *ret_missing = NULL;
        if (n_applied == 0)
                return SCHEMA_MISSING;
        for (size_t i = 0; i < n_expected; i++) {
                bool found = false;

                for (size_t j = 0; j < n_applied && !found; j++)
                        found = streq(expected[i], applied[j]);
                if (!found) {
                        if (ret_missing)
                                *ret_missing = expected[i];
                        return SCHEMA_OLDER;
                }
        }
        return SCHEMA_CURRENT;
}

void schema_describe(SchemaState s, const char *missing, char *buf, size_t size) {
        switch (s) {
        case SCHEMA_MISSING:
                snprintf(buf, size, "schema missing, run transmitter --migrate");
                break;
        case SCHEMA_OLDER:
                snprintf(buf, size, "schema older than this transmitter (%s not applied), run transmitter --migrate",
                         strempty(missing));
                break;
        default:
                snprintf(buf, size, "%s", "");
                break;
        }
}
