/*
 * Prefix-cache block keys, byte-compatible with vLLM's sha256_cbor and
 * xxhash_cbor block hashes: H(cbor((parent, (tokens...), extra_or_None))).
 *
 * The canonical CBOR encoding is streamed into the hash state through a
 * small buffer, so a block of KVX_KEY_TOKENS_MAX tokens needs no large
 * allocation and no second pass.
 */
#include <kvx/key.h>

#include "log_int.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <string.h>
#include <sys/random.h>

/*
 * xxHash is compiled in (header-only mode): the streaming state can then
 * live on the stack without depending on the shared library's private
 * struct layout, and the hot loop inlines.
 */
#define XXH_INLINE_ALL
#include <xxhash.h>

/* CBOR major types (RFC 8949 section 3.1). */
enum {
    CBOR_UINT = 0,
    CBOR_NINT = 1,
    CBOR_BYTES = 2,
    CBOR_TEXT = 3,
    CBOR_ARRAY = 4,
};

#define CBOR_NULL 0xf6
#define CBOR_HEAD_MAX 9 /* initial byte + 8-byte argument */

/* Encoded bytes are batched so the hash sees few, larger updates. */
#define KEY_BUF_SIZE 512

/* Bytes of randomness in a seedless root (vLLM: os.urandom(32)). */
#define KEY_RANDOM_ROOT 32

typedef struct key_hash {
    kvx_key_algo_t algo;
    int failed;     /* an OpenSSL update failed: result unusable */
    EVP_MD_CTX *md; /* SHA-256 only */
    size_t used;    /* bytes pending in buf */
    uint8_t buf[KEY_BUF_SIZE];
    XXH3_state_t xxh; /* XXH3-128 only */
} key_hash_t;

static pthread_once_t key_sha_once = PTHREAD_ONCE_INIT;
static EVP_MD *key_sha_md;

