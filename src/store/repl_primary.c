/* SPDX-License-Identifier: MIT */
/* store/repl_primary.c -- the primary's replica connections (see repl_primary.h).
 *
 * Per connection:  attach(fd, bytes) --REPLSYNC--> answer --FULL--> snapshot pieces --+
 *                                                 \--CONTINUE/TRUNCATE----------------+--> records
 * A pump moves each connection forward while its write queue holds less than PUMP_HIGH bytes:
 * snapshot chunks read from the file descriptor opened at the answer (a later compaction may
 * delete the file; the open descriptor keeps it readable), then records from the log. A pump
 * does at most PUMP_BUDGET bytes per connection and reschedules itself, so a large snapshot
 * never holds the loop for long. Acks update the session; a timer sends heartbeats and re-judges
 * in-sync. */
#include "store/repl_primary.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/fsio.h"
#include "base/log.h"
#include "net/wq.h"
#include "proto/replmsg.h"
#include "proto/resp.h"
#include "store/repl_session.h"
#include "store/repl_wal.h"
#include "store/snapshot.h"

#define PUMP_HIGH (1u << 20)
#define PUMP_BUDGET (1u << 20)
#define CHUNK (64u * 1024)
#define MAX_CONNS 64

struct rconn {
    struct repl_primary *p;
    uv_tcp_t tcp;
    struct wq wq;
    struct buf in;
    struct resp_parser rp;
    struct repl_session s;
    int snap_fd; /* >= 0 while a snapshot is being sent */
    uint64_t snap_off, snap_size, snap_lsn, snap_term;
    char addr[64];
    int port;
    bool closing;
};

struct repl_primary {
    uv_loop_t *loop;
    struct wal *w;
    char *dir, *secret;
    uint64_t term, heartbeat_ms, max_lag_ms;
    repl_primary_step_down_fn on_step_down;
    void (*on_change)(void *ud);
    void (*on_failsafe_ack)(void *ud, const char *node, uint64_t term, uint64_t round);
    void *ud;
    uv_timer_t tick;
    uv_timer_t again; /* a pump that ran out of budget continues here */
    struct rconn *conns[MAX_CONNS];
    unsigned nconns;
    uint64_t full_syncs;
    bool closing;
    int handles_open;
    void (*close_cb)(void *ud);
    void *close_ud;
};

static void pump(struct rconn *c);
static void changed(struct repl_primary *p);

static void maybe_finish(struct repl_primary *p)
{
    if (!p->closing || p->handles_open > 0)
        return;
    void (*cb)(void *) = p->close_cb;
    void *ud = p->close_ud;
    free(p->dir);
    free(p->secret);
    free(p);
    if (cb)
        cb(ud);
}

static void on_conn_closed(uv_handle_t *h)
{
    struct rconn *c = h->data;
    struct repl_primary *p = c->p;
    wq_free(&c->wq);
    buf_free(&c->in);
    resp_parser_free(&c->rp);
    free(c);
    p->handles_open--;
    maybe_finish(p);
}

static void conn_close(struct rconn *c, const char *why)
{
    if (c->closing)
        return;
    c->closing = true;
    struct repl_primary *p = c->p;
    for (unsigned i = 0; i < p->nconns; i++)
        if (p->conns[i] == c) {
            p->conns[i] = p->conns[--p->nconns];
            break;
        }
    if (c->snap_fd >= 0)
        fsio_close(c->snap_fd);
    c->snap_fd = -1;
    if (why)
        log_notice("repl", "replica disconnected", "replica=%s addr=%s:%d reason=\"%s\"",
                   c->s.node[0] ? c->s.node : "?", c->addr, c->port, why);
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
    changed(p);
}

static void changed(struct repl_primary *p)
{
    if (p->on_change && !p->closing)
        p->on_change(p->ud);
}

static void step_down(struct repl_primary *p, const struct repl_term_verdict *tv)
{
    if (tv->action != REPL_TERM_STEP_DOWN)
        return;
    log_warn("repl", "stepping down", "cause=\"%s\"", tv->cause);
    if (p->on_step_down)
        p->on_step_down(p->ud, tv->new_term, tv->cause);
}

static void send_buf(struct rconn *c, struct buf *b)
{
    if (b->len && wq_write(&c->wq, b->p, b->len) != 0)
        conn_close(c, "write failed");
    b->len = 0;
}

