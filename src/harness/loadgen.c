/* SPDX-License-Identifier: MIT */
/* harness/loadgen.c -- the libuv side of the load generator. Each connection cycles through
 *
 *   idle --(pacing slot)--> attempt: [connect] -> write request -> read response -> idle
 *                                 \-- error or timeout --> close -> (reconnect delay) -> idle
 *
 * with one uv_timer per connection serving as attempt timeout, pacing delay and reconnect
 * delay in turn (only one is ever armed). Responses are parsed with proto/http1; only the
 * status and X-Server are kept, body bytes are dropped as they are parsed. An attempt's
 * latency runs from its start (connect included when one was needed) to the last byte of the
 * response. Stopping closes every handle; in-flight attempts are abandoned uncounted, and the
 * done callback runs from the last close callback. */
#include "harness/loadgen.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/parse.h"
#include "proto/http1.h"

#define READ_CHUNK 16384

enum conn_state {
    CONN_IDLE = 0,   /* no attempt; maybe waiting on the timer (pacing, reconnect delay) */
    CONN_CONNECTING, /* attempt started, connect pending */
    CONN_BUSY,       /* request written (or being written), response pending */
    CONN_CLOSING,    /* tcp handle closing */
};

struct conn {
    struct loadgen *lg;
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_connect_t creq;
    uv_write_t wreq;
    enum conn_state state;
    bool tcp_open;      /* tcp initialised, close not yet requested */
    bool connected;
    bool write_pending; /* wreq in use */
    bool send_wanted;   /* a new request waits for wreq */
    enum loadstats_outcome after_close; /* why the last close happened (for the delay) */
    uint64_t attempt_us;
    struct buf rbuf;
    size_t parsed;
    struct http1_parser parser;
    bool head_done;
    int status;
    bool has_server;
    char server[LOADSTATS_NAME_MAX];
};

struct loadgen {
    uv_loop_t *loop;
    struct loadgen_opts o;          /* strings below are owned copies */
    char *url;
    struct sockaddr_storage addr;
    struct buf request;             /* the bytes of one request, sent again and again */
    bool is_head;
    struct conn *conns;
    uv_timer_t run_timer;
    unsigned open_handles;
    bool running;
    bool stopping;
    uint64_t t0_us;
    uint64_t end_us;
    uint64_t interval_us;           /* pacing; 0 when unpaced */
    uint64_t next_slot_us;
    struct loadstats stats;
    loadgen_done_cb done;
    void *done_ud;
};

static void conn_next(struct conn *c);
static void conn_close_tcp(struct conn *c, enum loadstats_outcome why);

static uint64_t now_rel(const struct loadgen *lg)
{
    uint64_t n = clock_now_us();
    return n > lg->t0_us ? n - lg->t0_us : 0;
}

uint64_t loadgen_elapsed_us(const struct loadgen *lg)
{
    if (!lg->running && lg->end_us)
        return lg->end_us;
    if (!lg->running)
        return 0;
    return lg->stopping ? lg->end_us : now_rel(lg);
}

/* ---- URL and request ------------------------------------------------------------------ */

