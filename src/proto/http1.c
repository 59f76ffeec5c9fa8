/* SPDX-License-Identifier: MIT */
/* proto/http1.c -- llhttp callbacks that record spans, enforce limits and pause at the two
 * events a proxy cares about: end of head, end of message. llhttp itself rejects ambiguous
 * framing (Content-Length with Transfer-Encoding, repeated Content-Length, chunked not last);
 * this file maps those errors to TD_ESMUGGLE so callers can tell an attack from noise. */
#include "proto/http1.h"

#include <string.h>

#include "base/err.h"

const struct http1_limits http1_default_limits = {
    .max_head_bytes = 16384,
    .max_headers = HTTP1_MAX_HEADERS,
};

static struct http1_parser *P(llhttp_t *ll)
{
    return (struct http1_parser *)ll->data;
}

static uint32_t off_of(struct http1_parser *p, const char *at)
{
    return (uint32_t)(at - p->base);
}

static int on_message_begin(llhttp_t *ll)
{
    struct http1_parser *p = P(ll);
    p->msg_started = true;
    return 0;
}

static int span_extend(struct http1_parser *p, struct http1_span *s, const char *at, size_t len,
                       bool first)
{
    if (first) {
        s->off = off_of(p, at);
        s->len = 0;
    }
    s->len += (uint32_t)len;
    return 0;
}

static int on_url(llhttp_t *ll, const char *at, size_t len)
{
    struct http1_parser *p = P(ll);
    return span_extend(p, &p->msg.url, at, len, p->msg.url.len == 0);
}

static int on_header_field(llhttp_t *ll, const char *at, size_t len)
{
    struct http1_parser *p = P(ll);
    if (p->field_state != 1) {
        if (p->msg.nheaders >= p->limits.max_headers) {
            p->err = TD_EHDR_TOO_BIG;
            return -1;
        }
        p->field_state = 1;
        struct http1_header *h = &p->msg.headers[p->msg.nheaders++];
        memset(h, 0, sizeof(*h));
        return span_extend(p, &h->name, at, len, true);
    }
    return span_extend(p, &p->msg.headers[p->msg.nheaders - 1].name, at, len, false);
}

static int on_header_value(llhttp_t *ll, const char *at, size_t len)
{
    struct http1_parser *p = P(ll);
    struct http1_header *h = &p->msg.headers[p->msg.nheaders - 1];
    bool first = p->field_state != 2;
    p->field_state = 2;
    return span_extend(p, &h->value, at, len, first);
}

static int on_header_field_complete(llhttp_t *ll)
{
    (void)ll;
    return 0;
}

static int on_headers_complete(llhttp_t *ll)
{
    struct http1_parser *p = P(ll);
    struct http1_msg *m = &p->msg;
    m->method = ll->method;
    m->status = ll->status_code;
    m->version_major = ll->http_major;
    m->version_minor = ll->http_minor;
    m->keep_alive = llhttp_should_keep_alive(ll);
    m->chunked = (ll->flags & F_CHUNKED) != 0;
    m->has_content_length = (ll->flags & F_CONTENT_LENGTH) != 0;
    m->content_length = m->has_content_length ? ll->content_length : 0;
    m->upgrade = ll->upgrade;
    p->head_done = true;
    if (p->skip_body)
        return 1; /* no body follows (response to HEAD): the message ends here */
    return HPE_PAUSED;
}

static int on_body(llhttp_t *ll, const char *at, size_t len)
{
    struct http1_parser *p = P(ll);
    if (p->on_body)
        p->on_body(p->ud, at, len);
    return 0;
}

static int on_message_complete(llhttp_t *ll)
{
    (void)ll;
    return HPE_PAUSED;
}

static llhttp_settings_t settings;
static bool settings_ready;

static void settings_init(void)
{
    if (settings_ready)
        return;
    llhttp_settings_init(&settings);
    settings.on_message_begin = on_message_begin;
    settings.on_url = on_url;
    settings.on_status = NULL;
    settings.on_header_field = on_header_field;
    settings.on_header_value = on_header_value;
    settings.on_header_field_complete = on_header_field_complete;
    settings.on_headers_complete = on_headers_complete;
    settings.on_body = on_body;
    settings.on_message_complete = on_message_complete;
    settings_ready = true;
}

