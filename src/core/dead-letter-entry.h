/* SPDX-License-Identifier: MIT */
#pragma once

/* One message of the dead-letter queue as `transmitter dead-letters` sees it: why it is there
 * (the x-transmitter-* headers the daemon added, or the broker's own x-death), which event, since
 * when; the filters that select messages for list, replay and purge; and how a replay renames
 * the headers. Pure: the AMQP adapter reads the headers into DeadLetterHeaders, this file never
 * sees an AMQP type. */

#include "util/util.h"

/* The headers the daemon adds when it dead-letters a message (docs/architecture.md §5). */
#define DEAD_LETTER_HEADER_PREFIX "x-transmitter-"
#define DEAD_LETTER_HEADER_REASON "x-transmitter-reason"
#define DEAD_LETTER_HEADER_HTTP_STATUS "x-transmitter-http-status"
#define DEAD_LETTER_HEADER_BATCH_ID "x-transmitter-batch-id"
#define DEAD_LETTER_HEADER_DEAD_LETTERED_AT "x-transmitter-dead-lettered-at"
/* The headers a replay adds: the reason headers above, renamed, and how often it was replayed. */
#define DEAD_LETTER_HEADER_REPLAYED_PREFIX "x-transmitter-replayed-"
#define DEAD_LETTER_HEADER_REPLAY_COUNT "x-transmitter-replay-count"

#define DEAD_LETTER_REASON_MAX 64
#define DEAD_LETTER_BATCH_ID_MAX 64
#define DEAD_LETTER_EVENT_ID_MAX 256
#define DEAD_LETTER_ROUTING_KEY_MAX 256

/* What the adapter read from a message; strings point into it and need not be NUL-terminated. */
typedef struct DeadLetterHeaders {
        const char *reason;         /* x-transmitter-reason; NULL: none */
        size_t reason_len;
        int64_t http_status;        /* x-transmitter-http-status; 0: none */
        const char *batch_id;       /* x-transmitter-batch-id; NULL: none */
        size_t batch_id_len;
        int64_t replay_count;       /* x-transmitter-replay-count; 0: never replayed */
        usec_t dead_lettered_at;    /* x-transmitter-dead-lettered-at, CLOCK_REALTIME; 0: none */
        const char *death_reason;   /* the broker's dead-lettering: x-first-death-reason or x-death[0].reason */
        size_t death_reason_len;
        usec_t death_time;          /* x-death[0].time; 0: none */
        usec_t timestamp;           /* the message's timestamp property; 0: none */
        int64_t delivery_count;     /* x-delivery-count (quorum queues): times it was handed back */
} DeadLetterHeaders;

typedef struct DeadLetterEntry {
        uint64_t position;          /* 1-based place in the queue when it was read */
        /* x-transmitter-reason; "x-death:<reason>" for what the broker dead-lettered itself (the
         * daemon's dead-letter publish failed and it rejected the message, or a quorum queue's
         * delivery limit); "unknown" when neither says. */
        char reason[DEAD_LETTER_REASON_MAX];
        long http_status;           /* 0: none */
        char batch_id[DEAD_LETTER_BATCH_ID_MAX];
        char event_id[DEAD_LETTER_EVENT_ID_MAX]; /* the body's CloudEvents "id"; "": none (or not JSON) */
        usec_t dead_lettered_at;    /* x-transmitter-dead-lettered-at, else x-death's time; 0: unknown */
        usec_t published_at;        /* the timestamp property (set by the publisher, if at all); 0: none */
        uint64_t replay_count;
        uint64_t delivery_count;    /* x-delivery-count */
        size_t size;
        char routing_key[DEAD_LETTER_ROUTING_KEY_MAX];
        bool body_is_json;          /* a JSON object (json_check_event() says OK) */
} DeadLetterEntry;

/* Fills e. Strings are made printable (text_sanitize(), line breaks and tabs too); an event id longer than DEAD_LETTER_EVENT_ID_MAX - 1 is left empty, so that
 * no prefix of one can be mistaken for another. */
void dead_letter_entry_init(DeadLetterEntry *e, uint64_t position, const DeadLetterHeaders *h, const void *body,
                            size_t body_size, const char *routing_key, size_t routing_key_len);

/* Whether s can be a reason: 1-63 characters of [a-z0-9_:.-]. */
bool dead_letter_reason_is_valid(const char *s);

typedef struct DeadLetterFilter {
        char **reasons;             /* any of them; none: any reason */
        size_t n_reasons;
        char **event_ids;           /* any of them; none: any event */
        size_t n_event_ids;
        const char *batch_id;       /* NULL: any */
        usec_t older_than;          /* 0: any age; else dead-lettered at least this long ago; a message
                                     * whose dead_lettered_at is unknown never matches: the publish time
                                     * says nothing about it, and purge must not guess */
} DeadLetterFilter;

static inline bool dead_letter_filter_is_empty(const DeadLetterFilter *f) {
        return f->n_reasons == 0 && f->n_event_ids == 0 && !f->batch_id && f->older_than == 0;
}

/* now: CLOCK_REALTIME. */
bool dead_letter_filter_match(const DeadLetterFilter *f, const DeadLetterEntry *e, usec_t now);

/* Whether the header named key (len bytes) is one the daemon sets when it dead-letters a message
 * (reason, HTTP status, batch id, time), and so replaces on a message that had it before. A
 * replay's x-transmitter-replay-count and x-transmitter-replayed-* stay: a replayed event refused
 * again carries its new reason and its history. */
bool dead_letter_header_is_own(const char *key, size_t len);

typedef enum DeadLetterHeaderAction {
        DEAD_LETTER_HEADER_KEEP,    /* the publisher's own, or the broker's: unchanged */
        DEAD_LETTER_HEADER_RENAME,  /* x-transmitter-X becomes x-transmitter-replayed-X */
        DEAD_LETTER_HEADER_DROP,    /* an earlier replay's headers, replaced by this one's */
} DeadLetterHeaderAction;

/* What a replay does with the header named key (len bytes): the new name goes to buf (NUL-
 * terminated; at most 255 bytes, an AMQP short string) for RENAME. The replay then adds
 * DEAD_LETTER_HEADER_REPLAY_COUNT = the entry's replay_count + 1. */
DeadLetterHeaderAction dead_letter_replay_header(const char *key, size_t len, char buf[static 256]);
