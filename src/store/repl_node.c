/* SPDX-License-Identifier: MIT */
/* store/repl_node.c -- the node's replication role (see repl_node.h).
 *
 *   NONE --promote--> PRIMARY --follow / REPLICAOF host port / FAILOVER done--> REPLICA
 *     \--follow-----> REPLICA --promote / REPLICAOF NO ONE-----------------> PRIMARY
 *
 * A role change closes the previous shell (repl_primary or repl_replica, asynchronously) and
 * opens the next. The persistence decorator: the server appends and flushes through us into
 * wal_persist; wal_persist reports its local release point to node_local(); we release replies
 * to the server at that point (asynchronous), at the sync-commit point (--sync-replicas), and
 * not at all while writes are refused.
 *
 * FAILOVER: refuse writes, wait until the target acknowledged every record we wrote, tell it
 * REPLICAOF NO ONE over a client connection (it promotes itself to a term above ours), then
 * follow it. A timeout or an error resumes writes here. */
#include "store/repl_node.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/fsio.h"
#include "base/log.h"
#include "base/parse.h"
#include "net/wq.h"
#include "proto/resp.h"
#include "store/keyspace.h"
#include "store/repl_core.h"
#include "store/repl_primary.h"
#include "store/repl_replica.h"
#include "store/server.h"

#define MAX_REPLICAS 64
#define MAX_SYNC 16
#define FAILOVER_DEFAULT_MS 10000

enum node_role { ROLE_NONE = 0, ROLE_PRIMARY, ROLE_REPLICA };

enum failover_state {
    FO_NONE = 0,
    FO_WAIT_SYNC, /* writes refused, waiting for the target to hold everything */
    FO_PROMOTING, /* REPLICAOF NO ONE sent to the target */
};

/* The one-shot client that tells the failover target to promote itself. */
struct fo_client {
    struct repl_node *n;
    uv_tcp_t tcp;
    uv_connect_t creq;
    struct wq wq;
    struct buf in;
    unsigned replies_due;
    bool closing;
};

struct repl_node {
    uv_loop_t *loop;
    struct wal_persist *wp;
    struct wal *w;
    struct db *db;
    struct server *srv;
    struct repl_node_config cfg; /* strings owned */
    enum node_role role;
    struct repl_primary *primary;
    struct repl_replica *replica;
    struct sockaddr_storage upstream; /* the primary we follow (ROLE_REPLICA) */
    bool has_upstream;
    uint64_t term;        /* highest term known */
    uint64_t stepped_for; /* a primary that saw this higher term refuses writes; 0: none */
    const char *(*gate)(void *ud); /* the owner's veto on writes (the HA agent's lease) */
    void *gate_ud;
    /* the HA agent's sync set (when set, it replaces --sync-replicas' own rule) */
    bool agent_sync, sync_hold;
    char sync_names[MAX_SYNC][REPLMSG_MAX_NAME + 1];
    size_t sync_n;
    repl_node_term_fn on_term;
    void *on_term_ud;
    repl_node_fs_ping_fn fs_ping;
    repl_node_fs_ack_fn fs_ack;
    void *fs_ud;
    /* persistence decorator */
    persist_durable_fn release;
    void *release_ctx;
    uint64_t local_lsn;  /* released by the log's own rule */
    uint64_t commit_lsn; /* released to the server */
    bool unsynced_recorded, degraded;
    unsigned in_sync;
    /* FAILOVER */
    enum failover_state fo;
    uint64_t fo_deadline_ms;
    char fo_target[REPLMSG_MAX_NAME + 1]; /* node name of the target ("" until chosen) */
    struct sockaddr_storage fo_addr;
    struct fo_client *foc;
    uv_timer_t tick;
    /* closing */
    int shells_closing;
    bool closing;
    void (*close_cb)(void *ud);
    void *close_ud;
};

static void recompute(struct repl_node *n);
static void fo_step(struct repl_node *n);
static void fo_abort(struct repl_node *n, const char *why);

/* --- terms --- */

static void learn_term(struct repl_node *n, uint64_t term, const char *source)
{
    if (term <= n->term)
        return;
    n->term = term;
    if (n->role == ROLE_PRIMARY && n->stepped_for < term) {
        n->stepped_for = term;
        log_warn("repl", "a higher term exists: this primary stops accepting writes",
                 "term=%" PRIu64 " source=\"%s\"", term, source);
        server_drop_held(n->srv, "stepped down: higher term");
    }
    if (n->on_term)
        n->on_term(n->on_term_ud, term);
}

static void on_step_down(void *ud, uint64_t term, const char *cause)
{
    learn_term(ud, term, cause);
}

/* --- shells --- */

