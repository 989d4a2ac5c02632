/*
 * Seed files of the corpus generators (gen_frame_corpus, gen_node_corpus):
 * DIR/NAME.EXT written, or checked to hold exactly what this build would
 * write (a stale corpus fails the generator's --check).
 */
#ifndef KVX_TESTS_FUZZ_SEED_FILE_H
#define KVX_TESTS_FUZZ_SEED_FILE_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define SEED_FILE_MAX 8192

/* Writes (@p check 0) or checks (@p check 1) DIR/NAME.EXT; messages name
 * @p prog. Returns 0 or -1. */
static inline int seed_file(const char *prog, int check, const char *dir,
                            const char *name, const char *ext,
                            const uint8_t *buf, size_t len)
{
    static uint8_t have[SEED_FILE_MAX + 1];
    char path[1024];
    size_t n_read;
    FILE *f;
    int n = snprintf(path, sizeof(path), "%s/%s.%s", dir, name, ext);

    if (n < 0 || (size_t)n >= sizeof(path) || len > SEED_FILE_MAX) {
        fprintf(stderr, "%s: %s: path or seed too long\n", prog, name);
        return -1;
    }
    f = fopen(path, check ? "rb" : "wb");
    if (f == NULL) {
        fprintf(stderr, "%s: %s missing or not writable\n", prog, path);
        return -1;
    }
    if (!check) {
        if (fwrite(buf, 1, len, f) != len) {
            perror(path);
            fclose(f);
            return -1;
        }
        return fclose(f) == 0 ? 0 : -1;
    }
    n_read = fread(have, 1, sizeof(have), f);
    fclose(f);
    if (n_read != len || memcmp(have, buf, len) != 0) {
        fprintf(stderr, "%s: %s is stale\n", prog, path);
        return -1;
    }
    return 0;
}

#endif
