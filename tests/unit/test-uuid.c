/* SPDX-License-Identifier: MIT */
#include <criterion/criterion.h>
#include <openssl/evp.h>
#include <stdio.h>

#include "core/uuid.h"

/* SHA-1 itself is libcrypto's and tested there; these tests pin what this project builds on it: the
 * version 5 UUIDs and the batch ids. */

static void sha1_hex(const void *data, size_t size, char ret[static 41]) {
        uint8_t d[EVP_MAX_MD_SIZE];
        unsigned n = 0;

        cr_assert_eq(EVP_Digest(data, size, d, &n, EVP_sha1(), NULL), 1);
        cr_assert_eq(n, 20);
        for (size_t i = 0; i < 20; i++)
                sprintf(ret + 2 * i, "%02x", d[i]);
}

static void expect_uuid(const Uuid *u, const char *want) {
        char buf[UUID_STRING_MAX];

        cr_expect_str_eq(uuid_to_string(u, buf), want);
}

/* RFC 9562 Appendix A.4. */
Test(uuid5, rfc9562_example) {
        BatchIdBuilder b;
        Uuid u;

        cr_assert_eq(uuid5(&UUID_NAMESPACE_DNS, "www.example.com", strlen("www.example.com"), &u), 0);
        expect_uuid(&u, "2ed6657d-e927-568b-95e1-2665a8aea6a2");
        cr_expect_eq(u.bytes[6] >> 4, 5);          /* version */
        cr_expect_eq(u.bytes[8] >> 6, 2);          /* variant 10 */

        /* Python's uuid documentation: uuid5(NAMESPACE_DNS, 'python.org'). */
        cr_assert_eq(uuid5(&UUID_NAMESPACE_DNS, "python.org", strlen("python.org"), &u), 0);
        expect_uuid(&u, "886313e1-3b8a-5372-9b90-0c9aee199e5d");

        /* The builder is the same name hashed in pieces: one event of id "www.example.com" hashes
         * "www.example.com\n" in the transmitter's namespace. */
        cr_assert_eq(batch_id_begin(&b), 0);
        batch_id_add(&b, "www.example.com", strlen("www.example.com"), "{}", 2);
        cr_assert_eq(batch_id_end(&b, &u), 0);
        {
                Uuid v;

                cr_assert_eq(uuid5(&UUID_NAMESPACE_TRANSMITTER, "www.example.com\n", 16, &v), 0);
                cr_expect_arr_eq(u.bytes, v.bytes, 16);
        }
}

Test(uuid5, namespaces) {
        Uuid u;

        expect_uuid(&UUID_NAMESPACE_DNS, "6ba7b810-9dad-11d1-80b4-00c04fd430c8");
        /* The constant is what its comment says it is. */
        cr_assert_eq(uuid5(&UUID_NAMESPACE_DNS, "transmitter.discovery", strlen("transmitter.discovery"), &u), 0);
        cr_expect_arr_eq(u.bytes, UUID_NAMESPACE_TRANSMITTER.bytes, 16);
        expect_uuid(&UUID_NAMESPACE_TRANSMITTER, "82d7fc65-68c8-53d6-8319-988467d00c1a");
}

Test(uuid, to_and_from_string) {
        static const char *const good[] = {
                "00000000-0000-0000-0000-000000000000",
                "ffffffff-ffff-ffff-ffff-ffffffffffff",
                "2ed6657d-e927-568b-95e1-2665a8aea6a2",
                "0123abcd-4567-89ef-0a1b-2c3d4e5f6789",
        };
        static const char *const bad[] = {
                "",
                "2ed6657d-e927-568b-95e1-2665a8aea6a",     /* short */
                "2ed6657d-e927-568b-95e1-2665a8aea6a2a",   /* long */
                "2ed6657de927568b95e12665a8aea6a2",        /* no dashes */
                "2ed6657d-e927-568b-95e12665a8aea6a2-",    /* dash misplaced */
                "2ed6657d_e927-568b-95e1-2665a8aea6a2",
                "{2ed6657d-e927-568b-95e1-2665a8aea6a2}",
                "urn:uuid:2ed6657d-e927-568b-95e1-2665a8aea6a2",
                "2ed6657g-e927-568b-95e1-2665a8aea6a2",    /* not hex */
                " 2ed6657d-e927-568b-95e1-2665a8aea6a2",
                "2ed6657d-e927-568b-95e1-2665a8aea6a2 ",
                "2ed6657d-e927-568b-95e1-2665a8aea6a2\n",
        };
        char buf[UUID_STRING_MAX];
        Uuid u;

        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                cr_expect_eq(uuid_from_string(good[i], &u), 0, "%s", good[i]);
                cr_expect_str_eq(uuid_to_string(&u, buf), good[i]);
        }
        /* Upper case is read, lower case written. */
        cr_expect_eq(uuid_from_string("2ED6657D-E927-568B-95E1-2665A8AEA6A2", &u), 0);
        cr_expect_str_eq(uuid_to_string(&u, buf), "2ed6657d-e927-568b-95e1-2665a8aea6a2");
        cr_expect_eq(uuid_from_string("2ed6657d-e927-568b-95e1-2665a8aea6a2", NULL), 0);

        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                cr_expect_eq(uuid_from_string(bad[i], &u), -EINVAL, "'%s'", bad[i]);
        cr_expect_eq(uuid_from_string(NULL, &u), -EINVAL);

        /* Every byte value at every position survives the trip. */
        for (unsigned v = 0; v < 256; v++) {
                Uuid a, b;

                for (size_t i = 0; i < 16; i++)
                        a.bytes[i] = (uint8_t) (v + i * 17);
                uuid_to_string(&a, buf);
                cr_assert_eq(strlen(buf), 36);
                cr_assert_eq(uuid_from_string(buf, &b), 0);
                cr_assert_arr_eq(a.bytes, b.bytes, 16);
        }
}

