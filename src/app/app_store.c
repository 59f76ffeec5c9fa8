/* SPDX-License-Identifier: MIT */
/* app/app_store.c -- the app's store connection: hiredis async on libuv.
 *
 *   WAIT --retry timer--> CONNECTING --connected--> CONNECTED
 *     ^                      |  failed / timeout        | disconnected / stalled
 *     +----------------------+--------------------------+   (retry after backoff)
 *   any state --app_store_close--> CLOSED
 *
 * hiredis 0.14 has no connect or command timeouts, so a check timer enforces both: a connect
 * pending longer than connect_timeout_ms is abandoned, and a connection with commands pending
 * but no reply for stall_ms is dropped (a stopped or partitioned store would otherwise hold it
 * forever). Dropping a connection fails its pending commands at once (their callbacks get NULL).
 * Commands are accepted while CONNECTING: hiredis buffers them until the socket is up. Requests
 * bound their own wait with their own timer; this file only keeps the connection honest.
 *
 * The event-loop glue is written here instead of using <hiredis/adapters/libuv.h>: in hiredis
 * 0.14 that adapter ignores a poll error, and libuv reports a refused connect or a reset socket
 * as exactly that (status UV_EBADF, watcher stopped), so a failed connect would hang until the
 * connect timeout and a reset connection until the stall check. */
#include "app/app_store.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/async.h>

#include "base/alloc.h"
#include "base/clock.h"
#include "base/log.h"

enum store_state {
    ST_WAIT = 0,
    ST_CONNECTING,
    ST_CONNECTED,
    ST_CLOSED,
};

struct app_store {
    uv_loop_t *loop;
    char host[64];
    int port;
    char addr[80];
    struct app_store_opts o;
    redisAsyncContext *ac; /* NULL in WAIT and CLOSED */
    enum store_state state;
    uv_timer_t retry;
    uv_timer_t check;
    unsigned failures;    /* consecutive failed attempts, for the backoff */
    uint64_t since_ms;    /* when the current connect attempt started */
    uint64_t progress_ms; /* last reply, or when the first pending command was sent */
    unsigned pending;     /* commands sent on the current connection, not yet answered */
    uint64_t conn_id;     /* counts connection attempts: names the current connection */
    bool down_logged;     /* the store being down has been logged since it was last up */
    char why[160];        /* why the store is unavailable (WAIT) */
    int open_handles;
    app_store_closed_fn closed_cb;
    void *closed_ud;
};

struct store_cmd {
    app_store_reply_fn fn;
    void *ud;
    struct app_store *s;
};

static void connect_start(struct app_store *s);

/* ---- hiredis <-> libuv glue ---- */

/* One per hiredis context: the poll handle on its socket. Freed in the handle's close callback,
 * which hiredis triggers through the cleanup hook when it frees the context. */
struct store_watch {
    uv_poll_t poll;
    redisAsyncContext *ac; /* NULL once hiredis has let go */
    int events;
};

static void watch_cb(uv_poll_t *h, int status, int events)
{
    struct store_watch *w = h->data;
    if (status < 0) {
        /* Let hiredis find the socket error itself: a connect in progress checks SO_ERROR on
         * write, an established connection sees the error or EOF on read. */
        events = w->events | UV_READABLE;
    }
    if (w->ac && (events & UV_READABLE))
        redisAsyncHandleRead(w->ac);
    if (w->ac && (events & UV_WRITABLE))
        redisAsyncHandleWrite(w->ac);
    if (status < 0 && w->ac && w->events)
        uv_poll_start(&w->poll, w->events, watch_cb); /* libuv stopped it on the error */
}

static void watch_update(struct store_watch *w, int add, int del)
{
    int ev = (w->events | add) & ~del;
    if (ev == w->events)
        return;
    w->events = ev;
    if (ev)
        uv_poll_start(&w->poll, ev, watch_cb);
    else
        uv_poll_stop(&w->poll);
}

static void watch_add_read(void *p)
{
    watch_update(p, UV_READABLE, 0);
}

static void watch_del_read(void *p)
{
    watch_update(p, 0, UV_READABLE);
}

static void watch_add_write(void *p)
{
    watch_update(p, UV_WRITABLE, 0);
}

static void watch_del_write(void *p)
{
    watch_update(p, 0, UV_WRITABLE);
}

static void watch_closed(uv_handle_t *h)
{
    free(h->data);
}

static void watch_cleanup(void *p)
{
    struct store_watch *w = p;
    w->ac = NULL;
    uv_close((uv_handle_t *)&w->poll, watch_closed);
}

