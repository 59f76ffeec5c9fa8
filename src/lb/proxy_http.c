/* SPDX-License-Identifier: MIT */
/* lb/proxy_http.c -- the HTTP/1.1 proxy: keep-alive on both sides, one request at a time per
 * client connection, balanced per request over pooled server connections.
 *
 * A request is read whole (head + body, bounded by max-head/max-body) into txn.req, rewritten
 * for the server (hop-by-hop headers dropped, X-Forwarded-For added), then sent. Keeping the
 * bytes until the first response byte is what makes retries possible: when the server refuses
 * the connection, resets it, or times out before answering, the request goes to another
 * server if it is safe to repeat (idempotent method or Idempotency-Key; always when the
 * connect itself failed, since nothing reached the server) and the failing server is marked
 * down at once. Once a response byte went to the client, a failure can only close the client
 * connection. Response bodies stream through as they arrive, with backpressure. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/parse.h"
#include "lb/lb.h"
#include "net/deadline.h"
#include "net/wq.h"
#include "proto/http1.h"

#define READ_CHUNK 65536
#define OUT_HIGH_WATER (1u << 20)

enum client_state {
    CS_IDLE = 0, /* waiting for the next request */
    CS_REQUEST,  /* a request is arriving */
    CS_WAIT,     /* the request is with a server */
};

struct http_txn {
    struct buf req;           /* rewritten request, kept for retries */
    int method;
    bool retryable;
    bool head_request;
    uint64_t tried;           /* bit i: server i of the pool already tried */
    unsigned attempts;
    struct backend_conn *bc;
    struct lb_server *server;
    bool resp_started;
};

struct http_client {
    uv_tcp_t tcp;
    struct deadline timer;
    struct lb_pool *pool;
    struct list link;
    struct buf in;
    size_t parsed;
    bool head_done;           /* current request's head is parsed and copied */
    size_t head_len;
    bool client_keepalive;
    bool http10;
    struct http1_parser parser;
    struct wq out;
    struct buf scratch;       /* response head being built */
    char ip[64];
    enum client_state state;
    bool txn_active;
    struct http_txn txn;
    bool close_after;
    bool closing;
    bool read_paused;
    bool in_process;          /* client_process is on the stack: no nested call */
    int open_handles;
};

enum backend_state {
    BS_CONNECTING = 0,
    BS_IDLE,
    BS_BUSY,
    BS_CLOSED,
};

struct backend_conn {
    uv_tcp_t tcp;
    struct deadline timer;
    uv_connect_t connect_req;
    struct lb_server *server;
    struct list link;         /* server->idle while idle, server->busy while in use */
    struct buf in;
    size_t parsed;
    struct http1_parser parser;
    struct wq out;
    struct http_client *client;
    enum backend_state state;
    bool head_done;
    bool interim;             /* a 1xx response is being skipped */
    bool read_paused;
    int open_handles;
};

static void client_process(struct http_client *c);
static void client_process_loop(struct http_client *c);
static void on_client_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b);
static void on_client_timer(uv_timer_t *t);
static void client_close(struct http_client *c);
static void dispatch(struct http_client *c);
static void backend_close(struct backend_conn *bc);
static void client_respond_error(struct http_client *c, int status, const char *body,
                                 bool close);

/* ---- small helpers ---- */

static void on_alloc_client(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    struct http_client *c = h->data;
    (void)suggested;
    buf_reserve(&c->in, READ_CHUNK);
    *b = uv_buf_init(c->in.p + c->in.len, (unsigned)(c->in.cap - c->in.len));
}

static void on_alloc_backend(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    struct backend_conn *bc = h->data;
    (void)suggested;
    buf_reserve(&bc->in, READ_CHUNK);
    *b = uv_buf_init(bc->in.p + bc->in.len, (unsigned)(bc->in.cap - bc->in.len));
}

static bool is_hop_header(struct slice n)
{
    return slice_eq_nocase(n, SLICE_LIT("connection")) ||
           slice_eq_nocase(n, SLICE_LIT("keep-alive")) ||
           slice_eq_nocase(n, SLICE_LIT("proxy-connection"));
}

