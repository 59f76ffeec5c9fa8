/* SPDX-License-Identifier: MIT */
/* coord/dcs_builtin.c -- dcs.h over `tandem arbiter`'s RESP commands (see dcs_builtin.h).
 *
 * Requests in flight form a FIFO in the order their bytes were queued; the arbiter answers in
 * order, so each reply belongs to the head. Replies are parsed with hiredis's reply reader (the
 * socket is ours, on libuv, so no hiredis event-loop glue is involved). A connection is a heap
 * object that outlives its drop until libuv's close callback: a dropped connection is marked
 * dead, its callbacks ignore it, and the backend opens a fresh one. Results are delivered from
 * libuv callbacks only; after close() none is.
 *
 * Reentrancy: the result and changed callbacks may call submit, watch or close. Every loop that
 * delivers results therefore pops one entry at a time and re-checks `closing` and the
 * connection's `dead` flag after each callback. */
#include "coord/dcs_builtin.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "base/err.h"
#include "base/list.h"
#include "base/log.h"
#include "base/parse.h"
#include "net/wq.h"
#include "proto/resp.h"

#define FAIL_FAST_MS 20
#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 500
#define READ_CHUNK (16 * 1024)

struct pend {
    struct list link;
    uint64_t id;
    enum dcs_op op;
    uint64_t deadline; /* loop time, ms */
};

struct conn {
    struct dcs_builtin *b;
    uv_tcp_t tcp;
    uv_connect_t creq;
    struct wq wq;
    redisReader *rd;
    struct buf early; /* bytes queued while connecting */
    char rbuf[READ_CHUNK];
    bool up, dead, is_watch;
};

struct dcs_builtin {
    struct dcs base; /* first: the shell frees the object through it */
    uv_loop_t *loop;
    struct sockaddr_storage addr;
    char hostport[128];
    uint64_t timeout_ms;
    struct conn *main;
    struct list inflight; /* pend, in send order */
    struct list failed;   /* pend to fail from the defer timer */
    uv_timer_t tmo, retry, defer, wretry;
    uint64_t backoff_ms, wbackoff_ms;
    bool drop_main; /* a write failed inside submit: drop from the defer timer */
    bool watching, watch_seen;
    struct buf prefix;
    struct conn *wconn;
    bool closing;
    int open_handles;
    dcs_close_cb done;
};

static void conn_drop(struct conn *c);
static void main_fail(struct dcs_builtin *b, const char *why);
static int main_open(struct dcs_builtin *b);
static void watch_fail(struct dcs_builtin *b, const char *why);
static void on_retry(uv_timer_t *t);

/* --- small helpers --- */

static void maybe_done(struct dcs_builtin *b)
{
    if (b->closing && b->open_handles == 0 && b->done) {
        dcs_close_cb done = b->done;
        b->done = NULL;
        buf_free(&b->prefix);
        done(&b->base);
    }
}

static void on_handle_closed(uv_handle_t *h)
{
    struct dcs_builtin *b = h->data;
    b->open_handles--;
    maybe_done(b);
}

static void deliver(struct dcs_builtin *b, const struct dcs_result *r)
{
    if (!b->closing && b->base.on_result)
        b->base.on_result(&b->base, r);
}

/* Fails every entry of l with DCS_EUNAVAIL, one at a time (callbacks may add to lists). */
static void fail_list(struct dcs_builtin *b, struct list *l)
{
    while (!list_empty(l)) {
        struct pend *p = container_of(l->next, struct pend, link);
        list_remove(&p->link);
        struct dcs_result r = {.id = p->id, .op = p->op, .status = DCS_EUNAVAIL};
        free(p);
        deliver(b, &r);
    }
}

static void free_list(struct list *l)
{
    while (!list_empty(l)) {
        struct pend *p = container_of(l->next, struct pend, link);
        list_remove(&p->link);
        free(p);
    }
}

static void on_tmo(uv_timer_t *t);

