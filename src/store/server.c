/* SPDX-License-Identifier: MIT */
/* store/server.c -- the libuv side of `tandem db`.
 *
 * Per client: bytes read are appended to an input buffer; every complete command in it is
 * parsed (proto/resp) and run (store/cmd) at once, its reply appended to the output buffer.
 * Replies are written in one batch per client per loop iteration, from a prepare handle that
 * runs just before the loop polls again ("before sleep"): first the persistence layer is asked
 * to flush what this iteration appended (group commit), then each client with output gets one
 * uv_try_write; what the kernel does not take goes to a uv_write request.
 *
 * Held replies: when persistence is installed, a write command's reply, and everything after it
 * on that connection, stays in the output buffer until the layer reports its LSN durable. A
 * client keeps a FIFO of (lsn, absolute output offset) holds; bytes before the first hold may be
 * sent.
 *
 * Limits (each closes only the offending client): protocol errors (reply, then close), query
 * buffer, output buffer (a client that does not read its replies), max clients (an error reply
 * on accept), idle timeout. */
#include "store/server.h"

#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/list.h"
#include "base/log.h"
#include "base/parse.h"
#include "net/listen.h"
#include "proto/resp.h"
#include "store/cmd.h"
#include "store/keyspace.h"

#define READ_CHUNK (16 * 1024)
#define INLINE_MAX (64 * 1024)
#define SHRINK_ABOVE (64 * 1024)
#define CRON_MS 100
#define EXPIRE_BUDGET_US 25000 /* at most a quarter of each cron period on expiry */
#define OPS_SAMPLES 16
#define IDLE_BUFFERS_MS 1000 /* quiet clients lose their empty buffers after this */

struct hold {
    uint64_t lsn;
    uint64_t off; /* absolute output offset where the held reply starts */
};

struct client {
    uv_tcp_t tcp;
    struct server *srv;
    struct list link;    /* srv->clients, least recently active first */
    struct list pending; /* srv->pending when it has output to write */
    struct list heldl;   /* srv->held when it has holds */
    struct session sess;
    struct buf in;
    size_t in_off; /* parsed bytes at the front of in */
    struct resp_parser parser;
    bool parser_unauth;
    struct buf out;
    uint64_t out_base; /* bytes removed from the front of out since the connection began */
    struct buf wbuf;   /* bytes owned by the in-flight uv_write */
    size_t wbuf_off;
    uv_write_t wreq;
    bool writing;
    struct hold *holds;
    size_t hold_head, hold_len, hold_cap;
    struct list waitl;       /* srv->waiting while blocked in WAIT */
    uint64_t wait_until_ms;  /* WAIT's deadline (0: none) */
    uint64_t last_ms;
    bool closing;
    bool reading;
    char addr[64];
};

struct server {
    uv_loop_t *loop;
    struct db *db;
    const struct db_config *cfg;
    struct cmd_env env;
    uv_tcp_t listener;
    uv_timer_t cron;
    uv_prepare_t before_poll;
    int open_handles;
    bool started, closing;
    struct list clients;
    struct list pending;
    struct list held;
    struct list waiting; /* clients blocked in WAIT */
    uint64_t nclients;
    uint64_t next_id;
    int port;
    const struct persist_ops *pops;
    void *pud;
    uint64_t flushed_lsn; /* highest LSN handed to flush */
    uint64_t durable_lsn;
    bool wait_check; /* a blocked WAIT may be answerable */
    server_shutdown_cb on_shutdown;
    void *on_shutdown_ud;
    server_closed_cb on_closed;
    void *on_closed_ud;
    struct resp_limits lim_auth, lim_unauth;
    /* stats */
    uint64_t stat_conns, stat_rejected, stat_cmds, stat_net_in, stat_net_out;
    uint64_t ops_samples[OPS_SAMPLES];
    uint64_t ops_last_cmds, ops_last_ms;
    unsigned ops_idx;
    uint64_t start_ms;
    char run_id[41];
};

static void client_close(struct client *c);
static void client_flush(struct client *c);

/* --- INFO sections the server owns --- */

static uint64_t used_memory(const struct server *srv)
{
    struct mallinfo2 mi = mallinfo2();
    uint64_t used = (uint64_t)mi.uordblks + (uint64_t)mi.hblkhd;
    /* Under sanitizers the allocator is not glibc's and reports nothing. */
    return used ? used : keyspace_mem(srv->db->ks);
}