static void server_inflight(struct lb_server *s, int delta)
{
    if (s->inflight == 0 && delta > 0)
        s->progress_ms = uv_now(s->pool->lb->loop);
    s->inflight = (uint32_t)((int)s->inflight + delta);
    *s->m_inflight = s->inflight;
    struct lb_pool *p = s->pool;
    if (!s->removed && s->index < p->nservers && p->servers[s->index] == s)
        p->views[s->index].load = s->inflight;
}

/* ---- backend connections ---- */

static void on_backend_handle_closed(uv_handle_t *h)
{
    struct backend_conn *bc = h->data;
    if (--bc->open_handles > 0)
        return;
    struct lb_server *s = bc->server;
    buf_free(&bc->in);
    wq_free(&bc->out);
    free(bc);
    lb_server_unref(s);
}

static void backend_close(struct backend_conn *bc)
{
    if (bc->state == BS_CLOSED)
        return;
    if (bc->state == BS_IDLE)
        bc->server->nidle--;
    list_remove(&bc->link);
    bc->state = BS_CLOSED;
    bc->client = NULL;
    deadline_clear(&bc->timer);
    uv_close((uv_handle_t *)&bc->timer.timer, on_backend_handle_closed);
    uv_close((uv_handle_t *)&bc->tcp, on_backend_handle_closed);
}

static void on_backend_timeout(uv_timer_t *t);
static void on_backend_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b);

/* The request of c failed on its server before any response byte reached the client. */
static void txn_failed_ex(struct http_client *c, const char *reason, bool nothing_sent,
                          int status_if_final, bool blame)
{
    struct http_txn *t = &c->txn;
    struct lb_server *s = t->server;
    struct backend_conn *bc = t->bc;
    t->bc = NULL;
    t->server = NULL;
    if (bc)
        backend_close(bc);
    server_inflight(s, -1);
    if (blame)
        lb_server_passive_failure(s, reason);
    if (t->resp_started) {
        log_info("proxy", "response cut short", "pool=%s server=%s cause=\"%s\"", c->pool->name,
                 s->name, reason);
        client_close(c);
        lb_server_unref(s);
        return;
    }
    bool may_retry = (nothing_sent || t->retryable) && t->attempts <= c->pool->cfg.retries;
    if (may_retry) {
        (*s->m_retries)++;
        log_info("proxy", "retrying request elsewhere", "pool=%s server=%s cause=\"%s\" attempt=%u",
                 c->pool->name, s->name, reason, t->attempts + 1);
        lb_server_unref(s);
        dispatch(c);
        return;
    }
    log_info("proxy", "request failed", "pool=%s server=%s cause=\"%s\" retryable=%d",
             c->pool->name, s->name, reason, t->retryable);
    lb_server_unref(s);
    c->txn_active = false;
    client_respond_error(c, status_if_final,
                         status_if_final == 504 ? "server timed out\n" : "bad gateway\n", false);
}

static void txn_failed(struct http_client *c, const char *reason, bool nothing_sent,
                       int status_if_final)
{
    txn_failed_ex(c, reason, nothing_sent, status_if_final, true);
}

static void backend_release(struct backend_conn *bc, bool reusable)
{
    struct lb_server *s = bc->server;
    bc->client = NULL;
    deadline_clear(&bc->timer);
    if (!reusable || bc->in.len != bc->parsed || s->removed || !lb_server_usable(s) ||
        s->nidle >= s->pool->cfg.max_idle_backend) {
        backend_close(bc);
        return;
    }
    bc->in.len = 0;
    bc->parsed = 0;
    http1_next(&bc->parser);
    bc->state = BS_IDLE;
    bc->head_done = false;
    if (bc->read_paused) {
        bc->read_paused = false;
        uv_read_start((uv_stream_t *)&bc->tcp, on_alloc_backend, on_backend_read);
    }
    list_remove(&bc->link);
    list_append(&s->idle, &bc->link);
    s->nidle++;
}

