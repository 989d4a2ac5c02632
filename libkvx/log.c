/* The library's only way to speak: a callback the application installs. */
#include "log_int.h"

#include <stdarg.h>
#include <stdio.h>

static kvx_log_cb_t log_cb;
static void *log_arg;
static kvx_log_level_t log_max = KVX_LOG_INFO;

void kvx_log_set_cb(kvx_log_cb_t cb, void *arg, kvx_log_level_t max_level)
{
    log_cb = cb;
    log_arg = arg;
    log_max = max_level;
}

const char *kvx_log_level_string(kvx_log_level_t level)
{
    switch (level) {
    case KVX_LOG_ERROR: return "error";
    case KVX_LOG_WARN: return "warn";
    case KVX_LOG_INFO: return "info";
    case KVX_LOG_DEBUG: return "debug";
    case KVX_LOG_TRACE: return "trace";
    }
    return "?";
}

int kvxi_log_enabled(kvx_log_level_t level)
{
    return log_cb != NULL && level <= log_max;
}

void kvxi_log(kvx_log_level_t level, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    if (!kvxi_log_enabled(level)) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    log_cb(level, msg, log_arg);
}

void kvxi_why(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;

    if (buf == NULL || len == 0) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
}