/* Fetching once avoids an implicit provider lookup on every digest. */
static void key_sha_fetch(void)
{
    key_sha_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static int key_algo_valid(kvx_key_algo_t algo)
{
    return algo == KVX_KEY_ALGO_XXH3_128 || algo == KVX_KEY_ALGO_SHA256_CBOR;
}

static int key_chain_valid(const kvx_key_chain_t *chain)
{
    return chain != NULL && key_algo_valid(chain->algo) && chain->len >= 1 &&
           chain->len <= KVX_KEY_DIGEST_MAX;
}

static void key_log_openssl(const char *what)
{
    unsigned long err = ERR_get_error();
    const char *reason = err != 0 ? ERR_reason_error_string(err) : NULL;

    kvxi_error("key: %s failed: %s", what,
               reason != NULL ? reason : "unknown OpenSSL error");
    ERR_clear_error();
}

/*
 * Obtains the hashing resources for @p algo. A SHA-256 context is allocated
 * here and reused for every block of one call (key_hash_close frees it).
 */
static kvx_status_t key_hash_open(key_hash_t *h, kvx_key_algo_t algo)
{
    h->algo = algo;
    h->failed = 0;
    h->md = NULL;
    h->used = 0;
    if (algo != KVX_KEY_ALGO_SHA256_CBOR) {
        return KVX_OK;
    }
    pthread_once(&key_sha_once, key_sha_fetch);
    if (key_sha_md == NULL) {
        key_log_openssl("fetching SHA-256");
        return KVX_ERR_NO_MEMORY;
    }
    h->md = EVP_MD_CTX_new();
    if (h->md == NULL) {
        key_log_openssl("allocating a SHA-256 context");
        return KVX_ERR_NO_MEMORY;
    }
    return KVX_OK;
}

static void key_hash_close(key_hash_t *h)
{
    EVP_MD_CTX_free(h->md);
    h->md = NULL;
}

static void key_hash_reset(key_hash_t *h)
{
    h->used = 0;
    if (h->algo == KVX_KEY_ALGO_XXH3_128) {
        (void)XXH3_128bits_reset(&h->xxh);
    } else if (EVP_DigestInit_ex(h->md, key_sha_md, NULL) != 1) {
        h->failed = 1;
    }
}

static void key_hash_update(key_hash_t *h, const void *data, size_t len)
{
    if (h->algo == KVX_KEY_ALGO_XXH3_128) {
        (void)XXH3_128bits_update(&h->xxh, data, len);
    } else if (EVP_DigestUpdate(h->md, data, len) != 1) {
        h->failed = 1;
    }
}

static void key_hash_flush(key_hash_t *h)
{
    if (h->used > 0) {
        key_hash_update(h, h->buf, h->used);
        h->used = 0;
    }
}

static void key_put(key_hash_t *h, const void *data, size_t len)
{
    if (len > sizeof(h->buf) - h->used) {
        key_hash_flush(h);
        if (len > sizeof(h->buf)) {
            key_hash_update(h, data, len);
            return;
        }
    }
    if (len > 0) {
        memcpy(h->buf + h->used, data, len);
        h->used += len;
    }
}

static void key_put_byte(key_hash_t *h, uint8_t byte)
{
    if (h->used == sizeof(h->buf)) {
        key_hash_flush(h);
    }
    h->buf[h->used++] = byte;
}

/* A CBOR data item head in the shortest form, as canonical CBOR requires. */
static inline void cbor_head(key_hash_t *h, unsigned major, uint64_t arg)
{
    uint8_t *b;
    unsigned nbytes, info;

    if (sizeof(h->buf) - h->used < CBOR_HEAD_MAX) {
        key_hash_flush(h);
    }
    b = h->buf + h->used;
    if (arg < 24) {
        b[0] = (uint8_t)((major << 5) | arg);
        h->used += 1;
        return;
    }
    if (arg <= UINT8_MAX) {
        info = 24;
        nbytes = 1;
    } else if (arg <= UINT16_MAX) {
        info = 25;
        nbytes = 2;
    } else if (arg <= UINT32_MAX) {
        info = 26;
        nbytes = 4;
    } else {
        info = 27;
        nbytes = 8;
    }
    b[0] = (uint8_t)((major << 5) | info);
    for (unsigned i = 0; i < nbytes; i++) {
        b[1 + i] = (uint8_t)(arg >> (8 * (nbytes - 1 - i)));
    }
    h->used += 1 + nbytes;
}

static kvx_status_t key_hash_final(key_hash_t *h, uint8_t *digest,
                                   uint32_t *len_p)
{
    unsigned int len = 0;

    key_hash_flush(h);
    if (h->algo == KVX_KEY_ALGO_XXH3_128) {
        XXH128_canonical_t canon;

        /* vLLM's xxh3_128_digest() is the canonical big-endian form. */
        XXH128_canonicalFromHash(&canon, XXH3_128bits_digest(&h->xxh));
        memcpy(digest, canon.digest, sizeof(canon.digest));
        *len_p = sizeof(canon.digest);
        return KVX_OK;
    }
    if (h->failed || EVP_DigestFinal_ex(h->md, digest, &len) != 1 ||
        len != 32) {
        key_log_openssl("SHA-256 digest");
        return KVX_ERR_NO_MEMORY;
    }
    *len_p = len;
    return KVX_OK;
}

static kvx_status_t key_extra_check(const kvx_key_extra_t *extra,
                                    size_t n_extra)
{
    if (n_extra > KVX_KEY_EXTRA_MAX) {
        kvxi_error("key: %zu extra keys, at most %d", n_extra,
                   KVX_KEY_EXTRA_MAX);
        return KVX_ERR_INVALID_PARAM;
    }
    if (n_extra > 0 && extra == NULL) {
        kvxi_error("key: NULL extra keys");
        return KVX_ERR_INVALID_PARAM;
    }
    for (size_t i = 0; i < n_extra; i++) {
        switch (extra[i].type) {
        case KVX_KEY_EXTRA_INT: break;
        case KVX_KEY_EXTRA_TEXT:
        case KVX_KEY_EXTRA_BYTES:
            if (extra[i].data == NULL && extra[i].len > 0) {
                kvxi_error("key: extra key %zu has NULL data", i);
                return KVX_ERR_INVALID_PARAM;
            }
            break;
        default:
            kvxi_error("key: extra key %zu has unknown type %d", i,
                       (int)extra[i].type);
            return KVX_ERR_INVALID_PARAM;
        }
    }
    return KVX_OK;
}

static void key_put_extra(key_hash_t *h, const kvx_key_extra_t *e)
{
    switch (e->type) {
    case KVX_KEY_EXTRA_INT:
        if (e->i >= 0) {
            cbor_head(h, CBOR_UINT, (uint64_t)e->i);
        } else {
            /* CBOR stores -1 - n; this cannot overflow for INT64_MIN. */
            cbor_head(h, CBOR_NINT, (uint64_t)(-1 - e->i));
        }
        break;
    case KVX_KEY_EXTRA_TEXT:
        cbor_head(h, CBOR_TEXT, e->len);
        key_put(h, e->data, e->len);
        break;
    case KVX_KEY_EXTRA_BYTES:
        cbor_head(h, CBOR_BYTES, e->len);
        key_put(h, e->data, e->len);
        break;
    }
}

/* digest = H(cbor((parent, (tokens...), extra or None))): vLLM's tuple. */
static kvx_status_t key_hash_block(key_hash_t *h, const uint8_t *parent,
                                   uint32_t parent_len, const uint32_t *tokens,
                                   size_t n_tokens,
                                   const kvx_key_extra_t *extra, size_t n_extra,
                                   uint8_t *digest, uint32_t *len_p)
{
    key_hash_reset(h);
    cbor_head(h, CBOR_ARRAY, 3);
    cbor_head(h, CBOR_BYTES, parent_len);
    key_put(h, parent, parent_len);
    cbor_head(h, CBOR_ARRAY, n_tokens);
    for (size_t i = 0; i < n_tokens; i++) {
        cbor_head(h, CBOR_UINT, tokens[i]);
    }
    if (n_extra == 0) {
        key_put_byte(h, CBOR_NULL);
    } else {
        cbor_head(h, CBOR_ARRAY, n_extra);
        for (size_t i = 0; i < n_extra; i++) {
            key_put_extra(h, &extra[i]);
        }
    }
    return key_hash_final(h, digest, len_p);
}

static kvx_status_t key_random(uint8_t *buf, size_t len)
{
    size_t got = 0;

    while (got < len) {
        ssize_t n = getrandom(buf + got, len - got, 0);

        if (n < 0) {
            char err[128];

            if (errno == EINTR) {
                continue;
            }
            kvxi_error("key: getrandom failed: %s",
                       strerror_r(errno, err, sizeof(err)));
            return KVX_ERR_IO;
        }
        got += (size_t)n;
    }
    return KVX_OK;
}

kvx_status_t kvx_key_chain_init(kvx_key_chain_t *chain, kvx_key_algo_t algo,
                                const char *seed)
{
    kvx_key_chain_t root;
    kvx_status_t status;
    key_hash_t h;
    size_t len;

    if (chain == NULL || !key_algo_valid(algo)) {
        kvxi_error("key: chain init: %s",
                   chain == NULL ? "NULL chain" : "unknown algorithm");
        return KVX_ERR_INVALID_PARAM;
    }
    memset(&root, 0, sizeof(root));
    root.algo = algo;
    if (seed == NULL) {
        /* vLLM without PYTHONHASHSEED: 32 random bytes for either algo. */
        status = key_random(root.parent, KEY_RANDOM_ROOT);
        if (status != KVX_OK) {
            return status;
        }
        root.len = KEY_RANDOM_ROOT;
        *chain = root;
        return KVX_OK;
    }

    /* vLLM with PYTHONHASHSEED: hash_fn(seed), the seed a CBOR text. */
    status = key_hash_open(&h, algo);
    if (status != KVX_OK) {
        return status;
    }
    len = strlen(seed);
    key_hash_reset(&h);
    cbor_head(&h, CBOR_TEXT, len);
    key_put(&h, seed, len);
    status = key_hash_final(&h, root.parent, &root.len);
    key_hash_close(&h);
    if (status == KVX_OK) {
        *chain = root;
    }
    return status;
}

kvx_status_t kvx_key_chain_init_parent(kvx_key_chain_t *chain,
                                       kvx_key_algo_t algo, const void *parent,
                                       size_t len)
{
    if (chain == NULL || parent == NULL || !key_algo_valid(algo) || len < 1 ||
        len > KVX_KEY_DIGEST_MAX) {
        kvxi_error("key: chain init from parent: bad argument (chain %p, "
                   "algo %d, parent %p, %zu bytes)",
                   (void *)chain, (int)algo, parent, len);
        return KVX_ERR_INVALID_PARAM;
    }
    memset(chain, 0, sizeof(*chain));
    chain->algo = algo;
    chain->len = (uint32_t)len;
    memcpy(chain->parent, parent, len);
    return KVX_OK;
}

kvx_status_t kvx_key_chain_next(kvx_key_chain_t *chain, const uint32_t *tokens,
                                size_t n_tokens, const kvx_key_extra_t *extra,
                                size_t n_extra, kvx_block_key_t *key_p)
{
    uint8_t digest[KVX_KEY_DIGEST_MAX];
    kvx_status_t status;
    uint32_t len;
    key_hash_t h;

    if (!key_chain_valid(chain) || tokens == NULL || n_tokens == 0 ||
        n_tokens > KVX_KEY_TOKENS_MAX) {
        kvxi_error("key: next block: bad chain or tokens (%zu tokens, "
                   "1 .. %d)",
                   n_tokens, KVX_KEY_TOKENS_MAX);
        return KVX_ERR_INVALID_PARAM;
    }
    status = key_extra_check(extra, n_extra);
    if (status != KVX_OK) {
        return status;
    }
    status = key_hash_open(&h, chain->algo);
    if (status != KVX_OK) {
        return status;
    }
    status = key_hash_block(&h, chain->parent, chain->len, tokens, n_tokens,
                            extra, n_extra, digest, &len);
    key_hash_close(&h);
    if (status != KVX_OK) {
        return status;
    }
    memcpy(chain->parent, digest, len);
    chain->len = len;
    if (key_p != NULL) {
        memcpy(key_p->bytes, digest, sizeof(key_p->bytes));
    }
    return KVX_OK;
}

kvx_status_t kvx_key_chain_blocks(kvx_key_chain_t *chain,
                                  const uint32_t *tokens, size_t n_tokens,
                                  uint32_t block_tokens,
                                  const kvx_key_extra_t *extra, size_t n_extra,
                                  kvx_block_key_t *keys, size_t max_keys,
                                  size_t *n_keys_p)
{
    kvx_key_chain_t next;
    kvx_status_t status;
    size_t n_keys;
    key_hash_t h;

    if (n_keys_p != NULL) {
        *n_keys_p = 0;
    }
    if (!key_chain_valid(chain) || n_keys_p == NULL ||
        (tokens == NULL && n_tokens > 0) || block_tokens == 0 ||
        block_tokens > KVX_KEY_TOKENS_MAX) {
        kvxi_error("key: blocks: bad chain, tokens or block size (%u, "
                   "1 .. %d)",
                   block_tokens, KVX_KEY_TOKENS_MAX);
        return KVX_ERR_INVALID_PARAM;
    }
    status = key_extra_check(extra, n_extra);
    if (status != KVX_OK) {
        return status;
    }
    if (keys == NULL && max_keys > 0) {
        kvxi_error("key: blocks: NULL key array with room for %zu", max_keys);
        return KVX_ERR_INVALID_PARAM;
    }
    n_keys = n_tokens / block_tokens;
    if (n_keys > max_keys) {
        kvxi_error("key: blocks: %zu full blocks, room for %zu keys", n_keys,
                   max_keys);
        return KVX_ERR_NO_SPACE;
    }
    if (n_keys == 0) {
        return KVX_OK;
    }

    status = key_hash_open(&h, chain->algo);
    if (status != KVX_OK) {
        return status;
    }
    next = *chain;
    for (size_t i = 0; i < n_keys; i++) {
        status = key_hash_block(&h, next.parent, next.len,
                                tokens + i * block_tokens, block_tokens, extra,
                                n_extra, next.parent, &next.len);
        if (status != KVX_OK) {
            goto out;
        }
        memcpy(keys[i].bytes, next.parent, sizeof(keys[i].bytes));
    }
    *chain = next;
    *n_keys_p = n_keys;
out:
    key_hash_close(&h);
    return status;
}

kvx_status_t kvx_key_algo_parse(const char *name, kvx_key_algo_t *algo_p)
{
    if (name == NULL || algo_p == NULL) {
        kvxi_error("key: algorithm parse: NULL argument");
        return KVX_ERR_INVALID_PARAM;
    }
    if (strcmp(name, "xxh3-128") == 0) {
        *algo_p = KVX_KEY_ALGO_XXH3_128;
    } else if (strcmp(name, "sha256-cbor") == 0) {
        *algo_p = KVX_KEY_ALGO_SHA256_CBOR;
    } else {
        kvxi_error("key: unknown algorithm '%s' (xxh3-128, sha256-cbor)", name);
        return KVX_ERR_INVALID_PARAM;
    }
    return KVX_OK;
}

const char *kvx_key_algo_name(kvx_key_algo_t algo)
{
    switch (algo) {
    case KVX_KEY_ALGO_XXH3_128: return "xxh3-128";
    case KVX_KEY_ALGO_SHA256_CBOR: return "sha256-cbor";
    }
    return "?";
}
