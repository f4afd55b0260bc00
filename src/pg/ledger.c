/* SPDX-License-Identifier: MIT */
#include <inttypes.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "core/pg-targets.h"
#include "os/log.h"
#include "pg/host-lookup.h"
#include "pg/ledger.h"
#include "pg/pq-util.h"

#define RECONNECT_BACKOFF_MIN (500 * USEC_PER_MSEC)
/* Capped low: while the database is away no ack goes out and consumption stops at the prefetch
 * window, so every second between its return and our reconnect is a second of standstill; a
 * failed attempt costs little. */
#define RECONNECT_BACKOFF_MAX (10 * USEC_PER_SEC)
/* Records written in one pipeline round, i.e. one implicit transaction. */
#define ROUND_MAX 512

typedef enum RecordKind {
        RECORD_SWEEP,
        RECORD_BATCH,
        RECORD_TOTALS,
} RecordKind;

typedef struct Record {
        RecordKind kind;
        LedgerRecord data;
        usec_t sending_at; /* a pending record that took its batch's 'sending' record in */
        char *error_message;
        LedgerCommitted committed;
        void *userdata;
        struct Record *next;
} Record;

typedef enum LedgerState {
        LEDGER_DISCONNECTED,
        LEDGER_CONNECTING,
        LEDGER_CONNECTED,
} LedgerState;

struct Ledger {
        sd_event *event;
        char *url, *instance_id, *destination_url;
        usec_t connect_timeout;
        LedgerStateChanged on_state;
        void *userdata;

        PGconn *conn;
        HostLookup *lookup;  /* the host names of this attempt, before PQconnectStartParams() */
        char **lookup_hosts; /* libpq's host list, while lookup runs */
        size_t n_lookup_hosts;
        char *lookup_port;
        LedgerState state;
        sd_event_source *io;
        int io_fd;
        ino_t io_inode;          /* of the socket io watches: libpq reuses numbers (update_io()) */
        unsigned hosts_timed_out; /* addresses given up on in this attempt (on_timer()) */
        /* This attempt's host, hostaddr and port lists (NULL: none given), how many entries the
         * current PGconn left out at their start, and how many sockets it opened, i.e. entries it
         * tried: a host that takes the connection but never answers is skipped by starting over
         * after it (on_timer()). */
        char *try_host, *try_hostaddr, *try_port;
        size_t try_skip, try_sockets;
        sd_event_source *timer; /* connect timeout (per address), reconnect and retry backoff */
        sd_event_source *flush; /* starts a round once the current iteration appended its records */
        usec_t backoff;
        uint64_t reconnects;
        bool ever_connected;

        Record *head, *tail;
        Record *last_pending; /* the newest 'pending' record not on the wire yet, or NULL */
        size_t n_records;
        size_t round_size;    /* the first round_size records are on the wire */
        size_t round_results; /* answers received for them */
        bool round_failed;
        bool retry_wait;
        char round_error[512];

        LedgerTotals totals;
        bool totals_queued;
};

static void ledger_schedule(Ledger *l);
static void connection_lost(Ledger *l, const char *why);

static Record *record_free(Record *r) {
        if (!r)
                return NULL;
        free(r->error_message);
        return mfree(r);
}

static void push_record(Ledger *l, Record *r) {
        if (l->tail)
                l->tail->next = r;
        else
                l->head = r;
        l->tail = r;
        l->n_records++;
}

static Record *pop_record(Ledger *l) {
        Record *r = l->head;

        if (!r)
                return NULL;
        l->head = r->next;
        if (!l->head)
                l->tail = NULL;
        l->n_records--;
        return r;
}

static void set_state(Ledger *l, LedgerState state, const char *message) {
        bool was = l->state == LEDGER_CONNECTED, is = state == LEDGER_CONNECTED;

        l->state = state;
        if (was != is || (!is && message))
                l->on_state(l, is, message, l->userdata);
}

static int update_io(Ledger *l, uint32_t events);

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata);

