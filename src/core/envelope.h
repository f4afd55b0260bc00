/* SPDX-License-Identifier: MIT */
#pragma once

/* The wire body (architecture §3): gzip({"batch_id":"<uuid>","discoveries":[<body>,<body>,...]}),
 * the bodies spliced in verbatim. The gzip engine is chosen at build time: libdeflate (the
 * meson feature 'libdeflate'), which compresses one assembled buffer, or zlib, which compresses
 * the bodies where they lie. */

#include <sys/uio.h>

#include "core/uuid.h"
#include "util/buffer.h"

typedef struct Envelope Envelope;

/* level: COMPRESSION_LEVEL, on zlib's scale 0-9 (0 stores). One Envelope keeps its compressor
 * for reuse. */
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

/* The engine and its version, e.g. "libdeflate/1.14" or "zlib/1.2.13". The slash keeps lintian from
 * taking "deflate 1.14" in the binary for an embedded zlib. */
const char *envelope_engine(void);
/* The engine's own level for a COMPRESSION_LEVEL: libdeflate's level one below (1 for 1), which
 * compresses about as small as zlib's at COMPRESSION_LEVEL; zlib's is the same. -EINVAL if out of
 * range. */
int envelope_engine_level(int level);
/* The room envelope_encode() reserves in out for a raw envelope of raw_size bytes: it never
 * needs more. */
size_t envelope_compress_bound(Envelope *e, size_t raw_size);
