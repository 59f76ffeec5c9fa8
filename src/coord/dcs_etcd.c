/* SPDX-License-Identifier: MIT */
/* coord/dcs_etcd.c -- the etcd backend's I/O shell: libcurl's multi interface on the libuv loop.
 *
 * curl tells us which sockets to watch (CURLMOPT_SOCKETFUNCTION: one uv_poll_t per socket) and
 * when to wake it (CURLMOPT_TIMERFUNCTION: one uv_timer_t); readiness and timeouts go back in
 * through curl_multi_socket_action(), and finished transfers are collected from
 * curl_multi_info_read() there. So every result is delivered from a loop callback, never from
 * inside submit (dcs.h point 5). The multi handle keeps connections alive between requests.
 *
 * Endpoints: every request goes to endpoints[cur]. A refused connection (the request never left)
 * is retried on the next endpoint while the request's time lasts; any other transport failure or
 * timeout is DCS_EUNAVAIL (outcome unknown) and moves cur on for later requests. The optional
 * watch is one long POST /v3/watch whose newline-delimited JSON messages become on_changed
 * calls; when the stream ends it is re-established after a short backoff, and on_changed fires
 * when the new stream is live (changes in between may have been missed: the agent reads again).
 *
 * close(): every transfer is removed without a callback, the multi handle is cleaned up, every
 * uv handle is closed; done runs when the last close callback has. */
#include "coord/dcs_etcd.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "base/err.h"
#include "base/list.h"
#include "base/log.h"
#include "coord/etcd_json.h"

#define ETCD_MAX_ENDPOINTS 16
#define WATCH_BACKOFF_MIN_MS 100
#define WATCH_BACKOFF_MAX_MS 2000

struct etcd;

/* One HTTP transfer: a dcs request, or the watch stream (watch true). */
struct etcd_xfer {
    struct list node; /* in etcd.xfers */
    struct etcd *e;
    CURL *easy;
    struct curl_slist *headers;
    uint64_t id;
    enum dcs_op op;
    const char *path;
    struct buf body;
    struct buf resp;
    size_t endpoint;      /* index the current attempt went to */
    unsigned attempts;    /* endpoints tried (refused connections) */
    uint64_t deadline_ms; /* uv_now() + timeout at submit */
    bool watch;
    char curl_err[CURL_ERROR_SIZE];
};

/* One socket curl asked us to watch. */
struct etcd_sock {
    uv_poll_t poll;
    struct list node; /* in etcd.socks */
    struct etcd *e;
    curl_socket_t fd;
};

struct etcd {
    struct dcs base; /* first: struct dcs * is a struct etcd * */
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;                    /* curl's timeout */
    uv_timer_t watch_timer;              /* watch re-establishment */
    char *endpoints[ETCD_MAX_ENDPOINTS]; /* "http://host:port" */
    size_t nendpoints;
    size_t cur;
    uint64_t timeout_ms;
    struct list xfers;
    struct list socks;
    /* watch */
    struct buf watch_prefix;
    bool watching;
    struct etcd_xfer *watch_xfer;
    struct buf watch_acc;
    uint64_t watch_backoff_ms;
    bool changed; /* on_changed is due once curl has returned */
    /* close */
    bool closing;
    unsigned open_handles;
    dcs_close_cb done;
};

static void watch_start(struct etcd *e);

static void handle_closed(uv_handle_t *h)
{
    struct etcd *e = h->data;
    if (h->type == UV_POLL)
        free(container_of((uv_poll_t *)h, struct etcd_sock, poll));
    TD_ASSERT(e->open_handles > 0);
    if (--e->open_handles == 0 && e->closing) {
        curl_global_cleanup();
        for (size_t i = 0; i < e->nendpoints; i++)
            free(e->endpoints[i]);
        buf_free(&e->watch_prefix);
        buf_free(&e->watch_acc);
        if (e->done)
            e->done(&e->base);
    }
}

static void xfer_free(struct etcd_xfer *x)
{
    list_remove(&x->node);
    if (x->easy) {
        curl_multi_remove_handle(x->e->multi, x->easy);
        curl_easy_cleanup(x->easy);
    }
    curl_slist_free_all(x->headers);
    buf_free(&x->body);
    buf_free(&x->resp);
    if (x->e->watch_xfer == x)
        x->e->watch_xfer = NULL;
    free(x);
}

