/* SPDX-License-Identifier: MIT */
/* batch_id_*() when libcrypto runs out of memory at each of its allocations in turn. Not a criterion
 * test: criterion's runner loads libgit2 and libssh2, which allocate through libcrypto before any test
 * runs, and libcrypto's allocator can only be replaced before its first allocation. */
#include <openssl/crypto.h>
#include <limits.h>
#include <stdio.h>

#include "core/uuid.h"

static unsigned allocations_left = UINT_MAX;

static void *failing_malloc(size_t n, const char *file, int line) {
        if (allocations_left == 0)
                return NULL;
        allocations_left--;
        return malloc(n);
}

static void *failing_realloc(void *p, size_t n, const char *file, int line) {
        if (allocations_left == 0)
                return NULL;
        allocations_left--;
        return realloc(p, n);
}

static void plain_free(void *p, const char *file, int line) {
        free(p);
}

static int fail(unsigned budget, const char *what) {
        fprintf(stderr, "allocation budget %u: %s\n", budget, what);
        return 1;
}

static int batch(Uuid *ret, int *ret_begin) {
        static const char body[] = "{\"type\":\"approved.host\",\"data\":{\"ip\":\"10.0.0.1\"}}";
        BatchIdBuilder b;

        *ret_begin = batch_id_begin(&b);
        batch_id_add(&b, "evt-1", 5, "{\"id\":\"evt-1\"}", 14);
        batch_id_add(&b, NULL, 0, body, sizeof(body) - 1);
        batch_id_add(&b, NULL, 0, "{}", 2);
        return batch_id_end(&b, ret);
}

int main(void) {
        bool failed = false;
        Uuid want;
        int r, q;

        if (CRYPTO_set_mem_functions(failing_malloc, failing_realloc, plain_free) != 1)
                return fail(0, "libcrypto allocated before main()");

        r = batch(&want, &q);
        if (r < 0 || q < 0)
                return fail(UINT_MAX, "failed with memory to spare");

        /* A failure is returned by batch_id_end() (and by batch_id_begin() when it happens there), and
         * the id is then a random version 4 one: never a version 5 id that is not the batch's own. */
        for (unsigned budget = 0;; budget++) {
                Uuid u;

                allocations_left = budget;
                r = batch(&u, &q);
                allocations_left = UINT_MAX;

                if (q < 0 && q != r)
                        return fail(budget, "begin failed, end did not return its error");
                if (r >= 0) {
                        if (memcmp(u.bytes, want.bytes, sizeof(u.bytes)) != 0)
                                return fail(budget, "succeeded with another id");
                        break;
                }
                if (r != -ENOMEM && r != -EIO)
                        return fail(budget, "an error other than -ENOMEM or -EIO");
                if (u.bytes[6] >> 4 != 4 || u.bytes[8] >> 6 != 2)
                        return fail(budget, "the id after a failure is no random version 4 one");
                failed = true;
                if (budget > 1000)
                        return fail(budget, "still failing");
        }
        if (!failed)
                return fail(0, "never failed: libcrypto's allocator was not used");
        return 0;
}