static uint64_t rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL)
        return 0;
    unsigned long long size = 0, res = 0;
    if (fscanf(f, "%llu %llu", &size, &res) != 2)
        res = 0;
    fclose(f);
    return (uint64_t)res * (uint64_t)sysconf(_SC_PAGESIZE);
}

static void human(char *out, size_t len, uint64_t n)
{
    if (n < 1024)
        snprintf(out, len, "%" PRIu64 "B", n);
    else if (n < (1ull << 20))
        snprintf(out, len, "%.2fK", (double)n / 1024);
    else if (n < (1ull << 30))
        snprintf(out, len, "%.2fM", (double)n / (1024 * 1024));
    else
        snprintf(out, len, "%.2fG", (double)n / (1024.0 * 1024 * 1024));
}

static uint64_t ops_per_sec(const struct server *srv)
{
    uint64_t sum = 0;
    for (int i = 0; i < OPS_SAMPLES; i++)
        sum += srv->ops_samples[i];
    return sum / OPS_SAMPLES;
}

static void server_info(void *ud, const char *section, struct buf *o)
{
    struct server *srv = ud;
    uint64_t now = clock_now_ms();
    if (!strcmp(section, "server")) {
        struct utsname u;
        if (uname(&u) != 0)
            memset(&u, 0, sizeof(u));
        uint64_t up = (now - srv->start_ms) / 1000;
        buf_printf(o,
                   "tandem_version:0.1.0\r\nos:%s %s %s\r\narch_bits:64\r\nmultiplexing_api:libuv"
                   "\r\nprocess_id:%ld\r\nrun_id:%s\r\ntcp_port:%d\r\nserver_time_usec:%" PRIu64
                   "\r\nuptime_in_seconds:%" PRIu64 "\r\nuptime_in_days:%" PRIu64
                   "\r\nhz:10\r\nconfigured_hz:10\r\nconfig_file:\r\n",
                   u.sysname, u.release, u.machine, (long)getpid(), srv->run_id, srv->port,
                   clock_wall_ms() * 1000, up, up / 86400);
    } else if (!strcmp(section, "clients")) {
        buf_printf(o,
                   "connected_clients:%" PRIu64 "\r\nmaxclients:%" PRIu64
                   "\r\nblocked_clients:0\r\ntracking_clients:0\r\n",
                   srv->nclients, srv->cfg->max_clients);
    } else if (!strcmp(section, "memory")) {
        char h1[32], h2[32];
        uint64_t used = used_memory(srv), rss = rss_bytes();
        human(h1, sizeof(h1), used);
        human(h2, sizeof(h2), rss);
        buf_printf(o,
                   "used_memory:%" PRIu64 "\r\nused_memory_human:%s\r\nused_memory_rss:%" PRIu64
                   "\r\nused_memory_rss_human:%s\r\n",
                   used, h1, rss, h2);
    } else if (!strcmp(section, "stats")) {
        buf_printf(o,
                   "total_connections_received:%" PRIu64 "\r\ntotal_commands_processed:%" PRIu64
                   "\r\ninstantaneous_ops_per_sec:%" PRIu64 "\r\ntotal_net_input_bytes:%" PRIu64
                   "\r\ntotal_net_output_bytes:%" PRIu64 "\r\nrejected_connections:%" PRIu64 "\r\n",
                   srv->stat_conns, srv->stat_cmds, ops_per_sec(srv), srv->stat_net_in,
                   srv->stat_net_out, srv->stat_rejected);
    } else if (!strcmp(section, "replication") && srv->env.repl == NULL) {
        buf_printf(o, "master_replid:%s\r\n", srv->run_id);
    }
}

/* --- construction --- */