int loadgen_url_parse(const char *url, struct loadgen_url *u, char *err, size_t errlen)
{
    memset(u, 0, sizeof(*u));
    const char *pfx = "http://";
    if (strncasecmp(url, pfx, strlen(pfx)) != 0) {
        snprintf(err, errlen, "url '%s': only http:// is supported", url);
        return -EINVAL;
    }
    const char *a = url + strlen(pfx);
    const char *slash = strchr(a, '/');
    size_t alen = slash ? (size_t)(slash - a) : strlen(a);
    if (alen == 0 || alen >= sizeof(u->authority)) {
        snprintf(err, errlen, "url '%s': missing or too long host", url);
        return -EINVAL;
    }
    memcpy(u->authority, a, alen);
    u->authority[alen] = '\0';
    const char *path = slash ? slash : "/";
    if (strlen(path) >= sizeof(u->path)) {
        snprintf(err, errlen, "url '%s': path too long", url);
        return -EINVAL;
    }
    for (const char *q = path; *q; q++) {
        if ((unsigned char)*q <= ' ' || *q == 0x7f) {
            snprintf(err, errlen, "url '%s': the path contains a space or control byte", url);
            return -EINVAL;
        }
    }
    snprintf(u->path, sizeof(u->path), "%s", path);

    const char *host = u->authority, *hend, *port = NULL;
    if (host[0] == '[') {
        const char *rb = strchr(host, ']');
        if (rb == NULL || rb == host + 1) {
            snprintf(err, errlen, "url '%s': bad [IPv6] host", url);
            return -EINVAL;
        }
        if (rb[1] == ':')
            port = rb + 2;
        else if (rb[1] != '\0') {
            snprintf(err, errlen, "url '%s': junk after ]", url);
            return -EINVAL;
        }
        host++;
        hend = rb;
    } else {
        const char *colon = strchr(host, ':');
        if (colon && strchr(colon + 1, ':')) {
            snprintf(err, errlen, "url '%s': IPv6 hosts need brackets", url);
            return -EINVAL;
        }
        hend = colon ? colon : host + strlen(host);
        if (colon)
            port = colon + 1;
    }
    if (hend == host || (size_t)(hend - host) >= sizeof(u->host)) {
        snprintf(err, errlen, "url '%s': missing host", url);
        return -EINVAL;
    }
    memcpy(u->host, host, (size_t)(hend - host));
    u->host[hend - host] = '\0';
    u->port = 80;
    if (port) {
        uint64_t p;
        if (parse_uint(port, 1, 65535, &p) != 0) {
            snprintf(err, errlen, "url '%s': bad port", url);
            return -EINVAL;
        }
        u->port = (unsigned)p;
    }
    return 0;
}

static bool header_is(const char *line, const char *name)
{
    size_t n = strlen(name);
    return strncasecmp(line, name, n) == 0 && line[n] == ':';
}

static void build_request(struct loadgen *lg, const struct loadgen_url *u)
{
    struct buf *r = &lg->request;
    bool has_host = false, has_len = false;
    for (size_t i = 0; i < lg->o.nheaders; i++) {
        has_host |= header_is(lg->o.headers[i], "host");
        has_len |= header_is(lg->o.headers[i], "content-length");
    }
    buf_printf(r, "%s %s HTTP/1.1\r\n", lg->o.method, u->path);
    if (!has_host)
        buf_printf(r, "Host: %s\r\n", u->authority);
    buf_append_str(r, "User-Agent: tandem-load\r\n");
    for (size_t i = 0; i < lg->o.nheaders; i++)
        buf_printf(r, "%s\r\n", lg->o.headers[i]);
    size_t blen = lg->o.body ? strlen(lg->o.body) : 0;
    if (!has_len && (lg->o.body || strcmp(lg->o.method, "POST") == 0 ||
                     strcmp(lg->o.method, "PUT") == 0))
        buf_printf(r, "Content-Length: %zu\r\n", blen);
    buf_append_str(r, "\r\n");
    if (blen)
        buf_append(r, lg->o.body, blen);
}

static int check_header(const char *h, char *err, size_t errlen)
{
    const char *colon = strchr(h, ':');
    if (colon == NULL || colon == h) {
        snprintf(err, errlen, "header '%s': expected 'Name: value'", h);
        return -EINVAL;
    }
    for (const char *q = h; *q; q++) {
        if (*q == '\r' || *q == '\n') {
            snprintf(err, errlen, "header '%s': contains a line break", h);
            return -EINVAL;
        }
        if (q < colon && ((unsigned char)*q <= ' ' || *q == 0x7f)) {
            snprintf(err, errlen, "header '%s': bad byte in the name", h);
            return -EINVAL;
        }
    }
    return 0;
}