/* The whole response went through: the client moves on to its next request. */
static void txn_done(struct http_client *c, bool backend_reusable)
{
    struct http_txn *t = &c->txn;
    struct backend_conn *bc = t->bc;
    struct lb_server *s = t->server;
    t->bc = NULL;
    t->server = NULL;
    c->txn_active = false;
    server_inflight(s, -1);
    if (bc)
        backend_release(bc, backend_reusable);
    lb_server_unref(s);
    c->state = CS_IDLE;
    if (c->close_after) {
        if (wq_pending(&c->out) == 0)
            client_close(c);
        return;
    }
    if (c->read_paused && !c->close_after) {
        c->read_paused = false;
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc_client, on_client_read);
    }
    deadline_set(&c->timer, c->pool->cfg.timeout_client_ms);
    client_process(c);
}

static void write_response_head(struct http_client *c, const struct http1_msg *m,
                                const char *base)
{
    struct buf *h = &c->scratch;
    h->len = 0;
    char code[4] = {(char)('0' + m->status / 100 % 10), (char)('0' + m->status / 10 % 10),
                    (char)('0' + m->status % 10), ' '};
    buf_append(h, "HTTP/1.1 ", 9);
    buf_append(h, code, 4);
    buf_append_str(h, http1_reason(m->status));
    buf_append(h, "\r\n", 2);
    for (unsigned i = 0; i < m->nheaders; i++) {
        struct slice n = http1_slice(base, m->headers[i].name);
        if (is_hop_header(n))
            continue;
        struct slice v = http1_slice(base, m->headers[i].value);
        buf_append(h, n.p, n.len);
        buf_append(h, ": ", 2);
        buf_append(h, v.p, v.len);
        buf_append(h, "\r\n", 2);
    }
    if (c->close_after)
        buf_append_str(h, "Connection: close\r\n\r\n");
    else if (c->http10)
        buf_append_str(h, "Connection: keep-alive\r\n\r\n");
    else
        buf_append(h, "\r\n", 2);
    wq_write(&c->out, h->p, h->len);
}

/* Feeds what the server sent; forwards head and body to the client. */
static void backend_process(struct backend_conn *bc)
{
    struct http_client *c = bc->client;
    while (bc->client == c && c && bc->parsed < bc->in.len) {
        size_t used;
        size_t start = bc->parsed;
        int ev = http1_feed(&bc->parser, bc->in.p, start, bc->in.len - start, &used);
        bc->parsed += used;
        if (ev < 0) {
            txn_failed(c, "malformed response", false, 502);
            return;
        }
        if (bc->head_done && !bc->interim && used > 0)
            wq_write(&c->out, bc->in.p + start, used);
        if (ev == HTTP1_HEAD_DONE) {
            const struct http1_msg *m = &bc->parser.msg;
            if (m->status >= 100 && m->status < 200) {
                bc->interim = true; /* 1xx: skipped, the final response follows */
                bc->head_done = true;
                continue;
            }
            bool no_body = c->txn.head_request || m->status == 204 || m->status == 304;
            if (!no_body && !m->chunked && !m->has_content_length)
                c->close_after = true; /* body ends when the server closes */
            if (!c->client_keepalive)
                c->close_after = true;
            c->txn.resp_started = true;
            bc->head_done = true;
            write_response_head(c, m, bc->in.p);
            continue;
        }
        if (ev == HTTP1_MSG_DONE) {
            if (!bc->head_done) {
                /* a response with no body whose head ended it at once (HEAD request) */
                const struct http1_msg *m = &bc->parser.msg;
                if (!c->client_keepalive)
                    c->close_after = true;
                c->txn.resp_started = true;
                write_response_head(c, m, bc->in.p);
            }
            if (bc->interim) {
                bc->interim = false;
                bc->head_done = false;
                http1_next(&bc->parser);
                bc->parser.skip_body = c->txn.head_request;
                continue;
            }
            bool reusable = bc->parser.msg.keep_alive && !bc->parser.msg.upgrade;
            txn_done(c, reusable);
            return;
        }
    }
    if (bc->client == NULL)
        return;
    /* all fed: drop consumed bytes (the head was already copied out) */
    if (bc->head_done && bc->parsed == bc->in.len) {
        bc->in.len = 0;
        bc->parsed = 0;
    }
    if (wq_pending(&c->out) > OUT_HIGH_WATER && !bc->read_paused) {
        bc->read_paused = true;
        uv_read_stop((uv_stream_t *)&bc->tcp);
    }
}