/* Hooks ac's socket into loop. Returns 0 or a negative libuv code (ac untouched). */
static int watch_attach(redisAsyncContext *ac, uv_loop_t *loop)
{
    struct store_watch *w = xcalloc(1, sizeof(*w));
    int rc = uv_poll_init(loop, &w->poll, ac->c.fd);
    if (rc != 0) {
        free(w);
        return rc;
    }
    w->poll.data = w;
    w->ac = ac;
    ac->ev.data = w;
    ac->ev.addRead = watch_add_read;
    ac->ev.delRead = watch_del_read;
    ac->ev.addWrite = watch_add_write;
    ac->ev.delWrite = watch_del_write;
    ac->ev.cleanup = watch_cleanup;
    return 0;
}

/* ---- connection state ---- */

uint64_t app_store_backoff_ms(unsigned failures, uint64_t min_ms, uint64_t max_ms)
{
    uint64_t d = min_ms ? min_ms : 1;
    for (unsigned i = 0; i < failures && d < max_ms; i++)
        d *= 2;
    return d > max_ms ? max_ms : d;
}

static void on_retry(uv_timer_t *t)
{
    struct app_store *s = t->data;
    if (s->state == ST_WAIT)
        connect_start(s);
}

static void schedule_retry(struct app_store *s)
{
    uint64_t d = app_store_backoff_ms(s->failures, s->o.reconnect_min_ms, s->o.reconnect_max_ms);
    if (s->failures < 64)
        s->failures++;
    s->state = ST_WAIT;
    uv_timer_start(&s->retry, on_retry, d, 0);
}

/* A connect attempt failed: remember why, log the first failure of an outage (later ones only
 * at DEBUG, so a long outage does not flood the log) and retry later. */
static void attempt_failed(struct app_store *s, const char *reason)
{
    snprintf(s->why, sizeof(s->why), "%s", reason);
    uint64_t d = app_store_backoff_ms(s->failures, s->o.reconnect_min_ms, s->o.reconnect_max_ms);
    if (!s->down_logged) {
        log_warn("store", "store unreachable", "addr=%s reason=\"%s\" retry_ms=%" PRIu64, s->addr,
                 reason, d);
        s->down_logged = true;
    } else {
        log_debug("store", "store connect failed", "addr=%s reason=\"%s\" retry_ms=%" PRIu64,
                  s->addr, reason, d);
    }
    schedule_retry(s);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct app_store *s = ac->data;
    if (s == NULL || s->ac != ac)
        return; /* abandoned (timeout, close): already handled */
    if (status != REDIS_OK) {
        /* hiredis frees ac after this returns and fails its pending commands */
        s->ac = NULL;
        attempt_failed(s, ac->errstr ? ac->errstr : "connect failed");
        return;
    }
    s->state = ST_CONNECTED;
    s->failures = 0;
    s->progress_ms = clock_now_ms();
    s->down_logged = false;
    log_notice("store", "store connected", "addr=%s", s->addr);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct app_store *s = ac->data;
    if (s == NULL || s->ac != ac)
        return;
    s->ac = NULL;
    if (s->state == ST_CLOSED)
        return;
    const char *reason = status == REDIS_OK ? "closed" : (ac->errstr ? ac->errstr : "error");
    snprintf(s->why, sizeof(s->why), "connection lost: %s", reason);
    log_notice("store", "store disconnected", "addr=%s reason=\"%s\"", s->addr, reason);
    s->down_logged = true;
    schedule_retry(s);
}

static void connect_start(struct app_store *s)
{
    redisAsyncContext *ac = redisAsyncConnect(s->host, s->port);
    if (ac == NULL) {
        attempt_failed(s, "out of memory");
        return;
    }
    if (ac->err) {
        char reason[160];
        snprintf(reason, sizeof(reason), "%s", ac->errstr ? ac->errstr : "connect failed");
        redisAsyncFree(ac);
        attempt_failed(s, reason);
        return;
    }
    ac->data = s;
    if (watch_attach(ac, s->loop) != 0) {
        redisAsyncFree(ac);
        attempt_failed(s, "cannot watch the socket");
        return;
    }
    /* The watch must be attached first: setting the connect callback arms the write watch
     * that detects the end of the non-blocking connect. */
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    s->ac = ac;
    s->conn_id++;
    s->state = ST_CONNECTING;
    s->since_ms = clock_now_ms();
    s->pending = 0;
}

/* Abandons the current connection or connect attempt. Pending commands get their callbacks
 * (with NULL) from inside redisAsyncFree; on_connect/on_disconnect ignore the freed context
 * because s->ac no longer points at it. */