int loadgen_new(uv_loop_t *loop, const struct loadgen_opts *o, struct loadgen **out, char *err,
                size_t errlen)
{
    *out = NULL;
    if (o->url == NULL) {
        snprintf(err, errlen, "a --url is required");
        return -EINVAL;
    }
    struct loadgen_url u;
    int rc = loadgen_url_parse(o->url, &u, err, errlen);
    if (rc != 0)
        return rc;
    const char *method = o->method ? o->method : "GET";
    if (method[0] == '\0' || strlen(method) > 32) {
        snprintf(err, errlen, "bad method '%s'", method);
        return -EINVAL;
    }
    for (const char *q = method; *q; q++) {
        if (!((*q >= 'A' && *q <= 'Z') || *q == '-' || *q == '_')) {
            snprintf(err, errlen, "bad method '%s' (upper-case letters only)", method);
            return -EINVAL;
        }
    }
    for (size_t i = 0; i < o->nheaders; i++)
        if ((rc = check_header(o->headers[i], err, errlen)) != 0)
            return rc;
    char hp[300];
    if (strchr(u.host, ':'))
        snprintf(hp, sizeof(hp), "[%s]:%u", u.host, u.port);
    else
        snprintf(hp, sizeof(hp), "%s:%u", u.host, u.port);
    struct sockaddr_storage addr;
    if ((rc = parse_addr(hp, &addr, err, errlen)) != 0)
        return rc;

    struct loadgen *lg = xcalloc(1, sizeof(*lg));
    lg->loop = loop;
    lg->o = *o;
    lg->url = xstrdup(o->url);
    lg->o.url = lg->url;
    lg->o.method = xstrdup(method);
    lg->o.body = o->body ? xstrdup(o->body) : NULL;
    if (o->nheaders) {
        char **hs = xcalloc(o->nheaders, sizeof(char *));
        for (size_t i = 0; i < o->nheaders; i++)
            hs[i] = xstrdup(o->headers[i]);
        lg->o.headers = (const char *const *)hs;
    }
    if (lg->o.connections == 0)
        lg->o.connections = 8;
    if (lg->o.timeout_ms == 0)
        lg->o.timeout_ms = 1000;
    lg->addr = addr;
    lg->is_head = strcmp(lg->o.method, "HEAD") == 0;
    buf_init(&lg->request);
    build_request(lg, &u);
    lg->interval_us = lg->o.rate ? 1000000u / lg->o.rate : 0;
    if (lg->o.rate && lg->interval_us == 0)
        lg->interval_us = 1;
    loadstats_init(&lg->stats, lg->o.timeline_ms * 1000u);
    *out = lg;
    return 0;
}

void loadgen_free(struct loadgen *lg)
{
    if (lg == NULL)
        return;
    TD_ASSERT(!lg->running);
    if (lg->conns) {
        for (unsigned i = 0; i < lg->o.connections; i++)
            buf_free(&lg->conns[i].rbuf);
        free(lg->conns);
    }
    for (size_t i = 0; i < lg->o.nheaders; i++)
        free((char *)lg->o.headers[i]);
    free((void *)lg->o.headers);
    free((char *)lg->o.method);
    free((char *)lg->o.body);
    free(lg->url);
    buf_free(&lg->request);
    loadstats_free(&lg->stats);
    free(lg);
}

const struct loadstats *loadgen_stats(const struct loadgen *lg)
{
    return &lg->stats;
}

const char *loadgen_url(const struct loadgen *lg)
{
    return lg->url;
}

bool loadgen_is_running(const struct loadgen *lg)
{
    return lg->running;
}

int loadgen_mark(struct loadgen *lg)
{
    if (!lg->running || lg->stopping)
        return -1;
    return loadstats_mark(&lg->stats, now_rel(lg));
}

/* ---- closing -------------------------------------------------------------------------- */

static void handle_closed(struct loadgen *lg)
{
    TD_ASSERT(lg->open_handles > 0);
    if (--lg->open_handles == 0 && lg->stopping) {
        lg->running = false;
        log_info("load", "load finished", "requests=%llu ok=%llu failed=%llu",
                 (unsigned long long)lg->stats.c.requests, (unsigned long long)lg->stats.c.ok,
                 (unsigned long long)lg->stats.c.failed);
        if (lg->done)
            lg->done(lg, lg->done_ud);
    }
}

