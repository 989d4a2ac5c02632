/*
 * kvx_keygen: prints block keys computed by libkvx's public key API, with
 * the inputs that produced them, so check_keys.py can recompute every digest
 * the way vLLM does (cbor2 + hashlib / xxhash) and compare.
 *
 *   kvx_keygen [--seed N] [--cases N]   deterministic cases, one line each:
 *     root  <case> <algo> seed <seed-hex|-> <digest-hex>
 *     root  <case> <algo> random - <digest-hex>     (32 random bytes)
 *     root  <case> <algo> parent - <digest-hex>     (kvx_key_chain_init_parent)
 *     block <case> <n> <tokens> <extra> <digest-hex>       (chain_next)
 *     blocks <case> <block_tokens> <tokens> <extra> <keys> <digest-hex>
 *   <tokens> is a comma list of decimals; <extra> is "-" (None) or a comma
 *   list of i:<decimal>, t:<utf-8 hex>, b:<hex>; <keys> a comma list of hex.
 *
 *   kvx_keygen --bench [--blocks N]     keys/second for 16-token blocks.
 */
#include <kvx/kvx.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define GEN_MAX_TOKENS KVX_KEY_TOKENS_MAX
#define GEN_TEXT_MAX 512

static uint64_t rng_state;

/* splitmix64: small, seedable, identical everywhere. */
static uint64_t rng_next(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rng_below(uint64_t n)
{
    return rng_next() % n;
}

static void print_hex(const void *data, size_t len)
{
    const uint8_t *p = data;

    for (size_t i = 0; i < len; i++) {
        printf("%02x", p[i]);
    }
}

/* Token ids from every CBOR integer width, boundaries included. */
static uint32_t gen_token(void)
{
    static const uint32_t edges[] = {
        0, 23, 24, 255, 256, 65535, 65536, UINT32_MAX - 1, UINT32_MAX};

    switch (rng_below(6)) {
    case 0: return (uint32_t)rng_below(24);
    case 1: return (uint32_t)(24 + rng_below(256 - 24));
    case 2: return (uint32_t)(256 + rng_below(65536 - 256));
    case 3: return (uint32_t)(65536 + rng_below(UINT32_MAX - 65536ull + 1));
    case 4: return edges[rng_below(sizeof(edges) / sizeof(edges[0]))];
    default: return (uint32_t)rng_below(152064); /* a real vocabulary */
    }
}

static int64_t gen_int(void)
{
    static const int64_t edges[] = {0,
                                    1,
                                    23,
                                    24,
                                    -1,
                                    -24,
                                    -25,
                                    255,
                                    256,
                                    -256,
                                    -257,
                                    65535,
                                    65536,
                                    -65536,
                                    -65537,
                                    4294967295ll,
                                    4294967296ll,
                                    -4294967296ll,
                                    -4294967297ll,
                                    INT64_MAX,
                                    INT64_MIN,
                                    INT64_MIN + 1};

    switch (rng_below(3)) {
    case 0: return edges[rng_below(sizeof(edges) / sizeof(edges[0]))];
    case 1: return (int64_t)rng_below(1000) - 500;
    default: return (int64_t)rng_next();
    }
}

static const char *const texts[] = {"",
                                    "a",
                                    "lora-adapter-1",
                                    "salt:8f3a",
                                    "\u00fcn\u00efc\u00f8d\u00e9 \u2713",
                                    "exactly-twenty-four-byte",
                                    "twenty-three-byte-text!"};

typedef struct gen_extra {
    kvx_key_extra_t keys[KVX_KEY_EXTRA_MAX];
    size_t n;
    uint8_t store[KVX_KEY_EXTRA_MAX][GEN_TEXT_MAX];
} gen_extra_t;

static void gen_extras(gen_extra_t *g)
{
    size_t r = rng_below(10);

    g->n = r < 4   ? 0
           : r < 9 ? 1 + rng_below(3)
                   : rng_below(KVX_KEY_EXTRA_MAX + 1);
    for (size_t i = 0; i < g->n; i++) {
        kvx_key_extra_t *e = &g->keys[i];
        size_t len;

        memset(e, 0, sizeof(*e));
        switch (rng_below(3)) {
        case 0:
            e->type = KVX_KEY_EXTRA_INT;
            e->i = gen_int();
            break;
        case 1:
            e->type = KVX_KEY_EXTRA_TEXT;
            if (rng_below(4) == 0) {
                /* Long ASCII text: 2-byte length heads. */
                len = 256 + rng_below(GEN_TEXT_MAX - 256);
                for (size_t j = 0; j < len; j++) {
                    g->store[i][j] = (uint8_t)('a' + rng_below(26));
                }
                e->data = g->store[i];
                e->len = len;
            } else {
                e->data = texts[rng_below(sizeof(texts) / sizeof(texts[0]))];
                e->len = strlen(e->data);
            }
            break;
        default:
            e->type = KVX_KEY_EXTRA_BYTES;
            len = rng_below(4) == 0 ? rng_below(GEN_TEXT_MAX) : rng_below(40);
            for (size_t j = 0; j < len; j++) {
                g->store[i][j] = (uint8_t)rng_next();
            }
            e->data = len > 0 ? g->store[i] : NULL;
            e->len = len;
            break;
        }
    }
}

static void print_tokens(const uint32_t *tokens, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        printf(i == 0 ? "%" PRIu32 : ",%" PRIu32, tokens[i]);
    }
}