static void drop(struct app_store *s, const char *reason)
{
    redisAsyncContext *ac = s->ac;
    bool was_connected = s->state == ST_CONNECTED;
    s->ac = NULL;
    s->state = ST_WAIT;
    if (was_connected) {
        snprintf(s->why, sizeof(s->why), "connection dropped: %s", reason);
        log_notice("store", "store disconnected", "addr=%s reason=\"%s\"", s->addr, reason);
        s->down_logged = true;
        redisAsyncFree(ac);
        schedule_retry(s);
    } else {
        redisAsyncFree(ac);
        attempt_failed(s, reason);
    }
}

static void on_check(uv_timer_t *t)
{
    struct app_store *s = t->data;
    uint64_t now = clock_now_ms();
    if (s->state == ST_CONNECTING && now - s->since_ms > s->o.connect_timeout_ms) {
        drop(s, "connect timeout");
    } else if (s->state == ST_CONNECTED && s->pending > 0 && now - s->progress_ms > s->o.stall_ms) {
        char reason[96];
        snprintf(reason, sizeof(reason), "no reply for %" PRIu64 "ms", now - s->progress_ms);
        drop(s, reason);
    }
}

struct app_store *app_store_new(uv_loop_t *loop, const char *host, int port,
                                const struct app_store_opts *opts)
{
    struct app_store *s = xcalloc(1, sizeof(*s));
    s->loop = loop;
    snprintf(s->host, sizeof(s->host), "%s", host);
    s->port = port;
    if (strchr(host, ':'))
        snprintf(s->addr, sizeof(s->addr), "[%s]:%d", host, port);
    else
        snprintf(s->addr, sizeof(s->addr), "%s:%d", host, port);
    s->o = *opts;
    snprintf(s->why, sizeof(s->why), "not connected yet");
    uv_timer_init(loop, &s->retry);
    uv_timer_init(loop, &s->check);
    s->retry.data = s;
    s->check.data = s;
    s->open_handles = 2;
    uint64_t every =
        s->o.stall_ms < s->o.connect_timeout_ms ? s->o.stall_ms : s->o.connect_timeout_ms;
    every /= 4;
    if (every < 10)
        every = 10;
    if (every > 250)
        every = 250;
    uv_timer_start(&s->check, on_check, every, every);
    log_notice("store", "store connecting", "addr=%s", s->addr);
    connect_start(s);
    return s;
}

bool app_store_is_connected(const struct app_store *s)
{
    return s->state == ST_CONNECTED;
}

uint64_t app_store_connection_id(const struct app_store *s)
{
    return s->ac ? s->conn_id : 0;
}

const char *app_store_status(const struct app_store *s)
{
    switch (s->state) {
    case ST_CONNECTED:
        return "";
    case ST_CONNECTING:
        return "connecting";
    case ST_WAIT:
        return s->why;
    case ST_CLOSED:
        return "shutting down";
    }
    return "";
}

static void on_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)ac;
    struct store_cmd *c = priv;
    struct app_store *s = c->s;
    if (s->pending > 0)
        s->pending--;
    if (reply)
        s->progress_ms = clock_now_ms();
    c->fn(c->ud, reply);
    free(c);
}

int app_store_command(struct app_store *s, app_store_reply_fn fn, void *ud, int argc,
                      const char **argv, const size_t *lens)
{
    if (s->ac == NULL || (s->state != ST_CONNECTED && s->state != ST_CONNECTING))
        return -ENOTCONN;
    struct store_cmd *c = xmalloc(sizeof(*c));
    c->fn = fn;
    c->ud = ud;
    c->s = s;
    if (redisAsyncCommandArgv(s->ac, on_reply, c, argc, argv, lens) != REDIS_OK) {
        free(c);
        return -ENOTCONN;
    }
    if (s->pending++ == 0)
        s->progress_ms = clock_now_ms();
    return 0;
}

static void on_handle_closed(uv_handle_t *h)
{
    struct app_store *s = h->data;
    if (--s->open_handles > 0)
        return;
    app_store_closed_fn cb = s->closed_cb;
    void *ud = s->closed_ud;
    free(s);
    if (cb)
        cb(ud);
}

void app_store_close(struct app_store *s, app_store_closed_fn cb, void *ud)
{
    s->state = ST_CLOSED;
    s->closed_cb = cb;
    s->closed_ud = ud;
    redisAsyncContext *ac = s->ac;
    s->ac = NULL;
    if (ac) {
        log_notice("store", "store connection closed", "addr=%s", s->addr);
        redisAsyncFree(ac);
    }
    uv_close((uv_handle_t *)&s->retry, on_handle_closed);
    uv_close((uv_handle_t *)&s->check, on_handle_closed);
}
