/* SPDX-License-Identifier: MIT */
#include "core/uuid.h"

/* RFC 9562 Appendix C (and RFC 4122 before it). */
const Uuid UUID_NAMESPACE_DNS = { {
        0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8,
} };

/* uuid5(UUID_NAMESPACE_DNS, "transmitter.discovery") = 82d7fc65-68c8-53d6-8319-988467d00c1a, written
 * out so that nothing is computed at start-up. Reproduce it with
 *   python3 -c 'import uuid; print(uuid.uuid5(uuid.NAMESPACE_DNS, "transmitter.discovery"))'
 * tests/unit/test-uuid.c recomputes it with uuid5() below. It must never change: every batch id,
 * and with it every Idempotency-Key a destination has seen, hangs on it. */
const Uuid UUID_NAMESPACE_TRANSMITTER = { {
        0x82, 0xd7, 0xfc, 0x65, 0x68, 0xc8, 0x53, 0xd6, 0x83, 0x19, 0x98, 0x84, 0x67, 0xd0, 0x0c, 0x1a,
} };

static inline uint32_t rol32(uint32_t x, unsigned n) {
        return (x << n) | (x >> (32 - n));
}

static inline uint32_t load_be32(const uint8_t *p) {
        return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | (uint32_t) p[3];
}

static inline void store_be32(uint8_t *p, uint32_t v) {
        p[0] = (uint8_t) (v >> 24);
        p[1] = (uint8_t) (v >> 16);
        p[2] = (uint8_t) (v >> 8);
        p[3] = (uint8_t) v;
}

/* FIPS 180-4 §6.1.2, with the message schedule kept as a 16-word ring (§6.1.3's alternative). */
static void sha1_block(uint32_t state[static 5], const uint8_t *block) {
        uint32_t w[16], a = state[0], b = state[1], c = state[2], d = state[3], e = state[4];

        for (unsigned t = 0; t < 16; t++)
                w[t] = load_be32(block + 4 * t);

        for (unsigned t = 0; t < 80; t++) {
                uint32_t f, k, tmp;

                if (t >= 16) {
                        uint32_t x = w[(t + 13) & 15] ^ w[(t + 8) & 15] ^ w[(t + 2) & 15] ^ w[t & 15];
                        w[t & 15] = rol32(x, 1);
                }

                if (t < 20) {
                        f = (b & c) | (~b & d);
                        k = 0x5a827999;
                } else if (t < 40) {
                        f = b ^ c ^ d;
                        k = 0x6ed9eba1;
                } else if (t < 60) {
                        f = (b & c) | (b & d) | (c & d);
                        k = 0x8f1bbcdc;
                } else {
                        f = b ^ c ^ d;
                        k = 0xca62c1d6;
                }

                tmp = rol32(a, 5) + f + e + k + w[t & 15];
                e = d;
                d = c;
                c = rol32(b, 30);
                b = a;
                a = tmp;
        }

        state[0] += a;
        state[1] += b;
        state[2] += c;
        state[3] += d;
        state[4] += e;
}

void sha1_init(Sha1 *s) {
        *s = (Sha1) {
                .state = { 0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0 },
        };
}

void sha1_update(Sha1 *s, const void *data, size_t size) {
        const uint8_t *p = data;

        if (size == 0)
                return; /* data may be NULL then, and memcpy() must not see it */
        s->length += size;

        if (s->block_used > 0) {
                size_t n = MIN(size, sizeof(s->block) - s->block_used);

                memcpy(s->block + s->block_used, p, n);
                s->block_used += n;
                p += n;
                size -= n;
                if (s->block_used < sizeof(s->block))
                        return;
                sha1_block(s->state, s->block);
                s->block_used = 0;
        }

        /* Whole blocks straight from the caller's memory: no copy for the bulk of a body. */
        for (; size >= sizeof(s->block); p += sizeof(s->block), size -= sizeof(s->block))
                sha1_block(s->state, p);

        if (size > 0) {
                memcpy(s->block, p, size);
                s->block_used = size;
        }
}

void sha1_final(Sha1 *s, uint8_t ret_digest[20]) {
        uint64_t bits = s->length * 8;

        /* §5.1.1: a 1 bit, zeros up to 56 mod 64 bytes, then the length in bits, big-endian. */
        s->block[s->block_used++] = 0x80;
        if (s->block_used > 56) {
                memset(s->block + s->block_used, 0, sizeof(s->block) - s->block_used);
                sha1_block(s->state, s->block);
                s->block_used = 0;
        }
        memset(s->block + s->block_used, 0, 56 - s->block_used);
        store_be32(s->block + 56, (uint32_t) (bits >> 32));
        store_be32(s->block + 60, (uint32_t) bits);
        sha1_block(s->state, s->block);

        for (unsigned i = 0; i < 5; i++)
                store_be32(ret_digest + 4 * i, s->state[i]);
}