static void arm_timer(Ledger *l, usec_t delay) {
        (void) sd_event_source_set_time_relative(l->timer, delay);
        (void) sd_event_source_set_enabled(l->timer, SD_EVENT_ONESHOT);
}

static void lookup_done(Ledger *l) {
        l->lookup = host_lookup_free(l->lookup);
        pg_list_free(l->lookup_hosts);
        l->lookup_hosts = NULL;
        l->n_lookup_hosts = 0;
        l->lookup_port = mfree(l->lookup_port);
}

static void close_connection(Ledger *l) {
        lookup_done(l);
        l->io = sd_event_source_disable_unref(l->io);
        l->io_fd = -EBADF;
        PQfinish(l->conn);
        l->conn = NULL;
        /* Records of an unfinished round were not committed: they go again, in order. */
        l->round_size = l->round_results = 0;
        l->round_failed = false;
}

static void connection_lost(Ledger *l, const char *why) {
        char message[512];
        const char *m;

        /* why is mostly PQerrorMessage(), which lives in the connection closed below. */
        snprintf(message, sizeof message, "%s", why);
        m = pq_one_line(message);
        close_connection(l);
        l->reconnects += l->state == LEDGER_CONNECTED;
        set_state(l, LEDGER_DISCONNECTED, m);
        arm_timer(l, l->backoff);
        l->backoff = MIN(l->backoff * 2, RECONNECT_BACKOFF_MAX);
}

static void on_connected(Ledger *l) {
        if (PQsetnonblocking(l->conn, 1) != 0 || PQenterPipelineMode(l->conn) != 1) {
                connection_lost(l, pq_error(l->conn));
                return;
        }
        (void) PQsetNoticeProcessor(l->conn, pq_notice_to_debug, NULL);
        if (l->hosts_timed_out > 0)
                log_warning("Connected to PostgreSQL at %s port %s after giving up on %u address(es) that did "
                            "not answer within %" PRIu64 " s",
                            strempty(PQhost(l->conn)), strempty(PQport(l->conn)), l->hosts_timed_out,
                            l->connect_timeout / USEC_PER_SEC);
        l->backoff = RECONNECT_BACKOFF_MIN;
        l->ever_connected = true;
        (void) sd_event_source_set_enabled(l->timer, SD_EVENT_OFF);
        l->retry_wait = false;
        set_state(l, LEDGER_CONNECTED, NULL);
        (void) update_io(l, EPOLLIN);
        ledger_schedule(l);
}

static void connect_failed(Ledger *l) {
        char why[600];

        if (l->hosts_timed_out == 0) {
                connection_lost(l, pq_error(l->conn));
                return;
        }
        /* libpq saw the sockets we shut down as reset: say why they were. */
        snprintf(why, sizeof why, "%s (gave up on %u address(es) after %" PRIu64 " s each)", pq_error(l->conn),
                 l->hosts_timed_out, l->connect_timeout / USEC_PER_SEC);
        connection_lost(l, why);
}

static void connect_poll(Ledger *l) {
        PostgresPollingStatusType st = PQconnectPoll(l->conn);

        switch (st) {
        case PGRES_POLLING_READING:
                (void) update_io(l, EPOLLIN);
                break;
        case PGRES_POLLING_WRITING:
                (void) update_io(l, EPOLLOUT);
                break;
        case PGRES_POLLING_OK:
                on_connected(l);
                break;
        default:
                connect_failed(l);
                break;
        }
}

static void finish_round(Ledger *l) {
        size_t n = l->round_size;

        l->round_size = l->round_results = 0;
        if (l->round_failed) {
                l->round_failed = false;
                log_error("Failed to write %zu tracking record(s), retrying in %" PRIu64 " ms: %s", n,
                          l->backoff / USEC_PER_MSEC, l->round_error);
                l->retry_wait = true;
                arm_timer(l, l->backoff);
                l->backoff = MIN(l->backoff * 2, RECONNECT_BACKOFF_MAX);
                return;
        }

        l->backoff = RECONNECT_BACKOFF_MIN;
        for (size_t i = 0; i < n; i++) {
                Record *r = pop_record(l);
                if (!r)
                        break;
                if (r->kind == RECORD_TOTALS)
                        l->totals_queued = false;
                if (r->committed)
                        r->committed(l, r->userdata);
                record_free(r);
        }
        ledger_schedule(l);
}