static void on_timer_close(uv_handle_t *h)
{
    struct conn *c = h->data;
    handle_closed(c->lg);
}

static void on_run_timer_close(uv_handle_t *h)
{
    handle_closed(h->data);
}

void loadgen_stop(struct loadgen *lg)
{
    if (!lg->running || lg->stopping)
        return;
    lg->end_us = now_rel(lg);
    lg->stopping = true;
    loadstats_finish(&lg->stats, lg->end_us);
    for (unsigned i = 0; i < lg->o.connections; i++) {
        struct conn *c = &lg->conns[i];
        if (c->tcp_open)
            conn_close_tcp(c, LOADSTATS_OK);
        uv_close((uv_handle_t *)&c->timer, on_timer_close);
    }
    uv_close((uv_handle_t *)&lg->run_timer, on_run_timer_close);
}

/* ---- one connection ------------------------------------------------------------------- */

static void on_tcp_close(uv_handle_t *h);

/* Requests the close of c's tcp handle; why decides the pause before the next attempt. */
static void conn_close_tcp(struct conn *c, enum loadstats_outcome why)
{
    if (!c->tcp_open)
        return;
    uv_timer_stop(&c->timer);
    c->tcp_open = false;
    c->connected = false;
    c->state = CONN_CLOSING;
    c->after_close = why;
    uv_close((uv_handle_t *)&c->tcp, on_tcp_close);
}

static void on_delay(uv_timer_t *t)
{
    struct conn *c = t->data;
    c->state = CONN_IDLE;
    conn_next(c);
}

static void on_tcp_close(uv_handle_t *h)
{
    struct conn *c = h->data;
    struct loadgen *lg = c->lg;
    c->rbuf.len = 0;
    c->parsed = 0;
    c->write_pending = false;
    c->send_wanted = false;
    c->state = CONN_IDLE;
    bool stopping = lg->stopping;
    handle_closed(lg); /* may run the done callback (and free lg) when stopping */
    if (stopping)
        return;
    if (c->after_close == LOADSTATS_ERR_CONNECT && lg->o.reconnect_delay_ms) {
        uv_timer_start(&c->timer, on_delay, lg->o.reconnect_delay_ms, 0);
        return;
    }
    conn_next(c);
}

/* Ends the current attempt with a failure: counts it, closes the connection. */
static void conn_fail(struct conn *c, enum loadstats_outcome why)
{
    struct loadgen *lg = c->lg;
    if (lg->stopping)
        return;
    log_debug("load", "request failed", "reason=%s", loadstats_outcome_name(why));
    loadstats_record(&lg->stats, now_rel(lg), why, 0, (struct slice){NULL, 0});
    conn_close_tcp(c, why);
}

static void on_timeout(uv_timer_t *t)
{
    struct conn *c = t->data;
    conn_fail(c, LOADSTATS_ERR_TIMEOUT);
}

static void conn_write(struct conn *c);

static void on_write(uv_write_t *req, int status)
{
    struct conn *c = req->data;
    c->write_pending = false;
    if (status == UV_ECANCELED || c->state == CONN_CLOSING || c->lg->stopping)
        return;
    if (status < 0) {
        conn_fail(c, LOADSTATS_ERR_RESET);
        return;
    }
    if (c->send_wanted) {
        c->send_wanted = false;
        conn_write(c);
    }
}

/* Writes the request bytes: synchronously when the socket takes them, else through wreq. */
static void conn_write(struct conn *c)
{
    struct loadgen *lg = c->lg;
    if (c->write_pending) {
        c->send_wanted = true;
        return;
    }
    uv_buf_t b = uv_buf_init(lg->request.p, (unsigned)lg->request.len);
    int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (n == (int)b.len)
        return;
    if (n < 0 && n != UV_EAGAIN) {
        conn_fail(c, LOADSTATS_ERR_RESET);
        return;
    }
    if (n > 0) {
        b.base += n;
        b.len -= (size_t)n;
    }
    c->wreq.data = c;
    int rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write);
    if (rc != 0) {
        conn_fail(c, LOADSTATS_ERR_RESET);
        return;
    }
    c->write_pending = true;
}