struct server *server_new(uv_loop_t *loop, struct db *db, const struct db_config *cfg)
{
    struct server *srv = xcalloc(1, sizeof(*srv));
    srv->loop = loop;
    srv->db = db;
    srv->cfg = cfg;
    cmd_env_init(&srv->env, db);
    srv->env.info = server_info;
    srv->env.info_ud = srv;
    list_init(&srv->clients);
    list_init(&srv->pending);
    list_init(&srv->held);
    list_init(&srv->waiting);
    srv->next_id = 1;
    srv->lim_auth = (struct resp_limits){cfg->max_bulk, cfg->max_multibulk, INLINE_MAX, false};
    /* Before AUTH, Redis accepts only small commands: a stranger cannot make it buffer much.
     * (Replicas of a primary with a password send AUTH before REPLSYNC.) */
    srv->lim_unauth =
        (struct resp_limits){cfg->max_bulk < 16384 ? cfg->max_bulk : 16384,
                             cfg->max_multibulk < 10 ? cfg->max_multibulk : 10, INLINE_MAX, true};
    unsigned char rnd[20];
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
        memset(rnd, 0x5a, sizeof(rnd));
    for (int i = 0; i < 20; i++)
        snprintf(srv->run_id + 2 * i, 3, "%02x", rnd[i]);
    srv->start_ms = clock_now_ms();
    return srv;
}

void server_free(struct server *srv)
{
    if (srv == NULL)
        return;
    cmd_env_free(&srv->env);
    free(srv);
}

int server_port(const struct server *srv)
{
    return srv->port;
}

static bool requires_auth(const struct server *srv)
{
    return srv->cfg->requirepass && srv->cfg->requirepass[0];
}

void server_on_shutdown(struct server *srv, server_shutdown_cb cb, void *ud)
{
    srv->on_shutdown = cb;
    srv->on_shutdown_ud = ud;
}

/* --- holds (replies waiting for durability) --- */

static void hold_push(struct client *c, uint64_t lsn, uint64_t off)
{
    if (c->hold_len > 0) {
        /* Writes appended since the last flush will be made durable by the same flush, so the
         * newest hold can simply cover this one too: one hold per client per batch. */
        struct hold *last = &c->holds[(c->hold_head + c->hold_len - 1) % c->hold_cap];
        if (last->lsn > c->srv->flushed_lsn) {
            if (lsn > last->lsn)
                last->lsn = lsn;
            return;
        }
    }
    if (c->hold_len == c->hold_cap) {
        size_t cap = c->hold_cap ? c->hold_cap * 2 : 8;
        struct hold *h = xmalloc(cap * sizeof(*h));
        for (size_t i = 0; i < c->hold_len; i++)
            h[i] = c->holds[(c->hold_head + i) % c->hold_cap];
        free(c->holds);
        c->holds = h;
        c->hold_cap = cap;
        c->hold_head = 0;
    }
    c->holds[(c->hold_head + c->hold_len) % c->hold_cap] = (struct hold){lsn, off};
    if (c->hold_len++ == 0)
        list_append(&c->srv->held, &c->heldl);
}

/* Drops holds up to lsn; returns true when some were released. */
static bool hold_release(struct client *c, uint64_t lsn)
{
    bool any = false;
    while (c->hold_len > 0 && c->holds[c->hold_head].lsn <= lsn) {
        c->hold_head = (c->hold_head + 1) % c->hold_cap;
        c->hold_len--;
        any = true;
    }
    if (c->hold_len == 0)
        list_remove(&c->heldl);
    return any;
}

static void mark_pending(struct client *c)
{
    if (list_empty(&c->pending))
        list_append(&c->srv->pending, &c->pending);
}

static void on_durable(void *ctx, uint64_t lsn)
{
    struct server *srv = ctx;
    if (lsn <= srv->durable_lsn)
        return;
    srv->durable_lsn = lsn;
    struct list *pos, *tmp;
    list_for_each_safe(pos, tmp, &srv->held)
    {
        struct client *c = container_of(pos, struct client, heldl);
        if (hold_release(c, lsn))
            mark_pending(c);
    }
}

void server_set_persist(struct server *srv, const struct persist_ops *ops, void *ud)
{
    srv->pops = ops;
    srv->pud = ud;
    db_set_persist(srv->db, ops, ud);
    if (ops && ops->bind)
        ops->bind(ud, on_durable, srv);
}

/* --- output --- */

/* Bytes of out that may be sent now (before the first hold). */
static size_t sendable(const struct client *c)
{
    if (c->hold_len == 0)
        return c->out.len;
    uint64_t off = c->holds[c->hold_head].off;
    return off > c->out_base ? (size_t)(off - c->out_base) : 0;
}

static void out_consume(struct client *c, size_t n)
{
    buf_consume(&c->out, n);
    c->out_base += n;
    if (c->out.len == 0 && c->out.cap > SHRINK_ABOVE)
        buf_free(&c->out);
}