static void read_totals(Ledger *l, PGresult *res) {
        LedgerTotals t = { .read_at = now(CLOCK_MONOTONIC) };

        for (int i = 0; i < PQntuples(res); i++) {
                const char *status = PQgetvalue(res, i, 0);
                for (BatchStatus s = 0; s < _BATCH_STATUS_MAX; s++)
                        if (streq(status, batch_status_to_string(s))) {
                                t.batches[s] = strtoull(PQgetvalue(res, i, 1), NULL, 10);
                                t.events[s] = strtoull(PQgetvalue(res, i, 2), NULL, 10);
                        }
        }
        l->totals = t;
}

static Record *record_at(Ledger *l, size_t index) {
        Record *r = l->head;
        while (r && index-- > 0)
                r = r->next;
        return r;
}

static void read_results(Ledger *l) {
        if (PQconsumeInput(l->conn) != 1) {
                connection_lost(l, pq_error(l->conn));
                return;
        }

        for (bool after_null = false; l->round_size > 0 && !PQisBusy(l->conn);) {
                _cleanup_(PQclearp) PGresult *res = PQgetResult(l->conn);
                ExecStatusType st;

                if (!res) {
                        /* The end of one query's results; two in a row: nothing more is there. */
                        if (after_null)
                                break;
                        after_null = true;
                        continue;
                }
                after_null = false;
                st = PQresultStatus(res);
                switch (st) {
                case PGRES_PIPELINE_SYNC:
                        finish_round(l);
                        return;
                case PGRES_COMMAND_OK:
                case PGRES_TUPLES_OK: {
                        Record *r = record_at(l, l->round_results);
                        if (r && r->kind == RECORD_TOTALS && st == PGRES_TUPLES_OK)
                                read_totals(l, res);
                        l->round_results++;
                        break;
                }
                case PGRES_PIPELINE_ABORTED:
                        l->round_results++;
                        break;
                default: {
                        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
                        if (!l->round_failed)
                                snprintf(l->round_error, sizeof l->round_error, "%s%s",
                                         PQresultErrorMessage(res),
                                         streq_ptr(state, "42P01") ? " (was 'transmitter --migrate' run?)" : "");
                        l->round_failed = true;
                        l->round_results++;
                        break;
                }
                }
        }

        if (PQstatus(l->conn) == CONNECTION_BAD)
                connection_lost(l, pq_error(l->conn));
}

static void flush_output(Ledger *l) {
        int r = PQflush(l->conn);

        if (r < 0)
                connection_lost(l, pq_error(l->conn));
        else
                (void) update_io(l, r > 0 ? EPOLLIN | EPOLLOUT : EPOLLIN);
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Ledger *l = userdata;

        if (l->state == LEDGER_CONNECTING) {
                connect_poll(l);
                return 0;
        }
        if (revents & EPOLLOUT) {
                flush_output(l);
                if (!l->conn)
                        return 0;
        }
        if (revents & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
                read_results(l);
                if (l->conn && PQisnonblocking(l->conn))
                        flush_output(l);
        }
        return 0;
}