static void conn_send(struct conn *c)
{
    http1_init(&c->parser, HTTP1_RESPONSE, NULL);
    c->parser.skip_body = c->lg->is_head;
    c->head_done = false;
    c->has_server = false;
    c->status = 0;
    c->state = CONN_BUSY;
    conn_write(c);
}

/* The response is complete: count it and go on (or close when the server asked to). */
static void conn_complete(struct conn *c)
{
    struct loadgen *lg = c->lg;
    uv_timer_stop(&c->timer);
    uint64_t now = now_rel(lg);
    uint64_t start = c->attempt_us;
    enum loadstats_outcome o = c->status >= 500 ? LOADSTATS_ERR_5XX : LOADSTATS_OK;
    struct slice srv = c->has_server ? slice_cstr(c->server) : (struct slice){NULL, 0};
    loadstats_record(&lg->stats, now, o, now > start ? now - start : 0, srv);
    bool keep = c->parser.msg.keep_alive && !c->parser.msg.upgrade;
    buf_consume(&c->rbuf, c->parsed);
    c->parsed = 0;
    if (!keep || c->rbuf.len > 0) {
        /* closing by request, or unsolicited bytes: start afresh */
        conn_close_tcp(c, LOADSTATS_OK);
        return;
    }
    c->state = CONN_IDLE;
    conn_next(c);
}

/* Feeds the bytes read so far to the parser; completes or fails the attempt when it can. */
static void conn_parse(struct conn *c)
{
    for (;;) {
        size_t used = 0;
        int ev = http1_feed(&c->parser, c->rbuf.p, c->parsed, c->rbuf.len - c->parsed, &used);
        c->parsed += used;
        if (ev < 0) {
            conn_fail(c, LOADSTATS_ERR_PROTOCOL);
            return;
        }
        if (ev == HTTP1_HEAD_DONE) {
            c->head_done = true;
            c->status = c->parser.msg.status;
            struct slice s = http1_header_get(&c->parser.msg, c->rbuf.p, "x-server");
            if (s.p) {
                size_t n = s.len < sizeof(c->server) - 1 ? s.len : sizeof(c->server) - 1;
                memcpy(c->server, s.p, n);
                c->server[n] = '\0';
                c->has_server = true;
            }
            continue;
        }
        if (ev == HTTP1_MSG_DONE) {
            conn_complete(c);
            return;
        }
        /* HTTP1_NEED_MORE: drop the body bytes parsed so far, the head is no longer needed */
        if (c->head_done) {
            buf_consume(&c->rbuf, c->parsed);
            c->parsed = 0;
        }
        return;
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    (void)suggested;
    struct conn *c = h->data;
    buf_reserve(&c->rbuf, READ_CHUNK);
    *b = uv_buf_init(c->rbuf.p + c->rbuf.len, (unsigned)(c->rbuf.cap - c->rbuf.len));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    (void)b;
    struct conn *c = s->data;
    if (c->state == CONN_CLOSING || c->lg->stopping)
        return;
    if (nread > 0) {
        c->rbuf.len += (size_t)nread;
        if (c->state != CONN_BUSY) {
            /* bytes nobody asked for: the connection is unusable */
            conn_close_tcp(c, LOADSTATS_OK);
            return;
        }
        conn_parse(c);
        return;
    }
    if (nread == 0)
        return;
    if (c->state != CONN_BUSY) {
        conn_close_tcp(c, LOADSTATS_OK); /* an idle keep-alive connection went away */
        return;
    }
    if (nread == UV_EOF && c->head_done && http1_finish(&c->parser) == HTTP1_MSG_DONE) {
        c->parser.msg.keep_alive = false;
        conn_complete(c);
        return;
    }
    conn_fail(c, LOADSTATS_ERR_RESET);
}

static void on_connect(uv_connect_t *req, int status)
{
    struct conn *c = req->data;
    if (status == UV_ECANCELED || c->state == CONN_CLOSING || c->lg->stopping)
        return;
    if (status < 0) {
        conn_fail(c, LOADSTATS_ERR_CONNECT);
        return;
    }
    c->connected = true;
    int rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (rc != 0) {
        conn_fail(c, LOADSTATS_ERR_RESET);
        return;
    }
    conn_send(c);
}

/* Begins an attempt now: connect if needed, then send. */
static void conn_attempt(struct conn *c)
{
    struct loadgen *lg = c->lg;
    c->attempt_us = now_rel(lg);
    uv_timer_start(&c->timer, on_timeout, lg->o.timeout_ms, 0);
    if (c->connected) {
        conn_send(c);
        return;
    }
    int rc = uv_tcp_init(lg->loop, &c->tcp);
    if (rc != 0)
        td_panic("uv_tcp_init: %s", uv_strerror(rc));
    c->tcp.data = c;
    c->tcp_open = true;
    lg->open_handles++;
    c->state = CONN_CONNECTING;
    uv_tcp_nodelay(&c->tcp, 1);
    c->creq.data = c;
    rc = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&lg->addr, on_connect);
    if (rc != 0)
        conn_fail(c, LOADSTATS_ERR_CONNECT);
}

