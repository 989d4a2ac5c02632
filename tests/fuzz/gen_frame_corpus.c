/*
 * Writes the seed corpus of fuzz_frame: one valid frame per body type plus
 * one stream of several frames back to back.
 *
 *   gen_frame_corpus DIR          write the seeds into DIR (must exist)
 *   gen_frame_corpus --check DIR  exit 1 if DIR's seeds differ from what
 *                                 this build would write (stale corpus)
 *
 * Regenerate the checked-in corpus after changing kvx.proto or the samples:
 *   build/tests/fuzz/gen_frame_corpus tests/fuzz/corpus/frame
 * Other files there (regress-*.frame: inputs that once broke the harness)
 * are kept by hand and not checked.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame_samples_local.h"
#include "seed_file.h"

#define SEED_MAX 4096

static int write_seed(const char *dir, const char *name, const uint8_t *buf,
                      size_t len)
{
    return seed_file("gen_frame_corpus", 0, dir, name, "frame", buf, len);
}

static int check_seed(const char *dir, const char *name, const uint8_t *buf,
                      size_t len)
{
    return seed_file("gen_frame_corpus", 1, dir, name, "frame", buf, len);
}

static size_t encode_body(Kvx__V1__Envelope__BodyCase body, uint64_t id,
                          uint8_t *buf, size_t cap)
{
    frame_sample_t s;
    size_t len = 0;

    if (!frame_sample_init(&s, body)) {
        return 0;
    }
    s.env.request_id = id;
    if (body == KVX__V1__ENVELOPE__BODY_ERROR) {
        s.error.request_id = id;
    }
    if (kvxi_frame_encode(&s.env, buf, cap, &len) != KVX_OK) {
        return 0;
    }
    return len;
}

int main(int argc, char **argv)
{
    static uint8_t buf[SEED_MAX], stream[SEED_MAX];
    static const Kvx__V1__Envelope__BodyCase stream_bodies[] = {
        KVX__V1__ENVELOPE__BODY_ALLOCATE_REQUEST,
        KVX__V1__ENVELOPE__BODY_LAYER_READY,
        KVX__V1__ENVELOPE__BODY_COMMIT,
    };
    int (*emit)(const char *, const char *, const uint8_t *, size_t);
    const char *dir;
    size_t stream_len = 0;
    int failed = 0;

    if (argc == 2) {
        emit = write_seed;
        dir = argv[1];
    } else if (argc == 3 && strcmp(argv[1], "--check") == 0) {
        emit = check_seed;
        dir = argv[2];
    } else {
        fprintf(stderr, "usage: %s [--check] DIR\n", argv[0]);
        return 2;
    }

    for (size_t i = 0; i < FRAME_SAMPLE_N_BODIES; i++) {
        Kvx__V1__Envelope__BodyCase body = frame_sample_bodies[i];
        size_t len = encode_body(body, 42, buf, sizeof(buf));
        frame_sample_t s;

        frame_sample_init(&s, body);
        if (len == 0 ||
            emit(dir, kvxi_envelope_body_name(&s.env), buf, len) != 0) {
            failed = 1;
        }
    }
    for (size_t i = 0; i < FRAME_LOCAL_SAMPLE_N_BODIES; i++) {
        frame_local_sample_t s;
        size_t len = 0;

        if (!frame_local_sample_init(&s, frame_local_sample_bodies[i]) ||
            kvxi_frame_encode(&s.base.env, buf, sizeof(buf), &len) != KVX_OK ||
            emit(dir, kvxi_envelope_body_name(&s.base.env), buf, len) != 0) {
            failed = 1;
        }
    }
    for (size_t i = 0; i < sizeof(stream_bodies) / sizeof(stream_bodies[0]);
         i++) {
        size_t len = encode_body(stream_bodies[i], 100 + i, stream + stream_len,
                                 sizeof(stream) - stream_len);

        failed |= len == 0;
        stream_len += len;
    }
    if (emit(dir, "stream_push", stream, stream_len) != 0) {
        failed = 1;
    }
    return failed ? 1 : 0;
}
