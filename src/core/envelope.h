/* SPDX-License-Identifier: MIT */
#pragma once

/* The wire body (architecture §3): gzip({"batch_id":"<uuid>","discoveries":[<body>,<body>,...]}),
 * the bodies spliced in verbatim. The bodies are compressed where they lie: the raw
 * envelope is never assembled in memory. */

#include <sys/uio.h>

#include "core/uuid.h"
#include "util/buffer.h"

typedef struct Envelope Envelope;

/* level: zlib's 0-9 (COMPRESSION_LEVEL). One Envelope keeps its deflate state for reuse. */
int envelope_new(int level, Envelope **ret);
Envelope *envelope_free(Envelope *e);
DEFINE_TRIVIAL_CLEANUP_FUNC(Envelope *, envelope_free);
int envelope_set_level(Envelope *e, int level);

/* Replaces the contents of out with the gzip member; ret_raw_size gets the size of the
 * JSON before compression. */
int envelope_encode(Envelope *e, const char *batch_id, const struct iovec *bodies, size_t n_bodies,
                    Buffer *out, size_t *ret_raw_size);

/* Bytes the envelope adds around n bodies: the prefix with the id, the commas and the closing "]}". */
size_t envelope_overhead(size_t n_bodies);