typedef struct Event {
        const char *id; /* NULL: none */
        const char *body;
} Event;

static void batch_id(const Event *ev, size_t n, char ret[static UUID_STRING_MAX]) {
        BatchIdBuilder b;
        Uuid u;

        cr_assert_eq(batch_id_begin(&b), 0);
        for (size_t i = 0; i < n; i++)
                batch_id_add(&b, ev[i].id, ev[i].id ? strlen(ev[i].id) : 0, ev[i].body, strlen(ev[i].body));
        cr_assert_eq(batch_id_end(&b, &u), 0);
        uuid_to_string(&u, ret);
}

Test(batch_id, stable_and_ordered) {
        const Event ab[] = {
                { "A234-1234-1234", "{\"id\":\"A234-1234-1234\"}" },
                { "B", "{\"id\":\"B\"}" },
        };
        const Event ba[] = { ab[1], ab[0] };
        const Event ab_other_bodies[] = { { "A234-1234-1234", "{\"id\":\"A234-1234-1234\",\"x\":1}" },
                                          { "B", "{}" } };
        char x[UUID_STRING_MAX], y[UUID_STRING_MAX], z[UUID_STRING_MAX];
        Uuid u;

        batch_id(ab, 2, x);
        batch_id(ab, 2, y);
        cr_expect_str_eq(x, y);
        batch_id(ba, 2, z);
        cr_expect_str_neq(x, z);
        /* With ids, only the ids count: a redelivered event re-serialised differently keeps the key. */
        batch_id(ab_other_bodies, 2, z);
        cr_expect_str_eq(x, z);
        batch_id(ab, 1, z);
        cr_expect_str_neq(x, z);

        /* Pinned: uuid5(UUID_NAMESPACE_TRANSMITTER, "A234-1234-1234\nB\n"), by Python's uuid module. A
         * change here changes every Idempotency-Key. */
        cr_expect_str_eq(x, "d6a1d8b0-0894-515c-8c50-0e789690bb0b");
        cr_assert_eq(uuid5(&UUID_NAMESPACE_TRANSMITTER, "A234-1234-1234\nB\n", strlen("A234-1234-1234\nB\n"), &u), 0);
        expect_uuid(&u, x);

        /* The empty batch. */
        batch_id(NULL, 0, z);
        cr_expect_str_eq(z, "5e82c3e7-0881-5052-b1d8-1943577256a9");
}

Test(batch_id, sha1_fallback) {
        const Event ev[] = {
                { "A234-1234-1234", "{\"id\":\"A234-1234-1234\"}" },
                { NULL, "{\"no\":\"id\"}" },
        };
        const Event empty_id[] = { ev[0], { "", "{\"no\":\"id\"}" } };
        const Event other_body[] = { ev[0], { NULL, "{\"no\":\"id!\"}" } };
        char x[UUID_STRING_MAX], y[UUID_STRING_MAX];
        static const char name[] = "A234-1234-1234\nsha1:a727e40be4980670f59a1b022af6a43b825c1f67\n";
        char hex[41];
        Uuid u;

        sha1_hex("{\"no\":\"id\"}", strlen("{\"no\":\"id\"}"), hex);
        cr_expect_str_eq(hex, "a727e40be4980670f59a1b022af6a43b825c1f67");

        batch_id(ev, 2, x);
        cr_assert_eq(uuid5(&UUID_NAMESPACE_TRANSMITTER, name, strlen(name), &u), 0);
        expect_uuid(&u, x);
        cr_expect_str_eq(x, "b624f6bf-aa45-50c7-a4e3-35071089bc36"); /* Python, as above */

        /* An empty id is no id: it falls back to the body as well. */
        batch_id(empty_id, 2, y);
        cr_expect_str_eq(x, y);

        batch_id(other_body, 2, y);
        cr_expect_str_neq(x, y);

        /* An event without id and one whose id happens to be its hash line do not differ; ids of
         * that shape are not produced by anyone, and the cost is at worst one shared key. */
        {
                const Event spoof[] = { ev[0], { "sha1:a727e40be4980670f59a1b022af6a43b825c1f67", "{}" } };
                batch_id(spoof, 2, y);
                cr_expect_str_eq(x, y);
        }
}

