/* SPDX-License-Identifier: MIT */
#include <openssl/evp.h>

#include "core/uuid.h"

#define SHA1_DIGEST_SIZE 20

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

/* SHA-1 is libcrypto's (OpenSSL 3 EVP; the SHA1_* calls are deprecated). EVP_sha1() rather than an
 * explicit EVP_MD_fetch(): a fetched digest would have to be cached process-wide, and the implicit
 * fetch at each init costs about 0.2 µs, once per batch (and per event without id, next to hashing its
 * whole body); tests/bench/cpubench.c measures the whole stage. */
static int sha1_init(EVP_MD_CTX *ctx) {
        return EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) == 1 ? 0 : -ENOMEM;
}

static int sha1_update(EVP_MD_CTX *ctx, const void *data, size_t size) {
        /* EVP_DigestUpdate() reads nothing for size 0, so data may be NULL then. */
        return EVP_DigestUpdate(ctx, data, size) == 1 ? 0 : -EIO;
}

static int sha1_final(EVP_MD_CTX *ctx, uint8_t ret_digest[static SHA1_DIGEST_SIZE]) {
        unsigned size = 0;

        if (EVP_DigestFinal_ex(ctx, ret_digest, &size) != 1 || size != SHA1_DIGEST_SIZE)
                return -EIO;
        return 0;
}

/* RFC 9562 §5.5: the first 16 bytes of the SHA-1, version 5 in the high nibble of octet 6, variant 10
 * in the top bits of octet 8. */
static void uuid5_from_digest(const uint8_t digest[static SHA1_DIGEST_SIZE], Uuid *ret) {
        memcpy(ret->bytes, digest, sizeof(ret->bytes));
        ret->bytes[6] = (uint8_t) ((ret->bytes[6] & 0x0f) | 0x50);
        ret->bytes[8] = (uint8_t) ((ret->bytes[8] & 0x3f) | 0x80);
}

/* RFC 9562 §5.4, for the rare failure of batch_id_end() (see uuid.h): unique, never a v5 id. */
static void uuid4_random(Uuid *ret) {
        uint64_t hi = random_u64(), lo = random_u64();

        for (size_t i = 0; i < 8; i++) {
                ret->bytes[i] = (uint8_t) (hi >> (56 - 8 * i));
                ret->bytes[8 + i] = (uint8_t) (lo >> (56 - 8 * i));
        }
        ret->bytes[6] = (uint8_t) ((ret->bytes[6] & 0x0f) | 0x40);
        ret->bytes[8] = (uint8_t) ((ret->bytes[8] & 0x3f) | 0x80);
}

static void EVP_MD_CTX_freep(EVP_MD_CTX **p) {
        EVP_MD_CTX_free(*p); /* NULL is a no-op */
}

int uuid5(const Uuid *namespace, const void *name, size_t size, Uuid *ret) {
        _cleanup_(EVP_MD_CTX_freep) EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        uint8_t digest[SHA1_DIGEST_SIZE];
        int r;

        if (!ctx)
                return -ENOMEM;
        r = sha1_init(ctx);
        if (r >= 0)
                r = sha1_update(ctx, namespace->bytes, sizeof(namespace->bytes));
        if (r >= 0)
                r = sha1_update(ctx, name, size);
        if (r >= 0)
                r = sha1_final(ctx, digest);
        if (r < 0)
                return r;

        uuid5_from_digest(digest, ret);
        return 0;
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

int batch_id_begin(BatchIdBuilder *b) {
        int r;

        *b = (BatchIdBuilder) { .name = EVP_MD_CTX_new() };
        if (!b->name)
                return (b->error = -ENOMEM);
        r = sha1_init(b->name);
        if (r >= 0)
                r = sha1_update(b->name, UUID_NAMESPACE_TRANSMITTER.bytes, sizeof(UUID_NAMESPACE_TRANSMITTER.bytes));
        return (b->error = r);
}

static int batch_id_add_body(BatchIdBuilder *b, const void *body, size_t body_size) {
        char line[sizeof("sha1:") - 1 + 2 * SHA1_DIGEST_SIZE + 1] = "sha1:";
        uint8_t digest[SHA1_DIGEST_SIZE];
        int r;

        if (!b->body) {
                b->body = EVP_MD_CTX_new();
                if (!b->body)
                        return -ENOMEM;
        }
        /* On OpenSSL 3.0 each init allocates the provider's context anew, whatever we keep; only
         * events without id pay that, next to hashing their whole body. */
        r = sha1_init(b->body);
        if (r < 0)
                return r;
        r = sha1_update(b->body, body, body_size);
        if (r < 0)
                return r;
        r = sha1_final(b->body, digest);
        if (r < 0)
                return r;

        for (size_t i = 0; i < SHA1_DIGEST_SIZE; i++) {
                line[5 + 2 * i] = hex_lower[digest[i] >> 4];
                line[5 + 2 * i + 1] = hex_lower[digest[i] & 0xf];
        }
        line[sizeof(line) - 1] = '\n';
        return sha1_update(b->name, line, sizeof(line));
}

/* An empty "id" counts as none: CloudEvents forbids it, and letting it contribute a bare "\n" would give
 * unrelated batches of such events the same id, so a destination would drop one as a duplicate.
 * The raw id bytes cannot hold a '\n' (JSON strings carry no raw control characters), so the
 * separator keeps the name unambiguous. */
void batch_id_add(BatchIdBuilder *b, const char *id, size_t id_len, const void *body, size_t body_size) {
        int r;

        if (b->error < 0)
                return;

        if (id && id_len > 0) {
                r = sha1_update(b->name, id, id_len);
                if (r >= 0)
                        r = sha1_update(b->name, "\n", 1);
        } else
                r = batch_id_add_body(b, body, body_size);
        if (r < 0)
                b->error = r;
}

int batch_id_end(BatchIdBuilder *b, Uuid *ret) {
        uint8_t digest[SHA1_DIGEST_SIZE];
        int r = b->error;

        if (r >= 0)
                r = sha1_final(b->name, digest);
        EVP_MD_CTX_free(b->name);
        EVP_MD_CTX_free(b->body);
        *b = (BatchIdBuilder) { .error = r };

        if (r < 0) {
                uuid4_random(ret);
                return r;
        }
        uuid5_from_digest(digest, ret);
        return 0;
}
