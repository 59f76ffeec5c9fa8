/* SPDX-License-Identifier: MIT */
/* store/repl_replica.c -- the replica's connection to its primary (see repl_replica.h).
 *
 *   IDLE --start--> CONNECTING --connected: send REPLSYNC--> LINKED (feeding repl_link)
 *     ^                 |                                        |
 *     +--retry timer----+---- connect error / EOF / link failure-+
 *
 * Every byte from the primary goes through repl_link (pure, checked) into the repl_wal_sink
 * ops (the wal and the db). After each read that appended records the wal is committed; its
 * durable callback, forwarded by the owner, sends REPLACK. A heartbeat is answered with an ack
 * of the durable lsn too, so the primary's in-sync probe sees a live replica even when idle. */
#include "store/repl_replica.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "base/err.h"
#include "base/log.h"
#include "net/wq.h"
#include "proto/replmsg.h"
#include "proto/resp.h"
#include "store/repl_link.h"
#include "store/repl_wal.h"

enum conn_state {
    CONN_IDLE = 0,
    CONN_CONNECTING,
    CONN_LINKED,
    CONN_CLOSING, /* the tcp handle is closing */
};

struct repl_replica {
    uv_loop_t *loop;
    struct wal *w;
    struct db *db;
    char *dir, *node, *secret;
    struct sockaddr_storage primary;
    uint64_t retry_ms;

    enum conn_state state;
    uv_tcp_t tcp;
    uv_connect_t connect_req;
    uv_timer_t retry;
    struct wq wq;
    struct buf in;
    struct repl_link link;
    struct repl_wal_sink sink;
    struct repl_link_ops ops; /* repl_wal_sink_ops plus our heartbeat hook */
    struct repl_replica_info info;
    uint64_t released_lsn; /* highest lsn the owner reported durable */
    bool auth_pending;     /* AUTH sent, its answer not read yet */
    bool hello_v2;         /* this attempt's REPLSYNC carries V2 */
    bool legacy_next;      /* the primary refused V2: the next attempt sends a plain hello */
    bool (*on_failsafe)(void *ud, uint64_t term, uint64_t round, uint64_t valid_ms);
    void *ud;
    bool closing;
    int handles_open;
    void (*close_cb)(void *ud);
    void *close_ud;
};

static void schedule_retry(struct repl_replica *r);

/* Frees r once closing and every handle is closed. */
static void maybe_finish(struct repl_replica *r)
{
    if (!r->closing || r->handles_open > 0)
        return;
    void (*cb)(void *) = r->close_cb;
    void *ud = r->close_ud;
    repl_wal_sink_free(&r->sink);
    buf_free(&r->in);
    free(r->dir);
    free(r->node);
    free(r->secret);
    free(r);
    if (cb)
        cb(ud);
}

static void on_timer_closed(uv_handle_t *h)
{
    struct repl_replica *r = h->data;
    r->handles_open--;
    maybe_finish(r);
}

static void on_tcp_closed(uv_handle_t *h)
{
    struct repl_replica *r = h->data;
    wq_free(&r->wq);
    r->in.len = 0;
    r->state = CONN_IDLE;
    r->handles_open--;
    if (r->closing)
        maybe_finish(r);
    else
        schedule_retry(r);
}

/* Drops the connection (if any) with a reason; a retry follows unless closing. */
static void drop(struct repl_replica *r, const char *why)
{
    if (r->state == CONN_IDLE || r->state == CONN_CLOSING)
        return;
    if (why) {
        snprintf(r->info.last_error, sizeof(r->info.last_error), "%s", why);
        log_warn("repl", "link to primary lost", "reason=\"%s\"", why);
    }
    r->info.link_up = false;
    r->state = CONN_CLOSING;
    repl_wal_sink_free(&r->sink);
    uv_close((uv_handle_t *)&r->tcp, on_tcp_closed);
}