static void on_write(uv_write_t *req, int status)
{
    struct client *c = req->data;
    c->writing = false;
    c->wbuf.len = 0;
    c->wbuf_off = 0;
    if (c->wbuf.cap > SHRINK_ABOVE)
        buf_free(&c->wbuf);
    if (c->closing)
        return;
    if (status < 0) {
        log_debug("client", "write failed", "addr=%s err=%s", c->addr, uv_strerror(status));
        client_close(c);
        return;
    }
    client_flush(c);
}

/* Writes what may be sent: one try_write, the rest through a uv_write request. Closes the
 * client once everything is written when it asked to be closed. */
static void client_flush(struct client *c)
{
    if (c->writing || c->closing)
        return;
    size_t n = sendable(c);
    if (n > 0) {
        uv_buf_t b = uv_buf_init(c->out.p, (unsigned)(n > UINT32_MAX ? UINT32_MAX : n));
        int w = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        if (w == UV_EAGAIN || w == UV_ENOSYS)
            w = 0;
        if (w < 0) {
            log_debug("client", "write failed", "addr=%s err=%s", c->addr, uv_strerror(w));
            client_close(c);
            return;
        }
        c->srv->stat_net_out += (uint64_t)w;
        if ((size_t)w < n) {
            /* The kernel is full: hand the rest of the sendable bytes to libuv. */
            if (n == c->out.len) {
                struct buf t = c->wbuf;
                c->wbuf = c->out;
                c->out = t;
                c->out.len = 0;
                c->wbuf_off = (size_t)w;
            } else {
                buf_append(&c->wbuf, c->out.p + w, n - (size_t)w);
                buf_consume(&c->out, n);
                c->wbuf_off = 0;
            }
            c->out_base += n;
            c->srv->stat_net_out += c->wbuf.len - c->wbuf_off;
            uv_buf_t wb =
                uv_buf_init(c->wbuf.p + c->wbuf_off, (unsigned)(c->wbuf.len - c->wbuf_off));
            c->wreq.data = c;
            int rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &wb, 1, on_write);
            if (rc < 0) {
                client_close(c);
                return;
            }
            c->writing = true;
            return;
        }
        out_consume(c, n);
    }
    if ((c->sess.flags & SESSION_CLOSE_AFTER_REPLY) && c->out.len == 0 && c->hold_len == 0)
        client_close(c);
}

/* --- input --- */

static void set_parser_limits(struct client *c)
{
    bool unauth = !c->sess.authed;
    if (unauth != c->parser_unauth) {
        resp_parser_set_limits(&c->parser, unauth ? &c->srv->lim_unauth : &c->srv->lim_auth);
        c->parser_unauth = unauth;
    }
}

static void stop_reading(struct client *c)
{
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
}

/* --- replication: REPLSYNC hand-over and WAIT --- */

static bool is_replsync(const struct resp_parser *p)
{
    static const char name[] = "replsync";
    const struct slice a = p->argv[0];
    if (a.len != sizeof(name) - 1)
        return false;
    for (size_t i = 0; i < a.len; i++)
        if ((a.p[i] | 0x20) != name[i])
            return false;
    return true;
}

/* A replica's hello: hands the socket, with the input from the hello on, to the replication
 * layer. Replies owed to earlier commands on the connection are written first. */
static void hand_over(struct client *c, size_t start)
{
    struct server *srv = c->srv;
    stop_reading(c);
    size_t n = sendable(c);
    if (c->writing || c->hold_len > 0 || n != c->out.len) {
        log_info("client", "REPLSYNC after unfinished commands, closing", "addr=%s", c->addr);
        client_close(c);
        return;
    }
    if (n > 0) {
        uv_buf_t b = uv_buf_init(c->out.p, (unsigned)n);
        if (uv_try_write((uv_stream_t *)&c->tcp, &b, 1) != (int)n) {
            client_close(c);
            return;
        }
    }
    uv_os_fd_t ofd;
    int fd = -1;
    if (uv_fileno((const uv_handle_t *)&c->tcp, &ofd) == 0)
        fd = dup(ofd);
    if (fd == -1) {
        log_warn("client", "cannot take over a replica's socket", "addr=%s err=%s", c->addr,
                 strerror(errno));
        client_close(c);
        return;
    }
    log_info("client", "replica connection handed to replication", "addr=%s", c->addr);
    /* The input stays valid until the close callback runs on a later iteration. */
    const char *in = c->in.p + start;
    size_t len = c->in.len - start;
    client_close(c);
    int rc = srv->env.repl->attach(srv->env.repl_ud, fd, in, len);
    if (rc != 0)
        log_info("client", "replica refused", "err=%s", td_strerror(rc));
}

