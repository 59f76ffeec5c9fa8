/* SPDX-License-Identifier: MIT */
/* base/err.h -- tandem's error codes: negative errno, plus its own codes below -4000.
 * Every function that can fail returns 0 (or a count) on success and a negative code on
 * failure; td_strerror()/td_errname() name any such code. */
#ifndef TD_BASE_ERR_H
#define TD_BASE_ERR_H

#include <stdnoreturn.h>

/* X-macro: name, value, message. */
#define TD_ERR_MAP(XX)                                                                             \
    XX(TD_EINCOMPLETE, -4001, "need more input")                                                   \
    XX(TD_EPROTO_HTTP, -4002, "malformed HTTP message")                                            \
    XX(TD_EHDR_TOO_BIG, -4003, "HTTP header section too large")                                    \
    XX(TD_ESMUGGLE, -4004, "ambiguous HTTP message framing")                                       \
    XX(TD_EPROTO_RESP, -4005, "malformed RESP message")                                            \
    XX(TD_ECORRUPT, -4006, "corrupt data")                                                         \
    XX(TD_ESTALE_TERM, -4007, "stale term")                                                        \
    XX(TD_ENOTPRIMARY, -4008, "not the primary")                                                   \
    XX(TD_ETOO_BIG, -4009, "limit exceeded")                                                       \
    XX(TD_ENOSERVER, -4010, "no server available")

enum td_err {
#define XX(name, val, msg) name = (val),
    TD_ERR_MAP(XX)
#undef XX
};

/* Message for any code: tandem's own, or a negated errno. Never NULL. */
const char *td_strerror(int code);
/* Symbolic name ("TD_ECORRUPT", "ECONNREFUSED"); "UNKNOWN" if not known. */
const char *td_errname(int code);

/* Always-on invariant check: aborts with file:line:expression. */
#define TD_ASSERT(cond)                                                                            \
    do {                                                                                           \
        if (!(cond))                                                                               \
            td_assert_fail(#cond, __FILE__, __LINE__);                                             \
    } while (0)

noreturn void td_assert_fail(const char *expr, const char *file, int line);
/* Unrecoverable state: print and abort. */
noreturn void td_panic(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