static void on_backend_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b)
{
    struct backend_conn *bc = st->data;
    (void)b;
    if (bc->state == BS_CLOSED)
        return;
    if (bc->state == BS_IDLE) {
        /* the server closed (or wrote garbage to) an idle connection: drop it */
        backend_close(bc);
        return;
    }
    struct http_client *c = bc->client;
    if (nread < 0) {
        if (nread == UV_EOF && bc->head_done) {
            if (http1_finish(&bc->parser) == HTTP1_MSG_DONE) {
                txn_done(c, false);
                return;
            }
        }
        const char *why = nread == UV_EOF ? "server closed the connection" : uv_strerror((int)nread);
        txn_failed(c, why, false, 502);
        return;
    }
    bc->in.len += (size_t)nread;
    bc->server->progress_ms = uv_now(bc->tcp.loop);
    deadline_set(&bc->timer, c->pool->cfg.timeout_server_ms);
    backend_process(bc);
}

static void on_backend_timeout(uv_timer_t *t)
{
    struct backend_conn *bc = t->data;
    struct http_client *c = bc->client;
    if (!deadline_expired(&bc->timer) || c == NULL)
        return;
    if (bc->state == BS_CONNECTING)
        txn_failed(c, "connect timeout", true, 503);
    else
        txn_failed(c, "server timeout", false, 504);
}

static void backend_send(struct backend_conn *bc)
{
    struct http_client *c = bc->client;
    bc->state = BS_BUSY;
    bc->head_done = false;
    bc->interim = false;
    bc->parser.skip_body = c->txn.head_request;
    deadline_set(&bc->timer, c->pool->cfg.timeout_server_ms);
    if (wq_write(&bc->out, c->txn.req.p, c->txn.req.len) != 0)
        txn_failed(c, "write to server failed", false, 502);
}

static void on_backend_drain(struct wq *q, int status)
{
    struct backend_conn *bc = q->data;
    if (status < 0 && bc->client)
        txn_failed(bc->client, "write to server failed", false, 502);
}

static void on_backend_connect(uv_connect_t *req, int status)
{
    struct backend_conn *bc = req->data;
    if (bc->state == BS_CLOSED)
        return;
    struct http_client *c = bc->client;
    if (status < 0) {
        char why[96];
        snprintf(why, sizeof(why), "connect: %s", uv_strerror(status));
        txn_failed(c, why, true, 503);
        return;
    }
    uv_tcp_nodelay(&bc->tcp, 1);
    int rc = uv_read_start((uv_stream_t *)&bc->tcp, on_alloc_backend, on_backend_read);
    if (rc < 0) {
        txn_failed(c, uv_strerror(rc), true, 503);
        return;
    }
    backend_send(bc);
}

static struct backend_conn *backend_new(struct lb_server *s, struct http_client *c)
{
    uv_loop_t *loop = s->pool->lb->loop;
    struct backend_conn *bc = xcalloc(1, sizeof(*bc));
    bc->server = s;
    lb_server_ref(s);
    bc->client = c;
    bc->state = BS_CONNECTING;
    list_init(&bc->link);
    list_append(&s->busy, &bc->link);
    buf_init(&bc->in);
    http1_init(&bc->parser, HTTP1_RESPONSE, NULL);
    uv_tcp_init(loop, &bc->tcp);
    deadline_init(loop, &bc->timer, on_backend_timeout, bc);
    bc->tcp.data = bc;
    bc->open_handles = 2;
    wq_init(&bc->out, (uv_stream_t *)&bc->tcp, on_backend_drain, bc);
    return bc;
}