static unsigned acked_replicas(const struct server *srv, uint64_t lsn)
{
    return srv->env.repl ? srv->env.repl->count_acked(srv->env.repl_ud, lsn) : 0;
}

/* WAIT: answers at once when enough replicas hold the connection's last write, else blocks
 * the client (its later commands wait) until they do or the timeout passes. */
static void wait_begin(struct client *c)
{
    struct server *srv = c->srv;
    unsigned n = acked_replicas(srv, c->sess.last_write_lsn);
    if (n >= c->sess.wait_replicas) {
        resp_add_int(&c->out, n);
        return;
    }
    c->wait_until_ms = c->sess.wait_timeout_ms ? clock_now_ms() + c->sess.wait_timeout_ms : 0;
    list_append(&srv->waiting, &c->waitl);
}

static bool process_input(struct client *c);

/* Answers every blocked WAIT that is satisfied or timed out and resumes its client. */
static void wake_waiters(struct server *srv)
{
    srv->wait_check = false;
    uint64_t now = clock_now_ms();
    /* Collect first: resuming a client runs its commands, which may close other clients. */
    struct list ready;
    list_init(&ready);
    struct list *pos, *tmp;
    list_for_each_safe(pos, tmp, &srv->waiting)
    {
        struct client *c = container_of(pos, struct client, waitl);
        unsigned n = acked_replicas(srv, c->sess.last_write_lsn);
        if (n < c->sess.wait_replicas && (c->wait_until_ms == 0 || now < c->wait_until_ms))
            continue;
        list_remove(&c->waitl);
        list_append(&ready, &c->waitl);
    }
    while (!list_empty(&ready)) {
        struct client *c = container_of(ready.next, struct client, waitl);
        list_remove(&c->waitl);
        resp_add_int(&c->out, acked_replicas(srv, c->sess.last_write_lsn));
        mark_pending(c);
        process_input(c);
    }
}

void server_repl_changed(struct server *srv)
{
    if (!list_empty(&srv->waiting))
        srv->wait_check = true;
}

void server_set_repl(struct server *srv, const struct cmd_repl_ops *ops, void *ud)
{
    srv->env.repl = ops;
    srv->env.repl_ud = ud;
}

void server_drop_held(struct server *srv, const char *why)
{
    unsigned n = 0;
    while (!list_empty(&srv->held)) {
        struct client *c = container_of(srv->held.next, struct client, heldl);
        client_close(c);
        n++;
    }
    if (n)
        log_notice("server", "closed clients waiting for unacknowledged writes",
                   "clients=%u cause=\"%s\"", n, why);
}