/* Arms the timeout timer at the deadline of the oldest request in flight. */
static void arm_tmo(struct dcs_builtin *b)
{
    if (b->closing)
        return;
    if (list_empty(&b->inflight)) {
        uv_timer_stop(&b->tmo);
        return;
    }
    struct pend *p = container_of(b->inflight.next, struct pend, link);
    uint64_t now = uv_now(b->loop);
    uv_timer_start(&b->tmo, on_tmo, p->deadline > now ? p->deadline - now : 0, 0);
}

static void on_tmo(uv_timer_t *t)
{
    struct dcs_builtin *b = t->data;
    if (list_empty(&b->inflight))
        return;
    struct pend *p = container_of(b->inflight.next, struct pend, link);
    if (p->deadline > uv_now(b->loop)) {
        arm_tmo(b);
        return;
    }
    main_fail(b, "request timed out");
}

static void on_defer(uv_timer_t *t)
{
    struct dcs_builtin *b = t->data;
    if (b->drop_main) {
        b->drop_main = false;
        main_fail(b, "write failed");
    }
    /* Only what failed before this callback: a request submitted from one of the results below
     * while still disconnected fails on the next turn of the loop, not in this one (else a
     * caller that resubmits on failure would keep this loop spinning forever). */
    struct list now;
    list_init(&now);
    list_splice_tail(&now, &b->failed);
    fail_list(b, &now);
}

static void defer(struct dcs_builtin *b)
{
    uv_timer_start(&b->defer, on_defer, 0, 0);
}

/* Fails the failed list a little later: a caller that resubmits on every failure while we wait
 * to reconnect then retries at most ~50 times a second instead of spinning the loop. */
static void defer_slow(struct dcs_builtin *b)
{
    if (!uv_is_active((uv_handle_t *)&b->defer))
        uv_timer_start(&b->defer, on_defer, FAIL_FAST_MS, 0);
}

/* --- connections --- */

static void on_conn_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    struct dcs_builtin *b = c->b;
    wq_free(&c->wq);
    if (c->rd)
        redisReaderFree(c->rd);
    buf_free(&c->early);
    free(c);
    b->open_handles--;
    maybe_done(b);
}

static void conn_drop(struct conn *c)
{
    if (c->dead)
        return;
    c->dead = true;
    if (c->b->main == c)
        c->b->main = NULL;
    if (c->b->wconn == c)
        c->b->wconn = NULL;
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static void conn_on_connect(uv_connect_t *req, int status);

/* Opens a connection (async); NULL when the connect could not even start. */
static struct conn *conn_open(struct dcs_builtin *b, bool is_watch)
{
    struct conn *c = xcalloc(1, sizeof(*c));
    c->b = b;
    c->is_watch = is_watch;
    c->rd = redisReaderCreate();
    TD_ASSERT(c->rd != NULL);
    uv_tcp_init(b->loop, &c->tcp);
    c->tcp.data = c;
    b->open_handles++;
    wq_init(&c->wq, (uv_stream_t *)&c->tcp, NULL, c);
    c->creq.data = c;
    int rc = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&b->addr, conn_on_connect);
    if (rc < 0) {
        log_debug("dcs", "connect failed", "addr=%s err=%s", b->hostport, uv_strerror(rc));
        conn_drop(c);
        return NULL;
    }
    return c;
}

/* Queues bytes on c: written now when connected, kept until the connect otherwise. */
static int conn_send(struct conn *c, const struct buf *cmd)
{
    if (!c->up) {
        buf_append(&c->early, cmd->p, cmd->len);
        return 0;
    }
    return wq_write(&c->wq, cmd->p, cmd->len);
}

static void conn_on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *out)
{
    (void)suggested;
    struct conn *c = h->data;
    *out = uv_buf_init(c->rbuf, sizeof(c->rbuf));
}

/* --- results --- */

static bool is_int(const redisReply *r)
{
    return r && r->type == REDIS_REPLY_INTEGER;
}

static bool is_nolease(const redisReply *r)
{
    return r->type == REDIS_REPLY_ERROR && r->len >= 7 && memcmp(r->str, "NOLEASE", 7) == 0;
}

