/*
 * Validation helpers of the frame codec, shared by the node-to-node checks
 * (frame.c) and the local engine session's (frame_local.c). Each check
 * returns NULL or the name of the rule that failed, so the one caller
 * (kvxi_envelope_validate()) logs what was wrong exactly once.
 */
#ifndef KVX_FRAME_CHECK_INT_H
#define KVX_FRAME_CHECK_INT_H

#include <stddef.h>
#include <stdint.h>

#include "frame_int.h"

#define CHECK(cond, why)                                                       \
    do {                                                                       \
        if (!(cond)) {                                                         \
            return why;                                                        \
        }                                                                      \
    } while (0)

/** 1 if @p s is NULL (and @p min is 0) or min <= strlen(s) <= max. */
int kvxi_str_len_ok(const char *s, size_t min, size_t max);
/** Status fields: anything but UNSPECIFIED (unknown codes are accepted). */
int kvxi_status_set(int v);
/** A status field that must name an error (not UNSPECIFIED/OK/INPROGRESS). */
int kvxi_status_is_error(int v);
/** DATA_PATH_RMA or DATA_PATH_AM. */
int kvxi_data_path_ok(int v);
/** BlockRefs absent or with no entries. */
int kvxi_refs_empty(const Kvx__V1__BlockRefs *r);

const char *kvxi_check_layout(const Kvx__V1__Layout *l);
const char *kvxi_check_layers(const Kvx__V1__LayerRange *r);
/** BlockRefs with n entries, min <= n <= KVXI_BLOCKS_MAX (NULL: min 0). */
const char *kvxi_check_refs(const Kvx__V1__BlockRefs *r, size_t min);
/** 1 .. KVXI_BLOCKS_MAX keys of 16 bytes. */
const char *kvxi_check_keys(const ProtobufCBinaryData *k);
/** A hit mask of exactly ceil(count / 8) bytes, spare bits clear, and
 *  @p lease_id 0 exactly when every block hit. */
const char *kvxi_check_hit_mask(const ProtobufCBinaryData *mask,
                                uint32_t block_count, uint64_t lease_id);

/* frame_local.c */

/** Checks a body of the local engine session; "unknown body" for others. */
const char *kvxi_check_local_body(const kvxi_envelope_t *env);
/** Log name of a local session body ("attach", ...); "none" otherwise. */
const char *kvxi_local_body_name(const kvxi_envelope_t *env);

#endif /* KVX_FRAME_CHECK_INT_H */