static void msg_reset(struct http1_parser *p)
{
    p->msg.nheaders = 0;
    p->msg.url.off = p->msg.url.len = 0;
    p->msg.head_len = 0;
    p->msg.keep_alive = false;
    p->msg.chunked = false;
    p->msg.has_content_length = false;
    p->msg.content_length = 0;
    p->msg.upgrade = false;
    p->offset_in_msg = 0;
    p->head_done = false;
    p->msg_started = false;
    p->field_state = 0;
    p->err = 0;
    p->skip_body = false;
}

void http1_init(struct http1_parser *p, enum http1_kind kind, const struct http1_limits *lim)
{
    settings_init();
    memset(p, 0, sizeof(*p));
    llhttp_init(&p->ll, kind == HTTP1_REQUEST ? HTTP_REQUEST : HTTP_RESPONSE, &settings);
    p->ll.data = p;
    p->limits = lim ? *lim : http1_default_limits;
    if (p->limits.max_headers > HTTP1_MAX_HEADERS || p->limits.max_headers == 0)
        p->limits.max_headers = HTTP1_MAX_HEADERS;
    msg_reset(p);
}

void http1_next(struct http1_parser *p)
{
    llhttp_resume(&p->ll);
    msg_reset(p);
}

static int map_error(struct http1_parser *p, llhttp_errno_t e)
{
    if (p->err)
        return p->err;
    switch (e) {
    case HPE_UNEXPECTED_CONTENT_LENGTH:
    case HPE_INVALID_TRANSFER_ENCODING:
        return TD_ESMUGGLE;
    case HPE_INVALID_CONTENT_LENGTH:
        /* llhttp reports a second Content-Length header this way */
        return TD_ESMUGGLE;
    default:
        return TD_EPROTO_HTTP;
    }
}

int http1_feed(struct http1_parser *p, const char *base, size_t off, size_t len,
               size_t *consumed)
{
    *consumed = 0;
    if (p->err)
        return p->err;
    p->base = base;
    if (len == 0 && !p->head_done)
        return HTTP1_NEED_MORE;
    const char *data = base + off;
    bool was_in_head = !p->head_done;
    if (was_in_head && !p->msg_started && p->offset_in_msg == 0)
        p->msg.head_off = (uint32_t)off;
    llhttp_errno_t e = llhttp_execute(&p->ll, data, len);
    size_t used = len;
    if (e == HPE_PAUSED || e != HPE_OK)
        used = (size_t)(llhttp_get_error_pos(&p->ll) - data);
    if (e != HPE_OK && e != HPE_PAUSED && e != HPE_PAUSED_UPGRADE) {
        p->err = map_error(p, e);
        return p->err;
    }
    if (was_in_head) {
        size_t head_used = used;
        p->offset_in_msg += head_used;
        if (p->head_done)
            p->msg.head_len = (uint32_t)p->offset_in_msg;
        if (p->offset_in_msg > p->limits.max_head_bytes) {
            p->err = TD_EHDR_TOO_BIG;
            return p->err;
        }
    }
    *consumed = used;
    if (e == HPE_PAUSED_UPGRADE) {
        p->msg.upgrade = true;
        return HTTP1_MSG_DONE;
    }
    if (e == HPE_PAUSED) {
        if (was_in_head && p->head_done && !p->skip_body) {
            /* paused in on_headers_complete: resume so the body can be fed */
            llhttp_resume(&p->ll);
            return HTTP1_HEAD_DONE;
        }
        return HTTP1_MSG_DONE;
    }
    return HTTP1_NEED_MORE;
}

int http1_finish(struct http1_parser *p)
{
    if (p->err)
        return p->err;
    llhttp_errno_t e = llhttp_finish(&p->ll);
    if (e == HPE_OK || e == HPE_PAUSED)
        return p->head_done ? HTTP1_MSG_DONE : TD_EPROTO_HTTP;
    return TD_EPROTO_HTTP;
}

struct slice http1_header_get(const struct http1_msg *m, const char *base, const char *name)
{
    struct slice want = slice_cstr(name);
    for (unsigned i = 0; i < m->nheaders; i++) {
        struct slice n = http1_slice(base, m->headers[i].name);
        if (slice_eq_nocase(n, want))
            return http1_slice(base, m->headers[i].value);
    }
    return (struct slice){NULL, 0};
}

const char *http1_method_name(int method)
{
    return llhttp_method_name((llhttp_method_t)method);
}

bool http1_method_is_idempotent(int method)
{
    switch (method) {
    case HTTP_GET:
    case HTTP_HEAD:
    case HTTP_OPTIONS:
    case HTTP_PUT:
    case HTTP_DELETE:
    case HTTP_TRACE:
        return true;
    default:
        return false;
    }
}

const char *http1_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
    }
}