/* Known vectors, recorded from the hand-written SHA-1 this file used to test (and recomputed with
 * Python's hashlib and uuid) before SHA-1 came from libcrypto: the ids must stay byte-identical, or
 * every Idempotency-Key a destination has seen changes, and a batch re-formed after an upgrade would
 * be sent as a new one. */
static const char big_body_prefix[] = "{\"type\":\"approved.host\",\"data\":\"";

/* 992 bytes: a body without id spanning sixteen SHA-1 blocks. */
static void make_big_body(char ret[static 993]) {
        size_t i = strlen(big_body_prefix);

        memcpy(ret, big_body_prefix, i);
        for (; i < 990; i++)
                ret[i] = (char) ('a' + i % 26);
        memcpy(ret + 990, "\"}", 3);
}

Test(batch_id, known_vectors) {
        static const char ip_body[] = "{\"type\":\"approved.host\",\"data\":{\"ip\":\"10.0.0.1\"}}";
        char big[993], x[UUID_STRING_MAX];

        make_big_body(big);
        cr_assert_eq(strlen(big), 992);

        const Event with_ids[] = {
                { "0b7c6a52-9a1e-4c3b-8f0e-1d2e3f405162",
                  "{\"specversion\":\"1.0\",\"id\":\"0b7c6a52-9a1e-4c3b-8f0e-1d2e3f405162\",\"type\":\"approved.host\"}" },
                { "evt-2", "{\"id\":\"evt-2\",\"type\":\"approved.service\"}" },
                { "evt-3", "{\"id\":\"evt-3\"}" },
        };
        const Event without_ids[] = {
                { NULL, ip_body },
                { NULL, "{}" },
                { NULL, big },
        };
        const Event mixed[] = {
                { "evt-1", "{\"id\":\"evt-1\"}" },
                { NULL, ip_body },
                { "evt-3", "{\"id\":\"evt-3\"}" },
                { NULL, big },
        };

        batch_id(with_ids, ELEMENTSOF(with_ids), x);
        cr_expect_str_eq(x, "c7109c81-5289-5fcd-8cbe-ecdb690e3190");
        batch_id(without_ids, ELEMENTSOF(without_ids), x);
        cr_expect_str_eq(x, "b0963c40-ab4d-557e-bc7e-0fe5979fbf33");
        batch_id(mixed, ELEMENTSOF(mixed), x);
        cr_expect_str_eq(x, "62cc472e-6783-59a2-9f42-31b673add875");
        batch_id(NULL, 0, x);
        cr_expect_str_eq(x, "5e82c3e7-0881-5052-b1d8-1943577256a9");
}

Test(batch_id, empty_body_without_id) {
        BatchIdBuilder b;
        Uuid u, v;
        static const char name[] = "sha1:da39a3ee5e6b4b0d3255bfef95601890afd80709\n";

        cr_assert_eq(batch_id_begin(&b), 0);
        batch_id_add(&b, NULL, 0, NULL, 0);
        cr_assert_eq(batch_id_end(&b, &u), 0);
        cr_assert_eq(uuid5(&UUID_NAMESPACE_TRANSMITTER, name, strlen(name), &v), 0);
        cr_expect_arr_eq(u.bytes, v.bytes, 16);
}

/* A batch of the daemon's largest size in events whose lines cross SHA-1's 64-byte blocks everywhere,
 * against the same name in one piece. */
Test(batch_id, many_events_equal_one_name) {
        enum { N = 10000 };
        size_t cap = (size_t) N * 16, len = 0;
        _cleanup_free_ char *name = malloc(cap);
        BatchIdBuilder b;
        Uuid u, v;

        cr_assert(name);
        cr_assert_eq(batch_id_begin(&b), 0);
        for (unsigned i = 0; i < N; i++) {
                char id[16];
                int k = snprintf(id, sizeof id, "e%u", i * 7919u);

                batch_id_add(&b, id, (size_t) k, "{}", 2);
                memcpy(name + len, id, (size_t) k);
                len += (size_t) k;
                name[len++] = '\n';
        }
        cr_assert_eq(batch_id_end(&b, &u), 0);
        cr_assert_eq(uuid5(&UUID_NAMESPACE_TRANSMITTER, name, len, &v), 0);
        cr_expect_arr_eq(u.bytes, v.bytes, 16);
}