/* Sends the client's buffered request to the next server the balancer picks. */
static void dispatch(struct http_client *c)
{
    struct lb_pool *p = c->pool;
    struct http_txn *t = &c->txn;
    int idx = balance_pick(&p->bal, p->views, p->nservers, t->tried);
    if (idx < 0) {
        (*p->m_no_server)++;
        c->txn_active = false;
        if (t->attempts == 0)
            client_respond_error(c, 503, "no server available\n", false);
        else
            client_respond_error(c, 502, "bad gateway: every server tried failed\n", false);
        return;
    }
    struct lb_server *s = p->servers[idx];
    t->tried |= UINT64_C(1) << idx;
    t->attempts++;
    t->server = s;
    lb_server_ref(s);
    server_inflight(s, +1);
    (*s->m_requests)++;
    c->state = CS_WAIT;
    if (!list_empty(&s->idle)) {
        struct list *e = s->idle.next;
        struct backend_conn *bc = container_of(e, struct backend_conn, link);
        list_remove(e);
        list_append(&s->busy, e);
        s->nidle--;
        bc->client = c;
        t->bc = bc;
        backend_send(bc);
        return;
    }
    struct backend_conn *bc = backend_new(s, c);
    t->bc = bc;
    deadline_set(&bc->timer, p->cfg.timeout_connect_ms);
    bc->connect_req.data = bc;
    int rc = uv_tcp_connect(&bc->connect_req, &bc->tcp, (const struct sockaddr *)&s->addr,
                            on_backend_connect);
    if (rc < 0) {
        char why[96];
        snprintf(why, sizeof(why), "connect: %s", uv_strerror(rc));
        txn_failed(c, why, true, 503);
    }
}

void lb_http_server_closing(struct lb_server *s, bool redispatch)
{
    while (!list_empty(&s->idle)) {
        struct backend_conn *bc = container_of(s->idle.next, struct backend_conn, link);
        backend_close(bc);
    }
    if (!redispatch)
        return;
    struct list *pos, *tmp;
    list_for_each_safe(pos, tmp, &s->busy)
    {
        struct backend_conn *bc = container_of(pos, struct backend_conn, link);
        struct http_client *c = bc->client;
        if (c && !c->txn.resp_started && c->txn.retryable)
            txn_failed_ex(c, "server went down", false, 502, false);
    }
}

/* ---- client side ---- */

static void on_client_handle_closed(uv_handle_t *h)
{
    struct http_client *c = h->data;
    if (--c->open_handles > 0)
        return;
    buf_free(&c->in);
    buf_free(&c->scratch);
    buf_free(&c->txn.req);
    wq_free(&c->out);
    free(c);
}

static void client_close(struct http_client *c)
{
    if (c->closing)
        return;
    c->closing = true;
    if (c->txn_active && c->txn.server) {
        struct lb_server *s = c->txn.server;
        if (c->txn.bc)
            backend_close(c->txn.bc);
        server_inflight(s, -1);
        lb_server_unref(s);
        c->txn.bc = NULL;
        c->txn.server = NULL;
    }
    c->txn_active = false;
    list_remove(&c->link);
    c->pool->nclients--;
    *c->pool->m_conns = c->pool->nclients;
    uv_close((uv_handle_t *)&c->timer.timer, on_client_handle_closed);
    uv_close((uv_handle_t *)&c->tcp, on_client_handle_closed);
}

static void client_respond_error(struct http_client *c, int status, const char *body, bool close)
{
    if (close)
        c->close_after = true;
    if (!c->client_keepalive)
        c->close_after = true;
    char head[256];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                     "Connection: %s\r\n\r\n",
                     status, http1_reason(status), strlen(body),
                     c->close_after ? "close" : "keep-alive");
    wq_write(&c->out, head, (size_t)n);
    wq_write(&c->out, body, strlen(body));
    c->state = CS_IDLE;
    if (c->close_after) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->read_paused = true;
        if (wq_pending(&c->out) == 0)
            client_close(c);
        return;
    }
    client_process(c);
}

static void on_client_drain(struct wq *q, int status)
{
    struct http_client *c = q->data;
    if (c->closing)
        return;
    if (status < 0) {
        client_close(c);
        return;
    }
    if (c->close_after && !c->txn_active) {
        client_close(c);
        return;
    }
    struct backend_conn *bc = c->txn_active ? c->txn.bc : NULL;
    if (bc && bc->read_paused) {
        bc->read_paused = false;
        uv_read_start((uv_stream_t *)&bc->tcp, on_alloc_backend, on_backend_read);
    }
}