/* Turns the reply to p into its result and delivers it. */
static void handle_reply(struct dcs_builtin *b, const struct pend *p, const redisReply *r)
{
    struct dcs_result res = {.id = p->id, .op = p->op, .status = DCS_EUNAVAIL};
    struct dcs_kv *kvs = NULL;
    switch (p->op) {
    case DCS_OP_GRANT:
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 && is_int(r->element[0]) &&
            is_int(r->element[1]) && r->element[0]->integer > 0 && r->element[1]->integer > 0) {
            res.status = DCS_OK;
            res.lease = (uint64_t)r->element[0]->integer;
            res.ttl_ms = (uint64_t)r->element[1]->integer;
        }
        break;
    case DCS_OP_KEEPALIVE:
        if (is_int(r) && r->integer >= 0) {
            res.status = DCS_OK;
            res.ttl_ms = (uint64_t)r->integer;
        } else if (is_nolease(r)) {
            res.status = DCS_ENOLEASE;
        }
        break;
    case DCS_OP_REVOKE:
        if (r->type == REDIS_REPLY_STATUS)
            res.status = DCS_OK;
        else if (is_nolease(r))
            res.status = DCS_ENOLEASE;
        break;
    case DCS_OP_READ: {
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || !is_int(r->element[0]) ||
            r->element[0]->integer < 0 || r->element[1]->type != REDIS_REPLY_ARRAY)
            break;
        const redisReply *list = r->element[1];
        kvs = xcalloc(list->elements + 1, sizeof(*kvs));
        bool ok = true;
        for (size_t i = 0; i < list->elements && ok; i++) {
            const redisReply *e = list->element[i];
            ok = e->type == REDIS_REPLY_ARRAY && e->elements == 4 &&
                 e->element[0]->type == REDIS_REPLY_STRING &&
                 e->element[1]->type == REDIS_REPLY_STRING && is_int(e->element[2]) &&
                 is_int(e->element[3]);
            if (ok) {
                kvs[i].key = slice_of(e->element[0]->str, e->element[0]->len);
                kvs[i].value = slice_of(e->element[1]->str, e->element[1]->len);
                kvs[i].rev = (uint64_t)e->element[2]->integer;
                kvs[i].lease = (uint64_t)e->element[3]->integer;
            }
        }
        if (ok) {
            res.status = DCS_OK;
            res.rev = (uint64_t)r->element[0]->integer;
            res.kvs = kvs;
            res.nkvs = list->elements;
        }
        break;
    }
    case DCS_OP_TXN:
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 && is_int(r->element[0]) &&
            is_int(r->element[1])) {
            long long st = r->element[0]->integer;
            if (st == 0 || st == DCS_ECOMPARE || st == DCS_ENOLEASE) {
                res.status = (int)st;
                res.rev = (uint64_t)r->element[1]->integer;
            }
        }
        break;
    }
    if (res.status == DCS_EUNAVAIL && r->type == REDIS_REPLY_ERROR)
        log_info("dcs", "coordinator refused a request", "addr=%s err=\"%.*s\"", b->hostport,
                 (int)(r->len > 200 ? 200 : r->len), r->str);
    deliver(b, &res);
    free(kvs);
}

/* --- the request connection --- */

/* The request connection is gone or unusable: drop it, fail every request in flight, and
 * reconnect after the backoff. Called from libuv callbacks only. */
static void main_fail(struct dcs_builtin *b, const char *why)
{
    if (b->main) {
        log_info("dcs", "coordinator connection lost", "addr=%s cause=\"%s\"", b->hostport, why);
        conn_drop(b->main);
    }
    if (b->closing)
        return;
    uv_timer_stop(&b->tmo);
    struct list l;
    list_init(&l);
    while (!list_empty(&b->inflight)) {
        struct list *e = b->inflight.next;
        list_remove(e);
        list_append(&l, e);
    }
    if (!uv_is_active((uv_handle_t *)&b->retry))
        uv_timer_start(&b->retry, on_retry, b->backoff_ms, 0);
    b->backoff_ms = b->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : b->backoff_ms * 2;
    fail_list(b, &l);
}

static void on_retry(uv_timer_t *t)
{
    struct dcs_builtin *b = t->data;
    if (b->closing || b->main)
        return;
    if (main_open(b) != 0)
        main_fail(b, "connect failed");
}

