/* SPDX-License-Identifier: MIT */
/* lb/proxy_tcp.c -- the TCP proxy (used for the store): each client connection is tied to one
 * server picked at connect time, and bytes are relayed both ways with backpressure.
 *
 * A connect failure marks the server down at once and the next server is tried, so a client
 * never notices a dead server it was about to be given. When a server stops being usable
 * (down, disabled, or no longer primary for a resp-role pool), every session tied to it is
 * closed: clients reconnect and land on the server that now holds the role. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/log.h"
#include "lb/lb.h"
#include "net/wq.h"

#define TCP_CHUNK 65536
#define TCP_HIGH_WATER (1u << 20)

struct tcp_side {
    uv_tcp_t tcp;
    struct buf in;
    struct wq out;         /* toward this side */
    bool eof;
    bool paused;
};

struct tcp_session {
    struct tcp_side client;
    struct tcp_side server;
    uv_connect_t connect_req;
    uv_timer_t timer;
    struct lb_pool *pool;
    struct lb_server *srv;
    struct list link;      /* pool->clients */
    struct list slink;     /* srv->tcp_sessions */
    uint64_t tried;
    unsigned attempts;
    bool connected;
    bool server_open;      /* server handle initialised */
    bool closing;
    int open_handles;
};

static void session_close(struct tcp_session *t);
static void try_connect(struct tcp_session *t);

static void on_handle_closed(uv_handle_t *h)
{
    struct tcp_session *t = h->data;
    if (--t->open_handles > 0)
        return;
    buf_free(&t->client.in);
    buf_free(&t->server.in);
    wq_free(&t->client.out);
    wq_free(&t->server.out);
    free(t);
}

static void detach_server(struct tcp_session *t)
{
    if (t->srv == NULL)
        return;
    struct lb_server *s = t->srv;
    list_remove(&t->slink);
    s->inflight--;
    *s->m_inflight = s->inflight;
    if (!s->removed && s->index < s->pool->nservers && s->pool->servers[s->index] == s)
        s->pool->views[s->index].load = s->inflight;
    t->srv = NULL;
    lb_server_unref(s);
}

static void session_close(struct tcp_session *t)
{
    if (t->closing)
        return;
    t->closing = true;
    detach_server(t);
    list_remove(&t->link);
    t->pool->nclients--;
    *t->pool->m_conns = t->pool->nclients;
    uv_close((uv_handle_t *)&t->timer, on_handle_closed);
    uv_close((uv_handle_t *)&t->client.tcp, on_handle_closed);
    if (t->server_open)
        uv_close((uv_handle_t *)&t->server.tcp, on_handle_closed);
}

static struct tcp_session *session_of(uv_handle_t *h)
{
    return h->data;
}

static struct tcp_side *side_of(struct tcp_session *t, uv_handle_t *h)
{
    return h == (uv_handle_t *)&t->client.tcp ? &t->client : &t->server;
}

static struct tcp_side *other_side(struct tcp_session *t, struct tcp_side *s)
{
    return s == &t->client ? &t->server : &t->client;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    struct tcp_session *t = session_of(h);
    struct tcp_side *s = side_of(t, h);
    (void)suggested;
    buf_reserve(&s->in, TCP_CHUNK);
    *b = uv_buf_init(s->in.p + s->in.len, (unsigned)(s->in.cap - s->in.len));
}

static void connect_failed(struct tcp_session *t, const char *why);

static void on_idle_timeout(uv_timer_t *tm)
{
    struct tcp_session *t = tm->data;
    if (!t->connected && t->server_open) {
        connect_failed(t, "connect timeout");
        return;
    }
    log_debug("tcp", "idle session closed", "pool=%s", t->pool->name);
    session_close(t);
}

static void touch(struct tcp_session *t)
{
    uv_timer_start(&t->timer, on_idle_timeout, t->pool->cfg.timeout_client_ms, 0);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b);

static void on_drain(struct wq *q, int status)
{
    struct tcp_session *t = q->data;
    if (t->closing)
        return;
    if (status < 0) {
        session_close(t);
        return;
    }
    /* q drains toward one side: the other side may read again, or the session may end */
    struct tcp_side *dst = q == &t->client.out ? &t->client : &t->server;
    struct tcp_side *src = other_side(t, dst);
    if (src->eof) {
        session_close(t);
        return;
    }
    if (src->paused && (src == &t->client ? t->connected : true)) {
        src->paused = false;
        uv_read_start((uv_stream_t *)&src->tcp, on_alloc, on_read);
    }
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b)
{
    struct tcp_session *t = session_of((uv_handle_t *)st);
    struct tcp_side *src = side_of(t, (uv_handle_t *)st);
    struct tcp_side *dst = other_side(t, src);
    (void)b;
    if (t->closing)
        return;
    if (nread < 0) {
        if (src == &t->server && nread != UV_EOF && t->srv)
            lb_server_passive_failure(t->srv, uv_strerror((int)nread));
        src->eof = true;
        uv_read_stop(st);
        if (!t->connected || wq_pending(&dst->out) == 0)
            session_close(t);
        return;
    }
    touch(t);
    src->in.len += (size_t)nread;
    if (!t->connected) {
        /* client bytes before the server is connected wait in src->in */
        if (src->in.len > TCP_HIGH_WATER) {
            src->paused = true;
            uv_read_stop(st);
        }
        return;
    }
    wq_write(&dst->out, src->in.p, src->in.len);
    src->in.len = 0;
    if (wq_pending(&dst->out) > TCP_HIGH_WATER) {
        src->paused = true;
        uv_read_stop(st);
    }
}

