/* Internal logging: every library message goes through kvxi_log(). */
#ifndef KVX_LOG_INT_H
#define KVX_LOG_INT_H

#include <kvx/log.h>
#include <stddef.h>

/** True if a message at @p level would be delivered (skip formatting). */
int kvxi_log_enabled(kvx_log_level_t level);

/** Formats and hands one message to the installed callback, if any. */
void kvxi_log(kvx_log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/**
 * Formats a reason into a caller's buffer (as the @p why / @p err outputs of
 * many calls); does nothing when @p buf is NULL or @p len is 0.
 */
void kvxi_why(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define kvxi_error(...) kvxi_log(KVX_LOG_ERROR, __VA_ARGS__)
#define kvxi_warn(...) kvxi_log(KVX_LOG_WARN, __VA_ARGS__)
#define kvxi_info(...) kvxi_log(KVX_LOG_INFO, __VA_ARGS__)
#define kvxi_debug(...) kvxi_log(KVX_LOG_DEBUG, __VA_ARGS__)

#endif /* KVX_LOG_INT_H */
