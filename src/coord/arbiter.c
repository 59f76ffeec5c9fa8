/* SPDX-License-Identifier: MIT */
/* coord/arbiter.c -- the libuv side of `tandem arbiter` (commands: see arbiter.h).
 *
 * Per client: bytes read are appended to an input buffer, every complete command in it is parsed
 * (proto/resp) and run against the core at once, replies are appended to the client's output
 * buffer. A command that changed the state sets `dirty`; while dirty, no client's output is
 * written: a prepare handle that runs just before the loop polls again writes the state file
 * (one write for everything this iteration changed), then hands every pending output, watch
 * pushes included, to the client's write queue (net/wq). Without a change, output is written as
 * soon as the read has been processed.
 *
 * Leases expire on a timer armed at the core's next expiry instant; before each command the
 * core also collects what has expired by now, so a command never sees a lease past its TTL. */
#include "coord/arbiter.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/fsio.h"
#include "base/list.h"
#include "base/log.h"
#include "base/parse.h"
#include "coord/arbiter_core.h"
#include "net/wq.h"
#include "net/listen.h"
#include "proto/resp.h"

#define READ_CHUNK (16 * 1024)
#define MAX_BULK (128 * 1024)
#define MAX_ARGS 1024
#define MAX_INLINE (64 * 1024)
#define QUERY_LIMIT (1024 * 1024)
#define OUTPUT_LIMIT (16 * 1024 * 1024)
#define STATE_FILE "arbiter.state"
#define STATE_TMP "arbiter.state.tmp"
#define LOCK_FILE "arbiter.lock"

struct client {
    uv_tcp_t tcp;
    struct arbiter *a;
    struct list link;    /* a->clients */
    struct list pending; /* a->pending while it has output held */
    struct list wlink;   /* a->watchers while watching */
    struct buf in;
    struct resp_parser parser;
    bool parser_unauth;
    struct buf out;
    struct wq wq;
    bool authed;
    bool closing;
    bool close_after; /* close once the output is written */
    bool watching;
    struct buf prefix; /* watched prefix */
    uint64_t watch_rev, watch_sent;
    char addr[64];
};

struct arbiter {
    uv_loop_t *loop;
    const struct arbiter_config *cfg;
    struct arbiter_core *core;
    uv_tcp_t listener;
    uv_timer_t expiry;
    uv_prepare_t before_poll;
    int open_handles;
    bool listening, closing, failed;
    bool dirty;
    struct list clients, pending, watchers;
    uint64_t nclients;
    size_t nwatchers;
    int port;
    int lock_fd;
    char *path, *tmp_path;
    struct buf state;
    struct resp_limits lim_auth, lim_unauth;
    uint64_t start_ms;
    uint64_t state_writes, expired_leases, cmds;
    arbiter_closed_cb on_closed;
    void *on_closed_ud;
    arbiter_fatal_cb on_fatal;
    void *on_fatal_ud;
};

static void client_close(struct client *c);
static void client_write(struct client *c);

/* --- the state file --- */

/* Writes the whole state durably: temporary file, fsync, rename over the old one, fsync the
 * directory. Returns 0 or a negated errno. */
