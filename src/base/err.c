/* SPDX-License-Identifier: MIT */
/* base/err.c -- names and messages for tandem's error codes, assertion failure. */
#include "base/err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *td_strerror(int code)
{
    switch (code) {
#define XX(name, val, msg)                                                                         \
    case val:                                                                                      \
        return msg;
        TD_ERR_MAP(XX)
#undef XX
    }
    if (code < 0 && code > -4000)
        return strerror(-code);
    return "unknown error";
}

const char *td_errname(int code)
{
    switch (code) {
#define XX(name, val, msg)                                                                         \
    case val:                                                                                      \
        return #name;
        TD_ERR_MAP(XX)
#undef XX
    }
    if (code < 0 && code > -4000) {
        const char *n = strerrorname_np(-code);
        if (n)
            return n;
    }
    return "UNKNOWN";
}

void td_assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "tandem: assertion failed: %s at %s:%d\n", expr, file, line);
    abort();
}

void td_panic(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("tandem: panic: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}