static void main_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = s->data;
    struct dcs_builtin *b = c->b;
    if (c->dead || nread == 0)
        return;
    if (nread < 0) {
        main_fail(b, nread == UV_EOF ? "closed by the coordinator" : uv_strerror((int)nread));
        return;
    }
    if (redisReaderFeed(c->rd, buf->base, (size_t)nread) != REDIS_OK) {
        main_fail(b, "reply parser error");
        return;
    }
    while (!c->dead && !b->closing) {
        void *reply = NULL;
        if (redisReaderGetReply(c->rd, &reply) != REDIS_OK) {
            main_fail(b, "malformed reply");
            return;
        }
        if (reply == NULL)
            break;
        if (list_empty(&b->inflight)) {
            freeReplyObject(reply);
            main_fail(b, "reply without a request");
            return;
        }
        struct pend *p = container_of(b->inflight.next, struct pend, link);
        list_remove(&p->link);
        arm_tmo(b);
        handle_reply(b, p, reply);
        free(p);
        freeReplyObject(reply);
    }
}

static void main_on_connect(struct conn *c, int status)
{
    struct dcs_builtin *b = c->b;
    if (status < 0) {
        log_debug("dcs", "connect failed", "addr=%s err=%s", b->hostport, uv_strerror(status));
        main_fail(b, "connect failed");
        return;
    }
    c->up = true;
    uv_tcp_nodelay(&c->tcp, 1);
    if (b->backoff_ms > BACKOFF_MIN_MS)
        log_info("dcs", "coordinator connected", "addr=%s", b->hostport);
    b->backoff_ms = BACKOFF_MIN_MS;
    int rc = uv_read_start((uv_stream_t *)&c->tcp, conn_on_alloc, main_on_read);
    if (rc == 0 && c->early.len > 0)
        rc = wq_write(&c->wq, c->early.p, c->early.len);
    buf_free(&c->early);
    if (rc < 0)
        main_fail(b, "write failed");
}

static int main_open(struct dcs_builtin *b)
{
    b->main = conn_open(b, false);
    return b->main ? 0 : -ECONNREFUSED;
}

/* --- the watch connection --- */

static void watch_retry_cb(uv_timer_t *t);

static void watch_fail(struct dcs_builtin *b, const char *why)
{
    if (b->wconn) {
        log_debug("dcs", "watch connection lost", "addr=%s cause=\"%s\"", b->hostport, why);
        conn_drop(b->wconn);
    }
    if (b->closing || !b->watching)
        return;
    uv_timer_start(&b->wretry, watch_retry_cb, b->wbackoff_ms, 0);
    b->wbackoff_ms = b->wbackoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : b->wbackoff_ms * 2;
}

static void watch_open(struct dcs_builtin *b)
{
    b->wconn = conn_open(b, true);
    if (b->wconn == NULL) {
        watch_fail(b, "connect failed");
        return;
    }
    struct buf cmd;
    buf_init(&cmd);
    resp_add_array(&cmd, 2);
    resp_add_bulk(&cmd, "WATCH", 5);
    resp_add_bulk(&cmd, b->prefix.p, b->prefix.len);
    conn_send(b->wconn, &cmd);
    buf_free(&cmd);
}

static void watch_retry_cb(uv_timer_t *t)
{
    struct dcs_builtin *b = t->data;
    if (!b->closing && b->watching && b->wconn == NULL)
        watch_open(b);
}

static bool reply_is(const redisReply *r, const char *word)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 2)
        return false;
    const redisReply *w = r->element[0];
    return w->type == REDIS_REPLY_STRING && w->len == strlen(word) &&
           memcmp(w->str, word, w->len) == 0;
}

static void changed(struct dcs_builtin *b)
{
    if (!b->closing && b->base.on_changed)
        b->base.on_changed(&b->base);
}