static int update_io(Ledger *l, uint32_t events) {
        int fd = PQsocket(l->conn), r;
        struct stat st = { 0 };

        if (l->io && fd != l->io_fd)
                l->io = sd_event_source_disable_unref(l->io);
        if (fd < 0)
                return -EBADF;
        /* While connecting, libpq closes its socket and opens another whenever it moves on to the
         * next address or host (or retries without SSL). The new socket mostly gets the old one's
         * number, but epoll forgot the old one when it was closed: with the same number and the same
         * events, the source would watch nothing and the attempt would hang until its timeout, on
         * every attempt (issue 12: a killed primary before its promoted standby). The inode tells
         * the two sockets apart. */
        if (l->state == LEDGER_CONNECTING) {
                if (fstat(fd, &st) < 0)
                        return negative_errno();
                if (l->io && st.st_ino != l->io_inode)
                        l->io = sd_event_source_disable_unref(l->io);
        }
        if (!l->io) {
                r = sd_event_add_io(l->event, &l->io, fd, events, on_io, l);
                if (r < 0)
                        return r;
                l->io_fd = fd;
                l->io_inode = st.st_ino;
                (void) sd_event_source_set_description(l->io, "pq-io");
                /* Each address gets the whole connect timeout, as libpq's connect_timeout gives
                 * each host: the timer no longer covers the attempt as a whole (on_timer()). */
                if (l->state == LEDGER_CONNECTING) {
                        l->try_sockets++;
                        arm_timer(l, l->connect_timeout);
                }
                return 0;
        }
        return sd_event_source_set_io_events(l->io, events);
}

static void format_time(char buf[static 32], usec_t t) {
        snprintf(buf, 32, "%" PRIu64 ".%06" PRIu64, t / USEC_PER_SEC, t % USEC_PER_SEC);
}

static int send_record(Ledger *l, const Record *r) {
        char count[24], size[24], retries[24], at[32], http[24];
        const LedgerRecord *d = &r->data;

        switch (r->kind) {
        case RECORD_SWEEP:
                return PQsendQueryParams(
                        l->conn,
                        "UPDATE transmitter.batches SET status = 'failed', error_message = 'interrupted', "
                        "completed_at = now() WHERE instance = $1 AND status IN ('pending', 'sending')",
                        1, NULL, (const char *[]) { l->instance_id }, NULL, NULL, 0);
        case RECORD_TOTALS:
                return PQsendQueryParams(l->conn,
                                         "SELECT status, count(*), coalesce(sum(item_count), 0) "
                                         "FROM transmitter.batches GROUP BY status",
                                         0, NULL, NULL, NULL, NULL, 0);
        case RECORD_BATCH:
                break;
        }

        format_time(at, d->at);
        snprintf(retries, sizeof retries, "%u", d->retries);
        if (d->status == BATCH_PENDING) {
                char sent_at[32];

                snprintf(count, sizeof count, "%u", d->item_count);
                snprintf(size, sizeof size, "%" PRIu64, d->payload_size);
                if (r->sending_at)
                        format_time(sent_at, r->sending_at);
                /* A batch formed again from the same events (after a crash or requeue) has the same
                 * id: the row is reused and the new formation counts as one more attempt. */
                return PQsendQueryParams(
                        l->conn,
                        "INSERT INTO transmitter.batches (id, status, item_count, payload_size, destination_url, "
                        "retry_count, instance, created_at, sent_at) "
                        "VALUES ($1, $7, $2, $3, $4, 0, $5, to_timestamp($6::float8), to_timestamp($8::float8)) "
                        "ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, item_count = EXCLUDED.item_count, "
                        "payload_size = EXCLUDED.payload_size, destination_url = EXCLUDED.destination_url, "
                        "instance = EXCLUDED.instance, retry_count = transmitter.batches.retry_count + 1, "
                        "sent_at = EXCLUDED.sent_at, http_status = NULL, error_message = NULL, completed_at = NULL",
                        8, NULL,
                        (const char *[]) { d->batch_id, count, size, l->destination_url, l->instance_id, at,
                                           r->sending_at ? "sending" : "pending", r->sending_at ? sent_at : NULL },
                        NULL, NULL, 0);
        }
        if (d->status == BATCH_SENDING)
                return PQsendQueryParams(l->conn,
                                         "UPDATE transmitter.batches SET status = 'sending', "
                                         "retry_count = retry_count + $2, sent_at = to_timestamp($3::float8) "
                                         "WHERE id = $1",
                                         3, NULL, (const char *[]) { d->batch_id, retries, at }, NULL, NULL, 0);

        snprintf(http, sizeof http, "%ld", d->http_status);
        return PQsendQueryParams(l->conn,
                                 "UPDATE transmitter.batches SET status = $2, http_status = $3, error_message = $4, "
                                 "retry_count = retry_count + $5, completed_at = to_timestamp($6::float8) "
                                 "WHERE id = $1",
                                 6, NULL,
                                 (const char *[]) { d->batch_id, batch_status_to_string(d->status),
                                                    d->http_status > 0 ? http : NULL, r->error_message, retries,
                                                    at },
                                 NULL, NULL, 0);
}

