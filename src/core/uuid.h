/* SPDX-License-Identifier: MIT */
#pragma once

/* SHA-1 and name-based UUIDs (version 5, RFC 9562 §5.5). */

#include "util/util.h"

#define UUID_STRING_MAX 37 /* 36 characters and the NUL */

typedef struct Sha1 {
        uint32_t state[5];
        uint64_t length; /* bytes hashed so far */
        uint8_t block[64];
        size_t block_used;
} Sha1;

void sha1_init(Sha1 *s);
void sha1_update(Sha1 *s, const void *data, size_t size);
void sha1_final(Sha1 *s, uint8_t ret_digest[20]);

typedef struct Uuid {
        uint8_t bytes[16];
} Uuid;

extern const Uuid UUID_NAMESPACE_DNS;         /* 6ba7b810-9dad-11d1-80b4-00c04fd430c8 */
extern const Uuid UUID_NAMESPACE_TRANSMITTER; /* the namespace of batch ids */

/* Version 5 in one call, and in steps for a name that arrives in pieces:
 * uuid5_begin(), sha1_update() for each piece, uuid5_end(). */
void uuid5(const Uuid *namespace, const void *name, size_t size, Uuid *ret);
void uuid5_begin(Sha1 *s, const Uuid *namespace);
void uuid5_end(Sha1 *s, Uuid *ret);

/* Lower-case 8-4-4-4-12 form into buf (UUID_STRING_MAX bytes); returns buf. */
char *uuid_to_string(const Uuid *u, char buf[static UUID_STRING_MAX]);
int uuid_from_string(const char *s, Uuid *ret);

/* Batch ids (DESIGN §2): version 5 in UUID_NAMESPACE_TRANSMITTER over the events in order;
 * each event contributes its "id" followed by '\n', or, when it has none,
 * "sha1:<40 hex digits of the body's SHA-1>\n". */
typedef struct BatchIdBuilder {
        Sha1 sha1;
} BatchIdBuilder;

void batch_id_begin(BatchIdBuilder *b);
void batch_id_add(BatchIdBuilder *b, const char *id, size_t id_len, const void *body, size_t body_size);
void batch_id_end(BatchIdBuilder *b, Uuid *ret);