static int save_state(struct arbiter *a)
{
    a->state.len = 0;
    arbiter_core_save(a->core, &a->state);
    int fd = fsio_open(a->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return fd;
    int rc = fsio_write_all(fd, a->state.p, a->state.len);
    if (rc == 0)
        rc = fsio_fsync(fd);
    fsio_close(fd);
    if (rc == 0)
        rc = fsio_rename(a->tmp_path, a->path);
    if (rc == 0)
        rc = fsio_fsync_dir(a->cfg->dir);
    if (a->state.cap > 1024 * 1024)
        buf_free(&a->state);
    if (rc == 0)
        a->state_writes++;
    return rc;
}

static void fail(struct arbiter *a, int err)
{
    log_error("arbiter", "cannot write the state file, stopping (no reply is sent for changes "
                         "that were not written)",
              "file=%s err=\"%s\"", a->path, td_strerror(err));
    a->failed = true;
    /* Close every client without writing: their replies would claim durability. */
    while (!list_empty(&a->clients))
        client_close(container_of(a->clients.next, struct client, link));
    if (a->on_fatal)
        a->on_fatal(a->on_fatal_ud);
}

/* --- output --- */

static void mark_pending(struct client *c)
{
    if (list_empty(&c->pending))
        list_append(&c->a->pending, &c->pending);
}

/* Hands c's output (and a watch push when due) to the write queue. */
static void client_write(struct client *c)
{
    if (c->closing)
        return;
    if (c->watching && c->watch_rev > c->watch_sent) {
        resp_add_array(&c->out, 2);
        resp_add_bulk(&c->out, "changed", 7);
        resp_add_int(&c->out, (int64_t)c->watch_rev);
        c->watch_sent = c->watch_rev;
    }
    if (c->out.len > 0) {
        int rc = wq_write(&c->wq, c->out.p, c->out.len);
        c->out.len = 0;
        if (c->out.cap > 64 * 1024)
            buf_free(&c->out);
        if (rc < 0) {
            log_debug("client", "write failed", "addr=%s err=%s", c->addr, uv_strerror(rc));
            client_close(c);
            return;
        }
        if (wq_pending(&c->wq) > OUTPUT_LIMIT) {
            log_notice("client", "output buffer limit reached, closing", "addr=%s", c->addr);
            client_close(c);
            return;
        }
    }
    if (c->close_after && wq_pending(&c->wq) == 0)
        client_close(c);
}

static void on_drain(struct wq *q, int status)
{
    struct client *c = q->data;
    if (c->closing)
        return;
    if (status < 0 || c->close_after)
        client_close(c);
}

/* The core's change hook: wakes the watchers of key's prefix. */
static void on_change(void *ud, struct slice key, uint64_t rev)
{
    struct arbiter *a = ud;
    struct list *pos;
    list_for_each(pos, &a->watchers)
    {
        struct client *c = container_of(pos, struct client, wlink);
        if (key.len >= c->prefix.len &&
            (c->prefix.len == 0 || memcmp(key.p, c->prefix.p, c->prefix.len) == 0)) {
            c->watch_rev = rev;
            mark_pending(c);
        }
    }
}

/* --- expiry --- */

static void on_expired(void *ud, uint64_t lease, size_t nkeys)
{
    struct arbiter *a = ud;
    a->expired_leases++;
    log_notice("lease", "lease expired", "lease=%" PRIu64 " keys_deleted=%zu rev=%" PRIu64, lease,
               nkeys, arbiter_core_rev(a->core));
}

/* Collects the leases expired by now; marks the state dirty when something went. */
static void collect(struct arbiter *a)
{
    if (arbiter_core_expire(a->core, clock_now_ms(), on_expired, a) > 0)
        a->dirty = true;
}

static void on_expiry_timer(uv_timer_t *t);

/* Arms the expiry timer at the core's next expiry instant (stops it when there is none). */
static void arm_expiry(struct arbiter *a)
{
    if (a->closing)
        return;
    uint64_t next = arbiter_core_next_expiry(a->core);
    if (next == UINT64_MAX) {
        uv_timer_stop(&a->expiry);
        return;
    }
    uint64_t now = clock_now_ms();
    /* +1: the loop's cached time may lag the clock; firing early would only re-arm. */
    uv_timer_start(&a->expiry, on_expiry_timer, next > now ? next - now + 1 : 0, 0);
}

static void on_expiry_timer(uv_timer_t *t)
{
    struct arbiter *a = t->data;
    if (a->failed)
        return;
    collect(a);
    arm_expiry(a);
}

/* --- commands --- */

static bool arg_is(struct slice s, const char *name)
{
    return slice_eq_nocase(s, slice_cstr(name));
}

/* A non-negative integer argument; false when malformed. */
static bool arg_u64(struct slice s, uint64_t *out)
{
    int64_t v;
    if (!resp_parse_int(s.p, s.len, &v) || v < 0)
        return false;
    *out = (uint64_t)v;
    return true;
}

static void add_core_error(struct buf *o, int rc)
{
    if (rc == -EINVAL)
        resp_add_errorf(o, "ERR invalid request: empty key, duplicate key or TTL out of range");
    else if (rc == TD_ETOO_BIG)
        resp_add_errorf(o, "ERR limit exceeded: too many keys, leases or operations, or a key "
                           "or value too long");
    else
        resp_add_errorf(o, "ERR %s", td_strerror(rc));
}

static void cmd_grant(struct arbiter *a, struct buf *o, uint64_t ttl)
{
    uint64_t lease;
    int rc = arbiter_core_grant(a->core, clock_now_ms(), ttl, &lease);
    if (rc != 0) {
        add_core_error(o, rc);
        return;
    }
    a->dirty = true;
    log_info("lease", "granted", "lease=%" PRIu64 " ttl_ms=%" PRIu64, lease, ttl);
    resp_add_array(o, 2);
    resp_add_int(o, (int64_t)lease);
    resp_add_int(o, (int64_t)ttl);
}

static void cmd_read(struct arbiter *a, struct buf *o, struct slice prefix)
{
    size_t first, n = arbiter_core_range(a->core, prefix, &first);
    resp_add_array(o, 2);
    resp_add_int(o, (int64_t)arbiter_core_rev(a->core));
    resp_add_array(o, (int64_t)n);
    for (size_t i = 0; i < n; i++) {
        struct dcs_kv kv;
        arbiter_core_at(a->core, first + i, &kv);
        resp_add_array(o, 4);
        resp_add_bulk(o, kv.key.p, kv.key.len);
        resp_add_bulk(o, kv.value.p, kv.value.len);
        resp_add_int(o, (int64_t)kv.rev);
        resp_add_int(o, (int64_t)kv.lease);
    }
}

/* TXN ncmp (key rev)*ncmp nput (PUT key value lease | DEL key)*nput */
static void cmd_txn(struct arbiter *a, struct buf *o, int argc, const struct slice *argv)
{
    uint64_t ncmp, nput;
    int i = 1;
    if (!arg_u64(argv[i++], &ncmp) || ncmp > MAX_ARGS || (uint64_t)argc < 3 + 2 * ncmp) {
        resp_add_errorf(o, "ERR syntax: TXN ncmp (key rev)*ncmp nput (PUT key value lease | "
                           "DEL key)*nput");
        return;
    }
    struct dcs_cmp *cmp = xcalloc(ncmp + 1, sizeof(*cmp));
    struct dcs_put *put = NULL;
    for (uint64_t k = 0; k < ncmp; k++, i += 2) {
        cmp[k].key = argv[i];
        if (!arg_u64(argv[i + 1], &cmp[k].rev))
            goto syntax;
    }
    if (!arg_u64(argv[i++], &nput) || nput > MAX_ARGS)
        goto syntax;
    put = xcalloc(nput + 1, sizeof(*put));
    for (uint64_t k = 0; k < nput; k++) {
        if (i + 2 <= argc && arg_is(argv[i], "DEL")) {
            put[k].key = argv[i + 1];
            put[k].del = true;
            i += 2;
        } else if (i + 4 <= argc && arg_is(argv[i], "PUT")) {
            put[k].key = argv[i + 1];
            put[k].value = argv[i + 2];
            if (!arg_u64(argv[i + 3], &put[k].lease))
                goto syntax;
            i += 4;
        } else {
            goto syntax;
        }
    }
    if (i != argc)
        goto syntax;
    uint64_t rev = 0;
    int rc = arbiter_core_txn(a->core, clock_now_ms(), cmp, ncmp, put, nput, &rev);
    if (rc == 0 || rc == DCS_ECOMPARE || rc == DCS_ENOLEASE) {
        if (rc == 0 && nput > 0)
            a->dirty = true;
        resp_add_array(o, 2);
        resp_add_int(o, rc);
        resp_add_int(o, (int64_t)(rc == DCS_ENOLEASE ? arbiter_core_rev(a->core) : rev));
    } else {
        add_core_error(o, rc);
    }
    free(cmp);
    free(put);
    return;
syntax:
    resp_add_errorf(o, "ERR syntax: TXN ncmp (key rev)*ncmp nput (PUT key value lease | DEL "
                       "key)*nput");
    free(cmp);
    free(put);
}

static void cmd_info(struct arbiter *a, struct buf *o)
{
    struct buf b;
    buf_init(&b);
    uint64_t up = (clock_now_ms() - a->start_ms) / 1000;
    buf_printf(&b,
               "# Arbiter\r\ntandem_version:0.1.0\r\nrevision:%" PRIu64 "\r\nkeys:%zu\r\n"
               "leases:%zu\r\nexpired_leases:%" PRIu64 "\r\nconnected_clients:%" PRIu64
               "\r\nwatchers:%zu\r\nuptime_in_seconds:%" PRIu64 "\r\nstate_file:%s\r\n"
               "state_writes:%" PRIu64 "\r\ntcp_port:%d\r\n",
               arbiter_core_rev(a->core), arbiter_core_nkeys(a->core),
               arbiter_core_nleases(a->core), a->expired_leases, a->nclients,
               a->nwatchers, up, a->path, a->state_writes, a->port);
    resp_add_bulk(o, b.p, b.len);
    buf_free(&b);
}

static bool requires_auth(const struct arbiter *a)
{
    return a->cfg->requirepass && a->cfg->requirepass[0];
}

static void cmd_auth(struct client *c, int argc, const struct slice *argv)
{
    struct buf *o = &c->out;
    if (argc < 2 || argc > 3) {
        resp_add_errorf(o, "ERR wrong number of arguments for 'auth' command");
        return;
    }
    if (!requires_auth(c->a)) {
        resp_add_errorf(o, "ERR AUTH <password> called without any password configured");
        return;
    }
    struct slice pw = argv[argc - 1];
    bool user_ok = argc == 2 || arg_is(argv[1], "default");
    /* Constant-time over the password length: no timing hint of a matching prefix. */
    const char *want = c->a->cfg->requirepass;
    size_t wl = strlen(want);
    unsigned diff = (unsigned)(pw.len != wl);
    for (size_t i = 0; i < pw.len; i++)
        diff |= (unsigned)(unsigned char)pw.p[i] ^ (unsigned)(unsigned char)want[i % wl];
    if (!user_ok || diff != 0) {
        resp_add_errorf(o, "WRONGPASS invalid username-password pair or user is disabled.");
        return;
    }
    c->authed = true;
    resp_add_status(o, "OK");
}

/* Runs one command for c, appending its reply to c->out. */
static void exec_cmd(struct client *c, int argc, const struct slice *argv)
{
    struct arbiter *a = c->a;
    struct buf *o = &c->out;
    struct slice name = argv[0];
    a->cmds++;
    if (arg_is(name, "PING")) {
        if (argc > 2)
            resp_add_errorf(o, "ERR wrong number of arguments for 'ping' command");
        else if (argc == 2)
            resp_add_bulk(o, argv[1].p, argv[1].len);
        else
            resp_add_status(o, "PONG");
        return;
    }
    if (arg_is(name, "QUIT")) {
        resp_add_status(o, "OK");
        c->close_after = true;
        return;
    }
    if (arg_is(name, "AUTH")) {
        cmd_auth(c, argc, argv);
        return;
    }
    if (!c->authed) {
        resp_add_errorf(o, "NOAUTH Authentication required.");
        return;
    }
    if (c->watching) {
        resp_add_errorf(o, "ERR only PING and QUIT are allowed on a watching connection");
        return;
    }
    /* Whatever expired by now goes before the command looks at the state. */
    collect(a);
    uint64_t u;
    if (arg_is(name, "GRANT")) {
        if (argc != 2 || !arg_u64(argv[1], &u))
            resp_add_errorf(o, "ERR syntax: GRANT ttl_ms");
        else
            cmd_grant(a, o, u);
    } else if (arg_is(name, "KEEPALIVE")) {
        uint64_t ttl;
        if (argc != 2 || !arg_u64(argv[1], &u))
            resp_add_errorf(o, "ERR syntax: KEEPALIVE lease");
        else if (arbiter_core_keepalive(a->core, clock_now_ms(), u, &ttl) != 0)
            resp_add_errorf(o, "NOLEASE lease %" PRIu64 " not found or expired", u);
        else
            resp_add_int(o, (int64_t)ttl);
    } else if (arg_is(name, "REVOKE")) {
        if (argc != 2 || !arg_u64(argv[1], &u)) {
            resp_add_errorf(o, "ERR syntax: REVOKE lease");
        } else if (arbiter_core_revoke(a->core, clock_now_ms(), u) != 0) {
            resp_add_errorf(o, "NOLEASE lease %" PRIu64 " not found or expired", u);
        } else {
            a->dirty = true;
            log_info("lease", "revoked", "lease=%" PRIu64 " rev=%" PRIu64, u,
                     arbiter_core_rev(a->core));
            resp_add_status(o, "OK");
        }
    } else if (arg_is(name, "READ")) {
        if (argc != 2)
            resp_add_errorf(o, "ERR syntax: READ prefix");
        else
            cmd_read(a, o, argv[1]);
    } else if (arg_is(name, "TXN")) {
        if (argc < 3)
            resp_add_errorf(o, "ERR syntax: TXN ncmp (key rev)*ncmp nput (PUT key value lease | "
                               "DEL key)*nput");
        else
            cmd_txn(a, o, argc, argv);
    } else if (arg_is(name, "GET")) {
        struct dcs_kv kv;
        if (argc != 2)
            resp_add_errorf(o, "ERR wrong number of arguments for 'get' command");
        else if (arbiter_core_get(a->core, argv[1], &kv))
            resp_add_bulk(o, kv.value.p, kv.value.len);
        else
            resp_add_null(o);
    } else if (arg_is(name, "WATCH")) {
        if (argc != 2) {
            resp_add_errorf(o, "ERR syntax: WATCH prefix");
        } else {
            c->watching = true;
            buf_append(&c->prefix, argv[1].p, argv[1].len);
            c->watch_rev = c->watch_sent = arbiter_core_rev(a->core);
            list_append(&a->watchers, &c->wlink);
            a->nwatchers++;
            resp_add_array(o, 3);
            resp_add_bulk(o, "watching", 8);
            resp_add_bulk(o, argv[1].p, argv[1].len);
            resp_add_int(o, (int64_t)arbiter_core_rev(a->core));
        }
    } else if (arg_is(name, "INFO")) {
        cmd_info(a, o);
    } else {
        resp_add_errorf(o, "ERR unknown command '%.*s'", (int)(name.len > 64 ? 64 : name.len),
                        name.p);
    }
}

/* --- input --- */

static void set_limits(struct client *c)
{
    bool unauth = !c->authed;
    if (unauth != c->parser_unauth) {
        resp_parser_set_limits(&c->parser, unauth ? &c->a->lim_unauth : &c->a->lim_auth);
        c->parser_unauth = unauth;
    }
}

static void process_input(struct client *c)
{
    struct arbiter *a = c->a;
    size_t off = 0;
    while (!c->close_after) {
        ssize_t n = resp_parse(&c->parser, c->in.p + off, c->in.len - off);
        if (n == TD_EINCOMPLETE)
            break;
        if (n < 0) {
            const char *msg = resp_parser_error(&c->parser);
            resp_add_errorf(&c->out, "ERR %s", msg);
            log_info("client", "protocol error, closing", "addr=%s err=\"%s\"", c->addr, msg);
            c->close_after = true;
            off = c->in.len;
            uv_read_stop((uv_stream_t *)&c->tcp);
            break;
        }
        off += (size_t)n;
        if (c->parser.argc == 0)
            continue;
        exec_cmd(c, (int)c->parser.argc, c->parser.argv);
        set_limits(c);
    }
    buf_consume(&c->in, off);
    if (c->in.len > QUERY_LIMIT) {
        resp_add_errorf(&c->out, "ERR query buffer limit reached");
        log_notice("client", "query buffer limit reached, closing", "addr=%s bytes=%zu", c->addr,
                   c->in.len);
        c->close_after = true;
        c->in.len = 0;
        uv_read_stop((uv_stream_t *)&c->tcp);
    }
    arm_expiry(a);
    /* While some change is not yet on disk, nothing is written to anybody. */
    if (a->dirty)
        mark_pending(c);
    else
        client_write(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *out)
{
    (void)suggested;
    struct client *c = h->data;
    buf_reserve(&c->in, READ_CHUNK);
    *out = uv_buf_init(c->in.p + c->in.len, (unsigned)(c->in.cap - c->in.len));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    (void)b;
    struct client *c = s->data;
    if (nread == 0 || c->closing)
        return;
    if (nread < 0) {
        if (nread != UV_EOF)
            log_debug("client", "read failed", "addr=%s err=%s", c->addr, uv_strerror((int)nread));
        /* A client that shut down its sending side still gets the replies it is owed. */
        if (nread == UV_EOF &&
            (c->out.len > 0 || !list_empty(&c->pending) || wq_pending(&c->wq) > 0)) {
            c->close_after = true;
            uv_read_stop(s);
            return;
        }
        client_close(c);
        return;
    }
    c->in.len += (size_t)nread;
    process_input(c);
}

/* --- connections --- */

static void maybe_closed(struct arbiter *a)
{
    if (a->closing && a->open_handles == 0 && a->on_closed) {
        arbiter_closed_cb cb = a->on_closed;
        a->on_closed = NULL;
        cb(a->on_closed_ud);
    }
}

static void on_client_closed(uv_handle_t *h)
{
    struct client *c = h->data;
    struct arbiter *a = c->a;
    resp_parser_free(&c->parser);
    wq_free(&c->wq);
    buf_free(&c->in);
    buf_free(&c->out);
    buf_free(&c->prefix);
    free(c);
    a->open_handles--;
    maybe_closed(a);
}

static void client_close(struct client *c)
{
    if (c->closing)
        return;
    c->closing = true;
    list_remove(&c->link);
    list_remove(&c->pending);
    if (c->watching)
        c->a->nwatchers--;
    list_remove(&c->wlink);
    c->a->nclients--;
    log_debug("client", "closed", "addr=%s", c->addr);
    uv_close((uv_handle_t *)&c->tcp, on_client_closed);
}

static void on_handle_closed(uv_handle_t *h)
{
    struct arbiter *a = h->data;
    a->open_handles--;
    maybe_closed(a);
}

static void on_reject_closed(uv_handle_t *h)
{
    struct arbiter *a = h->data;
    free(h);
    a->open_handles--;
    maybe_closed(a);
}

static void on_connection(uv_stream_t *ls, int status)
{
    struct arbiter *a = ls->data;
    if (status < 0 || a->closing || a->failed) {
        if (status < 0)
            log_warn("arbiter", "accept failed", "err=%s", uv_strerror(status));
        return;
    }
    if (a->nclients >= a->cfg->max_clients) {
        a->open_handles++;
        net_refuse(ls, "-ERR max number of clients reached\r\n", a, on_reject_closed);
        log_info("arbiter", "max clients reached, connection refused", "max=%" PRIu64,
                 a->cfg->max_clients);
        return;
    }
    struct client *c = xcalloc(1, sizeof(*c));
    c->a = a;
    uv_tcp_init(a->loop, &c->tcp);
    c->tcp.data = c;
    a->open_handles++;
    list_init(&c->pending);
    list_init(&c->wlink);
    list_append(&a->clients, &c->link);
    a->nclients++;
    wq_init(&c->wq, (uv_stream_t *)&c->tcp, on_drain, c);
    c->authed = !requires_auth(a);
    c->parser_unauth = !c->authed;
    resp_parser_init(&c->parser, c->parser_unauth ? &a->lim_unauth : &a->lim_auth);
    if (uv_accept(ls, (uv_stream_t *)&c->tcp) != 0) {
        client_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    struct sockaddr_storage peer;
    int plen = sizeof(peer);
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&peer, &plen) == 0)
        addr_format((struct sockaddr *)&peer, c->addr, sizeof(c->addr));
    else
        snprintf(c->addr, sizeof(c->addr), "?");
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
        client_close(c);
        return;
    }
    log_debug("client", "accepted", "addr=%s", c->addr);
}

