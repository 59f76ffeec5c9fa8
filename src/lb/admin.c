/* SPDX-License-Identifier: MIT */
/* lb/admin.c -- the admin endpoint (loopback by default), one request per connection:
 *   GET  /metrics                              Prometheus text
 *   GET  /status                               JSON: pools, servers, states and why
 *   POST /servers/POOL/SERVER/drain|enable|disable
 *   POST /pools/POOL/failback                  active-passive: back to the preferred server */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/parse.h"
#include "lb/lb.h"
#include "net/wq.h"
#include "proto/http1.h"

struct lb_admin_srv {
    struct lb *lb;
    uv_tcp_t listener;
    struct list conns;
};

struct admin_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    struct lb_admin_srv *srv;
    struct list link;
    struct buf in;
    struct http1_parser parser;
    struct wq out;
    bool closing;
    bool answered;
    int open_handles;
};

static void conn_closed(uv_handle_t *h)
{
    struct admin_conn *a = h->data;
    if (--a->open_handles > 0)
        return;
    buf_free(&a->in);
    wq_free(&a->out);
    free(a);
}

static void conn_close(struct admin_conn *a)
{
    if (a->closing)
        return;
    a->closing = true;
    list_remove(&a->link);
    uv_close((uv_handle_t *)&a->timer, conn_closed);
    uv_close((uv_handle_t *)&a->tcp, conn_closed);
}

static void on_drain(struct wq *q, int status)
{
    (void)status;
    conn_close(q->data);
}

static void respond(struct admin_conn *a, int status, const char *ctype, const char *body,
                    size_t len)
{
    char head[256];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n",
                     status, http1_reason(status), ctype, len);
    a->answered = true;
    uv_read_stop((uv_stream_t *)&a->tcp);
    wq_write(&a->out, head, (size_t)n);
    wq_write(&a->out, body, len);
    if (wq_pending(&a->out) == 0)
        conn_close(a);
}

static void respond_json_msg(struct admin_conn *a, int status, const char *key, const char *msg)
{
    char body[512];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, key, msg);
    if (!cJSON_PrintPreallocated(o, body, sizeof(body) - 1, 0))
        snprintf(body, sizeof(body), "{}");
    cJSON_Delete(o);
    size_t n = strlen(body);
    body[n++] = '\n';
    respond(a, status, "application/json", body, n);
}

static cJSON *server_json(const struct lb_server *s, uint64_t now)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", s->name);
    cJSON_AddStringToObject(o, "addr", s->addr_str);
    cJSON_AddNumberToObject(o, "priority", s->index);
    cJSON_AddStringToObject(o, "state", health_state_name(s->health.state));
    cJSON_AddStringToObject(o, "admin", lb_admin_name(s->admin));
    cJSON_AddStringToObject(o, "role", lb_role_name(s->role));
    cJSON_AddBoolToObject(o, "usable", lb_server_usable(s));
    cJSON_AddBoolToObject(o, "active", *s->m_active != 0);
    cJSON_AddNumberToObject(o, "requests", (double)*s->m_requests);
    cJSON_AddNumberToObject(o, "failures", (double)*s->m_failures);
    cJSON_AddNumberToObject(o, "retries", (double)*s->m_retries);
    cJSON_AddNumberToObject(o, "inflight", s->inflight);
    cJSON_AddNumberToObject(o, "last_change_ms_ago", (double)(now - s->last_change_ms));
    cJSON_AddStringToObject(o, "last_change_reason", s->last_reason);
    return o;
}