static void print_extras(const gen_extra_t *g)
{
    if (g->n == 0) {
        printf("-");
        return;
    }
    for (size_t i = 0; i < g->n; i++) {
        const kvx_key_extra_t *e = &g->keys[i];

        printf(i == 0 ? "" : ",");
        if (e->type == KVX_KEY_EXTRA_INT) {
            printf("i:%" PRId64, e->i);
        } else {
            printf(e->type == KVX_KEY_EXTRA_TEXT ? "t:" : "b:");
            print_hex(e->data, e->len);
        }
    }
}

static int check(kvx_status_t status, const char *what)
{
    if (status != KVX_OK) {
        fprintf(stderr, "kvx_keygen: %s: %s\n", what,
                kvx_status_string(status));
        return -1;
    }
    return 0;
}

static const char *const seeds[] = {"0",
                                    "42",
                                    "4294967295",
                                    "",
                                    "random",
                                    "s\u00e9\u00e9d",
                                    "a-seed-longer-than-twenty-three-bytes"};

static int gen_root(unsigned id, kvx_key_algo_t algo, kvx_key_chain_t *c)
{
    const char *name = kvx_key_algo_name(algo);
    uint8_t parent[32];
    unsigned kind = id % 5;

    if (kind == 3) {
        if (check(kvx_key_chain_init(c, algo, NULL), "init random") != 0) {
            return -1;
        }
        printf("root %u %s random - ", id, name);
    } else if (kind == 4) {
        size_t len = rng_below(2) ? 16 : 32;

        for (size_t i = 0; i < len; i++) {
            parent[i] = (uint8_t)rng_next();
        }
        if (check(kvx_key_chain_init_parent(c, algo, parent, len),
                  "init parent") != 0) {
            return -1;
        }
        printf("root %u %s parent - ", id, name);
    } else {
        const char *seed = seeds[rng_below(sizeof(seeds) / sizeof(seeds[0]))];

        if (check(kvx_key_chain_init(c, algo, seed), "init seed") != 0) {
            return -1;
        }
        printf("root %u %s seed ", id, name);
        if (*seed == '\0') {
            printf("-");
        } else {
            print_hex(seed, strlen(seed));
        }
        printf(" ");
    }
    print_hex(c->parent, c->len);
    printf("\n");
    return 0;
}

/* One case: a root, then blocks through chain_next or chain_blocks. */
static int gen_case(unsigned id, uint32_t *tokens, size_t forced_tokens)
{
    kvx_key_algo_t algo =
        id % 2 ? KVX_KEY_ALGO_SHA256_CBOR : KVX_KEY_ALGO_XXH3_128;
    static gen_extra_t extra;
    kvx_block_key_t keys[8];
    kvx_key_chain_t c;
    size_t n_blocks = 1 + rng_below(4);

    if (forced_tokens > 1024) {
        n_blocks = 1; /* keeps the output small */
    }

    if (gen_root(id, algo, &c) != 0) {
        return -1;
    }
    if (forced_tokens == 0 && id % 3 == 2) {
        uint32_t bt = 1 + (uint32_t)rng_below(64);
        size_t n = bt * n_blocks + rng_below(bt), n_keys;

        for (size_t i = 0; i < n; i++) {
            tokens[i] = gen_token();
        }
        gen_extras(&extra);
        if (check(kvx_key_chain_blocks(&c, tokens, n, bt, extra.keys, extra.n,
                                       keys, 8, &n_keys),
                  "blocks") != 0) {
            return -1;
        }
        printf("blocks %u %" PRIu32 " ", id, bt);
        print_tokens(tokens, n);
        printf(" ");
        print_extras(&extra);
        printf(" ");
        for (size_t k = 0; k < n_keys; k++) {
            printf(k == 0 ? "" : ",");
            print_hex(keys[k].bytes, sizeof(keys[k].bytes));
        }
        printf(" ");
        print_hex(c.parent, c.len);
        printf("\n");
        return (int)n_keys + 1; /* the keys and the chain's end */
    }
    for (size_t b = 0; b < n_blocks; b++) {
        size_t n = forced_tokens ? forced_tokens : 1 + rng_below(64);

        for (size_t i = 0; i < n; i++) {
            tokens[i] = gen_token();
        }
        gen_extras(&extra);
        if (check(kvx_key_chain_next(&c, tokens, n, extra.keys, extra.n, NULL),
                  "next") != 0) {
            return -1;
        }
        printf("block %u %zu ", id, b);
        print_tokens(tokens, n);
        printf(" ");
        print_extras(&extra);
        printf(" ");
        print_hex(c.parent, c.len);
        printf("\n");
    }
    return (int)n_blocks;
}