static void on_client_timer(uv_timer_t *t)
{
    struct http_client *c = t->data;
    if (!deadline_expired(&c->timer) || c->closing)
        return;
    if (c->state == CS_REQUEST) {
        (*c->pool->m_bad_requests)++;
        log_info("proxy", "client too slow", "pool=%s client=%s", c->pool->name, c->ip);
        client_respond_error(c, 408, "request timeout\n", true);
        return;
    }
    if (c->state == CS_IDLE)
        client_close(c);
}

static void build_request(struct http_client *c, const struct http1_msg *m, const char *base)
{
    struct http_txn *t = &c->txn;
    struct buf *r = &t->req;
    r->len = 0;
    const char *method = http1_method_name(m->method);
    struct slice url = http1_slice(base, m->url);
    buf_append_str(r, method);
    buf_append(r, " ", 1);
    buf_append(r, url.p, url.len);
    buf_append_str(r, " HTTP/1.1\r\n");
    struct slice xff = {NULL, 0};
    bool has_host = false, has_idem = false;
    for (unsigned i = 0; i < m->nheaders; i++) {
        struct slice n = http1_slice(base, m->headers[i].name);
        struct slice v = http1_slice(base, m->headers[i].value);
        if (is_hop_header(n))
            continue;
        if (slice_eq_nocase(n, SLICE_LIT("x-forwarded-for"))) {
            xff = v;
            continue;
        }
        if (slice_eq_nocase(n, SLICE_LIT("expect")))
            continue; /* the body is read whole here; 100 Continue is answered below */
        if (slice_eq_nocase(n, SLICE_LIT("host")))
            has_host = true;
        if (slice_eq_nocase(n, SLICE_LIT("idempotency-key")) && v.len > 0)
            has_idem = true;
        buf_append(r, n.p, n.len);
        buf_append(r, ": ", 2);
        buf_append(r, v.p, v.len);
        buf_append(r, "\r\n", 2);
    }
    if (!has_host)
        buf_printf(r, "Host: %s\r\n", c->pool->servers[0]->addr_str);
    buf_append_str(r, "X-Forwarded-For: ");
    if (xff.len) {
        buf_append(r, xff.p, xff.len);
        buf_append(r, ", ", 2);
    }
    buf_append_str(r, c->ip);
    buf_append_str(r, "\r\n\r\n");
    t->method = m->method;
    t->retryable = http1_method_is_idempotent(m->method) || has_idem;
    t->head_request = m->method == HTTP_HEAD;
}

static int error_status(int rc)
{
    if (rc == TD_EHDR_TOO_BIG)
        return 431;
    return 400;
}

/* Parses buffered client bytes until a whole request is ready, then dispatches it. */
static void client_process(struct http_client *c)
{
    /* a request that fails synchronously (no server, immediate connect error) answers and
     * returns here; the loop below then takes the next pipelined request, so no recursion
     * grows with the number of requests a client pipelines */
    if (c->in_process)
        return;
    c->in_process = true;
    client_process_loop(c);
    c->in_process = false;
}

static void client_process_loop(struct http_client *c)
{
    struct lb_pool *p = c->pool;
    while (!c->txn_active && !c->closing && !c->close_after) {
        size_t used;
        size_t start = c->parsed;
        int ev = http1_feed(&c->parser, c->in.p, start, c->in.len - start, &used);
        c->parsed += used;
        if (ev < 0) {
            (*p->m_bad_requests)++;
            log_info("proxy", "bad request", "pool=%s client=%s err=%s", p->name, c->ip,
                     td_errname(ev));
            client_respond_error(c, error_status(ev),
                                 ev == TD_EHDR_TOO_BIG ? "request header too large\n"
                                                       : "bad request\n",
                                 true);
            return;
        }
        if (c->head_done && used > 0) {
            buf_append(&c->txn.req, c->in.p + start, used);
            if (c->txn.req.len - c->head_len > p->cfg.max_body_bytes) {
                (*p->m_bad_requests)++;
                client_respond_error(c, 413, "request body too large\n", true);
                return;
            }
        }
        if (ev == HTTP1_NEED_MORE) {
            if (c->head_done) {
                buf_consume(&c->in, c->parsed);
                c->parsed = 0;
            }
            if (c->in.len > 0 && c->state == CS_IDLE) {
                c->state = CS_REQUEST;
                deadline_set(&c->timer, p->cfg.timeout_request_ms);
            }
            return;
        }
        if (ev == HTTP1_HEAD_DONE) {
            const struct http1_msg *m = &c->parser.msg;
            if (m->method == HTTP_CONNECT || m->upgrade) {
                (*p->m_bad_requests)++;
                client_respond_error(c, 501, "CONNECT and protocol upgrades are not supported\n",
                                     true);
                return;
            }
            c->client_keepalive = m->keep_alive;
            c->http10 = m->version_major == 1 && m->version_minor == 0;
            build_request(c, m, c->in.p);
            c->head_len = c->txn.req.len;
            c->head_done = true;
            struct slice expect = http1_header_get(m, c->in.p, "expect");
            if (expect.len && (m->chunked || m->content_length > 0))
                wq_write(&c->out, "HTTP/1.1 100 Continue\r\n\r\n", 25);
            buf_consume(&c->in, c->parsed);
            c->parsed = 0;
            continue;
        }
        /* HTTP1_MSG_DONE */
        buf_consume(&c->in, c->parsed);
        c->parsed = 0;
        c->head_done = false;
        http1_next(&c->parser);
        (*p->m_requests)++;
        deadline_clear(&c->timer);
        c->txn_active = true;
        c->txn.tried = 0;
        c->txn.attempts = 0;
        c->txn.resp_started = false;
        dispatch(c);
    }
}