static void start_round(Ledger *l) {
        size_t n = 0;

        if (l->state != LEDGER_CONNECTED || l->round_size > 0 || l->retry_wait || !l->head)
                return;
        l->last_pending = NULL; /* on the wire from now on: nothing may be merged into it */

        for (Record *r = l->head; r && n < ROUND_MAX; r = r->next, n++)
                if (send_record(l, r) != 1) {
                        connection_lost(l, pq_error(l->conn));
                        return;
                }
        if (PQpipelineSync(l->conn) != 1) {
                connection_lost(l, pq_error(l->conn));
                return;
        }
        l->round_size = n;
        l->round_results = 0;
        flush_output(l);
}

static int on_flush(sd_event_source *s, void *userdata) {
        start_round(userdata);
        return 0;
}

static void ledger_schedule(Ledger *l) {
        if (l->head && l->state == LEDGER_CONNECTED && l->round_size == 0 && !l->retry_wait)
                (void) sd_event_source_set_enabled(l->flush, SD_EVENT_ONESHOT);
}

static void try_lists_free(Ledger *l) {
        l->try_host = mfree(l->try_host);
        l->try_hostaddr = mfree(l->try_hostaddr);
        l->try_port = mfree(l->try_port);
        l->try_skip = l->try_sockets = 0;
}

/* A PGconn for this attempt's lists without their first try_skip entries. -ENOENT when none is
 * left. */
static int connect_from(Ledger *l) {
        /* After dbname, so that they win over the URL's. */
        static const char *const keys[] = {
                "dbname", "fallback_application_name", "keepalives", "keepalives_idle", "keepalives_interval",
                "keepalives_count", "host", "hostaddr", "port", NULL,
        };
        const char *values[] = { l->url, "transmitter", "1", "10", "5", "3", NULL, NULL, NULL, NULL };
        _cleanup_free_ char *host = NULL, *hostaddr = NULL, *port = NULL;
        int r;

        r = pg_targets_skip(l->try_host, l->try_hostaddr, l->try_port, l->try_skip, &host, &hostaddr, &port);
        if (r == -ENOMEM || (r == -ENOENT && l->try_skip > 0))
                return r;
        /* Otherwise (lists that do not pair up, or none at all) libpq reads the URL and says best
         * what is wrong with it. */
        values[6] = host;
        values[7] = hostaddr;
        values[8] = port;
        l->try_sockets = 0;
        l->conn = PQconnectStartParams(keys, values, 1);
        if (!l->conn)
                return -ENOMEM;
        if (PQstatus(l->conn) == CONNECTION_BAD) {
                connection_lost(l, pq_error(l->conn));
                return 0;
        }
        /* Before the first PQconnectPoll, behave as if it had said "writing". */
        if (update_io(l, EPOLLOUT) < 0)
                connection_lost(l, "no socket");
        return 0;
}

