/* SPDX-License-Identifier: MIT */
#pragma once

/* Name-based UUIDs (version 5, RFC 9562 §5.5) and the batch ids made of them. SHA-1 is libcrypto's;
 * everything here runs on one thread at a time per builder. */

#include <openssl/types.h>

#include "util/util.h"

#define UUID_STRING_MAX 37 /* 36 characters and the NUL */

typedef struct Uuid {
        uint8_t bytes[16];
} Uuid;

extern const Uuid UUID_NAMESPACE_DNS;         /* 6ba7b810-9dad-11d1-80b4-00c04fd430c8 */
extern const Uuid UUID_NAMESPACE_TRANSMITTER; /* the namespace of batch ids */

/* Version 5 of one name. 0, or -ENOMEM/-EIO when libcrypto fails (then *ret is not written). */
int uuid5(const Uuid *namespace, const void *name, size_t size, Uuid *ret);

/* Lower-case 8-4-4-4-12 form into buf (UUID_STRING_MAX bytes); returns buf. */
char *uuid_to_string(const Uuid *u, char buf[static UUID_STRING_MAX]);
int uuid_from_string(const char *s, Uuid *ret);

/* Batch ids (architecture §2): version 5 in UUID_NAMESPACE_TRANSMITTER over the events in order;
 * each event contributes its "id" followed by '\n', or, when it has none,
 * "sha1:<40 hex digits of the body's SHA-1>\n".
 *
 * batch_id_begin(), batch_id_add() for each event, batch_id_end(): end must follow every begin,
 * also a failed one, as it releases the builder's libcrypto contexts. A failure (only libcrypto's:
 * out of memory) sticks to the builder and is returned by begin and by end. *ret is written
 * either way: on failure with a random version 4 id, so that a caller that goes on with it can never
 * send its batch under another batch's key (the destination would drop it as a duplicate); it only
 * loses the key's stability across a re-formed batch. */
typedef struct BatchIdBuilder {
        EVP_MD_CTX *name; /* the v5 name: the namespace, then a line per event */
        EVP_MD_CTX *body; /* the SHA-1 of a body without id; made at the first such event, then reused */
        int error;        /* the first failure, or 0 */
} BatchIdBuilder;

int batch_id_begin(BatchIdBuilder *b);
void batch_id_add(BatchIdBuilder *b, const char *id, size_t id_len, const void *body, size_t body_size);
int batch_id_end(BatchIdBuilder *b, Uuid *ret);
