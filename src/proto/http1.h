/* SPDX-License-Identifier: MIT */
/* proto/http1.h -- incremental HTTP/1.x request and response parsing on top of llhttp.
 *
 * The caller owns one growing input buffer and feeds it in order. The parser records the
 * request/status line and headers as offsets into that buffer, so the buffer may be moved
 * (realloc) between feeds but the bytes of the current head must stay where they are until
 * HTTP1_HEAD_DONE. Feeding stops at two events: the end of the head, and the end of the
 * message; between them the bytes consumed are the message body exactly as it travelled
 * (chunk framing included), which a proxy can forward as is. Decoded body bytes are handed to
 * on_body when set. No I/O, no logging; all limits are enforced here. */
#ifndef TD_PROTO_HTTP1_H
#define TD_PROTO_HTTP1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <llhttp.h>

#include "base/buf.h"

#define HTTP1_MAX_HEADERS 64

enum http1_kind {
    HTTP1_REQUEST = 0,
    HTTP1_RESPONSE,
};

/* Returned by http1_feed (non-negative); errors are negative TD_E* codes. */
enum http1_event {
    HTTP1_NEED_MORE = 0, /* all input consumed, message not finished */
    HTTP1_HEAD_DONE,     /* head parsed; msg is valid; body (if any) follows */
    HTTP1_MSG_DONE,      /* message complete; call http1_next before feeding more */
};

struct http1_span {
    uint32_t off;
    uint32_t len;
};

struct http1_header {
    struct http1_span name;
    struct http1_span value;
};

struct http1_msg {
    int method;                  /* llhttp_method_t, requests only */
    struct http1_span url;       /* requests only */
    int status;                  /* responses only */
    uint8_t version_major;
    uint8_t version_minor;
    bool keep_alive;             /* the connection may carry another message */
    bool chunked;                /* Transfer-Encoding: chunked */
    bool has_content_length;
    uint64_t content_length;
    bool upgrade;                /* Upgrade/CONNECT: the stream stops being HTTP */
    uint32_t head_off;           /* where the message starts in the buffer */
    uint32_t head_len;           /* bytes of request/status line + headers + blank line */
    unsigned nheaders;
    struct http1_header headers[HTTP1_MAX_HEADERS];
};

struct http1_limits {
    uint32_t max_head_bytes;     /* request/status line + headers */
    unsigned max_headers;        /* <= HTTP1_MAX_HEADERS */
};

typedef void (*http1_body_fn)(void *ud, const char *at, size_t len);

struct http1_parser {
    llhttp_t ll;
    struct http1_limits limits;
    struct http1_msg msg;
    http1_body_fn on_body;       /* optional: decoded body bytes */
    void *ud;
    bool skip_body;              /* response to HEAD (set before feeding the response) */
    /* private */
    const char *base;
    size_t offset_in_msg;        /* head bytes seen so far */
    bool in_head;
    bool head_done;
    bool msg_started;
    int field_state;             /* 0 none, 1 in name, 2 in value */
    int err;
};

/* Default limits: 16 KiB head, 64 headers. */
extern const struct http1_limits http1_default_limits;

/* Prepares p for the first message of a connection. lim NULL means the defaults. */
void http1_init(struct http1_parser *p, enum http1_kind kind, const struct http1_limits *lim);
/* Feeds base[off, off+len). Sets *consumed to the bytes used (fewer than len when an event
 * stops the feed). Returns an http1_event or a negative code: TD_EPROTO_HTTP (malformed),
 * TD_EHDR_TOO_BIG (limits), TD_ESMUGGLE (ambiguous framing: Content-Length with
 * Transfer-Encoding, duplicate Content-Length, bad Transfer-Encoding). After an error the
 * connection must be closed. */
int http1_feed(struct http1_parser *p, const char *base, size_t off, size_t len,
               size_t *consumed);
/* After HTTP1_MSG_DONE: readies the parser for the next message on the same connection. */
void http1_next(struct http1_parser *p);
/* Tells a response parser that the message is finished at EOF (bodies delimited by close).
 * Returns HTTP1_MSG_DONE if the message was complete, TD_EPROTO_HTTP otherwise. */
int http1_finish(struct http1_parser *p);

/* The bytes of span s, given the buffer base. */
static inline struct slice http1_slice(const char *base, struct http1_span s)
{
    return (struct slice){base + s.off, s.len};
}
/* Value of the first header named name (case-insensitive); len 0 and p NULL if absent. */
struct slice http1_header_get(const struct http1_msg *m, const char *base, const char *name);
/* Method name ("GET") of a request. */
const char *http1_method_name(int method);
/* True for methods that are safe to repeat: GET HEAD OPTIONS PUT DELETE TRACE. */
bool http1_method_is_idempotent(int method);
/* Standard reason phrase for a status code ("OK"); "Unknown" otherwise. */
const char *http1_reason(int status);

#endif