void lb_status_json(struct lb *lb, struct buf *out)
{
    uint64_t now = clock_now_ms();
    cJSON *root = cJSON_CreateObject();
    cJSON *pools = cJSON_AddArrayToObject(root, "pools");
    for (size_t i = 0; i < lb->npools; i++) {
        const struct lb_pool *p = lb->pools[i];
        if (p->closing)
            continue;
        cJSON *po = cJSON_CreateObject();
        char addr[64];
        addr_format((const struct sockaddr *)&p->cfg.listen, addr, sizeof(addr));
        cJSON_AddStringToObject(po, "name", p->name);
        cJSON_AddStringToObject(po, "listen", addr);
        cJSON_AddStringToObject(po, "protocol", p->cfg.protocol == LB_PROTO_HTTP ? "http" : "tcp");
        cJSON_AddStringToObject(po, "mode", p->cfg.mode == BALANCE_ACTIVE_PASSIVE
                                                ? "active-passive"
                                                : "active-active");
        cJSON_AddStringToObject(po, "failback",
                                p->cfg.failback == BALANCE_FAILBACK_AUTO ? "auto" : "manual");
        cJSON_AddStringToObject(po, "check", p->cfg.check ? p->cfg.check : "tcp");
        if (p->cfg.mode == BALANCE_ACTIVE_PASSIVE && p->bal.active >= 0)
            cJSON_AddStringToObject(po, "active", p->servers[p->bal.active]->name);
        else if (p->cfg.mode == BALANCE_ACTIVE_PASSIVE)
            cJSON_AddNullToObject(po, "active");
        cJSON_AddNumberToObject(po, "requests", (double)*p->m_requests);
        cJSON_AddNumberToObject(po, "client_connections", p->nclients);
        cJSON *servers = cJSON_AddArrayToObject(po, "servers");
        for (size_t k = 0; k < p->nservers; k++)
            cJSON_AddItemToArray(servers, server_json(p->servers[k], now));
        cJSON_AddItemToArray(pools, po);
    }
    char *s = cJSON_PrintUnformatted(root);
    buf_append_str(out, s);
    buf_append(out, "\n", 1);
    free(s);
    cJSON_Delete(root);
}

/* Splits path "/a/b/c" into at most max segments (copied, NUL-terminated). */
static int split_path(struct slice path, char seg[][80], int max)
{
    int n = 0;
    size_t i = 0;
    while (i < path.len && n < max) {
        while (i < path.len && path.p[i] == '/')
            i++;
        size_t j = i;
        while (j < path.len && path.p[j] != '/' && path.p[j] != '?')
            j++;
        if (j == i)
            break;
        if (j - i >= 80)
            return -1;
        memcpy(seg[n], path.p + i, j - i);
        seg[n][j - i] = '\0';
        n++;
        if (j < path.len && path.p[j] == '?')
            break;
        i = j;
    }
    return n;
}

static void handle(struct admin_conn *a, const struct http1_msg *m, const char *base)
{
    struct lb *lb = a->srv->lb;
    struct slice url = http1_slice(base, m->url);
    char seg[5][80];
    int n = split_path(url, seg, 5);
    if (n < 0) {
        respond_json_msg(a, 400, "error", "path too long");
        return;
    }
    bool get = m->method == HTTP_GET, post = m->method == HTTP_POST;
    if (n == 1 && strcmp(seg[0], "metrics") == 0 && get) {
        struct buf out;
        buf_init(&out);
        metrics_render(lb->metrics, &out);
        respond(a, 200, "text/plain; version=0.0.4", out.p, out.len);
        buf_free(&out);
        return;
    }
    if (n == 1 && strcmp(seg[0], "status") == 0 && get) {
        struct buf out;
        buf_init(&out);
        lb_status_json(lb, &out);
        respond(a, 200, "application/json", out.p, out.len);
        buf_free(&out);
        return;
    }
    if (n == 4 && strcmp(seg[0], "servers") == 0) {
        if (!post) {
            respond_json_msg(a, 405, "error", "use POST");
            return;
        }
        enum lb_admin st;
        if (strcmp(seg[3], "drain") == 0)
            st = LB_ADMIN_DRAIN;
        else if (strcmp(seg[3], "enable") == 0)
            st = LB_ADMIN_ENABLED;
        else if (strcmp(seg[3], "disable") == 0)
            st = LB_ADMIN_DISABLED;
        else {
            respond_json_msg(a, 404, "error", "action must be drain, enable or disable");
            return;
        }
        if (lb_admin_set(lb, seg[1], seg[2], st) != 0) {
            respond_json_msg(a, 404, "error", "no such pool/server");
            return;
        }
        respond_json_msg(a, 200, "ok", lb_admin_name(st));
        return;
    }
    if (n == 3 && strcmp(seg[0], "pools") == 0 && strcmp(seg[2], "failback") == 0) {
        if (!post) {
            respond_json_msg(a, 405, "error", "use POST");
            return;
        }
        int rc = lb_pool_failback(lb, seg[1]);
        if (rc == -ENOENT)
            respond_json_msg(a, 404, "error", "no such pool");
        else if (rc != 0)
            respond_json_msg(a, 409, "error", "pool is not active-passive");
        else
            respond_json_msg(a, 200, "ok", "failback");
        return;
    }
    if (n == 0 && get) {
        static const char idx[] = "tandem lb admin\n"
                                  "GET  /metrics\nGET  /status\n"
                                  "POST /servers/POOL/SERVER/drain|enable|disable\n"
                                  "POST /pools/POOL/failback\n";
        respond(a, 200, "text/plain", idx, sizeof(idx) - 1);
        return;
    }
    respond_json_msg(a, 404, "error", "not found");
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    struct admin_conn *a = h->data;
    (void)suggested;
    buf_reserve(&a->in, 4096);
    *b = uv_buf_init(a->in.p + a->in.len, (unsigned)(a->in.cap - a->in.len));
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b)
{
    struct admin_conn *a = st->data;
    (void)b;
    if (a->closing || a->answered)
        return;
    if (nread < 0) {
        conn_close(a);
        return;
    }
    size_t start = a->in.len;
    a->in.len += (size_t)nread;
    size_t used;
    int ev = http1_feed(&a->parser, a->in.p, start, a->in.len - start, &used);
    if (ev < 0) {
        respond_json_msg(a, ev == TD_EHDR_TOO_BIG ? 431 : 400, "error", td_strerror(ev));
        return;
    }
    if (ev == HTTP1_HEAD_DONE || ev == HTTP1_MSG_DONE)
        handle(a, &a->parser.msg, a->in.p);
}