/* Just before the loop polls: make this iteration's changes durable, then release output. */
static void before_poll(uv_prepare_t *h)
{
    struct arbiter *a = h->data;
    if (a->failed)
        return;
    if (a->dirty) {
        int rc = save_state(a);
        if (rc != 0) {
            fail(a, rc);
            return;
        }
        a->dirty = false;
    }
    while (!list_empty(&a->pending)) {
        struct client *c = container_of(a->pending.next, struct client, pending);
        list_remove(&c->pending);
        client_write(c);
    }
}

/* --- lifecycle --- */

struct arbiter *arbiter_new(uv_loop_t *loop, const struct arbiter_config *cfg)
{
    struct arbiter *a = xcalloc(1, sizeof(*a));
    a->loop = loop;
    a->cfg = cfg;
    a->core = arbiter_core_new(NULL);
    arbiter_core_set_hook(a->core, on_change, a);
    list_init(&a->clients);
    list_init(&a->pending);
    list_init(&a->watchers);
    a->lock_fd = -1;
    size_t n = strlen(cfg->dir) + sizeof(STATE_TMP) + 2;
    a->path = xmalloc(n);
    a->tmp_path = xmalloc(n);
    snprintf(a->path, n, "%s/%s", cfg->dir, STATE_FILE);
    snprintf(a->tmp_path, n, "%s/%s", cfg->dir, STATE_TMP);
    a->lim_auth = (struct resp_limits){MAX_BULK, MAX_ARGS, MAX_INLINE, false};
    a->lim_unauth = (struct resp_limits){16384, 10, MAX_INLINE, true};
    a->start_ms = clock_now_ms();
    uv_timer_init(loop, &a->expiry);
    a->expiry.data = a;
    uv_prepare_init(loop, &a->before_poll);
    a->before_poll.data = a;
    a->open_handles = 2;
    return a;
}

