/*
 * The soak test (test_soak.c): three kvxd on 127.0.0.1 (one prefill, two
 * decode: one reached over UCX tcp, one over shared memory) and engine
 * processes attached to them (soak_engine.c), for a fixed time.
 *
 * Prefill engines write requests made of a shared "system prompt" prefix
 * and a random suffix into the prefill daemon's pool, keyed by chained
 * block keys, with every byte derived from the block's key, and push them
 * (checksums on; some layer-wise) or publish them for a pull. Each ended
 * request is reported to the decode engine of its target daemon through a
 * pipe; the decode engine collects it and compares every byte. Faults:
 * aborts, transfer handles released while running, layer-wise pushes
 * aborted half-way, requests never collected, publications left to expire,
 * engine processes killed with SIGKILL.
 */
#ifndef KVX_TEST_SOAK_H
#define KVX_TEST_SOAK_H

#include <kvx/kvx.h>

#include <stdint.h>

#define SOAK_N_PREFILL 4   /* prefill engines at any time */
#define SOAK_N_DECODE 2    /* decode daemons, one decode engine each */
#define SOAK_MAX_INST 1024 /* engine instances over a run (restarts) */
#define SOAK_PROMPTS 6     /* shared system prompts */
#define SOAK_PROMPT_BLOCKS 3
#define SOAK_MAX_BLOCKS 8 /* blocks of one request */
#define SOAK_QUEUE 4      /* requests in flight per prefill engine */
#define SOAK_DEADLINE_MS 30000u
#define SOAK_PUBLISH_MS 3000u   /* lease of a publication */
#define SOAK_UNPUBLISH_MS 1000u /* when most are withdrawn */
#define SOAK_HOLD_MS 10000u     /* kvxd hold_ms: uncollected requests */
#define SOAK_COLLECT_MS 8000u   /* a decode engine waits this for a request */

/* What a prefill engine tells a decode engine about one request (40
 * bytes: written atomically to the pipe). */
typedef struct soak_rec {
    uint64_t rid;
    uint64_t suffix_seed;
    int32_t status; /* the push's outcome; KVX_INPROGRESS: unknown */
    uint32_t pull;  /* 1: published, the decode engine pulls it */
    uint32_t prompt, pre, n;
    uint32_t collect; /* 0: the decode engine leaves it (hold_ms ends it) */
} soak_rec_t;

/* Figures of one engine instance (shared memory, written by the engine). */
/* clang-format off */
#define SOAK_COUNTERS(X)                                                       \
    X(started) X(ended) X(ok) X(nospace) X(timeout) X(aborted) X(corrupt)      \
    X(bad) X(stuck) X(aborts) X(releases) X(partial) X(published) X(pulls)     \
    X(pull_missed) X(blocks) X(blocks_sent) X(bytes) X(hits_reserve)           \
    X(hits_xfer) X(collected) X(collect_blocks) X(byte_errors) X(lost)         \
    X(skipped) X(failed_seen) X(gave_up) X(reserve_full) X(unpublished)
/* clang-format on */
#define SOAK_FIELD(name) uint64_t name;

typedef struct soak_eng {
    volatile int done; /* exited by itself */
    int32_t last_bad;
    SOAK_COUNTERS(SOAK_FIELD)
} soak_eng_t;

typedef struct soak_shared {
    volatile int phase; /* 0 run, 1 prefill engines drain, 2 decode too */
    uint64_t seed;
    soak_eng_t eng[SOAK_MAX_INST];
} soak_shared_t;

/* What an engine process needs (filled before fork). */
typedef struct soak_ctx {
    soak_shared_t *sh;
    const char *psock, *dsock[SOAK_N_DECODE];
    const char *paddr, *daddr[SOAK_N_DECODE];
    int pipe_w[SOAK_N_DECODE], pipe_r[SOAK_N_DECODE];
} soak_ctx_t;

/* Engine process bodies: never return. */
void soak_prefill_main(const soak_ctx_t *ctx, int inst)
    __attribute__((noreturn));
void soak_decode_main(const soak_ctx_t *ctx, int inst, int d)
    __attribute__((noreturn));

#endif /* KVX_TEST_SOAK_H */