static int on_hello(struct rconn *c, size_t argc, const struct slice *argv)
{
    struct repl_primary *p = c->p;
    struct replmsg_hello h;
    const char *why;
    struct buf out;
    buf_init(&out);
    if (replmsg_hello_parse(argc, argv, &h, &why) != 0) {
        resp_add_errorf(&out, "ERR %s", why);
        send_buf(c, &out);
        buf_free(&out);
        return TD_EPROTO_RESP;
    }
    struct repl_log_view v;
    repl_wal_view(p->w, p->term, &v);
    struct replmsg_answer a;
    struct repl_term_verdict tv;
    int rc = repl_session_hello(&c->s, &h, slice_cstr(p->secret), &v, &a, &tv);
    step_down(p, &tv);
    replmsg_answer_encode(&out, &a);
    send_buf(c, &out);
    buf_free(&out);
    if (rc != 0)
        return rc;
    char common[32] = "-";
    if (a.has_common)
        snprintf(common, sizeof(common), "%" PRIu64, a.common);
    log_notice("repl", "replica joined",
               "replica=%s addr=%s:%d answer=%s lsn=%" PRIu64 " common=%s cause=\"%s\"",
               c->s.node, c->addr, c->port,
               a.kind == REPLMSG_CONTINUE   ? "continue"
               : a.kind == REPLMSG_TRUNCATE ? "truncate"
                                            : "full",
               a.lsn, common, c->s.match.cause);
    if (a.kind == REPLMSG_FULL) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/snap-%020" PRIu64 ".snap", p->dir, a.lsn);
        struct snapshot_info info;
        rc = snapshot_read_header(path, &info);
        if (rc != 0)
            return rc;
        int fd = fsio_open(path, O_RDONLY | O_CLOEXEC, 0);
        if (fd < 0)
            return fd;
        uint64_t size = 0;
        rc = fsio_size(fd, &size);
        if (rc != 0) {
            fsio_close(fd);
            return rc;
        }
        c->snap_fd = fd;
        c->snap_off = 0;
        c->snap_size = size;
        c->snap_lsn = info.lsn;
        c->snap_term = info.term;
        p->full_syncs++;
    }
    return 0;
}

static int on_command(struct rconn *c, size_t argc, const struct slice *argv)
{
    struct repl_primary *p = c->p;
    if (c->s.state == REPL_SESSION_HANDSHAKE)
        return on_hello(c, argc, argv);
    uint64_t lsn, term;
    if (replmsg_failsafe_ack_parse(argc, argv, &term, &lsn) == 0) {
        if (p->on_failsafe_ack && !p->closing)
            p->on_failsafe_ack(p->ud, c->s.node, term, lsn); /* lsn holds the round */
        return 0;
    }
    if (replmsg_ack_parse(argc, argv, &lsn, &term) != 0)
        return TD_EPROTO_RESP;
    struct repl_term_verdict tv;
    int rc = repl_session_ack(&c->s, lsn, term, p->term, clock_now_ms(), &tv);
    step_down(p, &tv);
    changed(p);
    return rc;
}

static int feed(struct rconn *c)
{
    size_t off = 0;
    int rc = 0;
    while (off < c->in.len && !c->closing) {
        ssize_t r = resp_parse(&c->rp, c->in.p + off, c->in.len - off);
        if (r == TD_EINCOMPLETE)
            break;
        if (r < 0) {
            rc = (int)r;
            break;
        }
        off += (size_t)r;
        if (c->rp.argc == 0)
            continue;
        rc = on_command(c, c->rp.argc, c->rp.argv);
        if (rc != 0)
            break;
    }
    buf_consume(&c->in, off);
    return rc;
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    struct rconn *c = h->data;
    (void)hint;
    buf_reserve(&c->in, 4096);
    b->base = c->in.p + c->in.len;
    b->len = c->in.cap - c->in.len;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct rconn *c = s->data;
    (void)b;
    if (n == 0)
        return;
    if (n < 0) {
        conn_close(c, n == UV_EOF ? "closed by the replica" : uv_strerror((int)n));
        return;
    }
    c->in.len += (size_t)n;
    int rc = feed(c);
    if (rc != 0) {
        conn_close(c, td_strerror(rc));
        return;
    }
    pump(c);
}

static void on_again(uv_timer_t *t)
{
    struct repl_primary *p = t->data;
    repl_primary_notify(p);
}

