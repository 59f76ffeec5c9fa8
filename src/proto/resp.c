/* SPDX-License-Identifier: MIT */
/* proto/resp.c -- RESP2 command parser and reply writer. The parser is a loop over a small
 * state (arguments still wanted, length of the bulk in progress, offset reached), so a command
 * split over many reads is scanned once, and nothing recurses. Header integers follow Redis's
 * strict rules (no sign but '-', no leading zeros, no spaces), so the same bytes are accepted
 * and rejected as by redis-server, except that a bulk must end with CRLF (Redis skips two bytes
 * unchecked there; tandem rejects the command instead). */
#include "proto/resp.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>

#include "base/alloc.h"
#include "base/err.h"

void resp_parser_init(struct resp_parser *p, const struct resp_limits *lim)
{
    memset(p, 0, sizeof(*p));
    p->lim = *lim;
    p->want = -1;
    p->bulk = -1;
    buf_init(&p->scratch);
}

void resp_parser_free(struct resp_parser *p)
{
    free(p->argv);
    free(p->off);
    buf_free(&p->scratch);
    p->argv = NULL;
    p->off = NULL;
    p->cap = 0;
    p->argc = 0;
}

void resp_parser_set_limits(struct resp_parser *p, const struct resp_limits *lim)
{
    p->lim = *lim;
}

const char *resp_parser_error(const struct resp_parser *p)
{
    return p->err;
}

size_t resp_parser_need(const struct resp_parser *p)
{
    if (p->want > 0 && p->bulk >= 0)
        return p->pos + (size_t)p->bulk + 2;
    return 0;
}

static void ensure_cap(struct resp_parser *p, size_t n)
{
    if (n <= p->cap)
        return;
    size_t cap = p->cap ? p->cap : 8;
    while (cap < n)
        cap *= 2;
    p->argv = xrealloc(p->argv, cap * sizeof(*p->argv));
    p->off = xrealloc(p->off, cap * sizeof(*p->off));
    p->cap = cap;
}

static void reset(struct resp_parser *p)
{
    p->pos = 0;
    p->nargs = 0;
    p->scanned = 0;
    p->want = -1;
    p->bulk = -1;
}

static ssize_t fail(struct resp_parser *p, int code, const char *msg)
{
    snprintf(p->err, sizeof(p->err), "%s", msg);
    reset(p);
    p->argc = 0;
    return code;
}

/* Redis's string2ll rules: optional '-', then "0" alone or a digit 1-9 followed by digits,
 * at most 20 characters, within int64. Returns false on anything else. */
bool resp_parse_int(const char *s, size_t len, int64_t *out)
{
    if (len == 0 || len > 20)
        return false;
    if (len == 1 && s[0] == '0') {
        *out = 0;
        return true;
    }
    size_t i = 0;
    bool neg = false;
    if (s[0] == '-') {
        neg = true;
        i = 1;
        if (len == 1)
            return false;
    }
    if (s[i] < '1' || s[i] > '9')
        return false;
    uint64_t v = 0;
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    if (neg) {
        if (v > (uint64_t)INT64_MAX + 1)
            return false;
        *out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
    } else {
        if (v > (uint64_t)INT64_MAX)
            return false;
        *out = (int64_t)v;
    }
    return true;
}

/* Fast path for the common header "<digits>\r\n" at p[0..avail): on success stores the value
 * and the bytes used (through CRLF) and returns true. Anything unusual (sign, leading zero,
 * 19+ digits, other bytes, line not complete yet) returns false and the caller takes the strict
 * slow path, so the accepted language and the error messages do not depend on this shortcut. */
static inline bool fast_header_int(const char *p, size_t avail, int64_t *out, size_t *used)
{
    size_t i = 0;
    uint64_t v = 0;
    while (i < avail && i < 18 && (unsigned char)(p[i] - '0') < 10) {
        v = v * 10 + (uint64_t)(p[i] - '0');
        i++;
    }
    if (i == 0 || i + 1 >= avail || p[i] != '\r' || p[i + 1] != '\n' || (i > 1 && p[0] == '0'))
        return false;
    *out = (int64_t)v;
    *used = i + 2;
    return true;
}

