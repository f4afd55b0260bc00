/* SPDX-License-Identifier: MIT */
#include <inttypes.h>
#include <stdio.h>
#include <systemd/sd-daemon.h>

#include "os/notify.h"

static char last_status[256];

static void remember(const char *status) {
        snprintf(last_status, sizeof last_status, "%s", status);
}

void notify_ready(const char *status) {
        remember(status);
        (void) sd_notifyf(0, "READY=1\nSTATUS=%s", status);
}

void notify_status(const char *status) {
        if (streq(status, last_status))
                return;
        remember(status);
        (void) sd_notifyf(0, "STATUS=%s", status);
}

void notify_reloading(void) {
        (void) sd_notify(0, "RELOADING=1\nSTATUS=reloading configuration");
        last_status[0] = '\0';
}

void notify_stopping(const char *status) {
        remember(status);
        (void) sd_notifyf(0, "STOPPING=1\nSTATUS=%s", status);
}

void notify_extend_timeout(usec_t usec) {
        (void) sd_notifyf(0, "EXTEND_TIMEOUT_USEC=%" PRIu64, usec);
}