void arbiter_free(struct arbiter *a)
{
    if (a == NULL)
        return;
    arbiter_core_free(a->core);
    buf_free(&a->state);
    free(a->path);
    free(a->tmp_path);
    free(a);
}

int arbiter_port(const struct arbiter *a)
{
    return a->port;
}

void arbiter_on_fatal(struct arbiter *a, arbiter_fatal_cb cb, void *ud)
{
    a->on_fatal = cb;
    a->on_fatal_ud = ud;
}

/* Locks DIR against a second arbiter and loads the state file. */
static int load(struct arbiter *a, char *err, size_t errlen)
{
    char lock[4096];
    snprintf(lock, sizeof(lock), "%s/%s", a->cfg->dir, LOCK_FILE);
    int fd = fsio_open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open %s: %s", lock, td_strerror(fd));
        return fd;
    }
    a->lock_fd = fd;
    int rc = fsio_lock(fd);
    if (rc != 0) {
        snprintf(err, errlen, "%s is in use by another arbiter (%s)", a->cfg->dir,
                 td_strerror(rc));
        return rc;
    }
    struct buf b;
    buf_init(&b);
    rc = fsio_read_file(a->path, &b);
    if (rc == -ENOENT) {
        buf_free(&b);
        log_notice("arbiter", "no state file, starting empty", "file=%s", a->path);
        return 0;
    }
    if (rc != 0) {
        snprintf(err, errlen, "cannot read %s: %s", a->path, td_strerror(rc));
        buf_free(&b);
        return rc;
    }
    rc = arbiter_core_load(a->core, b.p, b.len, clock_now_ms());
    buf_free(&b);
    if (rc != 0) {
        snprintf(err, errlen,
                 "state file %s is damaged (bad CRC, format or contents): refusing to start; "
                 "restore it from a copy or move it away to start empty (the revision then "
                 "restarts from 0)",
                 a->path);
        return rc;
    }
    log_notice("arbiter", "state loaded",
               "file=%s rev=%" PRIu64 " keys=%zu leases=%zu lease_ttls=restarted", a->path,
               arbiter_core_rev(a->core), arbiter_core_nkeys(a->core),
               arbiter_core_nleases(a->core));
    return 0;
}

