/**
 * @file kvx/kvx.h
 * @brief libkvx umbrella header: include this one.
 *
 * libkvx moves paged KV-cache blocks between prefill and decode nodes.
 * See docs/architecture.md for the design and docs/api.md for a guide.
 */
#ifndef KVX_KVX_H
#define KVX_KVX_H

#include <kvx/common.h>
#include <kvx/status.h>
#include <kvx/log.h>
#include <kvx/pool.h>
#include <kvx/key.h>
#include <kvx/alloc.h>
#include <kvx/layout.h>
#include <kvx/plan.h>
#include <kvx/rdma.h>
#include <kvx/node.h>
#include <kvx/ticket.h>
#include <kvx/client.h>

#ifdef __cplusplus
extern "C" {
#endif

/** libkvx version as "major.minor.patch" (static string). */
KVX_EXPORT const char *kvx_version(void);

#ifdef __cplusplus
}
#endif

#endif /* KVX_KVX_H */