/* Runs every complete command buffered for c. Returns false when c was closed. */
static bool process_input(struct client *c)
{
    struct server *srv = c->srv;
    srv->db->now_ms = (int64_t)clock_wall_ms();
    while (!(c->sess.flags & SESSION_CLOSE_AFTER_REPLY) && list_empty(&c->waitl)) {
        size_t start = c->in_off;
        ssize_t n = resp_parse(&c->parser, c->in.p + c->in_off, c->in.len - c->in_off);
        if (n == TD_EINCOMPLETE)
            break;
        if (n < 0) {
            const char *msg = resp_parser_error(&c->parser);
            char line[160];
            int len = snprintf(line, sizeof(line), "ERR %s", msg);
            resp_add_error(&c->out, line, (size_t)len);
            log_info("client", "protocol error, closing", "addr=%s err=\"%s\"", c->addr, msg);
            c->sess.flags |= SESSION_CLOSE_AFTER_REPLY;
            c->in.len = c->in_off = 0;
            stop_reading(c);
            break;
        }
        c->in_off += (size_t)n;
        if (c->parser.argc == 0)
            continue;
        /* Inside MULTI, REPLSYNC is refused by the command layer like any other command that
         * cannot be queued. */
        if (srv->env.repl && !c->sess.multi.on && is_replsync(&c->parser)) {
            hand_over(c, start);
            return false;
        }
        uint64_t out_at = c->out_base + c->out.len;
        bool wrote = cmd_exec(&srv->env, &c->sess, (int)c->parser.argc, c->parser.argv);
        srv->stat_cmds++;
        if (wrote) {
            hold_push(c, srv->db->last_lsn, out_at);
            c->sess.last_write_lsn = srv->db->last_lsn;
        }
        if (c->sess.flags & SESSION_WAIT) {
            c->sess.flags &= ~SESSION_WAIT;
            wait_begin(c);
        }
        if (c->sess.flags & SESSION_SHUTDOWN) {
            log_notice("server", "shutdown requested", "addr=%s", c->addr);
            c->sess.flags &= ~SESSION_SHUTDOWN;
            if (srv->on_shutdown)
                srv->on_shutdown(srv->on_shutdown_ud);
            else
                server_close(srv, NULL, NULL);
            return false;
        }
        if (c->out.len + c->wbuf.len > srv->cfg->output_limit) {
            log_notice("client", "output buffer limit reached, closing", "addr=%s bytes=%zu",
                       c->addr, c->out.len + c->wbuf.len);
            client_close(c);
            return false;
        }
        set_parser_limits(c);
    }
    if (c->in_off == c->in.len) {
        c->in.len = c->in_off = 0;
        if (c->in.cap > SHRINK_ABOVE)
            buf_free(&c->in);
    } else if (c->in_off > 0) {
        buf_consume(&c->in, c->in_off);
        c->in_off = 0;
    }
    if (c->in.len > srv->cfg->query_buffer) {
        log_notice("client", "query buffer limit reached, closing", "addr=%s bytes=%zu", c->addr,
                   c->in.len);
        client_close(c);
        return false;
    }
    if (c->sess.flags & SESSION_CLOSE_AFTER_REPLY)
        stop_reading(c);
    if (c->out.len > 0 || (c->sess.flags & SESSION_CLOSE_AFTER_REPLY)) {
        /* Nothing held: write now, so this client's round trip does not also wait for every
         * other client read in the same poll (same syscalls as deferring: one write per read).
         * With held replies the write waits for the before-poll flush of the log. */
        if (c->hold_len == 0) {
            client_flush(c);
            return !c->closing;
        }
        mark_pending(c);
    }
    return true;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *out)
{
    (void)suggested;
    struct client *c = h->data;
    size_t want = READ_CHUNK;
    size_t need = resp_parser_need(&c->parser);
    size_t have = c->in.len - c->in_off;
    if (need > have && need - have > want) {
        want = need - have;
        if (want > (64u << 20))
            want = 64u << 20;
    }
    buf_reserve(&c->in, want);
    size_t room = c->in.cap - c->in.len;
    *out = uv_buf_init(c->in.p + c->in.len, (unsigned)(room > UINT32_MAX ? UINT32_MAX : room));
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
        /* Replies still owed (held for durability, or not yet written) are delivered first. */
        if (nread == UV_EOF && (c->out.len > 0 || c->writing || c->hold_len > 0)) {
            c->sess.flags |= SESSION_CLOSE_AFTER_REPLY;
            stop_reading(c);
            mark_pending(c);
            return;
        }
        client_close(c);
        return;
    }
    struct server *srv = c->srv;
    c->in.len += (size_t)nread;
    srv->stat_net_in += (uint64_t)nread;
    c->last_ms = clock_now_ms();
    list_remove(&c->link);
    list_append(&srv->clients, &c->link);
    process_input(c);
}

/* --- connections --- */

static void on_client_closed(uv_handle_t *h)
{
    struct client *c = h->data;
    struct server *srv = c->srv;
    resp_parser_free(&c->parser);
    buf_free(&c->in);
    buf_free(&c->out);
    buf_free(&c->wbuf);
    free(c->holds);
    cmd_session_free(&c->sess);
    free(c);
    srv->open_handles--;
    if (srv->closing && srv->open_handles == 0 && srv->on_closed)
        srv->on_closed(srv->on_closed_ud);
}

static void client_close(struct client *c)
{
    if (c->closing)
        return;
    c->closing = true;
    list_remove(&c->link);
    list_remove(&c->pending);
    list_remove(&c->heldl);
    list_remove(&c->waitl);
    c->srv->nclients--;
    log_debug("client", "closed", "addr=%s id=%" PRIu64, c->addr, c->sess.id);
    uv_close((uv_handle_t *)&c->tcp, on_client_closed);
}