static double now_s(void)
{
    return (double)kvx_clock_monotonic_ns(NULL) * 1e-9;
}

static int bench(unsigned long n_blocks)
{
    static const kvx_key_algo_t algos[] = {KVX_KEY_ALGO_XXH3_128,
                                           KVX_KEY_ALGO_SHA256_CBOR};
    enum { BT = 16, BATCH = 256 };
    static uint32_t tokens[BT * BATCH];
    static kvx_block_key_t keys[BATCH];

    for (size_t i = 0; i < BT * BATCH; i++) {
        tokens[i] = (uint32_t)rng_below(152064);
    }
    for (size_t a = 0; a < 2; a++) {
        kvx_key_chain_t c;
        kvx_block_key_t k;
        double t0, t1, t2;
        size_t n;

        if (check(kvx_key_chain_init(&c, algos[a], "0"), "init") != 0) {
            return 1;
        }
        t0 = now_s();
        for (unsigned long i = 0; i < n_blocks; i++) {
            kvx_key_chain_next(&c, tokens + (i % BATCH) * BT, BT, NULL, 0, &k);
        }
        t1 = now_s();
        for (unsigned long i = 0; i < n_blocks; i += BATCH) {
            kvx_key_chain_blocks(&c, tokens, sizeof(tokens) / sizeof(tokens[0]),
                                 BT, NULL, 0, keys, BATCH, &n);
        }
        t2 = now_s();
        printf("%-12s 16-token blocks: chain_next %.2f M keys/s, "
               "chain_blocks %.2f M keys/s\n",
               kvx_key_algo_name(algos[a]), (double)n_blocks / (t1 - t0) * 1e-6,
               (double)((n_blocks + BATCH - 1) / BATCH * BATCH) / (t2 - t1) *
                   1e-6);
    }
    return 0;
}

static int parse_ulong(const char *s, unsigned long *v)
{
    char *end;

    errno = 0;
    *v = strtoul(s, &end, 10);
    return errno == 0 && end != s && *end == '\0' ? 0 : -1;
}

int main(int argc, char **argv)
{
    static uint32_t tokens[GEN_MAX_TOKENS + 64];
    unsigned long seed = 1, cases = 600, blocks = 1000000;
    static const size_t forced[] = {1,   23,  24,    255,
                                    256, 300, 65535, GEN_MAX_TOKENS};
    int do_bench = 0, n, total = 0;

    for (int i = 1; i < argc; i++) {
        unsigned long *dst = NULL;

        if (strcmp(argv[i], "--bench") == 0) {
            do_bench = 1;
            continue;
        }
        if (strcmp(argv[i], "--seed") == 0) {
            dst = &seed;
        } else if (strcmp(argv[i], "--cases") == 0) {
            dst = &cases;
        } else if (strcmp(argv[i], "--blocks") == 0) {
            dst = &blocks;
        }
        if (dst == NULL || i + 1 >= argc || parse_ulong(argv[++i], dst) != 0) {
            fprintf(stderr, "usage: kvx_keygen [--seed N] [--cases N] | "
                            "--bench [--blocks N]\n");
            return 2;
        }
    }
    rng_state = seed;
    if (do_bench) {
        return bench(blocks);
    }
    for (unsigned i = 0; i < cases; i++) {
        n = gen_case(i, tokens, 0);
        if (n < 0) {
            return 1;
        }
        total += n;
    }
    /* Block sizes at every array-length width, for both algorithms. */
    for (size_t f = 0; f < sizeof(forced) / sizeof(forced[0]); f++) {
        for (unsigned a = 0; a < 2; a++) {
            unsigned id = (unsigned)cases + (unsigned)(f * 2 + a);

            n = gen_case(id, tokens, forced[f]);
            if (n < 0) {
                return 1;
            }
            total += n;
        }
    }
    fprintf(stderr,
            "kvx_keygen: %d block digests and keys from %lu + %zu "
            "cases\n",
            total, cases, 2 * sizeof(forced) / sizeof(forced[0]));
    return fflush(stdout) == 0 ? 0 : 1;
}