static void shell_closed(void *ud)
{
    struct repl_node *n = ud;
    n->shells_closing--;
    if (n->closing && n->shells_closing == 0) {
        void (*cb)(void *) = n->close_cb;
        void *cud = n->close_ud;
        free(n);
        if (cb)
            cb(cud);
    }
}

static void close_shells(struct repl_node *n)
{
    if (n->primary) {
        n->shells_closing++;
        repl_primary_close(n->primary, shell_closed, n);
        n->primary = NULL;
    }
    if (n->replica) {
        n->shells_closing++;
        repl_replica_close(n->replica, shell_closed, n);
        n->replica = NULL;
    }
}

static void on_primary_change(void *ud)
{
    struct repl_node *n = ud;
    recompute(n);
    fo_step(n);
    if (n->srv)
        server_repl_changed(n->srv);
}

/* --- failsafe (the HA agent's pings ride on the replication links) --- */

static bool on_failsafe_ping(void *ud, uint64_t term, uint64_t round, uint64_t valid_ms)
{
    struct repl_node *n = ud;
    return n->fs_ping ? n->fs_ping(n->fs_ud, term, round, valid_ms) : false;
}

static void on_failsafe_ack(void *ud, const char *node, uint64_t term, uint64_t round)
{
    struct repl_node *n = ud;
    if (n->fs_ack)
        n->fs_ack(n->fs_ud, node, term, round);
}

void repl_node_on_failsafe(struct repl_node *n, repl_node_fs_ping_fn ping,
                           repl_node_fs_ack_fn ack, void *ud)
{
    n->fs_ping = ping;
    n->fs_ack = ack;
    n->fs_ud = ud;
}

void repl_node_failsafe_ping(struct repl_node *n, const char *const *names, size_t count,
                             uint64_t term, uint64_t round, uint64_t valid_ms)
{
    if (n->primary)
        repl_primary_failsafe_ping(n->primary, names, count, term, round, valid_ms);
}

/* --- persistence decorator --- */

static void node_local(void *ctx, uint64_t lsn)
{
    struct repl_node *n = ctx;
    if (lsn > n->local_lsn)
        n->local_lsn = lsn;
    if (n->replica)
        repl_replica_on_durable(n->replica, lsn);
    recompute(n);
}

static void node_written(void *ud, uint64_t lsn)
{
    struct repl_node *n = ud;
    (void)lsn;
    if (n->primary)
        repl_primary_notify(n->primary);
}

static void ops_bind(void *ud, persist_durable_fn durable, void *ctx)
{
    struct repl_node *n = ud;
    n->release = durable;
    n->release_ctx = ctx;
    wal_persist_ops.bind(n->wp, node_local, n);
}

static uint64_t ops_append(void *ud, int argc, const struct slice *argv)
{
    struct repl_node *n = ud;
    return wal_persist_ops.append(n->wp, argc, argv);
}

static void ops_flush(void *ud)
{
    struct repl_node *n = ud;
    wal_persist_ops.flush(n->wp);
}

static int ops_save(void *ud, char *err, size_t errlen)
{
    struct repl_node *n = ud;
    return wal_persist_ops.save(n->wp, err, errlen);
}

static void ops_info(void *ud, struct buf *out)
{
    struct repl_node *n = ud;
    wal_persist_ops.info(n->wp, out);
}

static int ops_bgsave(void *ud, char *err, size_t errlen)
{
    struct repl_node *n = ud;
    return wal_persist_ops.bgsave(n->wp, err, errlen);
}

static int64_t ops_lastsave(void *ud)
{
    struct repl_node *n = ud;
    return wal_persist_ops.lastsave(n->wp);
}

const struct persist_ops repl_node_persist_ops = {ops_bind, ops_append, ops_flush,   ops_save,
                                                  ops_info, ops_bgsave, ops_lastsave};

/* --- the write gate and the release point --- */

static const char *refusal(const struct repl_node *n)
{
    if (n->role != ROLE_PRIMARY)
        return "READONLY You can't write against a read only replica.";
    if (n->stepped_for)
        return "READONLY this node stepped down: a newer primary exists";
    const char *why = n->gate ? n->gate(n->gate_ud) : NULL;
    if (why)
        return why;
    if (n->fo != FO_NONE)
        return "READONLY failover in progress: writes resume on the new primary";
    return NULL;
}

bool repl_node_writable(const struct repl_node *n)
{
    return refusal(n) == NULL;
}

static const char *write_refusal(void *ud)
{
    struct repl_node *n = ud;
    const char *why = refusal(n);
    if (why == NULL && n->cfg.sync_strict && n->degraded)
        return "NOREPLICAS Not enough good replicas to write.";
    return why;
}