/* host, hostaddr, port: the lists to connect to; all NULL: the URL's. */
static int connect_start(Ledger *l, const char *host, const char *hostaddr, const char *port) {
        int r;

        try_lists_free(l);
        if (!host && !hostaddr && !port) {
                PQconninfoOption *options = PQconninfoParse(l->url, NULL);

                for (const PQconninfoOption *o = options; o && o->keyword; o++)
                        if (!isempty(o->val) && streq(o->keyword, "host"))
                                host = l->try_host = strdup(o->val);
                        else if (!isempty(o->val) && streq(o->keyword, "hostaddr"))
                                hostaddr = l->try_hostaddr = strdup(o->val);
                        else if (!isempty(o->val) && streq(o->keyword, "port"))
                                port = l->try_port = strdup(o->val);
                PQconninfoFree(options);
        } else {
                l->try_host = host ? strdup(host) : NULL;
                l->try_hostaddr = hostaddr ? strdup(hostaddr) : NULL;
                l->try_port = port ? strdup(port) : NULL;
        }
        if ((host && !l->try_host) || (hostaddr && !l->try_hostaddr) || (port && !l->try_port))
                return -ENOMEM;
        r = connect_from(l);
        return r == -ENOENT ? 0 : r;
}

/* The lookup's answers as pg_targets_expand() takes them; -ENOENT naming the first host nothing
 * was found for when none is left. */
static int lookup_targets(Ledger *l, char **ret_host, char **ret_hostaddr, char **ret_port, char *why,
                          size_t why_size) {
        _cleanup_free_ char *const **addresses = calloc(l->n_lookup_hosts, sizeof *addresses);
        _cleanup_free_ size_t *n_addresses = calloc(l->n_lookup_hosts, sizeof *n_addresses);
        int r;

        if (!addresses || !n_addresses)
                return -ENOMEM;
        for (size_t i = 0; i < l->n_lookup_hosts; i++)
                addresses[i] = host_lookup_addresses(l->lookup, i, &n_addresses[i]);
        r = pg_targets_expand(l->lookup_hosts, l->n_lookup_hosts, l->lookup_port, addresses, n_addresses, ret_host,
                              ret_hostaddr, ret_port);
        if (r == -ENOENT)
                for (size_t i = 0; i < l->n_lookup_hosts; i++)
                        if (pg_host_needs_lookup(l->lookup_hosts[i])) {
                                snprintf(why, why_size, "could not translate host name \"%s\" to address: %s",
                                         l->lookup_hosts[i], strempty(host_lookup_error(l->lookup, i)));
                                break;
                        }
        return r;
}

static void on_lookup_done(HostLookup *lookup, void *userdata) {
        Ledger *l = userdata;
        _cleanup_free_ char *host = NULL, *hostaddr = NULL, *port = NULL;
        char why[512] = "out of memory";
        int r;

        r = lookup_targets(l, &host, &hostaddr, &port, why, sizeof why);
        if (r < 0 && r != -EINVAL) {
                connection_lost(l, why);
                return;
        }
        lookup_done(l);
        /* -EINVAL: hosts and ports do not pair up, which libpq says better (before any lookup). */
        r = connect_start(l, host, hostaddr, port);
        if (r < 0)
                connection_lost(l, "out of memory");
}

/* Starts looking up the URL's host names when libpq would (blocking the loop): 1. 0 with
 * nothing started when it would not. */
static int lookup_start(Ledger *l) {
        PQconninfoOption *options = PQconninfoParse(l->url, NULL);
        const char *host = NULL, *hostaddr = NULL, *port = NULL;
        bool needed = false;
        int r = 0;

        if (!options)
                return 0; /* libpq will say what is wrong with the URL */
        for (const PQconninfoOption *o = options; o->keyword; o++)
                if (streq(o->keyword, "host"))
                        host = o->val;
                else if (streq(o->keyword, "hostaddr"))
                        hostaddr = o->val;
                else if (streq(o->keyword, "port"))
                        port = o->val;

        if (host && isempty(hostaddr)) {
                r = pg_list_split(host, &l->lookup_hosts, &l->n_lookup_hosts);
                for (size_t i = 0; r >= 0 && i < l->n_lookup_hosts; i++)
                        needed = needed || pg_host_needs_lookup(l->lookup_hosts[i]);
        }
        if (r >= 0 && needed && port && !(l->lookup_port = strdup(port)))
                r = -ENOMEM;
        if (r >= 0 && needed) {
                /* Only the names: a socket directory would go to the DNS as a name. */
                _cleanup_free_ const char **names = calloc(l->n_lookup_hosts, sizeof *names);

                if (!names)
                        r = -ENOMEM;
                for (size_t i = 0; names && i < l->n_lookup_hosts; i++)
                        names[i] = pg_host_needs_lookup(l->lookup_hosts[i]) ? l->lookup_hosts[i] : "";
                if (names)
                        r = host_lookup_start(l->event, names, l->n_lookup_hosts, on_lookup_done, l,
                                              &l->lookup);
                if (r >= 0)
                        r = 1;
        }
        PQconninfoFree(options);
        if (r <= 0)
                lookup_done(l);
        return r;
}

