/*
 * libFuzzer target for the control-channel frame decoder and validator.
 *
 * The input is a byte stream as a peer could send it. It is decoded three
 * ways, and the outcomes must agree:
 *  1. whole: frames back to back until the decoder stops;
 *  2. in pieces: the same bytes arriving in random-sized reads, decoding
 *     whatever is complete after each read (partial headers, partial
 *     bodies): the same frames and the same final status as (1);
 *  3. with a small allocation budget, to drive the unpacker's
 *     allocation-failure paths.
 * Every frame that decodes must re-encode and decode again. A broken
 * property traps; a returned error status is the expected outcome.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "frame_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_FRAME (1u << 20)

static void check(int cond)
{
    if (!cond) {
        __builtin_trap();
    }
}

/* A decoded frame must be valid and survive encode -> decode. */
static void check_frame(const kvxi_envelope_t *env)
{
    kvxi_envelope_t *again = NULL;
    size_t need, len = 0, consumed = 0;
    uint8_t *buf;

    check(kvxi_envelope_validate(env) == KVX_OK);
    (void)kvxi_envelope_body_name(env);
    need = kvxi_frame_size(env);
    buf = malloc(need);
    if (buf == NULL) {
        return;
    }
    check(kvxi_frame_encode(env, buf, need, &len) == KVX_OK);
    check(len == need);
    check(kvxi_frame_decode(buf, len, SIZE_MAX, &again, &consumed) == KVX_OK);
    check(consumed == len);
    check(again->body_case == env->body_case);
    check(again->request_id == env->request_id);
    kvxi_frame_free(again);
    free(buf);
}

/* Decodes frames from @data until one is not KVX_OK; returns that status
 * and the count of frames in @n_p. */
static kvx_status_t decode_whole(const uint8_t *data, size_t size, size_t *n_p)
{
    size_t pos = 0;

    *n_p = 0;
    for (;;) {
        kvxi_envelope_t *env = NULL;
        size_t consumed = 0;
        kvx_status_t status;

        status = kvxi_frame_decode(size > pos ? data + pos : NULL, size - pos,
                                   FUZZ_MAX_FRAME, &env, &consumed);
        if (status != KVX_OK) {
            check(consumed == 0 && env == NULL);
            check(status == KVX_INPROGRESS ||
                  status == KVX_ERR_PROTO_MALFORMED ||
                  status == KVX_ERR_PROTO_OVERSIZE);
            return status;
        }
        check(consumed > KVXI_FRAME_HEADER_LEN && consumed <= size - pos);
        check_frame(env);
        kvxi_frame_free(env);
        pos += consumed;
        (*n_p)++;
    }
}

static kvx_status_t decode_pieces(const uint8_t *data, size_t size, size_t *n_p)
{
    /* The stream is copied into a buffer exactly as large as what arrived
     * so far, so ASan flags any read past the received bytes. */
    uint64_t rng = 0x9e3779b97f4a7c15ull ^ size;
    kvx_status_t status = KVX_INPROGRESS;
    size_t have = 0, pos = 0;

    *n_p = 0;
    for (size_t i = 0; i < size && i < 16; i++) {
        rng = (rng ^ data[i]) * 0x100000001b3ull;
    }
    while (have < size) {
        size_t piece, avail;
        uint8_t *window;

        rng ^= rng >> 12;
        rng ^= rng << 25;
        rng ^= rng >> 27;
        /* Mostly tiny reads (split headers and fields), sometimes large
         * ones so big inputs do not take thousands of steps. */
        piece = (size_t)(rng * 0x2545f4914f6cdd1dull >> 32);
        piece = 1 + ((rng & 3) != 0 ? piece % 16 : piece % 4096);
        have = piece < size - have ? have + piece : size;
        avail = have - pos;
        window = malloc(avail != 0 ? avail : 1);
        if (window == NULL) {
            return KVX_ERR_NO_MEMORY;
        }
        memcpy(window, data + pos, avail);
        for (size_t off = 0;;) {
            kvxi_envelope_t *env = NULL;
            size_t consumed = 0;

            status =
                kvxi_frame_decode(avail > off ? window + off : NULL,
                                  avail - off, FUZZ_MAX_FRAME, &env, &consumed);
            if (status != KVX_OK) {
                pos += off;
                break;
            }
            kvxi_frame_free(env);
            off += consumed;
            (*n_p)++;
        }
        free(window);
        if (status != KVX_INPROGRESS) {
            return status;
        }
    }
    return status;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t n_whole, n_pieces;
    kvx_status_t whole, pieces;

    whole = decode_whole(data, size, &n_whole);
    pieces = decode_pieces(data, size, &n_pieces);
    if (pieces != KVX_ERR_NO_MEMORY) {
        check(pieces == whole);
        check(n_pieces == n_whole);
    }

    /* Budgets from 0 up to a few KiB, chosen by the input. */
    if (size > 0) {
        kvxi_envelope_t *env = NULL;
        size_t consumed = 0;
        size_t budget = (size_t)data[size - 1] * 32;

        if (kvxi_frame_decode_budget(data, size, FUZZ_MAX_FRAME, budget, &env,
                                     &consumed) == KVX_OK) {
            kvxi_frame_free(env);
        }
    }
    return 0;
}