/* Moves c forward within its budget; reschedules itself when the budget ran out. */
static void pump(struct rconn *c)
{
    struct repl_primary *p = c->p;
    if (c->closing || p->closing)
        return;
    size_t spent = 0;
    struct buf out;
    buf_init(&out);
    while (spent < PUMP_BUDGET && wq_pending(&c->wq) < PUMP_HIGH && !c->closing) {
        if (c->s.state == REPL_SESSION_SNAPSHOT) {
            if (c->snap_off < c->snap_size) {
                char chunk[CHUNK];
                uint64_t left = c->snap_size - c->snap_off;
                size_t k = left < CHUNK ? (size_t)left : CHUNK;
                ssize_t r = fsio_pread(c->snap_fd, chunk, k, c->snap_off);
                if (r <= 0) {
                    conn_close(c, "reading the snapshot failed");
                    break;
                }
                replmsg_frame_snap_chunk(&out, chunk, (size_t)r);
                c->snap_off += (uint64_t)r;
                spent += (size_t)r;
            } else {
                replmsg_frame_snap_end(&out, c->snap_lsn, c->snap_term, c->snap_size);
                fsio_close(c->snap_fd);
                c->snap_fd = -1;
                repl_session_snapshot_sent(&c->s);
            }
        } else if (c->s.state == REPL_SESSION_STREAMING) {
            int64_t n = repl_wal_fill(p->w, &c->s, &out, 256 * 1024);
            if (n == -ENOENT) {
                conn_close(c, "the log no longer holds the records this replica needs");
                break;
            }
            if (n <= 0)
                break;
            spent += out.len;
        } else {
            break;
        }
        send_buf(c, &out);
    }
    send_buf(c, &out);
    buf_free(&out);
    if (spent >= PUMP_BUDGET || (wq_pending(&c->wq) >= PUMP_HIGH && !c->closing))
        uv_timer_start(&p->again, on_again, 1, 0);
}

static void on_drain(struct wq *q, int status)
{
    struct rconn *c = q->data;
    if (status < 0)
        conn_close(c, uv_strerror(status));
    else
        pump(c);
}

static void on_tick(uv_timer_t *t)
{
    struct repl_primary *p = t->data;
    uint64_t now = clock_now_ms(), last = wal_written_lsn(p->w);
    for (unsigned i = 0; i < p->nconns; i++) {
        struct rconn *c = p->conns[i];
        if (repl_session_tick(&c->s, last, now, p->max_lag_ms)) {
            log_notice("repl", c->s.in_sync ? "replica in sync" : "replica out of sync",
                       "replica=%s acked_lsn=%" PRIu64 " last_lsn=%" PRIu64, c->s.node,
                       c->s.acked_lsn, last);
            changed(p);
        }
        if (c->s.state == REPL_SESSION_HANDSHAKE)
            continue;
        struct buf hb;
        buf_init(&hb);
        replmsg_frame_heartbeat(&hb, p->term, c->s.acked_lsn, last);
        send_buf(c, &hb);
        buf_free(&hb);
    }
    repl_primary_notify(p);
}

struct repl_primary *repl_primary_new(uv_loop_t *loop, struct wal *w,
                                      const struct repl_primary_opts *opts)
{
    struct repl_primary *p = xcalloc(1, sizeof(*p));
    p->loop = loop;
    p->w = w;
    p->dir = xstrdup(opts->dir);
    p->secret = xstrdup(opts->secret ? opts->secret : "");
    p->term = opts->term;
    p->heartbeat_ms = opts->heartbeat_ms ? opts->heartbeat_ms : 100;
    p->max_lag_ms = opts->max_lag_ms ? opts->max_lag_ms : 1000;
    p->on_step_down = opts->on_step_down;
    p->on_change = opts->on_change;
    p->on_failsafe_ack = opts->on_failsafe_ack;
    p->ud = opts->ud;
    uv_timer_init(loop, &p->tick);
    uv_timer_init(loop, &p->again);
    p->tick.data = p->again.data = p;
    p->handles_open = 2;
    uv_timer_start(&p->tick, on_tick, p->heartbeat_ms, p->heartbeat_ms);
    return p;
}

int repl_primary_attach(struct repl_primary *p, int fd, const char *in, size_t n)
{
    if (p->closing || p->nconns == MAX_CONNS) {
        close(fd);
        return -EMFILE;
    }
    struct rconn *c = xcalloc(1, sizeof(*c));
    c->p = p;
    c->snap_fd = -1;
    uv_tcp_init(p->loop, &c->tcp);
    c->tcp.data = c;
    p->handles_open++;
    int rc = uv_tcp_open(&c->tcp, fd);
    wq_init(&c->wq, (uv_stream_t *)&c->tcp, on_drain, c);
    buf_init(&c->in);
    struct resp_limits lim = {1u << 20, 2 * REPLMSG_MAX_TERMS + 16, 4096, false};
    resp_parser_init(&c->rp, &lim);
    repl_session_init(&c->s);
    p->conns[p->nconns++] = c;
    if (rc != 0) {
        close(fd);
        conn_close(c, uv_strerror(rc));
        return rc;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *a = (struct sockaddr_in *)&ss;
            uv_ip4_name(a, c->addr, sizeof(c->addr));
            c->port = ntohs(a->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
            uv_ip6_name(a, c->addr, sizeof(c->addr));
            c->port = ntohs(a->sin6_port);
        }
    }
    buf_append(&c->in, in, n);
    rc = feed(c);
    if (rc == 0)
        rc = uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, on_read);
    if (rc != 0) {
        conn_close(c, td_strerror(rc));
        return rc;
    }
    pump(c);
    return 0;
}