/* The agent's rule: every replica named in the sync set holds the write. */
static uint64_t agent_commit(const struct repl_node *n)
{
    if (n->sync_hold)
        return n->commit_lsn;
    uint64_t target = n->local_lsn;
    struct repl_primary_replica rs[MAX_REPLICAS];
    unsigned nr = repl_primary_replicas(n->primary, rs, MAX_REPLICAS);
    for (size_t j = 0; j < n->sync_n; j++) {
        uint64_t acked = 0;
        for (unsigned i = 0; i < nr && i < MAX_REPLICAS; i++)
            if (rs[i].streaming && strcmp(rs[i].node, n->sync_names[j]) == 0)
                acked = rs[i].acked_lsn;
        if (acked < target)
            target = acked;
    }
    return target;
}

static void recompute(struct repl_node *n)
{
    if (!repl_node_writable(n))
        return; /* nothing is acknowledged while this node may not take writes */
    uint64_t target = n->local_lsn;
    if (n->agent_sync && n->primary) {
        target = agent_commit(n);
    } else if (n->cfg.sync_replicas > 0 && n->primary) {
        struct repl_commit_in in = {n->cfg.sync_replicas, n->cfg.sync_strict, n->local_lsn,
                                    n->commit_lsn, n->unsynced_recorded, 0, NULL};
        struct repl_commit out;
        repl_primary_commit(n->primary, &in, &out);
        if (out.record_unsynced) {
            /* No coordinator to record it in: the log, INFO and metrics say it until a replica
             * catches up. */
            n->unsynced_recorded = true;
            log_warn("repl", "no replica in sync: writes are acknowledged on this node alone",
                     "required=%u in_sync=%u", n->cfg.sync_replicas, out.in_sync);
            in.unsynced_recorded = true;
            repl_primary_commit(n->primary, &in, &out);
        } else if (out.clear_unsynced) {
            n->unsynced_recorded = false;
            log_notice("repl", "replicas in sync again: writes wait for them", "in_sync=%u",
                       out.in_sync);
        }
        n->degraded = out.degraded;
        n->in_sync = out.in_sync;
        target = out.commit_lsn;
    }
    if (target > n->commit_lsn) {
        n->commit_lsn = target;
        if (n->release)
            n->release(n->release_ctx, target);
    }
}

/* --- roles --- */

static void become_none(struct repl_node *n, const char *why)
{
    if (n->fo != FO_NONE)
        fo_abort(n, why);
    close_shells(n);
    if (n->srv)
        server_drop_held(n->srv, why);
    n->role = ROLE_NONE;
    n->stepped_for = 0;
    n->degraded = false;
    n->unsynced_recorded = false;
}

/* DIR/primary-term holds the last term this node was primary in. A node restarted without
 * --replicaof may resume in its log's last term only if it led that term: when the log's last
 * term came from another primary (this node was its replica), resuming in it would make two
 * nodes write different records under one term, and log matching (which trusts that a term
 * and an lsn name one record) would keep the other node's divergent records silently. */
#define LED_TERM_FILE "primary-term"

static uint64_t led_term_read(const struct repl_node *n)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/" LED_TERM_FILE, n->cfg.dir);
    struct buf b;
    buf_init(&b);
    uint64_t term = 0;
    if (fsio_read_file(path, &b) == 0 && b.len > 0 && b.len < 32) {
        char s[32];
        memcpy(s, b.p, b.len);
        s[b.len] = '\0';
        if (parse_uint(s, 1, UINT64_MAX, &term) != 0)
            term = 0;
    }
    buf_free(&b);
    return term;
}

/* Records durably (temporary file, fsync, rename, fsync DIR) that this node leads term.
 * Returns 0 or a negative code. */
static int led_term_write(const struct repl_node *n, uint64_t term)
{
    char path[4096], tmp[4200], s[32];
    snprintf(path, sizeof(path), "%s/" LED_TERM_FILE, n->cfg.dir);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int len = snprintf(s, sizeof(s), "%" PRIu64, term);
    int fd = fsio_open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int r = fd < 0 ? fd : fsio_write_all(fd, s, (size_t)len);
    if (r == 0)
        r = fsio_fsync(fd);
    if (fd >= 0)
        fsio_close(fd);
    if (r == 0)
        r = fsio_rename(tmp, path);
    if (r == 0)
        r = fsio_fsync_dir(n->cfg.dir);
    return r;
}