static void send_ack(struct repl_replica *r, uint64_t lsn)
{
    if (r->state != CONN_LINKED || r->link.state != REPL_LINK_STREAMING)
        return;
    struct buf b;
    buf_init(&b);
    replmsg_ack_encode(&b, lsn, r->link.term);
    if (wq_write(&r->wq, b.p, b.len) == 0)
        r->info.acked_lsn = lsn;
    buf_free(&b);
}

static void on_heartbeat(void *ud, uint64_t commit_lsn, uint64_t last_lsn)
{
    struct repl_replica *r = ud;
    r->info.primary_commit_lsn = commit_lsn;
    r->info.primary_last_lsn = last_lsn;
    /* The owner's durability rule (repl_replica_on_durable) may run ahead of the log's fsync
     * (fsync=everysec acknowledges written records): never acknowledge less than before. */
    uint64_t lsn = wal_durable_lsn(r->w);
    send_ack(r, lsn > r->released_lsn ? lsn : r->released_lsn);
}

static void on_failsafe(void *ud, uint64_t term, uint64_t round, uint64_t valid_ms)
{
    struct repl_replica *r = ud;
    if (r->on_failsafe == NULL || !r->on_failsafe(r->ud, term, round, valid_ms))
        return;
    if (r->state != CONN_LINKED)
        return;
    struct buf b;
    buf_init(&b);
    replmsg_failsafe_ack_encode(&b, term, round);
    (void)wq_write(&r->wq, b.p, b.len); /* a failed write drops the link by itself */
    buf_free(&b);
}

/* The ops table forwards to the sink, whose ud is inside r. */
static int op_adopt(void *ud, uint64_t term, const char *cause)
{
    struct repl_replica *r = ud;
    log_notice("repl", "adopting the primary's term", "term=%llu cause=\"%s\"",
               (unsigned long long)term, cause);
    return repl_wal_sink_ops.adopt_term(&r->sink, term, cause);
}

static int op_truncate(void *ud, uint64_t lsn)
{
    struct repl_replica *r = ud;
    return repl_wal_sink_ops.truncate_after(&r->sink, lsn);
}

static int op_snap_begin(void *ud, uint64_t lsn, uint64_t term)
{
    struct repl_replica *r = ud;
    log_notice("repl", "full resync", "snapshot_lsn=%llu term=%llu", (unsigned long long)lsn,
               (unsigned long long)term);
    return repl_wal_sink_ops.snapshot_begin(&r->sink, lsn, term);
}

static int op_snap_chunk(void *ud, const char *p, size_t n)
{
    struct repl_replica *r = ud;
    return repl_wal_sink_ops.snapshot_chunk(&r->sink, p, n);
}

static int op_snap_end(void *ud, uint64_t lsn, uint64_t term)
{
    struct repl_replica *r = ud;
    return repl_wal_sink_ops.snapshot_end(&r->sink, lsn, term);
}

static int op_discard_before_full(void *ud, bool proven, uint64_t common)
{
    struct repl_replica *r = ud;
    int rc = repl_wal_sink_ops.discard_before_full(&r->sink, proven, common);
    if (rc != 0)
        return rc;
    uint64_t last = r->link.last_lsn;
    if (!proven && last > 0)
        log_warn("repl", "full resync without a proven common prefix: records replaced unaudited",
                 "last_lsn=%llu cause=\"%s\"", (unsigned long long)last,
                 r->hello_v2 ? "the primary cannot prove where our logs meet"
                             : "the primary predates REPLSYNC V2");
    else if (r->sink.full_audited > 0)
        log_notice("repl", "divergent records audited before the full resync",
                   "common_lsn=%llu discarded=%llu saved=\"%s\"", (unsigned long long)common,
                   (unsigned long long)r->sink.full_audited, r->sink.audit);
    return 0;
}

