/* SPDX-License-Identifier: MIT */
/* lb/check.c -- active health checks, one connection per check:
 *   tcp        the connect succeeds
 *   http:PATH  GET PATH answers 2xx
 *   resp-role  ROLE answers with "master" as first element (a replica is alive but not usable)
 * Each result feeds the server's health state machine; a transition goes through
 * lb_server_changed. The next check is scheduled at inter, or fastinter while in doubt. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "base/clock.h"
#include "base/log.h"
#include "lb/lb.h"
#include "proto/http1.h"

struct lb_check {
    struct lb_server *server;
    uv_tcp_t tcp;
    uv_connect_t connect_req;
    uv_write_t write_req;
    uv_timer_t timer;
    struct buf in;
    char req[512];
    int open_handles;
    bool done;
    struct http1_parser http;
};

static void schedule_next(struct lb_server *s)
{
    struct lb_pool *p = s->pool;
    if (s->removed || p->closing || p->check_kind == LB_CHECK_NONE)
        return;
    lb_check_start(s, health_next_delay(&s->health, p->cfg.inter_ms, p->cfg.fastinter_ms));
}

static void on_check_handle_closed(uv_handle_t *h)
{
    struct lb_check *c = h->data;
    if (--c->open_handles > 0)
        return;
    struct lb_server *s = c->server;
    buf_free(&c->in);
    free(c);
    lb_server_unref(s);
}

static void finish(struct lb_check *c, bool ok, enum lb_role role, const char *reason)
{
    if (c->done)
        return;
    c->done = true;
    struct lb_server *s = c->server;
    s->check = NULL;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_check_handle_closed);
    uv_close((uv_handle_t *)&c->tcp, on_check_handle_closed);
    if (s->removed)
        return;
    enum health_change ch = health_on_check(&s->health, ok, clock_now_ms());
    bool role_changed = ok && s->pool->check_kind == LB_CHECK_RESP_ROLE && role != s->role;
    if (role_changed)
        s->role = role;
    if (ch != HEALTH_SAME || role_changed) {
        char why[160];
        if (ch == HEALTH_WENT_UP)
            snprintf(why, sizeof(why), "check: %s (%u in a row)", reason, s->health.ok_streak);
        else if (ch == HEALTH_WENT_DOWN)
            snprintf(why, sizeof(why), "check: %s (%u in a row)", reason, s->health.fail_streak);
        else
            snprintf(why, sizeof(why), "check: %s", reason);
        lb_server_changed(s, why);
    } else if (!ok) {
        log_info("health", "check failed", "pool=%s server=%s cause=\"%s\" fail_streak=%u",
                 s->pool->name, s->name, reason, s->health.fail_streak);
    }
    schedule_next(s);
}

static void on_timeout(uv_timer_t *t)
{
    struct lb_check *c = t->data;
    finish(c, false, LB_ROLE_UNKNOWN, "timeout");
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    struct lb_check *c = h->data;
    (void)suggested;
    buf_reserve(&c->in, 1024);
    *b = uv_buf_init(c->in.p + c->in.len, (unsigned)(c->in.cap - c->in.len));
}

/* Reads a RESP bulk string "$N\r\n<N bytes>\r\n" at *pos; returns 1 done, 0 need more, -1 bad. */
static int resp_bulk(const struct buf *in, size_t *pos, struct slice *out)
{
    size_t i = *pos;
    if (i >= in->len)
        return 0;
    if (in->p[i] != '$')
        return -1;
    size_t n = 0, j = i + 1;
    for (; j < in->len && in->p[j] >= '0' && in->p[j] <= '9' && n < 1000000; j++)
        n = n * 10 + (size_t)(in->p[j] - '0');
    if (j + 1 >= in->len)
        return 0;
    if (in->p[j] != '\r' || in->p[j + 1] != '\n')
        return -1;
    j += 2;
    if (j + n + 2 > in->len)
        return 0;
    *out = slice_of(in->p + j, n);
    *pos = j + n + 2;
    return 1;
}

static void check_resp(struct lb_check *c)
{
    const struct buf *in = &c->in;
    if (in->len == 0)
        return;
    if (in->p[0] == '-') {
        finish(c, false, LB_ROLE_UNKNOWN, "ROLE answered an error");
        return;
    }
    if (in->p[0] != '*') {
        finish(c, false, LB_ROLE_UNKNOWN, "ROLE answered a non-array");
        return;
    }
    size_t pos = 1;
    while (pos < in->len && in->p[pos] != '\n')
        pos++;
    if (pos >= in->len)
        return;
    pos++;
    struct slice role;
    int rc = resp_bulk(in, &pos, &role);
    if (rc == 0)
        return;
    if (rc < 0) {
        finish(c, false, LB_ROLE_UNKNOWN, "malformed ROLE reply");
        return;
    }
    if (slice_eq(role, SLICE_LIT("master")))
        finish(c, true, LB_ROLE_PRIMARY, "ROLE master");
    else
        finish(c, true, LB_ROLE_REPLICA, "ROLE not master");
}