/* Becomes primary in term; new_term: write the empty record that makes it durable. */
static void become_primary(struct repl_node *n, uint64_t term, bool new_term)
{
    become_none(n, "promotion");
    int lr = led_term_write(n, term);
    if (lr != 0)
        log_warn("repl", "cannot record the term this node leads", "term=%" PRIu64 " err=%s",
                 term, td_strerror(lr));
    n->term = term > n->term ? term : n->term;
    wal_persist_set_term(n->wp, term);
    keyspace_set_keep_expired(n->db->ks, false);
    if (new_term)
        db_log(n->db, 0, NULL); /* also the first record replicas receive in this term */
    /* Everything logged before is as acknowledged as it will ever be by this node. */
    uint64_t before = new_term ? n->db->last_lsn - 1 : wal_last_lsn(n->w);
    if (n->commit_lsn < before)
        n->commit_lsn = before;
    if (n->local_lsn < before)
        n->local_lsn = before;
    struct repl_primary_opts po = {n->cfg.dir,          n->cfg.secret,     term,
                                   n->cfg.heartbeat_ms, n->cfg.max_lag_ms, on_step_down,
                                   on_primary_change,   on_failsafe_ack,   n};
    n->primary = repl_primary_new(n->loop, n->w, &po);
    n->role = ROLE_PRIMARY;
    log_notice("repl", "primary", "term=%" PRIu64 " lsn=%" PRIu64 " sync_replicas=%u%s", term,
               wal_last_lsn(n->w), n->cfg.sync_replicas, n->cfg.sync_strict ? " strict" : "");
    recompute(n);
}

int repl_node_promote(struct repl_node *n, uint64_t term)
{
    uint64_t last = wal_last_term(n->w);
    uint64_t base = n->term > last ? n->term : last;
    if (term == 0)
        term = base + 1;
    if (term <= last) {
        log_error("repl", "cannot promote to a term the log already has",
                  "term=%" PRIu64 " log_term=%" PRIu64, term, last);
        return -EINVAL;
    }
    become_primary(n, term, true);
    return 0;
}

void repl_node_resume_primary(struct repl_node *n)
{
    uint64_t t = wal_last_term(n->w);
    uint64_t led = led_term_read(n);
    if (t > 0 && led != t) {
        /* The log's last term is another primary's: this is a promotion, not a resume. */
        log_notice("repl", "the log's last term was written by another primary: taking a new term",
                   "log_term=%" PRIu64 " led_term=%" PRIu64, t, led);
        if (repl_node_promote(n, 0) == 0)
            return;
    }
    become_primary(n, t ? t : 1, false);
}

void repl_node_set_name(struct repl_node *n, const char *name)
{
    free((char *)n->cfg.name);
    n->cfg.name = xstrdup(name);
}

void repl_node_follow(struct repl_node *n, const struct sockaddr_storage *addr)
{
    become_none(n, addr ? "following another primary" : "following nobody");
    keyspace_set_keep_expired(n->db->ks, true);
    n->role = ROLE_REPLICA;
    n->has_upstream = addr != NULL;
    if (addr == NULL) {
        log_notice("repl", "replica of nobody: read-only, waiting for a primary", "");
        return;
    }
    n->upstream = *addr;
    char a[64];
    addr_format((const struct sockaddr *)addr, a, sizeof(a));
    struct repl_replica_opts ro;
    memset(&ro, 0, sizeof(ro));
    ro.primary = *addr;
    ro.node = n->cfg.name;
    ro.secret = n->cfg.secret;
    ro.retry_ms = n->cfg.retry_ms;
    ro.on_failsafe = on_failsafe_ping;
    ro.ud = n;
    n->replica = repl_replica_new(n->loop, n->w, n->db, n->cfg.dir, &ro);
    repl_replica_start(n->replica);
    log_notice("repl", "replica", "primary=%s", a);
}

void repl_node_set_gate(struct repl_node *n, const char *(*gate)(void *ud), void *ud)
{
    n->gate = gate;
    n->gate_ud = ud;
}

void repl_node_gate_changed(struct repl_node *n)
{
    recompute(n);
}

void repl_node_set_sync(struct repl_node *n, const char *const *names, size_t count,
                        bool degraded, bool hold)
{
    n->agent_sync = true;
    n->sync_n = 0;
    for (size_t i = 0; i < count && n->sync_n < MAX_SYNC; i++)
        snprintf(n->sync_names[n->sync_n++], sizeof(n->sync_names[0]), "%s", names[i]);
    n->degraded = degraded;
    n->sync_hold = hold;
    recompute(n);
}

size_t repl_node_replicas(const struct repl_node *n, struct repl_node_replica *out, size_t max)
{
    if (n->primary == NULL)
        return 0;
    struct repl_primary_replica rs[MAX_REPLICAS];
    unsigned nr = repl_primary_replicas(n->primary, rs, MAX_REPLICAS);
    size_t k = 0;
    for (unsigned i = 0; i < nr && i < MAX_REPLICAS && k < max; i++) {
        snprintf(out[k].name, sizeof(out[k].name), "%s", rs[i].node);
        out[k].streaming = rs[i].streaming;
        out[k].in_sync = rs[i].in_sync;
        out[k].acked_lsn = rs[i].acked_lsn;
        k++;
    }
    return k;
}