static int op_records(void *ud, const struct replmsg_frame *f)
{
    struct repl_replica *r = ud;
    int rc = repl_wal_sink_ops.records(&r->sink, f);
    if (rc == 0)
        r->info.applied_lsn = f->last_lsn;
    return rc;
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    struct repl_replica *r = h->data;
    (void)hint;
    buf_reserve(&r->in, 64 * 1024);
    b->base = r->in.p + r->in.len;
    b->len = r->in.cap - r->in.len;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    struct repl_replica *r = s->data;
    (void)b;
    if (nread == 0)
        return;
    if (nread < 0) {
        drop(r, nread == UV_EOF ? "primary closed the connection" : uv_strerror((int)nread));
        return;
    }
    r->in.len += (size_t)nread;
    if (r->auth_pending) {
        /* The answer to our AUTH comes first: +OK, or an error from a primary that has no
         * password (REPLSYNC's secret decides then); a wrong password ends the attempt. */
        char *nl = memchr(r->in.p, '\n', r->in.len);
        if (nl == NULL) {
            if (r->in.len > 1024)
                drop(r, "unexpected answer to AUTH");
            return;
        }
        size_t len = (size_t)(nl - r->in.p) + 1;
        if (len > 10 && memcmp(r->in.p, "-WRONGPASS", 10) == 0) {
            drop(r, "the primary refused the replication secret (AUTH)");
            return;
        }
        buf_consume(&r->in, len);
        r->auth_pending = false;
        if (r->in.len == 0)
            return;
    }
    uint64_t before = r->link.records;
    enum repl_link_state st = r->link.state;
    ssize_t used = repl_link_feed(&r->link, r->in.p, r->in.len);
    if (used < 0 && r->hello_v2 && st == REPL_LINK_WAIT_ANSWER &&
        strstr(r->link.err, "wrong number of arguments for 'replsync'") != NULL) {
        /* A primary from before REPLSYNC V2: the next attempt speaks the old hello (and a
         * full resync then replaces divergent records unaudited, as that primary did). */
        log_notice("repl", "the primary does not understand REPLSYNC V2: retrying without it",
                   "");
        r->legacy_next = true;
    }
    if (used < 0) {
        char why[512];
        snprintf(why, sizeof(why), "%s%s%s", r->link.err, r->sink.err[0] ? ": " : "", r->sink.err);
        drop(r, why);
        return;
    }
    buf_consume(&r->in, (size_t)used);
    if (st == REPL_LINK_WAIT_ANSWER && r->link.state != REPL_LINK_WAIT_ANSWER) {
        r->info.term = r->link.term;
        log_notice("repl", "linked to primary", "answer=%s term=%llu",
                   r->link.answer == REPLMSG_CONTINUE   ? "continue"
                   : r->link.answer == REPLMSG_TRUNCATE ? "truncate"
                                                        : "full",
                   (unsigned long long)r->link.term);
    }
    if (r->link.state == REPL_LINK_STREAMING)
        r->info.link_up = true;
    r->info.full_syncs = r->sink.full_syncs;
    r->info.truncations = r->sink.truncations;
    r->info.discarded = r->sink.discarded;
    if (r->link.records != before) {
        int rc = wal_commit(r->w);
        if (rc != 0)
            drop(r, td_strerror(rc));
    }
}

static void on_connect(uv_connect_t *req, int status)
{
    struct repl_replica *r = req->data;
    if (r->state != CONN_CONNECTING)
        return;
    if (status < 0) {
        drop(r, uv_strerror(status));
        return;
    }
    r->state = CONN_LINKED;
    r->info.connects++;
    r->auth_pending = false;
    r->in.len = 0;
    struct replmsg_hello h;
    int rc = repl_wal_hello(r->w, slice_cstr(r->node), slice_cstr(r->secret), &h);
    if (rc != 0) {
        drop(r, td_strerror(rc));
        return;
    }
    h.v2 = !r->legacy_next;
    r->hello_v2 = h.v2;
    r->legacy_next = false; /* one plain attempt, then V2 again (the primary may be upgraded) */
    repl_wal_sink_init(&r->sink, r->w, r->db, r->dir);
    if (r->info.term > r->sink.term)
        r->sink.term = r->info.term;
    repl_link_init(&r->link, r->sink.term, h.last_lsn, &r->ops, r);
    struct buf b;
    buf_init(&b);
    if (r->secret[0]) {
        /* A primary with --requirepass serves only authenticated connections (its default
         * replication secret is that password). */
        resp_add_array(&b, 2);
        resp_add_bulk(&b, "AUTH", 4);
        resp_add_bulk(&b, r->secret, strlen(r->secret));
        r->auth_pending = true;
    }
    replmsg_hello_encode(&b, &h);
    rc = wq_write(&r->wq, b.p, b.len);
    buf_free(&b);
    if (rc == 0)
        rc = uv_read_start((uv_stream_t *)&r->tcp, alloc_cb, on_read);
    if (rc != 0)
        drop(r, uv_strerror(rc));
}