static void on_pace(uv_timer_t *t)
{
    struct conn *c = t->data;
    conn_attempt(c);
}

/* The connection is free: start the next attempt, now or at its pacing slot. */
static void conn_next(struct conn *c)
{
    struct loadgen *lg = c->lg;
    if (lg->stopping)
        return;
    if (lg->interval_us == 0) {
        conn_attempt(c);
        return;
    }
    uint64_t now = now_rel(lg);
    uint64_t slot = lg->next_slot_us > now ? lg->next_slot_us : now;
    lg->next_slot_us = slot + lg->interval_us;
    if (slot <= now) {
        conn_attempt(c);
        return;
    }
    uint64_t delay_ms = (slot - now + 999) / 1000;
    uv_timer_start(&c->timer, on_pace, delay_ms, 0);
}

/* ---- the run -------------------------------------------------------------------------- */

static void on_run_timer(uv_timer_t *t)
{
    loadgen_stop(t->data);
}

int loadgen_start(struct loadgen *lg, loadgen_done_cb done, void *ud)
{
    TD_ASSERT(!lg->running && lg->conns == NULL);
    lg->done = done;
    lg->done_ud = ud;
    lg->conns = xcalloc(lg->o.connections, sizeof(*lg->conns));
    int rc = uv_timer_init(lg->loop, &lg->run_timer);
    if (rc != 0)
        return rc;
    lg->run_timer.data = lg;
    lg->open_handles = 1;
    lg->running = true;
    /* timers count from the loop's cached time, which may be stale here (the caller may have
     * blocked since the last iteration): refresh it so the run lasts duration_ms from now */
    uv_update_time(lg->loop);
    lg->t0_us = clock_now_us();
    for (unsigned i = 0; i < lg->o.connections; i++) {
        struct conn *c = &lg->conns[i];
        c->lg = lg;
        buf_init(&c->rbuf);
        uv_timer_init(lg->loop, &c->timer);
        c->timer.data = c;
        lg->open_handles++;
    }
    if (lg->o.duration_ms)
        uv_timer_start(&lg->run_timer, on_run_timer, lg->o.duration_ms, 0);
    log_info("load", "load started", "url=%s connections=%u duration_ms=%llu", lg->url,
             lg->o.connections, (unsigned long long)lg->o.duration_ms);
    for (unsigned i = 0; i < lg->o.connections; i++)
        conn_next(&lg->conns[i]);
    return 0;
}