uint64_t repl_node_term(const struct repl_node *n)
{
    uint64_t t = wal_last_term(n->w);
    return t > n->term ? t : n->term;
}

void repl_node_on_term(struct repl_node *n, repl_node_term_fn fn, void *ud)
{
    n->on_term = fn;
    n->on_term_ud = ud;
}

void repl_node_status(const struct repl_node *n, struct repl_node_status *out)
{
    out->primary = n->role == ROLE_PRIMARY;
    out->last_lsn = wal_last_lsn(n->w);
    out->last_term = wal_last_term(n->w);
    out->released_lsn = n->commit_lsn;
    out->replicas = n->primary ? repl_primary_count(n->primary) : 0;
}

/* --- FAILOVER --- */

static void fo_client_closed(uv_handle_t *h)
{
    struct fo_client *c = h->data;
    wq_free(&c->wq);
    buf_free(&c->in);
    free(c);
}

static void fo_client_close(struct fo_client *c)
{
    if (c == NULL || c->closing)
        return;
    c->closing = true;
    if (c->n->foc == c)
        c->n->foc = NULL;
    uv_close((uv_handle_t *)&c->tcp, fo_client_closed);
}

static void fo_abort(struct repl_node *n, const char *why)
{
    log_warn("repl", "failover aborted, this node keeps the primary role", "cause=\"%s\"", why);
    n->fo = FO_NONE;
    fo_client_close(n->foc);
    recompute(n);
}

static void fo_done(struct repl_node *n)
{
    char a[64];
    addr_format((const struct sockaddr *)&n->fo_addr, a, sizeof(a));
    log_notice("repl", "failover done: following the new primary", "primary=%s", a);
    n->fo = FO_NONE;
    fo_client_close(n->foc);
    struct sockaddr_storage to = n->fo_addr;
    repl_node_follow(n, &to);
}

static void fo_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    (void)hint;
    struct fo_client *c = h->data;
    buf_reserve(&c->in, 512);
    *b = uv_buf_init(c->in.p + c->in.len, (unsigned)(c->in.cap - c->in.len));
}

static void fo_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    (void)b;
    struct fo_client *c = s->data;
    struct repl_node *n = c->n;
    if (nread < 0) {
        fo_client_close(c);
        if (n->fo == FO_PROMOTING)
            fo_abort(n, "the target closed the connection");
        return;
    }
    c->in.len += (size_t)nread;
    /* Simple replies only (+OK / -ERR ...): one line each. */
    char *nl;
    while (c->replies_due > 0 && (nl = memchr(c->in.p, '\n', c->in.len)) != NULL) {
        size_t len = (size_t)(nl - c->in.p) + 1;
        if (c->in.p[0] != '+') {
            char why[200];
            snprintf(why, sizeof(why), "the target answered %.*s", (int)(len > 2 ? len - 2 : 0),
                     c->in.p);
            fo_client_close(c);
            fo_abort(n, why);
            return;
        }
        buf_consume(&c->in, len);
        c->replies_due--;
    }
    if (c->replies_due == 0)
        fo_done(n);
    else if (c->in.len > 4096)
        fo_abort(n, "unexpected answer from the target");
}

static void fo_connected(uv_connect_t *req, int status)
{
    struct fo_client *c = req->data;
    struct repl_node *n = c->n;
    if (c->closing)
        return;
    if (status < 0) {
        fo_client_close(c);
        fo_abort(n, uv_strerror(status));
        return;
    }
    struct buf cmd;
    buf_init(&cmd);
    const char *pw = n->db->cfg ? n->db->cfg->requirepass : NULL;
    if (pw && pw[0]) {
        resp_add_array(&cmd, 2);
        resp_add_bulk(&cmd, "AUTH", 4);
        resp_add_bulk(&cmd, pw, strlen(pw));
        c->replies_due++;
    }
    buf_append_str(&cmd, "*3\r\n$9\r\nREPLICAOF\r\n$2\r\nNO\r\n$3\r\nONE\r\n");
    c->replies_due++;
    int rc = wq_write(&c->wq, cmd.p, cmd.len);
    buf_free(&cmd);
    if (rc == 0)
        rc = uv_read_start((uv_stream_t *)&c->tcp, fo_alloc, fo_read);
    if (rc != 0) {
        fo_client_close(c);
        fo_abort(n, "cannot talk to the target");
    }
}

static void fo_wq_done(struct wq *q, int status)
{
    struct fo_client *c = q->data;
    if (status < 0 && !c->closing) {
        struct repl_node *n = c->n;
        fo_client_close(c);
        fo_abort(n, "cannot write to the target");
    }
}