static void on_timeout(uv_timer_t *t)
{
    conn_close(t->data);
}

static void on_accept(uv_stream_t *listener, int status)
{
    struct lb_admin_srv *srv = listener->data;
    if (status < 0)
        return;
    struct admin_conn *a = xcalloc(1, sizeof(*a));
    uv_tcp_init(srv->lb->loop, &a->tcp);
    uv_timer_init(srv->lb->loop, &a->timer);
    a->tcp.data = a;
    a->timer.data = a;
    a->open_handles = 2;
    a->srv = srv;
    list_append(&srv->conns, &a->link);
    buf_init(&a->in);
    wq_init(&a->out, (uv_stream_t *)&a->tcp, on_drain, a);
    struct http1_limits lim = {8192, 32};
    http1_init(&a->parser, HTTP1_REQUEST, &lim);
    if (uv_accept(listener, (uv_stream_t *)&a->tcp) != 0) {
        conn_close(a);
        return;
    }
    uv_timer_start(&a->timer, on_timeout, 10000, 0);
    uv_read_start((uv_stream_t *)&a->tcp, on_alloc, on_read);
}

static void on_listener_closed(uv_handle_t *h)
{
    free(h->data);
}

int lb_admin_start(struct lb *lb, const struct sockaddr *addr, char *err, size_t errlen)
{
    struct lb_admin_srv *srv = xcalloc(1, sizeof(*srv));
    srv->lb = lb;
    list_init(&srv->conns);
    uv_tcp_init(lb->loop, &srv->listener);
    srv->listener.data = srv;
    lb->admin = srv;
    int rc = uv_tcp_bind(&srv->listener, addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&srv->listener, 64, on_accept);
    char a[64];
    addr_format(addr, a, sizeof(a));
    if (rc < 0) {
        snprintf(err, errlen, "admin: cannot listen on %s: %s", a, uv_strerror(rc));
        return rc;
    }
    log_notice("admin", "admin endpoint listening", "addr=%s", a);
    return 0;
}

void lb_admin_stop(struct lb *lb)
{
    struct lb_admin_srv *srv = lb->admin;
    if (srv == NULL)
        return;
    lb->admin = NULL;
    while (!list_empty(&srv->conns))
        conn_close(container_of(srv->conns.next, struct admin_conn, link));
    uv_close((uv_handle_t *)&srv->listener, on_listener_closed);
}