static int ledger_connect(Ledger *l) {
        int r;

        l->state = LEDGER_CONNECTING;
        l->hosts_timed_out = 0;
        /* libpq's connect_timeout does not apply to PQconnectPoll: bound the host name lookup here,
         * and each address tried once there is a socket (update_io()). */
        arm_timer(l, l->connect_timeout);
        r = lookup_start(l);
        if (r < 0) {
                connection_lost(l, "out of memory");
                return 0;
        }
        if (r > 0)
                return 0;
        return connect_start(l, NULL, NULL, NULL);
}

/* This address took its connect timeout. libpq's connect_timeout does not apply to
 * PQconnectPoll(); in a blocking PQconnectdb() it makes libpq give up on the address and try the
 * next, and so does this: else a first host that is gone or frozen would end every attempt before
 * the standby listed after it (the new primary) was ever tried. */
static void connect_timed_out(Ledger *l) {
        int fd = l->conn ? PQsocket(l->conn) : -EBADF, r;

        if (fd < 0) {
                connection_lost(l, "connect timed out"); /* the host name lookup */
                return;
        }
        /* Said once the attempt ends (on_connected(), connect_failed()): while every host is away
         * this would repeat at each attempt. */
        log_debug("Gave up on PostgreSQL at %s port %s after %" PRIu64 " s", strempty(PQhost(l->conn)),
                  strempty(PQport(l->conn)), l->connect_timeout / USEC_PER_SEC);
        l->hosts_timed_out++;

        /* Still no TCP connection (a host that is down drops our SYNs rather than refusing them):
         * a connect in progress fails at once when its socket is shut down, and libpq moves on to
         * the next address by itself. */
        if (PQstatus(l->conn) == CONNECTION_STARTED && shutdown(fd, SHUT_RDWR) >= 0) {
                connect_poll(l);
                return;
        }

        /* Connected, but no answer (a frozen server): libpq would fail the whole attempt on it, so
         * start over after the entries this PGconn has tried. */
        l->io = sd_event_source_disable_unref(l->io);
        l->io_fd = -EBADF;
        PQfinish(l->conn);
        l->conn = NULL;
        l->try_skip += MAX(l->try_sockets, (size_t) 1);
        r = connect_from(l);
        if (r == -ENOENT)
                connection_lost(l, "connect timed out");
        else if (r < 0)
                connection_lost(l, "out of memory");
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Ledger *l = userdata;

        switch (l->state) {
        case LEDGER_CONNECTING:
                connect_timed_out(l);
                break;
        case LEDGER_DISCONNECTED:
                (void) ledger_connect(l);
                break;
        case LEDGER_CONNECTED:
                l->retry_wait = false;
                ledger_schedule(l);
                break;
        }
        return 0;
}

static int append(Ledger *l, RecordKind kind, const LedgerRecord *data, LedgerCommitted committed, void *userdata) {
        Record *r = calloc(1, sizeof *r);

        if (!r)
                return -ENOMEM;
        r->kind = kind;
        r->committed = committed;
        r->userdata = userdata;
        if (data) {
                r->data = *data;
                r->data.error_message = NULL;
                if (data->error_message) {
                        r->error_message = strdup(data->error_message);
                        if (!r->error_message) {
                                free(r);
                                return -ENOMEM;
                        }
                }
        }
        push_record(l, r);
        ledger_schedule(l);
        return 0;
}

