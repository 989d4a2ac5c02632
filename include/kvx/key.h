/**
 * @file kvx/key.h
 * @brief Prefix-cache block keys: chained content hashes of token blocks.
 *
 * A full block's key is hash(parent digest, the block's token ids, extra
 * keys), so one key names a whole prefix. libkvx computes keys exactly as
 * vLLM's prefix cache does, so keys agree with an engine that hashes the same
 * tokens:
 *
 *   digest = H(cbor((parent_digest, (tok0, tok1, ...), extra_keys)))
 *
 * where cbor() is canonical CBOR (RFC 8949: an array of a byte string, an
 * array of unsigned ints, and either null or an array of extra keys), and H
 * is SHA-256 (vLLM "sha256_cbor") or XXH3-128 (vLLM "xxhash_cbor", the
 * libkvx default: fast; vLLM's plain "xxhash" pickles its input and cannot
 * be reproduced outside Python). The root parent is H(cbor(seed string)) when a
 * seed is given, as vLLM does with PYTHONHASHSEED, or 32 random bytes
 * otherwise.
 *
 * The prefix index stores 128-bit keys: the first 16 bytes of the digest
 * (all of an XXH3-128 digest). Engines that compute keys themselves may pass
 * any 16 bytes per block instead.
 */
#ifndef KVX_KEY_H
#define KVX_KEY_H

#include <kvx/common.h>
#include <kvx/status.h>

#ifdef __cplusplus
extern "C" {
#endif

/** A 128-bit block key, as stored in the prefix index. */
typedef struct kvx_block_key {
    uint8_t bytes[16];
} kvx_block_key_t;

typedef enum kvx_key_algo {
    KVX_KEY_ALGO_XXH3_128 = 0,   /**< vLLM "xxhash_cbor" (default) */
    KVX_KEY_ALGO_SHA256_CBOR = 1 /**< vLLM "sha256_cbor" */
} kvx_key_algo_t;

/** Largest digest any algorithm produces (SHA-256). */
#define KVX_KEY_DIGEST_MAX 32
/** Most extra keys one block may carry. */
#define KVX_KEY_EXTRA_MAX 16
/** Most token ids one block may carry. */
#define KVX_KEY_TOKENS_MAX 65536

/**
 * The running state of one key chain (one request's prefix). A plain value:
 * copy it to fork a chain (two requests sharing a prefix).
 */
typedef struct kvx_key_chain {
    kvx_key_algo_t algo;
    uint32_t len;                       /**< bytes used in parent */
    uint8_t parent[KVX_KEY_DIGEST_MAX]; /**< digest of the previous block */
} kvx_key_chain_t;

typedef enum kvx_key_extra_type {
    KVX_KEY_EXTRA_INT = 0,  /**< signed integer (e.g. a LoRA id) */
    KVX_KEY_EXTRA_TEXT = 1, /**< UTF-8 text (e.g. a LoRA name, cache salt) */
    KVX_KEY_EXTRA_BYTES = 2 /**< opaque bytes (e.g. a multimodal hash) */
} kvx_key_extra_type_t;

/** One extra key. Text and bytes are not copied; they are read at once. */
typedef struct kvx_key_extra {
    kvx_key_extra_type_t type;
    int64_t i;        /**< for KVX_KEY_EXTRA_INT */
    const void *data; /**< for TEXT and BYTES */
    size_t len;       /**< bytes at data */
} kvx_key_extra_t;

/**
 * Starts a chain at the root.
 *
 * @param chain  state to initialise.
 * @param algo   hash algorithm.
 * @param seed   NUL-terminated seed (vLLM: the PYTHONHASHSEED value); the
 *               root parent is then H(cbor(seed)). NULL draws 32 random
 *               bytes, so keys are private to this process.
 * @return KVX_OK; KVX_ERR_INVALID_PARAM (NULL chain, unknown algo);
 *         KVX_ERR_IO (no randomness available); KVX_ERR_NO_MEMORY (the
 *         SHA-256 context could not be created).
 */
KVX_EXPORT kvx_status_t kvx_key_chain_init(kvx_key_chain_t *chain,
                                           kvx_key_algo_t algo,
                                           const char *seed);

/**
 * Starts a chain from a known parent digest (e.g. one an engine computed),
 * @p len bytes (1 .. KVX_KEY_DIGEST_MAX).
 * @return KVX_OK; KVX_ERR_INVALID_PARAM.
 */
KVX_EXPORT kvx_status_t kvx_key_chain_init_parent(kvx_key_chain_t *chain,
                                                  kvx_key_algo_t algo,
                                                  const void *parent,
                                                  size_t len);

/**
 * Hashes the next full block and advances the chain.
 *
 * @param chain    the chain; its parent becomes this block's digest.
 * @param tokens   the block's token ids, @p n_tokens of them (1 ..
 *                 KVX_KEY_TOKENS_MAX).
 * @param extra    extra keys (NULL when @p n_extra is 0; 0 encodes as null).
 * @param key_p    receives the 128-bit key (first 16 digest bytes); may be
 *                 NULL.
 * @return KVX_OK; KVX_ERR_INVALID_PARAM (NULL pointers, zero or too many
 *         tokens, too many extra keys, unknown extra type);
 *         KVX_ERR_NO_MEMORY (SHA-256 context). On error the chain is
 *         unchanged.
 */
KVX_EXPORT kvx_status_t kvx_key_chain_next(
    kvx_key_chain_t *chain, const uint32_t *tokens, size_t n_tokens,
    const kvx_key_extra_t *extra, size_t n_extra, kvx_block_key_t *key_p);

/**
 * Keys for every full block of a token sequence: floor(n_tokens /
 * block_tokens) keys written to @p keys (a partial last block has no key).
 *
 * @param chain         the chain, advanced past every full block.
 * @param tokens        @p n_tokens token ids.
 * @param block_tokens  tokens per block (1 .. KVX_KEY_TOKENS_MAX).
 * @param extra,n_extra extra keys applied to every block.
 * @param keys          room for @p max_keys keys.
 * @param n_keys_p      receives the number of keys written.
 * @return KVX_OK; KVX_ERR_INVALID_PARAM; KVX_ERR_NO_MEMORY (SHA-256
 *         context); KVX_ERR_NO_SPACE if @p max_keys is too small. On any
 *         error nothing is written to @p keys, the chain is unchanged and
 *         *n_keys_p (if not NULL) is 0.
 */
KVX_EXPORT kvx_status_t kvx_key_chain_blocks(
    kvx_key_chain_t *chain, const uint32_t *tokens, size_t n_tokens,
    uint32_t block_tokens, const kvx_key_extra_t *extra, size_t n_extra,
    kvx_block_key_t *keys, size_t max_keys, size_t *n_keys_p);

/** Parses "xxh3-128" or "sha256-cbor". @return KVX_OK; KVX_ERR_INVALID_PARAM.
 */
KVX_EXPORT kvx_status_t kvx_key_algo_parse(const char *name,
                                           kvx_key_algo_t *algo_p);

/** Name of @p algo ("xxh3-128", "sha256-cbor", or "?"). */
KVX_EXPORT const char *kvx_key_algo_name(kvx_key_algo_t algo);

#ifdef __cplusplus
}
#endif

#endif /* KVX_KEY_H */