static void on_reject_closed(uv_handle_t *h)
{
    struct server *srv = h->data;
    free(h);
    srv->open_handles--;
    if (srv->closing && srv->open_handles == 0 && srv->on_closed)
        srv->on_closed(srv->on_closed_ud);
}

static void on_connection(uv_stream_t *ls, int status)
{
    struct server *srv = ls->data;
    if (status < 0 || srv->closing) {
        if (status < 0)
            log_warn("server", "accept failed", "err=%s", uv_strerror(status));
        return;
    }
    if (srv->nclients >= srv->cfg->max_clients) {
        srv->open_handles++;
        net_refuse(ls, "-ERR max number of clients reached\r\n", srv, on_reject_closed);
        srv->stat_rejected++;
        log_info("server", "max clients reached, connection refused", "max=%" PRIu64,
                 srv->cfg->max_clients);
        return;
    }
    struct client *c = xcalloc(1, sizeof(*c));
    c->srv = srv;
    uv_tcp_init(srv->loop, &c->tcp);
    c->tcp.data = c;
    srv->open_handles++;
    list_init(&c->link);
    list_init(&c->pending);
    list_init(&c->heldl);
    list_init(&c->waitl);
    srv->nclients++;
    list_append(&srv->clients, &c->link);
    if (uv_accept(ls, (uv_stream_t *)&c->tcp) != 0) {
        client_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    uv_tcp_keepalive(&c->tcp, 1, 300);
    struct sockaddr_storage peer;
    int plen = sizeof(peer);
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&peer, &plen) == 0)
        addr_format((struct sockaddr *)&peer, c->addr, sizeof(c->addr));
    else
        snprintf(c->addr, sizeof(c->addr), "?");
    c->sess.id = srv->next_id++;
    c->sess.authed = !requires_auth(srv);
    c->sess.out = &c->out;
    c->parser_unauth = !c->sess.authed;
    resp_parser_init(&c->parser, c->parser_unauth ? &srv->lim_unauth : &srv->lim_auth);
    c->last_ms = clock_now_ms();
    srv->stat_conns++;
    int rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (rc < 0) {
        client_close(c);
        return;
    }
    c->reading = true;
    log_debug("client", "accepted", "addr=%s id=%" PRIu64, c->addr, c->sess.id);
}

/* --- periodic jobs and the before-poll batch --- */

static void before_poll(uv_prepare_t *h)
{
    struct server *srv = h->data;
    if (srv->wait_check)
        wake_waiters(srv);
    if (srv->pops && srv->db->last_lsn > srv->flushed_lsn) {
        srv->flushed_lsn = srv->db->last_lsn;
        srv->pops->flush(srv->pud);
    }
    while (!list_empty(&srv->pending)) {
        struct client *c = container_of(srv->pending.next, struct client, pending);
        list_remove(&c->pending);
        client_flush(c);
    }
}

static void active_expire(struct server *srv)
{
    struct keyspace *ks = srv->db->ks;
    if (keyspace_expires(ks) == 0)
        return;
    srv->db->now_ms = (int64_t)clock_wall_ms();
    /* Sweep enough that a full pass over the table takes at most ~10 s, and keep going while
     * a good share of what is visited turns out expired, within a time budget. */
    uint64_t steps = keyspace_buckets(ks) / (10000 / CRON_MS);
    if (steps < 256)
        steps = 256;
    uint64_t t0 = clock_now_us();
    for (;;) {
        bool wrapped;
        uint64_t chunk = steps < 1024 ? steps : 1024;
        uint64_t removed = keyspace_expire_cycle(ks, srv->db->now_ms, chunk, &wrapped);
        steps = steps > chunk ? steps - chunk : 0;
        if (wrapped || clock_now_us() - t0 > EXPIRE_BUDGET_US)
            break;
        if (steps == 0) {
            if (removed * 10 < chunk)
                break;
            steps = 1024; /* many expired keys: continue within the budget */
        }
    }
}

/* Frees the empty buffers of clients that have been quiet for a while, so that many idle
 * connections cost a few hundred bytes each rather than a read buffer each. The client list is
 * ordered by last activity, so the walk stops at the first recently active client. */