static size_t on_data(char *p, size_t size, size_t n, void *ud);

/* Points x at endpoint x->endpoint with what is left of its time and adds it to the multi
 * handle. Returns 0 or a negative errno. */
static int xfer_send(struct etcd_xfer *x)
{
    struct etcd *e = x->e;
    char url[512];
    snprintf(url, sizeof(url), "%s%s", e->endpoints[x->endpoint], x->path);
    x->resp.len = 0;
    curl_easy_setopt(x->easy, CURLOPT_URL, url);
    if (!x->watch) {
        uint64_t now = uv_now(e->loop);
        long left = x->deadline_ms > now ? (long)(x->deadline_ms - now) : 1;
        curl_easy_setopt(x->easy, CURLOPT_TIMEOUT_MS, left);
        curl_easy_setopt(x->easy, CURLOPT_CONNECTTIMEOUT_MS, left);
    } else {
        curl_easy_setopt(x->easy, CURLOPT_CONNECTTIMEOUT_MS, (long)e->timeout_ms);
    }
    return curl_multi_add_handle(e->multi, x->easy) == CURLM_OK ? 0 : -ENOMEM;
}

/* Builds a transfer with an owned body (moved from *body) to path. Returns it, linked into
 * e->xfers, not yet sent. */
static struct etcd_xfer *xfer_new(struct etcd *e, const char *path, struct buf *body, bool watch)
{
    struct etcd_xfer *x = xcalloc(1, sizeof(*x));
    x->e = e;
    x->path = path;
    x->body = *body;
    buf_init(body);
    buf_init(&x->resp);
    x->watch = watch;
    x->endpoint = e->cur;
    x->deadline_ms = uv_now(e->loop) + e->timeout_ms;
    list_append(&e->xfers, &x->node);
    x->easy = curl_easy_init();
    if (x->easy == NULL)
        td_panic("curl_easy_init failed");
    x->headers = curl_slist_append(NULL, "Content-Type: application/json");
    x->headers = curl_slist_append(x->headers, "Expect:"); /* no 100-continue round trip */
    curl_easy_setopt(x->easy, CURLOPT_PRIVATE, x);
    curl_easy_setopt(x->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(x->easy, CURLOPT_HTTPHEADER, x->headers);
    curl_easy_setopt(x->easy, CURLOPT_POST, 1L);
    curl_easy_setopt(x->easy, CURLOPT_POSTFIELDS, x->body.p ? x->body.p : "");
    curl_easy_setopt(x->easy, CURLOPT_POSTFIELDSIZE, (long)x->body.len);
    curl_easy_setopt(x->easy, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(x->easy, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(x->easy, CURLOPT_ERRORBUFFER, x->curl_err);
    curl_easy_setopt(x->easy, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(x->easy, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(x->easy, CURLOPT_TCP_KEEPIDLE, 5L);
    curl_easy_setopt(x->easy, CURLOPT_TCP_KEEPINTVL, 2L);
    curl_easy_setopt(x->easy, CURLOPT_PROTOCOLS_STR, "http");
    /* the coordinator is reached directly: an http_proxy in the environment must not reroute
     * (or stall) lease renewals */
    curl_easy_setopt(x->easy, CURLOPT_PROXY, "");
    return x;
}

/* Delivers r to the user unless we are closing. */
static void deliver(struct etcd *e, const struct dcs_result *r)
{
    if (!e->closing && e->base.on_result)
        e->base.on_result(&e->base, r);
}

/* Moves later requests to the endpoint after `failed`, unless someone already moved on. */
static void endpoint_failed(struct etcd *e, size_t failed, const char *why)
{
    if (e->nendpoints > 1 && e->cur == failed) {
        e->cur = (failed + 1) % e->nendpoints;
        log_warn("etcd", "endpoint failed, using the next one", "failed=%s next=%s reason=\"%s\"",
                 e->endpoints[failed], e->endpoints[e->cur], why);
    }
}

/* Watch data arrives in pieces; whole lines are parsed as they complete. */
static void watch_data(struct etcd_xfer *x, const char *p, size_t n)
{
    struct etcd *e = x->e;
    struct etcd_json_watch_msg m;
    memset(&m, 0, sizeof(m));
    int rc = etcd_json_watch_feed(&e->watch_acc, p, n, &m);
    if (rc < 0)
        log_warn("etcd", "malformed watch stream", "endpoint=%s", e->endpoints[x->endpoint]);
    if (m.created) {
        e->watch_backoff_ms = WATCH_BACKOFF_MIN_MS;
        log_info("etcd", "watch live", "endpoint=%s rev=%llu", e->endpoints[x->endpoint],
                 (unsigned long long)m.rev);
    }
    if (m.ended)
        log_notice("etcd", "watch ended by etcd", "reason=\"%s\"", m.msg);
    /* a new stream may have missed changes: treat "created" as a change too. Reported after
     * curl returns (we are inside its write callback: no curl call, no close allowed here). */
    if (m.created || m.events)
        e->changed = true;
}

static size_t on_data(char *p, size_t size, size_t n, void *ud)
{
    struct etcd_xfer *x = ud;
    size_t len = size * n;
    if (x->watch) {
        watch_data(x, p, len);
        return len;
    }
    if (x->resp.len + len > ((size_t)64 << 20))
        return 0; /* absurd answer: abort the transfer */
    buf_append(&x->resp, p, len);
    return len;
}

static void watch_restart_cb(uv_timer_t *t)
{
    struct etcd *e = t->data;
    if (!e->closing && e->watching && e->watch_xfer == NULL)
        watch_start(e);
}

/* A transfer finished with code cc. Delivers its result (or retries / restarts the watch). */
static void xfer_done(struct etcd_xfer *x, CURLcode cc)
{
    struct etcd *e = x->e;
    long status = 0;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_multi_remove_handle(e->multi, x->easy);
    if (x->watch) {
        log_notice("etcd", "watch stream ended", "endpoint=%s http=%ld reason=\"%s\"",
                   e->endpoints[x->endpoint], status,
                   cc == CURLE_OK ? "closed"
                                  : (x->curl_err[0] ? x->curl_err : curl_easy_strerror(cc)));
        if (cc != CURLE_OK)
            endpoint_failed(e, x->endpoint, curl_easy_strerror(cc));
        xfer_free(x);
        e->watch_acc.len = 0;
        uv_timer_start(&e->watch_timer, watch_restart_cb, e->watch_backoff_ms, 0);
        e->watch_backoff_ms *= 2;
        if (e->watch_backoff_ms > WATCH_BACKOFF_MAX_MS)
            e->watch_backoff_ms = WATCH_BACKOFF_MAX_MS;
        return;
    }
    if (cc == CURLE_COULDNT_CONNECT && x->attempts + 1 < e->nendpoints &&
        uv_now(e->loop) + 1 < x->deadline_ms) {
        /* refused: the request never reached etcd, so sending it elsewhere is safe */
        endpoint_failed(e, x->endpoint, curl_easy_strerror(cc));
        x->attempts++;
        x->endpoint = (x->endpoint + 1) % e->nendpoints;
        if (xfer_send(x) == 0)
            return;
    }
    struct etcd_json_result r;
    if (cc != CURLE_OK) {
        memset(&r, 0, sizeof(r));
        r.res = (struct dcs_result){.id = x->id, .op = x->op, .status = DCS_EUNAVAIL};
        log_info("etcd", "request failed", "endpoint=%s op=%d reason=\"%s\"",
                 e->endpoints[x->endpoint], (int)x->op,
                 x->curl_err[0] ? x->curl_err : curl_easy_strerror(cc));
        endpoint_failed(e, x->endpoint, curl_easy_strerror(cc));
    } else {
        etcd_json_response(x->op, x->id, status, x->resp.p, x->resp.len, &r);
        if (r.res.status == DCS_EUNAVAIL) {
            log_info("etcd", "request failed", "endpoint=%s op=%d http=%ld reason=\"%s\"",
                     e->endpoints[x->endpoint], (int)x->op, status, r.msg);
            if (status >= 500)
                endpoint_failed(e, x->endpoint, r.msg);
        }
    }
    xfer_free(x);
    deliver(e, &r.res);
    etcd_json_result_free(&r);
}

/* Collects finished transfers, then reports a pending watch change. Runs right after
 * curl_multi_socket_action(); stops when the user closed us from a callback. */
static void check_done(struct etcd *e)
{
    CURLMsg *m;
    int left;
    while (!e->closing && (m = curl_multi_info_read(e->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE)
            continue;
        struct etcd_xfer *x = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        xfer_done(x, m->data.result);
    }
    if (e->changed && !e->closing) {
        e->changed = false;
        if (e->base.on_changed)
            e->base.on_changed(&e->base);
    }
}

static void on_timer(uv_timer_t *t)
{
    struct etcd *e = t->data;
    int running;
    curl_multi_socket_action(e->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(e);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    struct etcd_sock *s = container_of(p, struct etcd_sock, poll);
    struct etcd *e = s->e;
    int flags = 0;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    int running;
    curl_multi_socket_action(e->multi, s->fd, flags, &running);
    check_done(e);
}

static void sock_close(struct etcd_sock *s)
{
    list_remove(&s->node);
    uv_close((uv_handle_t *)&s->poll, handle_closed);
}

/* CURLMOPT_SOCKETFUNCTION: start, change or stop watching fd. */
static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)easy;
    struct etcd *e = userp;
    struct etcd_sock *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            curl_multi_assign(e->multi, fd, NULL);
            sock_close(s);
        }
        return 0;
    }
    if (s == NULL) {
        s = xcalloc(1, sizeof(*s));
        s->e = e;
        s->fd = fd;
        if (uv_poll_init_socket(e->loop, &s->poll, fd) != 0) {
            free(s);
            return -1;
        }
        s->poll.data = e;
        e->open_handles++;
        list_append(&e->socks, &s->node);
        curl_multi_assign(e->multi, fd, s);
    }
    int ev = 0;
    if (what & CURL_POLL_IN)
        ev |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        ev |= UV_WRITABLE;
    uv_poll_start(&s->poll, ev, on_poll);
    return 0;
}

/* CURLMOPT_TIMERFUNCTION: (re)arm or stop our one timer. Never acts synchronously. */
static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    struct etcd *e = userp;
    if (timeout_ms < 0)
        uv_timer_stop(&e->timer);
    else
        uv_timer_start(&e->timer, on_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

/* dcs_ops.submit: accepted requests always come back through on_result, later. */
static int etcd_submit(struct dcs *d, const struct dcs_req *req)
{
    struct etcd *e = (struct etcd *)d;
    if (e->closing)
        return -ECANCELED;
    struct buf body;
    buf_init(&body);
    const char *path;
    int rc = etcd_json_request(req, &path, &body);
    if (rc < 0) {
        buf_free(&body);
        return rc;
    }
    struct etcd_xfer *x = xfer_new(e, path, &body, false);
    x->id = req->id;
    x->op = req->op;
    rc = xfer_send(x);
    if (rc < 0) {
        xfer_free(x);
        return rc;
    }
    return 0;
}

static void watch_start(struct etcd *e)
{
    struct buf body;
    buf_init(&body);
    etcd_json_watch_request(slice_of(e->watch_prefix.p, e->watch_prefix.len), 0, &body);
    struct etcd_xfer *x = xfer_new(e, "/v3/watch", &body, true);
    e->watch_xfer = x;
    e->watch_acc.len = 0;
    if (xfer_send(x) < 0) {
        xfer_free(x);
        uv_timer_start(&e->watch_timer, watch_restart_cb, WATCH_BACKOFF_MAX_MS, 0);
    }
}

/* dcs_ops.watch: one prefix per backend; a second call answers -EALREADY. */
static int etcd_watch(struct dcs *d, struct slice prefix)
{
    struct etcd *e = (struct etcd *)d;
    if (e->closing)
        return -ECANCELED;
    if (e->watching)
        return -EALREADY;
    e->watching = true;
    buf_append(&e->watch_prefix, prefix.p, prefix.len);
    e->watch_backoff_ms = WATCH_BACKOFF_MIN_MS;
    /* started from the loop so that nothing, not even on_changed, runs inside this call */
    uv_timer_start(&e->watch_timer, watch_restart_cb, 0, 0);
    return 0;
}

/* dcs_ops.close: no callback after this; done runs once every handle is closed. */
static void etcd_close(struct dcs *d, dcs_close_cb done)
{
    struct etcd *e = (struct etcd *)d;
    TD_ASSERT(!e->closing);
    e->closing = true;
    e->done = done;
    while (!list_empty(&e->xfers))
        xfer_free(container_of(e->xfers.next, struct etcd_xfer, node));
    curl_multi_cleanup(e->multi); /* may still report CURL_POLL_REMOVE for sockets */
    e->multi = NULL;
    while (!list_empty(&e->socks))
        sock_close(container_of(e->socks.next, struct etcd_sock, node));
    uv_close((uv_handle_t *)&e->timer, handle_closed);
    uv_close((uv_handle_t *)&e->watch_timer, handle_closed);
}

static const struct dcs_ops etcd_ops = {
    .scheme = "etcd",
    .submit = etcd_submit,
    .watch = etcd_watch,
    .close = etcd_close,
};

/* Splits "h:p,h:p" into "http://h:p" URLs. Returns the count, or 0 after writing why. */
static size_t parse_endpoints(const char *spec, char **out, char *err, size_t errlen)
{
    size_t n = 0;
    const char *p = spec;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        const char *colon = memrchr(p, ':', len);
        bool ok = len > 0 && colon != NULL && colon > p && colon + 1 < p + len;
        for (const char *c = colon ? colon + 1 : p; ok && c < p + len; c++)
            ok = *c >= '0' && *c <= '9';
        if (ok) {
            long port = strtol(colon + 1, NULL, 10);
            ok = port > 0 && port < 65536;
        }
        for (const char *c = p; ok && c < p + len; c++)
            ok = *c > ' ' && *c != '/' && *c != '?' && *c != '#' && *c != '@';
        if (!ok) {
            snprintf(err, errlen, "bad etcd endpoint '%.*s' (want HOST:PORT)", (int)len, p);
            goto fail;
        }
        if (n == ETCD_MAX_ENDPOINTS) {
            snprintf(err, errlen, "more than %d etcd endpoints", ETCD_MAX_ENDPOINTS);
            goto fail;
        }
        struct buf u;
        buf_init(&u);
        buf_printf(&u, "http://%.*s", (int)len, p);
        buf_append(&u, "", 1);
        out[n++] = u.p;
        if (comma == NULL)
            return n;
        p = comma + 1;
    }
fail:
    while (n > 0)
        free(out[--n]);
    return 0;
}

struct dcs *dcs_etcd_new(uv_loop_t *loop, const char *endpoints, uint64_t timeout_ms, char *err,
                         size_t errlen)
{
    if (timeout_ms == 0) {
        snprintf(err, errlen, "etcd: timeout must be positive");
        return NULL;
    }
    struct etcd *e = xcalloc(1, sizeof(*e));
    e->nendpoints = parse_endpoints(endpoints, e->endpoints, err, errlen);
    if (e->nendpoints == 0) {
        free(e);
        return NULL;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(err, errlen, "etcd: curl_global_init failed");
        goto fail;
    }
    e->multi = curl_multi_init();
    if (e->multi == NULL) {
        curl_global_cleanup();
        snprintf(err, errlen, "etcd: curl_multi_init failed");
        goto fail;
    }
    e->base.ops = &etcd_ops;
    e->loop = loop;
    e->timeout_ms = timeout_ms;
    list_init(&e->xfers);
    list_init(&e->socks);
    buf_init(&e->watch_prefix);
    buf_init(&e->watch_acc);
    curl_multi_setopt(e->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(e->multi, CURLMOPT_SOCKETDATA, e);
    curl_multi_setopt(e->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(e->multi, CURLMOPT_TIMERDATA, e);
    uv_timer_init(loop, &e->timer);
    uv_timer_init(loop, &e->watch_timer);
    e->timer.data = e;
    e->watch_timer.data = e;
    e->open_handles = 2;
    return &e->base;
fail:
    for (size_t i = 0; i < e->nendpoints; i++)
        free(e->endpoints[i]);
    free(e);
    return NULL;
}
