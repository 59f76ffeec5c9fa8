/* SPDX-License-Identifier: MIT */
/* base/log.c -- logfmt lines to stderr, one write(2) per line so concurrent processes sharing
 * a terminal or file do not interleave within a line. */
#include "base/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

enum log_level log_min_level = LOG_NOTICE;

static char log_role[32] = "tandem";
static char log_node[64] = "";

static const char *const level_names[] = {"error", "warn", "notice", "info", "debug"};

void log_init(const char *role, const char *node)
{
    if (role)
        snprintf(log_role, sizeof(log_role), "%s", role);
    if (node)
        snprintf(log_node, sizeof(log_node), "%s", node);
}

void log_set_level(enum log_level level)
{
    log_min_level = level;
}

int log_level_parse(const char *s, enum log_level *out)
{
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (strcasecmp(s, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return -EINVAL;
}

void log_emit(enum log_level level, const char *sub, const char *msg, const char *kvfmt, ...)
{
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof(line),
                     "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ lvl=%s role=%s%s%s sub=%s msg=\"%s\"",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000, level_names[level], log_role,
                     log_node[0] ? " node=" : "", log_node, sub, msg);
    if (n < 0)
        return;
    size_t len = (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;
    if (kvfmt && kvfmt[0] && len < sizeof(line) - 2) {
        line[len++] = ' ';
        va_list ap;
        va_start(ap, kvfmt);
        int m = vsnprintf(line + len, sizeof(line) - len, kvfmt, ap);
        va_end(ap);
        if (m > 0)
            len += (size_t)m < sizeof(line) - len ? (size_t)m : sizeof(line) - len - 1;
    }
    if (len >= sizeof(line) - 1)
        len = sizeof(line) - 2;
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}
