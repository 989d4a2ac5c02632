/**
 * @file kvx/log.h
 * @brief Logging hook: the library never prints on its own.
 *
 * libkvx hands every message to one process-wide callback. Without one,
 * messages are dropped (tools and kvxd install a callback that prints).
 */
#ifndef KVX_LOG_H
#define KVX_LOG_H

#include <kvx/common.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum kvx_log_level {
    KVX_LOG_ERROR = 0,
    KVX_LOG_WARN = 1,
    KVX_LOG_INFO = 2,
    KVX_LOG_DEBUG = 3,
    KVX_LOG_TRACE = 4
} kvx_log_level_t;

/**
 * Receives one formatted message (no trailing newline). Called from the
 * thread that hit the event; must be thread-safe if the library is used
 * from several threads.
 */
typedef void (*kvx_log_cb_t)(kvx_log_level_t level, const char *msg, void *arg);

/**
 * Installs @p cb (NULL removes it) with @p arg, and the most verbose level
 * that is delivered. Not synchronised with concurrent logging: call it before
 * creating objects.
 */
KVX_EXPORT void kvx_log_set_cb(kvx_log_cb_t cb, void *arg,
                               kvx_log_level_t max_level);

/** Returns "error", "warn", "info", "debug" or "trace" ("?" otherwise). */
KVX_EXPORT const char *kvx_log_level_string(kvx_log_level_t level);

#ifdef __cplusplus
}
#endif

#endif /* KVX_LOG_H */
