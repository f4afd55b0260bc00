/* SPDX-License-Identifier: MIT */
#pragma once

/* Whether the database has this transmitter's schema (every migration built into it, pg/migrations.h),
 * before anything is consumed: with the schema missing or older, delivered events could not be
 * recorded and would be sent again. A
 * thread of its own reads transmitter.schema_migrations with blocking libpq (the event loop never
 * waits on the network), applies the migrations itself when DATABASE_MIGRATE=true, and reads
 * again every interval until the schema is current; then it tells the loop, through an eventfd,
 * and ends. The daemon starts consuming then (and not before). */

#include <systemd/sd-event.h>

#include "core/schema.h"

typedef struct SchemaWatch SchemaWatch;

/* Runs on the loop, once, when the schema was found current. */
typedef void (*SchemaWatchReady)(SchemaWatch *w, void *userdata);

typedef struct SchemaWatchSettings {
        const char *url;              /* DATABASE_URL */
        bool migrate;                 /* DATABASE_MIGRATE: apply the built-in migrations (pg/migrate.h) */
        usec_t connect_timeout;
        usec_t interval;              /* between two readings while the schema is not current */
} SchemaWatchSettings;

int schema_watch_new(sd_event *e, const SchemaWatchSettings *settings, SchemaWatchReady ready, void *userdata,
                     SchemaWatch **ret);
/* Stops the thread. One stuck in a call towards a database that stopped answering is left to
 * finish on its own, and frees what it uses then. */
SchemaWatch *schema_watch_free(SchemaWatch *w);
DEFINE_TRIVIAL_CLEANUP_FUNC(SchemaWatch *, schema_watch_free);

int schema_watch_start(SchemaWatch *w);

/* The last reading; the first migration not applied (SCHEMA_OLDER) or NULL. */
SchemaState schema_watch_state(const SchemaWatch *w);
const char *schema_watch_missing(const SchemaWatch *w);