static void on_failed_server_closed(uv_handle_t *h)
{
    struct tcp_session *t = h->data;
    if (!t->closing) {
        t->open_handles--;
        try_connect(t);
        return;
    }
    on_handle_closed(h);
}

/* The server of t could not be reached: mark it down, close the handle, try the next one. */
static void connect_failed(struct tcp_session *t, const char *why)
{
    struct lb_server *s = t->srv;
    lb_server_ref(s);
    detach_server(t);
    lb_server_passive_failure(s, why);
    lb_server_unref(s);
    t->server_open = false;
    uv_close((uv_handle_t *)&t->server.tcp, on_failed_server_closed);
}

static void on_connect(uv_connect_t *req, int status)
{
    struct tcp_session *t = req->data;
    if (status == UV_ECANCELED || t->closing || !t->server_open)
        return;
    if (status < 0) {
        char why[96];
        snprintf(why, sizeof(why), "connect: %s", uv_strerror(status));
        connect_failed(t, why);
        return;
    }
    t->connected = true;
    uv_tcp_nodelay(&t->server.tcp, 1);
    touch(t);
    if (t->client.in.len) {
        wq_write(&t->server.out, t->client.in.p, t->client.in.len);
        t->client.in.len = 0;
    }
    if (t->client.eof && wq_pending(&t->server.out) == 0) {
        session_close(t);
        return;
    }
    uv_read_start((uv_stream_t *)&t->server.tcp, on_alloc, on_read);
    if (!t->client.eof && !t->client.paused)
        uv_read_start((uv_stream_t *)&t->client.tcp, on_alloc, on_read);
    else if (t->client.paused) {
        t->client.paused = false;
        uv_read_start((uv_stream_t *)&t->client.tcp, on_alloc, on_read);
    }
}

static void try_connect(struct tcp_session *t)
{
    struct lb_pool *p = t->pool;
    int idx = balance_pick(&p->bal, p->views, p->nservers, t->tried);
    if (idx < 0 || t->attempts > p->cfg.retries) {
        (*p->m_no_server)++;
        log_info("tcp", "no server for connection", "pool=%s attempts=%u", p->name, t->attempts);
        session_close(t);
        return;
    }
    struct lb_server *s = p->servers[idx];
    t->tried |= UINT64_C(1) << idx;
    t->attempts++;
    t->srv = s;
    lb_server_ref(s);
    list_append(&s->tcp_sessions, &t->slink);
    s->inflight++;
    *s->m_inflight = s->inflight;
    p->views[idx].load = s->inflight;
    (*s->m_requests)++;
    uv_tcp_init(p->lb->loop, &t->server.tcp);
    t->server.tcp.data = t;
    t->server_open = true;
    t->open_handles++;
    wq_init(&t->server.out, (uv_stream_t *)&t->server.tcp, on_drain, t);
    t->connect_req.data = t;
    uv_timer_start(&t->timer, on_idle_timeout, p->cfg.timeout_connect_ms, 0);
    int rc = uv_tcp_connect(&t->connect_req, &t->server.tcp, (const struct sockaddr *)&s->addr,
                            on_connect);
    if (rc < 0)
        session_close(t);
}

void lb_tcp_accept(struct lb_pool *p, uv_stream_t *listener)
{
    struct tcp_session *t = xcalloc(1, sizeof(*t));
    uv_loop_t *loop = p->lb->loop;
    uv_tcp_init(loop, &t->client.tcp);
    t->client.tcp.data = t;
    if (uv_accept(listener, (uv_stream_t *)&t->client.tcp) != 0) {
        t->open_handles = 1;
        uv_close((uv_handle_t *)&t->client.tcp, on_handle_closed);
        return;
    }
    uv_timer_init(loop, &t->timer);
    t->timer.data = t;
    t->open_handles = 2;
    t->pool = p;
    list_init(&t->slink);
    list_append(&p->clients, &t->link);
    p->nclients++;
    *p->m_conns = p->nclients;
    (*p->m_requests)++;
    buf_init(&t->client.in);
    buf_init(&t->server.in);
    wq_init(&t->client.out, (uv_stream_t *)&t->client.tcp, on_drain, t);
    wq_init(&t->server.out, NULL, on_drain, t);
    if (p->nclients > p->cfg.max_conns) {
        (*p->m_rejected)++;
        session_close(t);
        return;
    }
    uv_tcp_nodelay(&t->client.tcp, 1);
    uv_read_start((uv_stream_t *)&t->client.tcp, on_alloc, on_read);
    try_connect(t);
}

void lb_tcp_close_server_sessions(struct lb_server *s, const char *why)
{
    unsigned n = 0;
    while (!list_empty(&s->tcp_sessions)) {
        struct tcp_session *t = container_of(s->tcp_sessions.next, struct tcp_session, slink);
        session_close(t);
        n++;
    }
    if (n)
        log_notice("tcp", "closed client connections of server", "pool=%s server=%s count=%u cause=\"%s\"",
                   s->pool->name, s->name, n, why);
}

void lb_tcp_close_clients(struct lb_pool *p)
{
    while (!list_empty(&p->clients)) {
        struct tcp_session *t = container_of(p->clients.next, struct tcp_session, link);
        session_close(t);
    }
}