/* Finds "\r\n" in buf[from..len); returns the offset of '\r' or -1. */
static ssize_t find_crlf(const char *buf, size_t from, size_t len)
{
    while (from + 1 < len) {
        const char *cr = memchr(buf + from, '\r', len - 1 - from);
        if (cr == NULL)
            return -1;
        size_t at = (size_t)(cr - buf);
        if (buf[at + 1] == '\n')
            return (ssize_t)at;
        from = at + 1;
    }
    return -1;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static int hex_val(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Splits an inline line the way redis-cli and Redis's sdssplitargs do: whitespace separates
 * arguments; "..." understands \n \r \t \b \a \xHH and \<c>; '...' understands \'; a closing
 * quote must be followed by whitespace or the end. Arguments are copied into p->scratch.
 * Returns the argument count or -1 for unbalanced quotes. */
static int split_inline(struct resp_parser *p, const char *s, size_t len)
{
    p->scratch.len = 0;
    size_t n = 0, i = 0;
    for (;;) {
        while (i < len && is_space(s[i]))
            i++;
        if (i >= len)
            break;
        bool inq = false, insq = false;
        size_t start = p->scratch.len;
        for (;;) {
            if (inq) {
                if (i >= len)
                    return -1;
                if (s[i] == '\\' && i + 3 < len && s[i + 1] == 'x' && hex_val(s[i + 2]) >= 0 &&
                    hex_val(s[i + 3]) >= 0) {
                    char c = (char)(hex_val(s[i + 2]) * 16 + hex_val(s[i + 3]));
                    buf_append(&p->scratch, &c, 1);
                    i += 4;
                } else if (s[i] == '\\' && i + 1 < len) {
                    char c = s[i + 1];
                    switch (c) {
                    case 'n':
                        c = '\n';
                        break;
                    case 'r':
                        c = '\r';
                        break;
                    case 't':
                        c = '\t';
                        break;
                    case 'b':
                        c = '\b';
                        break;
                    case 'a':
                        c = '\a';
                        break;
                    default:
                        break;
                    }
                    buf_append(&p->scratch, &c, 1);
                    i += 2;
                } else if (s[i] == '"') {
                    if (i + 1 < len && !is_space(s[i + 1]))
                        return -1;
                    i++;
                    break;
                } else {
                    buf_append(&p->scratch, &s[i], 1);
                    i++;
                }
            } else if (insq) {
                if (i >= len)
                    return -1;
                if (s[i] == '\\' && i + 1 < len && s[i + 1] == '\'') {
                    buf_append(&p->scratch, "'", 1);
                    i += 2;
                } else if (s[i] == '\'') {
                    if (i + 1 < len && !is_space(s[i + 1]))
                        return -1;
                    i++;
                    break;
                } else {
                    buf_append(&p->scratch, &s[i], 1);
                    i++;
                }
            } else {
                if (i >= len || is_space(s[i]))
                    break;
                if (s[i] == '"')
                    inq = true;
                else if (s[i] == '\'')
                    insq = true;
                else
                    buf_append(&p->scratch, &s[i], 1);
                i++;
            }
        }
        ensure_cap(p, n + 1);
        p->off[n] = start;
        p->argv[n].len = p->scratch.len - start;
        n++;
    }
    for (size_t k = 0; k < n; k++)
        p->argv[k].p = p->scratch.p ? p->scratch.p + p->off[k] : "";
    return (int)n;
}

static ssize_t parse_inline(struct resp_parser *p, const char *buf, size_t len)
{
    const char *nl = len > p->scanned ? memchr(buf + p->scanned, '\n', len - p->scanned) : NULL;
    if (nl == NULL) {
        if (len > p->lim.max_inline)
            return fail(p, TD_ETOO_BIG, "Protocol error: too big inline request");
        p->scanned = len;
        return TD_EINCOMPLETE;
    }
    size_t linelen = (size_t)(nl - buf);
    if (linelen > p->lim.max_inline)
        return fail(p, TD_ETOO_BIG, "Protocol error: too big inline request");
    size_t end = linelen;
    if (end > 0 && buf[end - 1] == '\r')
        end--;
    int n = split_inline(p, buf, end);
    if (n < 0)
        return fail(p, TD_EPROTO_RESP, "Protocol error: unbalanced quotes in request");
    reset(p);
    p->argc = (size_t)n;
    return (ssize_t)linelen + 1;
}

ssize_t resp_parse(struct resp_parser *p, const char *buf, size_t len)
{
    p->argc = 0;
    if (p->want < 0) {
        if (len == 0)
            return TD_EINCOMPLETE;
        if (buf[0] != '*')
            return parse_inline(p, buf, len);
        int64_t n;
        size_t hl;
        ssize_t cr;
        if (fast_header_int(buf + 1, len - 1, &n, &hl)) {
            cr = (ssize_t)hl - 1; /* offset of '\r' */
        } else {
            cr = find_crlf(buf, p->scanned > 1 ? p->scanned - 1 : 1, len);
            if (cr < 0) {
                if (len > p->lim.max_inline)
                    return fail(p, TD_ETOO_BIG, "Protocol error: too big mbulk count string");
                p->scanned = len;
                return TD_EINCOMPLETE;
            }
            if (!resp_parse_int(buf + 1, (size_t)cr - 1, &n))
                return fail(p, TD_EPROTO_RESP, "Protocol error: invalid multibulk length");
        }
        if (n > INT32_MAX)
            return fail(p, TD_EPROTO_RESP, "Protocol error: invalid multibulk length");
        if (n > 0 && (uint64_t)n > p->lim.max_multibulk)
            return fail(p, TD_ETOO_BIG,
                        p->lim.unauthenticated ? "Protocol error: unauthenticated multibulk length"
                                               : "Protocol error: invalid multibulk length");
        if (n <= 0) {
            /* "*0" and "*-1" are empty commands, consumed and ignored. */
            reset(p);
            return cr + 2;
        }
        p->scanned = 0;
        p->want = n;
        p->pos = (size_t)cr + 2;
        p->bulk = -1;
        p->nargs = 0;
        size_t first = n < 1024 ? (size_t)n : 1024;
        if (first > p->cap)
            ensure_cap(p, first);
    }
    /* The loop works on locals (buf is a char pointer, which may alias anything, so fields of
     * p would be reloaded after every store) and saves them only when it must suspend. */
    size_t pos = p->pos, nargs = p->nargs;
    int64_t want = p->want, bulk = p->bulk;
    ssize_t rc;
    while (want > 0) {
        if (bulk < 0) {
            if (pos >= len) {
                rc = TD_EINCOMPLETE;
                goto suspend;
            }
            if (buf[pos] != '$') {
                char msg[64];
                snprintf(msg, sizeof(msg), "Protocol error: expected '$', got '%c'", buf[pos]);
                return fail(p, TD_EPROTO_RESP, msg);
            }
            int64_t n;
            size_t hl;
            if (fast_header_int(buf + pos + 1, len - pos - 1, &n, &hl)) {
                pos += 1 + hl;
            } else {
                size_t from = p->scanned > pos + 1 ? p->scanned - 1 : pos + 1;
                ssize_t cr = find_crlf(buf, from, len);
                if (cr < 0) {
                    if (len - pos > p->lim.max_inline)
                        return fail(p, TD_ETOO_BIG, "Protocol error: too big bulk count string");
                    p->scanned = len;
                    rc = TD_EINCOMPLETE;
                    goto suspend;
                }
                if (!resp_parse_int(buf + pos + 1, (size_t)cr - pos - 1, &n) || n < 0)
                    return fail(p, TD_EPROTO_RESP, "Protocol error: invalid bulk length");
                pos = (size_t)cr + 2;
            }
            p->scanned = 0;
            if ((uint64_t)n > p->lim.max_bulk)
                return fail(p, TD_ETOO_BIG,
                            p->lim.unauthenticated ? "Protocol error: unauthenticated bulk length"
                                                   : "Protocol error: invalid bulk length");
            bulk = n;
        }
        size_t blen = (size_t)bulk;
        if (len - pos < blen + 2) {
            rc = TD_EINCOMPLETE;
            goto suspend;
        }
        if (buf[pos + blen] != '\r' || buf[pos + blen + 1] != '\n')
            return fail(p, TD_EPROTO_RESP, "Protocol error: expected CRLF after bulk");
        if (nargs == p->cap)
            ensure_cap(p, nargs + 1);
        p->off[nargs] = pos;
        p->argv[nargs].len = blen;
        nargs++;
        pos += blen + 2;
        bulk = -1;
        want--;
    }
    struct slice *argv = p->argv;
    const size_t *off = p->off;
    for (size_t k = 0; k < nargs; k++)
        argv[k].p = buf + off[k];
    reset(p);
    p->argc = nargs;
    return (ssize_t)pos;
suspend:
    p->pos = pos;
    p->nargs = nargs;
    p->want = want;
    p->bulk = bulk;
    return rc;
}

/* --- reply writer --- */

size_t resp_fmt_int(char *out, int64_t v)
{
    char tmp[24];
    size_t n = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    size_t len = 0;
    if (v < 0)
        out[len++] = '-';
    while (n)
        out[len++] = tmp[--n];
    return len;
}

static void add_prefixed_int(struct buf *b, char prefix, int64_t v)
{
    buf_reserve(b, 24);
    char *o = b->p + b->len;
    o[0] = prefix;
    size_t n = resp_fmt_int(o + 1, v);
    o[n + 1] = '\r';
    o[n + 2] = '\n';
    b->len += n + 3;
}

void resp_add_status(struct buf *b, const char *s)
{
    size_t n = strlen(s);
    buf_reserve(b, n + 3);
    b->p[b->len] = '+';
    memcpy(b->p + b->len + 1, s, n);
    memcpy(b->p + b->len + 1 + n, "\r\n", 2);
    b->len += n + 3;
}

void resp_add_error(struct buf *b, const char *msg, size_t len)
{
    buf_reserve(b, len + 3);
    char *o = b->p + b->len;
    o[0] = '-';
    for (size_t i = 0; i < len; i++)
        o[i + 1] = (msg[i] == '\r' || msg[i] == '\n') ? ' ' : msg[i];
    memcpy(o + 1 + len, "\r\n", 2);
    b->len += len + 3;
}

void resp_add_errorf(struct buf *b, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof(small)) {
        resp_add_error(b, small, (size_t)n);
        return;
    }
    char *big = xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    resp_add_error(b, big, (size_t)n);
    free(big);
}

void resp_add_int(struct buf *b, int64_t v)
{
    add_prefixed_int(b, ':', v);
}

void resp_add_array(struct buf *b, int64_t n)
{
    add_prefixed_int(b, '*', n);
}

void resp_add_bulk(struct buf *b, const void *p, size_t n)
{
    buf_reserve(b, n + 32);
    char *o = b->p + b->len;
    o[0] = '$';
    size_t h = resp_fmt_int(o + 1, (int64_t)n) + 1;
    o[h] = '\r';
    o[h + 1] = '\n';
    if (n)
        memcpy(o + h + 2, p, n);
    o[h + 2 + n] = '\r';
    o[h + 3 + n] = '\n';
    b->len += h + 4 + n;
}

void resp_add_null(struct buf *b)
{
    buf_append(b, "$-1\r\n", 5);
}

void resp_add_bulk_int(struct buf *b, int64_t v)
{
    char tmp[24];
    size_t n = resp_fmt_int(tmp, v);
    resp_add_bulk(b, tmp, n);
}
