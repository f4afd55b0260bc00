/* SPDX-License-Identifier: MIT */
#pragma once

/* The HTTPS client: libcurl's multi interface driven by sd-event. It knows nothing of
 * batches or retries: it POSTs a gzip body and reports what came back. */

#include <systemd/sd-event.h>

#include "util/util.h"

#define SENDER_BODY_EXCERPT_MAX 1024

typedef struct Sender Sender;

typedef struct SenderSettings {
        const char *url;
        const char *ca_file;   /* added to the system's trust anchors */
        const char *cert_file; /* mTLS */
        const char *key_file;
        bool allow_insecure_http;
        usec_t request_timeout;
        usec_t connect_timeout;
        unsigned max_connections;
        const char *user_agent;
} SenderSettings;

typedef struct SenderResult {
        long http_status;     /* 0: no HTTP answer (transport, TLS, timeout) */
        int curl_code;        /* CURLcode; 0 when the exchange completed */
        char error[256];      /* why there was no answer, for logs; never holds the token */
        char body_excerpt[SENDER_BODY_EXCERPT_MAX + 1]; /* first 1 KiB of the answer, NUL-terminated */
        size_t body_excerpt_size;
        char retry_after[64]; /* the Retry-After header, "" when absent */
        usec_t duration;
        uint64_t bytes_sent;
} SenderResult;

typedef void (*SenderCallback)(Sender *s, const SenderResult *result, void *userdata);

/* curl_global_init(), once, before any thread starts. */
int sender_global_init(void);

int sender_new(sd_event *e, const SenderSettings *settings, Sender **ret);
/* Abandons transfers still running without calling their callbacks. */
Sender *sender_free(Sender *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(Sender *, sender_free);

/* NULL or "" sends no Authorization header. */
int sender_set_token(Sender *s, const char *token);
void sender_set_timeouts(Sender *s, usec_t request_timeout, usec_t connect_timeout);
/* At most n connections to the destination (MAX_IN_FLIGHT). */
int sender_set_max_connections(Sender *s, unsigned n);

/* POSTs payload (which must stay valid until the callback) with the headers of architecture §3. */
int sender_post(Sender *s, const char *batch_id, const void *payload, size_t size, SenderCallback callback,
                void *userdata);