int ledger_append(Ledger *l, const LedgerRecord *record, LedgerCommitted committed, void *userdata) {
        Record *p = l->last_pending;
        int r;

        /* A batch usually starts sending in the loop iteration that formed it: its 'pending' row
         * has not left yet, so it is written as 'sending' at once, one statement fewer. */
        if (record->status == BATCH_SENDING && p && !committed && !p->committed && record->retries == 0 &&
            streq(p->data.batch_id, record->batch_id)) {
                p->sending_at = record->at;
                l->last_pending = NULL;
                return 0;
        }

        r = append(l, RECORD_BATCH, record, committed, userdata);
        if (r < 0)
                return r;
        l->last_pending = record->status == BATCH_PENDING ? l->tail : NULL;
        return 0;
}

int ledger_new(sd_event *e, const LedgerSettings *s, LedgerStateChanged on_state, void *userdata, Ledger **ret) {
        _cleanup_(ledger_freep) Ledger *l = NULL;
        int r;

        l = calloc(1, sizeof *l);
        if (!l)
                return -ENOMEM;
        *l = (Ledger) {
                .event = sd_event_ref(e),
                .connect_timeout = s->connect_timeout,
                .on_state = on_state,
                .userdata = userdata,
                .io_fd = -EBADF,
                .backoff = RECONNECT_BACKOFF_MIN,
        };
        l->url = strdup(s->url);
        l->instance_id = strdup(s->instance_id);
        l->destination_url = url_redact(s->destination_url);
        if (!l->url || !l->instance_id || !l->destination_url)
                return -ENOMEM;

        r = sd_event_add_time(e, &l->timer, CLOCK_MONOTONIC, USEC_INFINITY, 0, on_timer, l);
        if (r < 0)
                return r;
        (void) sd_event_source_set_enabled(l->timer, SD_EVENT_OFF);
        (void) sd_event_source_set_description(l->timer, "pq-timer");

        r = sd_event_add_defer(e, &l->flush, on_flush, l);
        if (r < 0)
                return r;
        (void) sd_event_source_set_enabled(l->flush, SD_EVENT_OFF);
        (void) sd_event_source_set_description(l->flush, "pq-flush");

        *ret = TAKE_PTR(l);
        return 0;
}

int ledger_start(Ledger *l) {
        int r;

        r = append(l, RECORD_SWEEP, NULL, NULL, NULL);
        if (r < 0)
                return r;
        return ledger_connect(l);
}

Ledger *ledger_free(Ledger *l) {
        if (!l)
                return NULL;
        close_connection(l);
        try_lists_free(l);
        while (l->head)
                record_free(pop_record(l));
        sd_event_source_disable_unref(l->timer);
        sd_event_source_disable_unref(l->flush);
        sd_event_unref(l->event);
        free(l->url);
        free(l->instance_id);
        free(l->destination_url);
        return mfree(l);
}

bool ledger_is_connected(const Ledger *l) {
        return l->state == LEDGER_CONNECTED;
}

size_t ledger_backlog(const Ledger *l) {
        size_t n = 0;
        for (const Record *r = l->head; r; r = r->next)
                n += r->kind == RECORD_BATCH;
        return n;
}

uint64_t ledger_reconnects(const Ledger *l) {
        return l->reconnects;
}

const LedgerTotals *ledger_totals(Ledger *l, usec_t max_age) {
        usec_t t = now(CLOCK_MONOTONIC);

        if (l->state == LEDGER_CONNECTED && !l->totals_queued &&
            (l->totals.read_at == 0 || t - l->totals.read_at >= max_age) && append(l, RECORD_TOTALS, NULL, NULL, NULL) >= 0)
                l->totals_queued = true;
        return &l->totals;
}
