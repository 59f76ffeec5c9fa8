/* SPDX-License-Identifier: MIT */
/* proto/resp.h -- RESP2 (the Redis protocol): an incremental, non-recursive command parser
 * (multibulk "*N\r\n$L\r\n...\r\n" and inline "GET k\r\n" forms) with limits, and a reply writer
 * that appends to a struct buf. Pure: no I/O, no logging.
 *
 * Parser usage: keep the unconsumed bytes of a connection contiguous and call resp_parse() with
 * a pointer to their first byte each time more arrive. It returns the number of bytes the next
 * complete command occupies (argv/argc describe it; argc may be 0 for an empty command such as
 * "*0\r\n" or a blank inline line, which the caller skips), TD_EINCOMPLETE when more bytes are
 * needed (state is kept, so bytes are never scanned twice; the buffer may move between calls as
 * long as the unconsumed bytes keep their order and start at the pointer passed), or an error:
 * TD_EPROTO_RESP (malformed) or TD_ETOO_BIG (a limit), with resp_parser_error() giving the
 * Redis-compatible message ("Protocol error: invalid bulk length"). After an error the
 * connection's input is unusable: reply with the message and close. */
#ifndef TD_PROTO_RESP_H
#define TD_PROTO_RESP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#include "base/buf.h"

struct resp_limits {
    uint64_t max_bulk;      /* longest argument, bytes */
    uint64_t max_multibulk; /* most arguments in one command */
    uint64_t max_inline;    /* longest inline line or "*N"/"$N" header line, bytes */
    bool unauthenticated;   /* word the limit errors as Redis does for clients before AUTH */
};

struct resp_parser {
    struct resp_limits lim;
    /* Result of the last complete command: argc slices into the caller's buffer (multibulk)
     * or into the parser's scratch (inline). Valid until the next resp_parse() call. */
    struct slice *argv;
    size_t argc;
    /* Private state of a partially received command. */
    size_t cap;         /* capacity of argv and off */
    size_t *off;        /* argument offsets from the command start, while incomplete */
    size_t pos;         /* bytes of the current command already parsed */
    size_t nargs;       /* arguments of the current command complete so far */
    size_t scanned;     /* bytes searched for a line end without finding one */
    int64_t want;       /* multibulk arguments still expected; -1 when between commands */
    int64_t bulk;       /* length of the bulk being received; -1 before its "$N" line */
    struct buf scratch; /* unquoted inline arguments */
    char err[96];
};

/* Initialises p with a copy of lim. Never fails. */
void resp_parser_init(struct resp_parser *p, const struct resp_limits *lim);
/* Frees p's storage (not p itself). */
void resp_parser_free(struct resp_parser *p);
/* Replaces the limits (e.g. after AUTH); applies from the next header parsed. */
void resp_parser_set_limits(struct resp_parser *p, const struct resp_limits *lim);
/* Parses the next command from buf[0..len). See the header comment for the contract. */
ssize_t resp_parse(struct resp_parser *p, const char *buf, size_t len);
/* Bytes the current partial command needs at least before it can complete (from the command
 * start), or 0 when unknown. Lets the caller size its read buffer for one large argument. */
size_t resp_parser_need(const struct resp_parser *p);
/* The message for the last error (never NULL; "" before any error). */
const char *resp_parser_error(const struct resp_parser *p);

/* --- Reply writer. All append to b and never fail (buffers abort on exhaustion). --- */

/* "+s\r\n"; s must not contain CR or LF. */
void resp_add_status(struct buf *b, const char *s);
/* "-msg\r\n"; CR and LF inside msg are replaced by spaces, as Redis does. */
void resp_add_error(struct buf *b, const char *msg, size_t len);
/* resp_add_error with a printf format. */
void resp_add_errorf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* ":v\r\n". */
void resp_add_int(struct buf *b, int64_t v);
/* "$n\r\n<p>\r\n". */
void resp_add_bulk(struct buf *b, const void *p, size_t n);
/* "$-1\r\n", the null bulk. */
void resp_add_null(struct buf *b);
/* "*n\r\n"; n = -1 is the null array. */
void resp_add_array(struct buf *b, int64_t n);
/* A bulk holding the decimal form of v. */
void resp_add_bulk_int(struct buf *b, int64_t v);
/* Raw bytes (pre-encoded replies). */
static inline void resp_add_raw(struct buf *b, const char *p, size_t n)
{
    buf_append(b, p, n);
}

/* Parses a decimal int64 with Redis's string2ll rules (optional '-', no '+', no leading zeros,
 * no spaces, at most 20 characters). Returns false for anything else or overflow. */
bool resp_parse_int(const char *s, size_t len, int64_t *out);
/* Writes the decimal form of v into out (>= 21 bytes); returns its length. No NUL. */
size_t resp_fmt_int(char *out, int64_t v);

#endif
