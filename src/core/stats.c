/* SPDX-License-Identifier: MIT */
#include "core/stats.h"

static const char *const batch_status_names[_BATCH_STATUS_MAX] = {
        [BATCH_PENDING] = "pending",
        [BATCH_SENDING] = "sending",
        [BATCH_SENT] = "sent",
        [BATCH_FAILED] = "failed",
};

const char *batch_status_to_string(BatchStatus s) {
        return s >= 0 && s < _BATCH_STATUS_MAX ? batch_status_names[s] : "unknown";
}
