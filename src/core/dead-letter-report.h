/* SPDX-License-Identifier: MIT */
#pragma once

/* What `transmitter dead-letters` prints: the counts of list (by reason, by HTTP status, oldest
 * and newest), its page of messages, one message for show, and the progress line of long runs,
 * as text for a terminal and as JSON for scripts. Pure: the time is passed in. */

#include "core/dead-letter-entry.h"
#include "util/buffer.h"

typedef struct DeadLetterCount {
        char key[DEAD_LETTER_REASON_MAX]; /* a reason, or an HTTP status as text */
        uint64_t count;
} DeadLetterCount;

typedef struct DeadLetterSummary {
        uint64_t in_queue;           /* messages read, whether they matched or not */
        uint64_t total;              /* those that matched the filter, counted below */
        uint64_t bytes;
        DeadLetterCount *reasons;    /* in order of first appearance */
        size_t n_reasons;
        DeadLetterCount *statuses;
        size_t n_statuses;
        usec_t oldest, newest;       /* of those with a known time; 0: none */
        uint64_t time_unknown;
} DeadLetterSummary;

/* Counts a message read (matched: whether it passed the filter; only those are summed up). */
int dead_letter_summary_add(DeadLetterSummary *s, const DeadLetterEntry *e, bool matched);
void dead_letter_summary_done(DeadLetterSummary *s);

typedef struct DeadLetterListing {
        const char *queue;
        const DeadLetterSummary *summary;
        const DeadLetterEntry *page; /* the first matching messages, in queue order */
        size_t n_page;
        bool filtered;               /* a filter was given: say "match" rather than "in the queue" */
        usec_t now;                  /* CLOCK_REALTIME */
} DeadLetterListing;

int dead_letter_list_text(const DeadLetterListing *l, Buffer *out);
int dead_letter_list_json(const DeadLetterListing *l, Buffer *out);

/* A property or header of a message as text, for show. */
typedef struct DeadLetterField {
        const char *name;
        const char *value;
} DeadLetterField;

typedef struct DeadLetterMessageView {
        const DeadLetterEntry *entry;
        const DeadLetterField *properties;
        size_t n_properties;
        const DeadLetterField *headers;
        size_t n_headers;
        const void *body;
        size_t body_size;
        size_t body_max;             /* show at most this many bytes of a body that is not JSON */
        usec_t now;
} DeadLetterMessageView;

/* The entry, properties, headers, and the body: pretty-printed when it is a JSON object, else
 * escaped text (\xNN for what is not printable ASCII) after a line saying why it is not JSON. */
int dead_letter_show_text(const DeadLetterMessageView *v, Buffer *out);
/* {"message":{entry},"properties":{...},"headers":{...},"body":<the JSON> or null,
 *  "body_text":null or the body as a string with invalid UTF-8 replaced,"body_truncated":bool} */
int dead_letter_show_json(const DeadLetterMessageView *v, Buffer *out);

/* "replay: 2,345 of 5,000 read, 2,300 replayed, 410/s" (elapsed since the start). */
void dead_letter_progress(char *buf, size_t size, const char *verb, const char *done_word, uint64_t read,
                          uint64_t total, uint64_t done, usec_t elapsed);
