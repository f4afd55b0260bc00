/* SPDX-License-Identifier: MIT */
#pragma once

/* Batch tracking in PostgreSQL (architecture §6), never blocking the loop: libpq non-blocking,
 * pipeline mode. Records are kept in memory, in order, until PostgreSQL has committed
 * them; each record's callback runs after its commit, which is where acks come from.
 * While the database is away, records wait and are written in order on reconnect. */

#include <systemd/sd-event.h>

#include "core/stats.h"
#include "util/util.h"

typedef struct Ledger Ledger;


typedef struct LedgerRecord {
        char batch_id[37];
        BatchStatus status;
        unsigned item_count;         /* pending */
        uint64_t payload_size;       /* pending: compressed bytes */
        unsigned retries;            /* added to retry_count */
        long http_status;            /* sent/failed; 0: NULL */
        const char *error_message;   /* failed; copied; NULL: NULL */
        usec_t at;                   /* CLOCK_REALTIME: created_at, sent_at or completed_at */
} LedgerRecord;

typedef void (*LedgerCommitted)(Ledger *l, void *userdata);
typedef void (*LedgerStateChanged)(Ledger *l, bool connected, const char *message, void *userdata);


typedef struct LedgerSettings {
        const char *url;
        const char *instance_id;
        const char *destination_url; /* stored in each row, without credentials */
        usec_t connect_timeout;
} LedgerSettings;

int ledger_new(sd_event *e, const LedgerSettings *settings, LedgerStateChanged on_state, void *userdata,
               Ledger **ret);
Ledger *ledger_free(Ledger *l);
DEFINE_TRIVIAL_CLEANUP_FUNC(Ledger *, ledger_free);

/* Connects in the background; the first thing written is the start-up sweep that marks the
 * rows this instance left pending or sending as failed ("interrupted"). */
int ledger_start(Ledger *l);

int ledger_append(Ledger *l, const LedgerRecord *record, LedgerCommitted committed, void *userdata);

bool ledger_is_connected(const Ledger *l);
/* Records not yet committed. */
size_t ledger_backlog(const Ledger *l);
uint64_t ledger_reconnects(const Ledger *l);

/* The per-status totals of transmitter.batches, refreshed in the background when older than
 * max_age; returns the last ones read. */
const LedgerTotals *ledger_totals(Ledger *l, usec_t max_age);