void uuid5_begin(Sha1 *s, const Uuid *namespace) {
        sha1_init(s);
        sha1_update(s, namespace->bytes, sizeof(namespace->bytes));
}

void uuid5_end(Sha1 *s, Uuid *ret) {
        uint8_t digest[20];

        sha1_final(s, digest);
        memcpy(ret->bytes, digest, sizeof(ret->bytes));
        /* RFC 9562 §5.5: version 5 in the high nibble of octet 6, variant 10 in the top bits of octet 8. */
        ret->bytes[6] = (uint8_t) ((ret->bytes[6] & 0x0f) | 0x50);
        ret->bytes[8] = (uint8_t) ((ret->bytes[8] & 0x3f) | 0x80);
}

void uuid5(const Uuid *namespace, const void *name, size_t size, Uuid *ret) {
        Sha1 s;

        uuid5_begin(&s, namespace);
        sha1_update(&s, name, size);
        uuid5_end(&s, ret);
}

static const char hex_lower[] = "0123456789abcdef";

static bool uuid_dash_at(size_t i) {
        return i == 8 || i == 13 || i == 18 || i == 23;
}

char *uuid_to_string(const Uuid *u, char buf[static UUID_STRING_MAX]) {
        size_t j = 0;

        for (size_t i = 0; i < UUID_STRING_MAX - 1; i++) {
                if (uuid_dash_at(i))
                        buf[i] = '-';
                else {
                        uint8_t b = u->bytes[j / 2];
                        buf[i] = hex_lower[(j % 2 == 0 ? b >> 4 : b) & 0xf];
                        j++;
                }
        }
        buf[UUID_STRING_MAX - 1] = '\0';
        return buf;
}

/* Exactly the 8-4-4-4-12 form, either case; no braces, no "urn:uuid:", nothing after it. */
int uuid_from_string(const char *s, Uuid *ret) {
        Uuid u;
        size_t j = 0;

        if (!s)
                return -EINVAL;

        for (size_t i = 0; i < UUID_STRING_MAX - 1; i++) {
                int v;

                if (uuid_dash_at(i)) {
                        if (s[i] != '-')
                                return -EINVAL;
                        continue;
                }
                /* A NUL fails here, so s is never read past its end. */
                v = unhexchar(s[i]);
                if (v < 0)
                        return v;
                if (j % 2 == 0)
                        u.bytes[j / 2] = (uint8_t) (v << 4);
                else
                        u.bytes[j / 2] |= (uint8_t) v;
                j++;
        }
        if (s[UUID_STRING_MAX - 1] != '\0')
                return -EINVAL;

        if (ret)
                *ret = u;
        return 0;
}

void batch_id_begin(BatchIdBuilder *b) {
        uuid5_begin(&b->sha1, &UUID_NAMESPACE_TRANSMITTER);
}

/* An empty "id" counts as none: CloudEvents forbids it, and letting it contribute a bare "\n" would give
 * unrelated batches of such events the same id, so a destination would drop one as a duplicate.
 * The raw id bytes cannot hold a '\n' (JSON strings carry no raw control characters), so the
 * separator keeps the name unambiguous. */
void batch_id_add(BatchIdBuilder *b, const char *id, size_t id_len, const void *body, size_t body_size) {
        if (id && id_len > 0) {
                sha1_update(&b->sha1, id, id_len);
                sha1_update(&b->sha1, "\n", 1);
        } else {
                char line[sizeof("sha1:") - 1 + 40 + 1] = "sha1:";
                uint8_t digest[20];
                Sha1 s;

                sha1_init(&s);
                sha1_update(&s, body, body_size);
                sha1_final(&s, digest);
                for (size_t i = 0; i < 20; i++) {
                        line[5 + 2 * i] = hex_lower[digest[i] >> 4];
                        line[5 + 2 * i + 1] = hex_lower[digest[i] & 0xf];
                }
                line[sizeof(line) - 1] = '\n';
                sha1_update(&b->sha1, line, sizeof(line));
        }
}

void batch_id_end(BatchIdBuilder *b, Uuid *ret) {
        uuid5_end(&b->sha1, ret);
}