static void on_wq_drain(struct wq *q, int status)
{
    struct repl_replica *r = q->data;
    if (status < 0)
        drop(r, uv_strerror(status));
}

static void do_connect(struct repl_replica *r)
{
    if (r->closing || r->state != CONN_IDLE)
        return;
    uv_tcp_init(r->loop, &r->tcp);
    r->handles_open++;
    r->tcp.data = r;
    wq_init(&r->wq, (uv_stream_t *)&r->tcp, on_wq_drain, r);
    r->state = CONN_CONNECTING;
    r->connect_req.data = r;
    int rc =
        uv_tcp_connect(&r->connect_req, &r->tcp, (const struct sockaddr *)&r->primary, on_connect);
    if (rc != 0)
        drop(r, uv_strerror(rc));
}

static void on_retry(uv_timer_t *t)
{
    do_connect(t->data);
}

static void schedule_retry(struct repl_replica *r)
{
    if (!r->closing)
        uv_timer_start(&r->retry, on_retry, r->retry_ms, 0);
}

struct repl_replica *repl_replica_new(uv_loop_t *loop, struct wal *w, struct db *db,
                                      const char *dir, const struct repl_replica_opts *opts)
{
    struct repl_replica *r = xcalloc(1, sizeof(*r));
    r->loop = loop;
    r->w = w;
    r->db = db;
    r->dir = xstrdup(dir);
    r->node = xstrdup(opts->node);
    r->secret = xstrdup(opts->secret ? opts->secret : "");
    r->primary = opts->primary;
    r->retry_ms = opts->retry_ms ? opts->retry_ms : 500;
    buf_init(&r->in);
    r->ops = (struct repl_link_ops){op_adopt,      op_truncate,  op_snap_begin,
                                    op_snap_chunk, op_snap_end,  op_records,
                                    on_heartbeat,  on_failsafe,  op_discard_before_full};
    r->on_failsafe = opts->on_failsafe;
    r->ud = opts->ud;
    uv_timer_init(loop, &r->retry);
    r->retry.data = r;
    r->handles_open = 1;
    r->sink.snap_fd = -1;
    r->info.term = wal_last_term(w);
    return r;
}

void repl_replica_start(struct repl_replica *r)
{
    do_connect(r);
}

void repl_replica_on_durable(struct repl_replica *r, uint64_t lsn)
{
    if (lsn > r->released_lsn)
        r->released_lsn = lsn;
    if (lsn > r->info.acked_lsn)
        send_ack(r, lsn);
}

void repl_replica_get_info(const struct repl_replica *r, struct repl_replica_info *out)
{
    *out = r->info;
}

void repl_replica_close(struct repl_replica *r, void (*cb)(void *ud), void *ud)
{
    r->closing = true;
    r->close_cb = cb;
    r->close_ud = ud;
    uv_timer_stop(&r->retry);
    uv_close((uv_handle_t *)&r->retry, on_timer_closed);
    if (r->state == CONN_CONNECTING || r->state == CONN_LINKED) {
        r->state = CONN_CLOSING;
        r->info.link_up = false;
        uv_close((uv_handle_t *)&r->tcp, on_tcp_closed);
    }
}