static void watch_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = s->data;
    struct dcs_builtin *b = c->b;
    if (c->dead || nread == 0)
        return;
    if (nread < 0 || redisReaderFeed(c->rd, buf->base, (size_t)nread) != REDIS_OK) {
        watch_fail(b, nread == UV_EOF ? "closed by the coordinator" : "read failed");
        return;
    }
    while (!c->dead && !b->closing) {
        void *reply = NULL;
        if (redisReaderGetReply(c->rd, &reply) != REDIS_OK) {
            watch_fail(b, "malformed reply");
            return;
        }
        if (reply == NULL)
            break;
        bool notify = false;
        if (reply_is(reply, "watching")) {
            b->wbackoff_ms = BACKOFF_MIN_MS;
            /* After a reconnect, changes may have been missed while no watch was in place. */
            notify = b->watch_seen;
            b->watch_seen = true;
        } else if (reply_is(reply, "changed")) {
            notify = true;
        } else if (((redisReply *)reply)->type == REDIS_REPLY_ERROR) {
            freeReplyObject(reply);
            watch_fail(b, "watch refused");
            return;
        }
        freeReplyObject(reply);
        if (notify)
            changed(b);
    }
}

static void watch_on_connect(struct conn *c, int status)
{
    struct dcs_builtin *b = c->b;
    if (status < 0) {
        watch_fail(b, "connect failed");
        return;
    }
    c->up = true;
    int rc = uv_read_start((uv_stream_t *)&c->tcp, conn_on_alloc, watch_on_read);
    if (rc == 0 && c->early.len > 0)
        rc = wq_write(&c->wq, c->early.p, c->early.len);
    buf_free(&c->early);
    if (rc < 0)
        watch_fail(b, "write failed");
}

static void conn_on_connect(uv_connect_t *req, int status)
{
    struct conn *c = req->data;
    if (c->dead || c->b->closing)
        return;
    if (c->is_watch)
        watch_on_connect(c, status);
    else
        main_on_connect(c, status);
}

/* --- the dcs operations --- */

static void encode(struct buf *o, const struct dcs_req *q)
{
    switch (q->op) {
    case DCS_OP_GRANT:
        resp_add_array(o, 2);
        resp_add_bulk(o, "GRANT", 5);
        resp_add_bulk_int(o, (int64_t)q->ttl_ms);
        break;
    case DCS_OP_KEEPALIVE:
        resp_add_array(o, 2);
        resp_add_bulk(o, "KEEPALIVE", 9);
        resp_add_bulk_int(o, (int64_t)q->lease);
        break;
    case DCS_OP_REVOKE:
        resp_add_array(o, 2);
        resp_add_bulk(o, "REVOKE", 6);
        resp_add_bulk_int(o, (int64_t)q->lease);
        break;
    case DCS_OP_READ:
        resp_add_array(o, 2);
        resp_add_bulk(o, "READ", 4);
        resp_add_bulk(o, q->prefix.p, q->prefix.len);
        break;
    case DCS_OP_TXN: {
        size_t n = 3 + 2 * q->ncmp;
        for (size_t i = 0; i < q->nput; i++)
            n += q->put[i].del ? 2 : 4;
        resp_add_array(o, (int64_t)n);
        resp_add_bulk(o, "TXN", 3);
        resp_add_bulk_int(o, (int64_t)q->ncmp);
        for (size_t i = 0; i < q->ncmp; i++) {
            resp_add_bulk(o, q->cmp[i].key.p, q->cmp[i].key.len);
            resp_add_bulk_int(o, (int64_t)q->cmp[i].rev);
        }
        resp_add_bulk_int(o, (int64_t)q->nput);
        for (size_t i = 0; i < q->nput; i++) {
            const struct dcs_put *p = &q->put[i];
            if (p->del) {
                resp_add_bulk(o, "DEL", 3);
                resp_add_bulk(o, p->key.p, p->key.len);
            } else {
                resp_add_bulk(o, "PUT", 3);
                resp_add_bulk(o, p->key.p, p->key.len);
                resp_add_bulk(o, p->value.p, p->value.len);
                resp_add_bulk_int(o, (int64_t)p->lease);
            }
        }
        break;
    }
    }
}