int arbiter_start(struct arbiter *a, char *err, size_t errlen)
{
    int rc = load(a, err, errlen);
    if (rc != 0)
        return rc;
    /* Remove a temporary file left by a crash mid-write: the renamed file is the state. */
    fsio_unlink(a->tmp_path);
    uv_tcp_init(a->loop, &a->listener);
    a->listener.data = a;
    a->open_handles++;
    a->listening = true;
    struct sockaddr_storage bound;
    rc = net_listen(&a->listener, (const struct sockaddr *)&a->cfg->listen, 128, on_connection,
                    &bound, err, errlen);
    if (rc < 0)
        return rc;
    a->port = addr_port((struct sockaddr *)&bound);
    char addr[128];
    addr_format((const struct sockaddr *)&bound, addr, sizeof(addr));
    uv_prepare_start(&a->before_poll, before_poll);
    arm_expiry(a);
    log_notice("arbiter", "listening", "addr=%s port=%d dir=%s", addr, a->port, a->cfg->dir);
    return 0;
}

void arbiter_close(struct arbiter *a, arbiter_closed_cb cb, void *ud)
{
    if (a->closing)
        return;
    /* A change made in this iteration is written even though its reply will not be sent. */
    if (a->dirty && !a->failed) {
        int rc = save_state(a);
        if (rc != 0)
            log_error("arbiter", "cannot write the state file at shutdown", "err=\"%s\"",
                      td_strerror(rc));
        a->dirty = false;
    }
    a->closing = true;
    a->on_closed = cb;
    a->on_closed_ud = ud;
    while (!list_empty(&a->clients))
        client_close(container_of(a->clients.next, struct client, link));
    if (a->listening)
        uv_close((uv_handle_t *)&a->listener, on_handle_closed);
    uv_close((uv_handle_t *)&a->expiry, on_handle_closed);
    uv_close((uv_handle_t *)&a->before_poll, on_handle_closed);
    if (a->lock_fd >= 0) {
        fsio_close(a->lock_fd);
        a->lock_fd = -1;
    }
}