static void release_idle_buffers(struct server *srv)
{
    uint64_t now = clock_now_ms();
    struct list *pos;
    list_for_each(pos, &srv->clients)
    {
        struct client *c = container_of(pos, struct client, link);
        if (now - c->last_ms < IDLE_BUFFERS_MS)
            break;
        if (c->in.len == 0 && c->in.cap > 0)
            buf_free(&c->in);
        if (c->out.len == 0 && c->out.cap > 0 && !c->writing)
            buf_free(&c->out);
        if (c->wbuf.len == 0 && c->wbuf.cap > 0 && !c->writing)
            buf_free(&c->wbuf);
    }
}

static void idle_timeouts(struct server *srv)
{
    uint64_t timeout = srv->cfg->idle_timeout_ms;
    if (timeout == 0)
        return;
    uint64_t now = clock_now_ms();
    while (!list_empty(&srv->clients)) {
        struct client *c = container_of(srv->clients.next, struct client, link);
        if (now - c->last_ms < timeout)
            break;
        log_info("client", "idle timeout, closing", "addr=%s idle_ms=%" PRIu64, c->addr,
                 now - c->last_ms);
        client_close(c);
    }
}

static void on_cron(uv_timer_t *t)
{
    struct server *srv = t->data;
    active_expire(srv);
    /* Move rehash buckets for up to 1 ms per tick, so an idle server finishes a resize too. */
    uint64_t t0 = clock_now_us();
    bool more = keyspace_rehash(srv->db->ks, 100);
    while (more && clock_now_us() - t0 < 1000)
        more = keyspace_rehash(srv->db->ks, 100);
    if (!more)
        keyspace_maybe_shrink(srv->db->ks);
    idle_timeouts(srv);
    release_idle_buffers(srv);
    if (!list_empty(&srv->waiting))
        srv->wait_check = true; /* WAIT timeouts */
    uint64_t now = clock_now_ms();
    if (srv->ops_last_ms && now > srv->ops_last_ms) {
        srv->ops_samples[srv->ops_idx++ % OPS_SAMPLES] =
            (srv->stat_cmds - srv->ops_last_cmds) * 1000 / (now - srv->ops_last_ms);
    }
    srv->ops_last_ms = now;
    srv->ops_last_cmds = srv->stat_cmds;
}

int server_start(struct server *srv, char *err, size_t errlen)
{
    int rc = uv_tcp_init(srv->loop, &srv->listener);
    if (rc < 0) {
        snprintf(err, errlen, "tcp init: %s", uv_strerror(rc));
        return rc;
    }
    srv->listener.data = srv;
    srv->open_handles++;
    srv->started = true;
    uv_timer_init(srv->loop, &srv->cron);
    srv->cron.data = srv;
    srv->open_handles++;
    uv_prepare_init(srv->loop, &srv->before_poll);
    srv->before_poll.data = srv;
    srv->open_handles++;
    struct sockaddr_storage bound;
    rc = net_listen(&srv->listener, (const struct sockaddr *)&srv->cfg->listen, 511,
                    on_connection, &bound, err, errlen);
    if (rc < 0)
        return rc;
    srv->port = addr_port((struct sockaddr *)&bound);
    char a[128];
    addr_format((const struct sockaddr *)&bound, a, sizeof(a));
    uv_timer_start(&srv->cron, on_cron, CRON_MS, CRON_MS);
    uv_prepare_start(&srv->before_poll, before_poll);
    log_notice("server", "listening", "addr=%s port=%d", a, srv->port);
    return 0;
}

static void on_handle_closed(uv_handle_t *h)
{
    struct server *srv = h->data;
    srv->open_handles--;
    if (srv->closing && srv->open_handles == 0 && srv->on_closed)
        srv->on_closed(srv->on_closed_ud);
}

void server_close(struct server *srv, server_closed_cb cb, void *ud)
{
    if (srv->closing)
        return;
    srv->closing = true;
    srv->on_closed = cb;
    srv->on_closed_ud = ud;
    while (!list_empty(&srv->clients)) {
        struct client *c = container_of(srv->clients.next, struct client, link);
        client_close(c);
    }
    if (srv->started) {
        uv_close((uv_handle_t *)&srv->listener, on_handle_closed);
        uv_close((uv_handle_t *)&srv->cron, on_handle_closed);
        uv_close((uv_handle_t *)&srv->before_poll, on_handle_closed);
    }
    if (srv->open_handles == 0 && cb)
        cb(ud);
}