static int builtin_submit(struct dcs *d, const struct dcs_req *q)
{
    struct dcs_builtin *b = (struct dcs_builtin *)d;
    if (b->closing)
        return -ECANCELED;
    if (q->op > DCS_OP_TXN || q->ncmp > DCS_TXN_MAX || q->nput > DCS_TXN_MAX)
        return -EINVAL;
    struct pend *p = xcalloc(1, sizeof(*p));
    p->id = q->id;
    p->op = q->op;
    p->deadline = uv_now(b->loop) + b->timeout_ms;
    if (b->main == NULL && uv_is_active((uv_handle_t *)&b->retry)) {
        /* Waiting to reconnect: fail fast, from the defer timer. */
        list_append(&b->failed, &p->link);
        defer_slow(b);
        return 0;
    }
    if (b->main == NULL && main_open(b) != 0) {
        list_append(&b->failed, &p->link);
        b->drop_main = true; /* starts the backoff from the defer timer */
        defer(b);
        return 0;
    }
    struct buf cmd;
    buf_init(&cmd);
    encode(&cmd, q);
    int rc = conn_send(b->main, &cmd);
    buf_free(&cmd);
    bool first = list_empty(&b->inflight);
    list_append(&b->inflight, &p->link);
    if (rc < 0) {
        b->drop_main = true;
        defer(b);
    } else if (first) {
        arm_tmo(b);
    }
    return 0;
}

static int builtin_watch(struct dcs *d, struct slice prefix)
{
    struct dcs_builtin *b = (struct dcs_builtin *)d;
    if (b->closing)
        return -ECANCELED;
    b->prefix.len = 0;
    buf_append(&b->prefix, prefix.p, prefix.len);
    b->watching = true;
    b->watch_seen = false;
    b->wbackoff_ms = BACKOFF_MIN_MS;
    if (b->wconn)
        conn_drop(b->wconn);
    uv_timer_stop(&b->wretry);
    watch_open(b);
    return 0;
}

static void builtin_close(struct dcs *d, dcs_close_cb done)
{
    struct dcs_builtin *b = (struct dcs_builtin *)d;
    if (b->closing)
        return;
    b->closing = true;
    b->done = done;
    free_list(&b->inflight);
    free_list(&b->failed);
    if (b->main)
        conn_drop(b->main);
    if (b->wconn)
        conn_drop(b->wconn);
    uv_close((uv_handle_t *)&b->tmo, on_handle_closed);
    uv_close((uv_handle_t *)&b->retry, on_handle_closed);
    uv_close((uv_handle_t *)&b->defer, on_handle_closed);
    uv_close((uv_handle_t *)&b->wretry, on_handle_closed);
}

static const struct dcs_ops builtin_ops = {
    "builtin",
    builtin_submit,
    builtin_watch,
    builtin_close,
};

struct dcs *dcs_builtin_new(uv_loop_t *loop, const char *hostport, uint64_t timeout_ms, char *err,
                            size_t errlen)
{
    if (strncmp(hostport, "builtin://", 10) == 0)
        hostport += 10;
    if (timeout_ms == 0) {
        snprintf(err, errlen, "builtin coordinator: the request timeout must be positive");
        return NULL;
    }
    struct sockaddr_storage addr;
    char why[256];
    if (parse_addr(hostport, &addr, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "builtin coordinator address '%s': %s", hostport, why);
        return NULL;
    }
    struct dcs_builtin *b = xcalloc(1, sizeof(*b));
    b->base.ops = &builtin_ops;
    b->loop = loop;
    b->addr = addr;
    snprintf(b->hostport, sizeof(b->hostport), "%s", hostport);
    b->timeout_ms = timeout_ms;
    b->backoff_ms = b->wbackoff_ms = BACKOFF_MIN_MS;
    list_init(&b->inflight);
    list_init(&b->failed);
    uv_timer_t *timers[] = {&b->tmo, &b->retry, &b->defer, &b->wretry};
    for (size_t i = 0; i < 4; i++) {
        uv_timer_init(loop, timers[i]);
        timers[i]->data = b;
        b->open_handles++;
    }
    if (main_open(b) != 0)
        uv_timer_start(&b->retry, on_retry, b->backoff_ms, 0);
    return &b->base;
}