static void fo_send_promote(struct repl_node *n)
{
    struct fo_client *c = xcalloc(1, sizeof(*c));
    c->n = n;
    uv_tcp_init(n->loop, &c->tcp);
    c->tcp.data = c;
    c->creq.data = c;
    buf_init(&c->in);
    wq_init(&c->wq, (uv_stream_t *)&c->tcp, fo_wq_done, c);
    n->foc = c;
    n->fo = FO_PROMOTING;
    log_notice("repl", "failover: the target holds every record, promoting it",
               "target=%s lsn=%" PRIu64, n->fo_target, wal_last_lsn(n->w));
    int rc = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&n->fo_addr, fo_connected);
    if (rc != 0) {
        fo_client_close(c);
        fo_abort(n, uv_strerror(rc));
    }
}

/* Picks the target (the named one, or the in-sync replica with the highest acknowledged lsn)
 * and promotes it once it holds everything. */
static void fo_step(struct repl_node *n)
{
    if (n->fo != FO_WAIT_SYNC)
        return;
    if (n->role != ROLE_PRIMARY || n->primary == NULL) {
        fo_abort(n, "no longer primary");
        return;
    }
    if (clock_now_ms() >= n->fo_deadline_ms) {
        fo_abort(n, "timeout: the target did not catch up");
        return;
    }
    struct repl_primary_replica rs[MAX_REPLICAS];
    unsigned nr = repl_primary_replicas(n->primary, rs, MAX_REPLICAS);
    const struct repl_primary_replica *best = NULL;
    for (unsigned i = 0; i < nr && i < MAX_REPLICAS; i++) {
        if (!rs[i].streaming)
            continue;
        if (n->fo_target[0] && strcmp(rs[i].node, n->fo_target) != 0)
            continue;
        if (best == NULL || rs[i].acked_lsn > best->acked_lsn)
            best = &rs[i];
    }
    if (best == NULL || best->acked_lsn < wal_last_lsn(n->w))
        return;
    /* Replicas are named by their listen address (HOST:PORT) unless --name says otherwise. */
    char err[128];
    if (parse_addr(best->node, &n->fo_addr, err, sizeof(err)) != 0) {
        fo_abort(n, "the target's name is not its address (start it with --name HOST:PORT)");
        return;
    }
    snprintf(n->fo_target, sizeof(n->fo_target), "%s", best->node);
    fo_send_promote(n);
}

static void on_tick(uv_timer_t *t)
{
    struct repl_node *n = t->data;
    fo_step(n);
}

/* --- cmd_repl_ops --- */

static void info(void *ud, struct buf *o)
{
    struct repl_node *n = ud;
    uint64_t now = clock_now_ms();
    uint64_t last = wal_last_lsn(n->w);
    if (n->role == ROLE_PRIMARY) {
        buf_append_str(o, "role:master\r\n");
        repl_primary_info(n->primary, now, o);
        buf_printf(o, "master_failover_state:%s\r\n",
                   n->fo == FO_NONE        ? "no-failover"
                   : n->fo == FO_WAIT_SYNC ? "waiting-for-sync"
                                           : "failover-in-progress");
        buf_printf(o, "master_repl_offset:%" PRIu64 "\r\n", last);
        const char *sync = n->cfg.sync_replicas == 0 ? "off"
                           : n->degraded            ? "degraded"
                                                    : "ok";
        buf_printf(o,
                   "tandem_sync_replicas:%u\r\ntandem_sync_strict:%d\r\ntandem_sync_state:%s\r\n"
                   "tandem_sync_in_sync:%u\r\ntandem_unsynced_recorded:%d\r\n"
                   "tandem_commit_lsn:%" PRIu64 "\r\ntandem_full_syncs:%" PRIu64 "\r\n",
                   n->cfg.sync_replicas, n->cfg.sync_strict, sync, n->in_sync,
                   n->unsynced_recorded, n->commit_lsn, repl_primary_full_syncs(n->primary));
    } else {
        struct repl_replica_info ri;
        memset(&ri, 0, sizeof(ri));
        if (n->replica)
            repl_replica_get_info(n->replica, &ri);
        char host[64] = "";
        int port = 0;
        if (n->has_upstream) {
            addr_format((const struct sockaddr *)&n->upstream, host, sizeof(host));
            port = addr_port((const struct sockaddr *)&n->upstream);
            char *colon = strrchr(host, ':');
            if (colon)
                *colon = '\0';
        }
        uint64_t lag = ri.primary_last_lsn > ri.applied_lsn ? ri.primary_last_lsn - ri.applied_lsn
                                                            : 0;
        buf_printf(o,
                   "role:slave\r\nmaster_host:%s\r\nmaster_port:%d\r\nmaster_link_status:%s\r\n"
                   "master_sync_in_progress:0\r\nslave_read_repl_offset:%" PRIu64
                   "\r\nslave_repl_offset:%" PRIu64 "\r\nslave_read_only:1\r\n"
                   "connected_slaves:0\r\nmaster_failover_state:no-failover\r\n"
                   "master_repl_offset:%" PRIu64 "\r\ntandem_acked_lsn:%" PRIu64
                   "\r\ntandem_primary_last_lsn:%" PRIu64 "\r\ntandem_lag_records:%" PRIu64
                   "\r\ntandem_connects:%" PRIu64 "\r\ntandem_full_syncs:%" PRIu64
                   "\r\ntandem_truncations:%" PRIu64 "\r\ntandem_discarded_records:%" PRIu64
                   "\r\ntandem_last_error:%s\r\n",
                   host, port, ri.link_up ? "up" : "down", last, last, last, ri.acked_lsn,
                   ri.primary_last_lsn, lag, ri.connects, ri.full_syncs, ri.truncations,
                   ri.discarded, ri.last_error);
    }
    buf_printf(o,
               "tandem_node:%s\r\ntandem_term:%" PRIu64 "\r\ntandem_last_term:%" PRIu64
               "\r\ntandem_writable:%d\r\n",
               n->cfg.name, repl_node_term(n), wal_last_term(n->w), repl_node_writable(n));
}