static void on_client_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b)
{
    struct http_client *c = st->data;
    (void)b;
    if (c->closing)
        return;
    if (nread < 0) {
        client_close(c);
        return;
    }
    c->in.len += (size_t)nread;
    /* bound what a client can make us hold: a head over the limit is refused by the parser;
     * pipelined requests beyond one are left unread in the kernel */
    if (c->txn_active && c->in.len > c->pool->cfg.max_head_bytes + READ_CHUNK) {
        uv_read_stop(st);
        c->read_paused = true;
    }
    client_process(c);
}

void lb_http_accept(struct lb_pool *p, uv_stream_t *listener)
{
    struct http_client *c = xcalloc(1, sizeof(*c));
    uv_loop_t *loop = p->lb->loop;
    uv_tcp_init(loop, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        c->open_handles = 1;
        c->closing = true;
        uv_close((uv_handle_t *)&c->tcp, on_client_handle_closed);
        return;
    }
    deadline_init(loop, &c->timer, on_client_timer, c);
    c->open_handles = 2;
    c->pool = p;
    list_append(&p->clients, &c->link);
    p->nclients++;
    *p->m_conns = p->nclients;
    buf_init(&c->in);
    buf_init(&c->scratch);
    buf_init(&c->txn.req);
    wq_init(&c->out, (uv_stream_t *)&c->tcp, on_client_drain, c);
    struct http1_limits lim = {(uint32_t)p->cfg.max_head_bytes, HTTP1_MAX_HEADERS};
    http1_init(&c->parser, HTTP1_REQUEST, &lim);
    c->client_keepalive = true;
    struct sockaddr_storage peer;
    int len = sizeof(peer);
    char a[64] = "unknown";
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&peer, &len) == 0)
        addr_format((struct sockaddr *)&peer, a, sizeof(a));
    /* X-Forwarded-For carries the address without the port */
    char *colon = strrchr(a, ':');
    if (colon && a[0] != '[')
        *colon = '\0';
    else if (a[0] == '[' && colon && colon > a && colon[-1] == ']') {
        colon[-1] = '\0';
        memmove(a, a + 1, strlen(a + 1) + 1);
    }
    snprintf(c->ip, sizeof(c->ip), "%s", a);
    if (p->nclients > p->cfg.max_conns) {
        (*p->m_rejected)++;
        log_warn("proxy", "connection refused: max-conns reached", "pool=%s max_conns=%llu",
                 p->name, (unsigned long long)p->cfg.max_conns);
        client_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    c->state = CS_IDLE;
    deadline_set(&c->timer, p->cfg.timeout_client_ms);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc_client, on_client_read);
}

void lb_http_close_clients(struct lb_pool *p)
{
    while (!list_empty(&p->clients)) {
        struct http_client *c = container_of(p->clients.next, struct http_client, link);
        client_close(c);
    }
}