void repl_primary_notify(struct repl_primary *p)
{
    for (unsigned i = 0; i < p->nconns;) {
        struct rconn *c = p->conns[i];
        pump(c);
        if (i < p->nconns && p->conns[i] == c)
            i++;
    }
}

unsigned repl_primary_count_acked(const struct repl_primary *p, uint64_t lsn)
{
    unsigned n = 0;
    for (unsigned i = 0; i < p->nconns; i++)
        n += p->conns[i]->s.state == REPL_SESSION_STREAMING && p->conns[i]->s.acked_lsn >= lsn;
    return n;
}

unsigned repl_primary_count(const struct repl_primary *p)
{
    return p->nconns;
}

void repl_primary_commit(const struct repl_primary *p, struct repl_commit_in *in,
                         struct repl_commit *out)
{
    struct repl_replica_ack acks[MAX_CONNS];
    for (unsigned i = 0; i < p->nconns; i++)
        acks[i] = (struct repl_replica_ack){p->conns[i]->s.acked_lsn, p->conns[i]->s.in_sync};
    in->nreplicas = p->nconns;
    in->replicas = acks;
    repl_core_commit(in, out);
    in->replicas = NULL;
}

/* "6379" -> 6379; 0 unless every character is a digit and the value is a port. */
static int atoi_port(const char *s)
{
    int v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return 0;
        v = v * 10 + (*s - '0');
    }
    return v <= 65535 ? v : 0;
}

void repl_primary_info(const struct repl_primary *p, uint64_t now_ms, struct buf *out)
{
    buf_printf(out, "connected_slaves:%u\r\n", p->nconns);
    for (unsigned i = 0; i < p->nconns; i++) {
        const struct rconn *c = p->conns[i];
        const char *st = c->s.state == REPL_SESSION_STREAMING  ? "online"
                         : c->s.state == REPL_SESSION_SNAPSHOT ? "send_bulk"
                                                               : "wait_bgsave";
        uint64_t lag_s = c->s.last_ack_ms ? (now_ms - c->s.last_ack_ms) / 1000 : 0;
        /* Nodes are named HOST:PORT by default: show the port replicas listen on, as Redis
         * does, rather than the connection's own. */
        int port = c->port;
        const char *colon = strrchr(c->s.node, ':');
        if (colon && colon[1] >= '1' && colon[1] <= '9' && strlen(colon + 1) <= 5) {
            int v = atoi_port(colon + 1);
            if (v > 0)
                port = v;
        }
        buf_printf(out,
                   "slave%u:ip=%s,port=%d,state=%s,offset=%" PRIu64 ",lag=%" PRIu64
                   ",name=%s,in_sync=%d\r\n",
                   i, c->addr, port, st, c->s.acked_lsn, lag_s, c->s.node, c->s.in_sync);
    }
}

void repl_primary_failsafe_ping(struct repl_primary *p, const char *const *names, size_t n,
                                uint64_t term, uint64_t round, uint64_t valid_ms)
{
    /* Backwards: a failed send removes the connection by moving the last one into its slot. */
    for (unsigned i = p->nconns; i-- > 0;) {
        struct rconn *c = p->conns[i];
        if (c->s.state == REPL_SESSION_HANDSHAKE)
            continue;
        for (size_t j = 0; j < n; j++) {
            if (strcmp(names[j], c->s.node) != 0)
                continue;
            struct buf b;
            buf_init(&b);
            replmsg_frame_failsafe(&b, term, round, valid_ms);
            send_buf(c, &b);
            buf_free(&b);
            break;
        }
    }
}

unsigned repl_primary_replicas(const struct repl_primary *p, struct repl_primary_replica *out,
                               unsigned max)
{
    for (unsigned i = 0; i < p->nconns && i < max; i++) {
        const struct repl_session *s = &p->conns[i]->s;
        out[i] = (struct repl_primary_replica){s->node, s->state == REPL_SESSION_STREAMING,
                                               s->in_sync, s->acked_lsn};
    }
    return p->nconns;
}

uint64_t repl_primary_full_syncs(const struct repl_primary *p)
{
    return p->full_syncs;
}

static void on_timer_closed(uv_handle_t *h)
{
    struct repl_primary *p = h->data;
    p->handles_open--;
    maybe_finish(p);
}

void repl_primary_close(struct repl_primary *p, void (*cb)(void *ud), void *ud)
{
    p->closing = true;
    p->close_cb = cb;
    p->close_ud = ud;
    while (p->nconns > 0)
        conn_close(p->conns[0], NULL);
    uv_close((uv_handle_t *)&p->tick, on_timer_closed);
    uv_close((uv_handle_t *)&p->again, on_timer_closed);
}
