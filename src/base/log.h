/* SPDX-License-Identifier: MIT */
/* base/log.h -- the one log sink: one logfmt line per event on stderr,
 *   ts=... lvl=notice role=lb node=lb1 sub=health msg="server down" pool=web server=a
 * The level is tested before any formatting happens. */
#ifndef TD_BASE_LOG_H
#define TD_BASE_LOG_H

#include <stdbool.h>

enum log_level {
    LOG_ERROR = 0,
    LOG_WARN,
    LOG_NOTICE,
    LOG_INFO,
    LOG_DEBUG,
};

extern enum log_level log_min_level;

/* Sets the role and node name stamped on every line (both copied; NULL leaves it unset). */
void log_init(const char *role, const char *node);
void log_set_level(enum log_level level);
/* Parses "error|warn|notice|info|debug"; returns 0 or -EINVAL. */
int log_level_parse(const char *s, enum log_level *out);
/* Writes one line: msg is quoted, kvfmt (may be NULL) appends key=value pairs. */
void log_emit(enum log_level level, const char *sub, const char *msg, const char *kvfmt, ...)
    __attribute__((format(printf, 4, 5)));

#define LOG_AT(level, sub, msg, ...)                                                               \
    do {                                                                                           \
        if ((level) <= log_min_level)                                                              \
            log_emit((level), (sub), (msg), __VA_ARGS__);                                          \
    } while (0)

/* Usage: log_notice("health", "server down", "pool=%s server=%s", pool, name);
 * pass "" as the format when there are no key=value pairs. */
#define log_error(sub, msg, ...) LOG_AT(LOG_ERROR, sub, msg, __VA_ARGS__)
#define log_warn(sub, msg, ...) LOG_AT(LOG_WARN, sub, msg, __VA_ARGS__)
#define log_notice(sub, msg, ...) LOG_AT(LOG_NOTICE, sub, msg, __VA_ARGS__)
#define log_info(sub, msg, ...) LOG_AT(LOG_INFO, sub, msg, __VA_ARGS__)
#define log_debug(sub, msg, ...) LOG_AT(LOG_DEBUG, sub, msg, __VA_ARGS__)

#endif