static void check_http(struct lb_check *c)
{
    size_t used;
    int ev = http1_feed(&c->http, c->in.p, 0, c->in.len, &used);
    if (ev < 0) {
        finish(c, false, LB_ROLE_UNKNOWN, "malformed HTTP response");
        return;
    }
    if (ev == HTTP1_NEED_MORE)
        return;
    int status = c->http.msg.status;
    char why[64];
    snprintf(why, sizeof(why), "HTTP %d", status);
    finish(c, status >= 200 && status < 300, LB_ROLE_UNKNOWN, why);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b)
{
    struct lb_check *c = st->data;
    (void)b;
    if (c->done)
        return;
    if (nread < 0) {
        finish(c, false, LB_ROLE_UNKNOWN,
               nread == UV_EOF ? "connection closed before a reply" : uv_strerror((int)nread));
        return;
    }
    c->in.len += (size_t)nread;
    if (c->in.len > 16384) {
        finish(c, false, LB_ROLE_UNKNOWN, "reply too large");
        return;
    }
    if (c->server->pool->check_kind == LB_CHECK_HTTP) {
        /* re-parse from the start: the reply is small and the parser restarts cheaply */
        http1_init(&c->http, HTTP1_RESPONSE, NULL);
        check_http(c);
    } else {
        check_resp(c);
    }
}

static void on_written(uv_write_t *w, int status)
{
    struct lb_check *c = w->data;
    if (status < 0 && !c->done)
        finish(c, false, LB_ROLE_UNKNOWN, uv_strerror(status));
}

static void on_connect(uv_connect_t *req, int status)
{
    struct lb_check *c = req->data;
    if (c->done)
        return;
    if (status < 0) {
        char why[96];
        snprintf(why, sizeof(why), "connect: %s", uv_strerror(status));
        finish(c, false, LB_ROLE_UNKNOWN, why);
        return;
    }
    struct lb_pool *p = c->server->pool;
    if (p->check_kind == LB_CHECK_TCP) {
        finish(c, true, LB_ROLE_UNKNOWN, "connect ok");
        return;
    }
    int n;
    if (p->check_kind == LB_CHECK_HTTP)
        n = snprintf(c->req, sizeof(c->req),
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: tandem-check\r\n"
                     "Connection: close\r\n\r\n",
                     p->check_path, c->server->addr_str);
    else
        n = snprintf(c->req, sizeof(c->req), "*1\r\n$4\r\nROLE\r\n");
    if (n < 0 || (size_t)n >= sizeof(c->req)) {
        finish(c, false, LB_ROLE_UNKNOWN, "check request too long");
        return;
    }
    uv_buf_t b = uv_buf_init(c->req, (unsigned)n);
    c->write_req.data = c;
    int rc = uv_write(&c->write_req, (uv_stream_t *)&c->tcp, &b, 1, on_written);
    if (rc == 0)
        rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (rc < 0)
        finish(c, false, LB_ROLE_UNKNOWN, uv_strerror(rc));
}

static void on_check_timer(uv_timer_t *t)
{
    struct lb_server *s = t->data;
    struct lb_pool *p = s->pool;
    if (s->check || s->removed || p->closing || p->check_kind == LB_CHECK_NONE)
        return;
    uv_loop_t *loop = p->lb->loop;
    struct lb_check *c = xcalloc(1, sizeof(*c));
    c->server = s;
    lb_server_ref(s);
    buf_init(&c->in);
    uv_tcp_init(loop, &c->tcp);
    uv_timer_init(loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->open_handles = 2;
    s->check = c;
    uint64_t timeout = p->cfg.timeout_check_ms ? p->cfg.timeout_check_ms : p->cfg.inter_ms;
    uv_timer_start(&c->timer, on_timeout, timeout, 0);
    c->connect_req.data = c;
    int rc = uv_tcp_connect(&c->connect_req, &c->tcp, (const struct sockaddr *)&s->addr,
                            on_connect);
    if (rc < 0) {
        char why[96];
        snprintf(why, sizeof(why), "connect: %s", uv_strerror(rc));
        finish(c, false, LB_ROLE_UNKNOWN, why);
    }
}

void lb_check_start(struct lb_server *s, uint64_t delay_ms)
{
    if (s->removed || s->pool->check_kind == LB_CHECK_NONE)
        return;
    if (s->check)
        return; /* the check in flight reschedules itself */
    uv_timer_start(&s->check_timer, on_check_timer, delay_ms, 0);
}

void lb_check_stop(struct lb_server *s)
{
    uv_timer_stop(&s->check_timer);
    if (s->check) {
        struct lb_check *c = s->check;
        /* ends without touching health: the server is going away */
        c->done = true;
        s->check = NULL;
        uv_timer_stop(&c->timer);
        uv_close((uv_handle_t *)&c->timer, on_check_handle_closed);
        uv_close((uv_handle_t *)&c->tcp, on_check_handle_closed);
    }
}
