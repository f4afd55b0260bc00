/* SPDX-License-Identifier: MIT */
/* A main() for the fuzz targets where libFuzzer is not linked in (the gcc builds): runs
 * LLVMFuzzerTestOneInput once on every file named, or on every file of every directory named,
 * in name order. The corpora of tests/fuzz/corpus/ are replayed like this in the unit suite,
 * so that an input that once broke an invariant keeps failing the build should it come back. */
#include <dirent.h>
#include <stdio.h>
#include <sys/stat.h>

#include "fuzz.h"

__attribute__((weak)) int LLVMFuzzerInitialize(int *argc, char ***argv) {
        return 0;
}

static int run_file(const char *path) {
        _cleanup_free_ char *buf = NULL;
        size_t size;
        int r;

        r = read_full_file(path, 16 * 1024 * 1024, &buf, &size);
        if (r < 0) {
                fprintf(stderr, "%s: %s\n", path, STRERROR(r));
                return r;
        }
        /* Named first: an invariant that breaks aborts inside the target. */
        fprintf(stderr, "replay %s (%zu bytes)\n", path, size);
        (void) LLVMFuzzerTestOneInput((const uint8_t *) buf, size);
        return 0;
}

static int compare_names(const struct dirent **a, const struct dirent **b) {
        return strcmp((*a)->d_name, (*b)->d_name);
}

int main(int argc, char *argv[]) {
        unsigned n = 0;

        (void) LLVMFuzzerInitialize(&argc, &argv);
        for (int i = 1; i < argc; i++) {
                struct dirent **entries;
                struct stat st;
                int k;

                if (stat(argv[i], &st) < 0) {
                        fprintf(stderr, "%s: %s\n", argv[i], STRERROR(errno));
                        return 1;
                }
                if (!S_ISDIR(st.st_mode)) {
                        if (run_file(argv[i]) < 0)
                                return 1;
                        n++;
                        continue;
                }
                k = scandir(argv[i], &entries, NULL, compare_names);
                if (k < 0) {
                        fprintf(stderr, "%s: %s\n", argv[i], STRERROR(errno));
                        return 1;
                }
                for (int j = 0; j < k; j++) {
                        _cleanup_free_ char *path = NULL;

                        if (entries[j]->d_name[0] != '.' &&
                            asprintf(&path, "%s/%s", argv[i], entries[j]->d_name) >= 0 &&
                            stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
                                if (run_file(path) < 0)
                                        return 1;
                                n++;
                        }
                        free(entries[j]);
                }
                free(entries);
        }
        if (n == 0) {
                fprintf(stderr, "no input files\n");
                return 1;
        }
        printf("%u inputs replayed, every invariant held\n", n);
        return 0;
}