static void role(void *ud, struct buf *o)
{
    struct repl_node *n = ud;
    uint64_t last = wal_last_lsn(n->w);
    if (n->role == ROLE_PRIMARY && repl_node_writable(n)) {
        struct repl_primary_replica rs[MAX_REPLICAS];
        unsigned nr = repl_primary_replicas(n->primary, rs, MAX_REPLICAS);
        if (nr > MAX_REPLICAS)
            nr = MAX_REPLICAS;
        resp_add_array(o, 3);
        resp_add_bulk(o, "master", 6);
        resp_add_int(o, (int64_t)last);
        resp_add_array(o, nr);
        for (unsigned i = 0; i < nr; i++) {
            /* Names are HOST:PORT by default: split them as Redis shows ip and port. */
            const char *name = rs[i].node, *colon = strrchr(name, ':');
            size_t hl = colon ? (size_t)(colon - name) : strlen(name);
            resp_add_array(o, 3);
            resp_add_bulk(o, name, hl);
            resp_add_bulk(o, colon ? colon + 1 : "0", colon ? strlen(colon + 1) : 1);
            resp_add_bulk_int(o, (int64_t)rs[i].acked_lsn);
        }
        return;
    }
    /* A replica, or a primary that may not take writes: never "master", so that a balancer's
     * role check routes writes elsewhere. */
    char host[64] = "";
    int port = 0;
    bool up = false;
    if (n->role == ROLE_REPLICA && n->has_upstream) {
        addr_format((const struct sockaddr *)&n->upstream, host, sizeof(host));
        port = addr_port((const struct sockaddr *)&n->upstream);
        char *colon = strrchr(host, ':');
        if (colon)
            *colon = '\0';
        struct repl_replica_info ri;
        repl_replica_get_info(n->replica, &ri);
        up = ri.link_up;
    }
    resp_add_array(o, 5);
    resp_add_bulk(o, "slave", 5);
    resp_add_bulk(o, host, strlen(host));
    resp_add_int(o, port);
    const char *st = up ? "connected" : "connect";
    resp_add_bulk(o, st, strlen(st));
    resp_add_int(o, (int64_t)last);
}

static bool same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    char x[64], y[64];
    addr_format((const struct sockaddr *)a, x, sizeof(x));
    addr_format((const struct sockaddr *)b, y, sizeof(y));
    return strcmp(x, y) == 0;
}

static int replicaof(void *ud, const char *host, int port, char *err, size_t errlen)
{
    struct repl_node *n = ud;
    if (host == NULL) {
        if (n->role == ROLE_PRIMARY && repl_node_writable(n))
            return 0; /* already a primary */
        return repl_node_promote(n, 0) == 0 ? 0 : (snprintf(err, errlen, "ERR promotion failed: "
                                                                         "see the server log"),
                                                    -EIO);
    }
    char spec[300];
    snprintf(spec, sizeof(spec), "%s:%d", strcmp(host, "localhost") == 0 ? "127.0.0.1" : host,
             port);
    struct sockaddr_storage addr;
    char why[160];
    if (parse_addr(spec, &addr, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "ERR Invalid master address: %s", why);
        return -EINVAL;
    }
    if (same_addr(&addr, &n->cfg.own)) {
        snprintf(err, errlen, "ERR cannot replicate from myself");
        return -EINVAL;
    }
    if (n->role == ROLE_REPLICA && n->has_upstream && same_addr(&addr, &n->upstream))
        return 0;
    repl_node_follow(n, &addr);
    return 0;
}

static int failover(void *ud, const char *host, int port, uint64_t timeout_ms, bool abort_,
                    char *err, size_t errlen)
{
    struct repl_node *n = ud;
    if (abort_) {
        if (n->fo == FO_NONE) {
            snprintf(err, errlen, "ERR No failover in progress.");
            return -EINVAL;
        }
        fo_abort(n, "FAILOVER ABORT");
        return 0;
    }
    if (n->role != ROLE_PRIMARY) {
        snprintf(err, errlen, "ERR FAILOVER is not valid when server is a replica.");
        return -EINVAL;
    }
    if (n->fo != FO_NONE) {
        snprintf(err, errlen, "ERR FAILOVER already in progress.");
        return -EBUSY;
    }
    if (!repl_node_writable(n)) {
        snprintf(err, errlen, "ERR FAILOVER needs a writable primary");
        return -EINVAL;
    }
    if (n->primary == NULL || repl_primary_count(n->primary) == 0) {
        snprintf(err, errlen, "ERR FAILOVER requires connected replicas.");
        return -EINVAL;
    }
    n->fo_target[0] = '\0';
    if (host)
        snprintf(n->fo_target, sizeof(n->fo_target), "%s:%d",
                 strcmp(host, "localhost") == 0 ? "127.0.0.1" : host, port);
    n->fo = FO_WAIT_SYNC;
    n->fo_deadline_ms = clock_now_ms() + (timeout_ms ? timeout_ms : FAILOVER_DEFAULT_MS);
    log_notice("repl", "failover started: writes refused until the target holds everything",
               "target=%s timeout_ms=%" PRIu64, host ? n->fo_target : "(best in-sync replica)",
               timeout_ms ? timeout_ms : FAILOVER_DEFAULT_MS);
    fo_step(n);
    return 0;
}

static unsigned count_acked(void *ud, uint64_t lsn)
{
    struct repl_node *n = ud;
    return n->primary ? repl_primary_count_acked(n->primary, lsn) : 0;
}

static int attach(void *ud, int fd, const char *in, size_t len)
{
    struct repl_node *n = ud;
    if (n->role != ROLE_PRIMARY || n->primary == NULL || n->stepped_for) {
        /* Cascading replication is not supported: answer the replica and let it retry. */
        static const char msg[] = "-ERR not a primary\r\n";
        ssize_t w = write(fd, msg, sizeof(msg) - 1);
        (void)w;
        close(fd);
        return -EINVAL;
    }
    return repl_primary_attach(n->primary, fd, in, len);
}

static const struct cmd_repl_ops node_ops = {write_refusal, info,        role,  replicaof,
                                             failover,      count_acked, attach};

/* --- life cycle --- */

struct repl_node *repl_node_new(uv_loop_t *loop, struct wal_persist *wp, struct db *db,
                                const struct repl_node_config *cfg)
{
    struct repl_node *n = xcalloc(1, sizeof(*n));
    n->loop = loop;
    n->wp = wp;
    n->w = wal_persist_wal(wp);
    n->db = db;
    n->cfg = *cfg;
    n->cfg.dir = xstrdup(cfg->dir);
    n->cfg.name = xstrdup(cfg->name);
    n->cfg.secret = xstrdup(cfg->secret ? cfg->secret : "");
    n->term = wal_last_term(n->w);
    n->local_lsn = n->commit_lsn = wal_last_lsn(n->w);
    wal_persist_watch(wp, node_written, n);
    uv_timer_init(loop, &n->tick);
    n->tick.data = n;
    uv_timer_start(&n->tick, on_tick, 50, 50);
    return n;
}

void repl_node_attach_server(struct repl_node *n, struct server *srv)
{
    n->srv = srv;
    server_set_persist(srv, &repl_node_persist_ops, n);
    server_set_repl(srv, &node_ops, n);
}

static void on_tick_closed(uv_handle_t *h)
{
    shell_closed(h->data);
}

void repl_node_close(struct repl_node *n, void (*cb)(void *ud), void *ud)
{
    n->closing = true;
    n->close_cb = cb;
    n->close_ud = ud;
    fo_client_close(n->foc);
    wal_persist_watch(n->wp, NULL, NULL);
    free((char *)n->cfg.dir);
    free((char *)n->cfg.name);
    free((char *)n->cfg.secret);
    n->cfg.dir = n->cfg.name = n->cfg.secret = NULL;
    n->shells_closing++;
    uv_close((uv_handle_t *)&n->tick, on_tick_closed);
    close_shells(n);
}
