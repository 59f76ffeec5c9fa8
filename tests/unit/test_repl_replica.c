/* SPDX-License-Identifier: MIT */
/* Unit tests for store/repl_replica.c over real loopback TCP: a primary played by the test (a
 * libuv listener with the real repl_session over a real log) and the replica shell with its
 * own async log and keyspace. The replica converges (its REPLACKs reach the primary's last
 * lsn, the datasets are identical), the primary drops the link, writes more, and the replica
 * reconnects and catches up with a partial resync (no snapshot). Everything closes cleanly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "base/buf.h"
#include "base/clock.h"
#include "base/err.h"
#include "net/wq.h"
#include "proto/resp.h"
#include "store/persist.h"
#include "store/repl_replica.h"
#include "store/repl_wal.h"
#include "testutil.h"

static const uint8_t seed[16] = {9, 9, 9};

struct pconn {
    uv_tcp_t tcp;
    struct wq wq;
    struct buf in;
    struct resp_parser rp;
    struct repl_session s;
    bool open;
};

struct ctx {
    uv_loop_t loop;
    /* primary */
    char *pdir;
    struct wal *pw;
    struct db *pdb;
    uv_tcp_t listener;
    struct pconn conn;
    uint64_t acked;
    unsigned written;
    /* replica */
    char *rdir;
    struct wal *rw;
    struct db *rdb;
    struct repl_replica *rep;
    /* driver */
    uv_timer_t tick;
    int phase;
    uint64_t deadline_ms;
    bool done;
};

static void primary_write(struct ctx *c, unsigned count)
{
    for (unsigned k = 0; k < count; k++, c->written++) {
        char key[32], val[32];
        snprintf(key, sizeof(key), "k%u", c->written % 53);
        snprintf(val, sizeof(val), "v%u", c->written);
        struct slice argv[3] = {SLICE_LIT("SET"), slice_cstr(key), slice_cstr(val)};
        char err[128];
        assert_int_equal(persist_apply(c->pdb, 3, argv, err, sizeof(err)), 0);
        assert_int_equal(wal_append(c->pw, 1, 3, argv, NULL), 0);
    }
    assert_int_equal(wal_commit(c->pw), 0);
}

/* Sends whatever the replica has not been sent yet. */
static void primary_push(struct ctx *c)
{
    if (!c->conn.open || c->conn.s.state != REPL_SESSION_STREAMING)
        return;
    struct buf out;
    buf_init(&out);
    while (repl_wal_fill(c->pw, &c->conn.s, &out, 4096) > 0)
        ;
    if (out.len)
        assert_int_equal(wq_write(&c->conn.wq, out.p, out.len), 0);
    buf_free(&out);
}

static void pconn_closed(uv_handle_t *h)
{
    struct pconn *pc = h->data;
    wq_free(&pc->wq);
    buf_free(&pc->in);
    resp_parser_free(&pc->rp);
}

static void pconn_close(struct ctx *c)
{
    if (!c->conn.open)
        return;
    c->conn.open = false;
    uv_close((uv_handle_t *)&c->conn.tcp, pconn_closed);
}

static void p_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    struct pconn *pc = h->data;
    (void)hint;
    buf_reserve(&pc->in, 4096);
    b->base = pc->in.p + pc->in.len;
    b->len = pc->in.cap - pc->in.len;
}

static void p_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
    struct ctx *c = st->loop->data;
    struct pconn *pc = &c->conn;
    (void)b;
    if (n < 0) {
        pconn_close(c);
        return;
    }
    pc->in.len += (size_t)n;
    for (;;) {
        ssize_t r = resp_parse(&pc->rp, pc->in.p, pc->in.len);
        if (r == TD_EINCOMPLETE)
            break;
        assert_true(r > 0);
        struct repl_term_verdict tv;
        if (slice_eq_nocase(pc->rp.argv[0], SLICE_LIT("AUTH"))) {
            /* the replica authenticates with its secret before REPLSYNC */
            assert_true(pc->rp.argc == 2 && slice_eq(pc->rp.argv[1], SLICE_LIT("pw")));
            assert_int_equal(wq_write(&pc->wq, "+OK\r\n", 5), 0);
        } else if (pc->s.state == REPL_SESSION_HANDSHAKE) {
            struct replmsg_hello h;
            const char *why;
            assert_int_equal(replmsg_hello_parse(pc->rp.argc, pc->rp.argv, &h, &why), 0);
            struct repl_log_view v;
            repl_wal_view(c->pw, 1, &v);
            struct replmsg_answer a;
            assert_int_equal(repl_session_hello(&pc->s, &h, SLICE_LIT("pw"), &v, &a, &tv), 0);
            assert_int_equal(a.kind, REPLMSG_CONTINUE); /* never a snapshot in this test */
            struct buf out;
            buf_init(&out);
            replmsg_answer_encode(&out, &a);
            assert_int_equal(wq_write(&pc->wq, out.p, out.len), 0);
            buf_free(&out);
        } else {
            uint64_t lsn, term;
            assert_int_equal(replmsg_ack_parse(pc->rp.argc, pc->rp.argv, &lsn, &term), 0);
            assert_int_equal(repl_session_ack(&pc->s, lsn, term, 1, clock_now_ms(), &tv), 0);
            c->acked = lsn;
        }
        buf_consume(&pc->in, (size_t)r);
    }
    primary_push(c);
}

static void on_conn(uv_stream_t *l, int status)
{
    struct ctx *c = l->loop->data;
    assert_int_equal(status, 0);
    assert_false(c->conn.open);
    struct pconn *pc = &c->conn;
    memset(pc, 0, sizeof(*pc));
    uv_tcp_init(&c->loop, &pc->tcp);
    pc->tcp.data = pc;
    assert_int_equal(uv_accept(l, (uv_stream_t *)&pc->tcp), 0);
    wq_init(&pc->wq, (uv_stream_t *)&pc->tcp, NULL, pc);
    buf_init(&pc->in);
    struct resp_limits lim = {1u << 20, 1024, 4096, false};
    resp_parser_init(&pc->rp, &lim);
    repl_session_init(&pc->s);
    pc->open = true;
    assert_int_equal(uv_read_start((uv_stream_t *)&pc->tcp, p_alloc, p_read), 0);
}

static void on_r_durable(void *ud, uint64_t lsn)
{
    struct ctx *c = ud;
    if (c->rep)
        repl_replica_on_durable(c->rep, lsn);
}

static char *dataset(struct db *db);

static void replica_closed(void *ud);

static void on_tick(uv_timer_t *t)
{
    struct ctx *c = t->data;
    if (clock_now_ms() > c->deadline_ms)
        fail_msg("timeout in phase %d (acked %" PRIu64 " of %" PRIu64 ")", c->phase, c->acked,
                 wal_last_lsn(c->pw));
    bool caught_up = c->acked == wal_last_lsn(c->pw);
    if (c->phase == 0 && caught_up) {
        /* Drop the link from the primary's side, write more: the replica must reconnect. */
        pconn_close(c);
        primary_write(c, 80);
        c->phase = 1;
    } else if (c->phase == 1 && caught_up && c->conn.open) {
        struct repl_replica_info info;
        repl_replica_get_info(c->rep, &info);
        assert_int_equal(info.connects, 2);
        assert_int_equal(info.full_syncs, 0);
        assert_true(info.link_up);
        assert_int_equal(info.applied_lsn, wal_last_lsn(c->pw));
        char *a = dataset(c->pdb), *b = dataset(c->rdb);
        assert_string_equal(a, b);
        free(a);
        free(b);
        c->phase = 2;
        uv_timer_stop(&c->tick);
        repl_replica_close(c->rep, replica_closed, c);
    } else if (c->phase == 0 || c->phase == 1) {
        primary_push(c);
    }
}

static void handle_closed(uv_handle_t *h)
{
    (void)h;
}

static void wal_closed(void *ud)
{
    struct ctx *c = ud;
    c->done = true;
}

static void replica_closed(void *ud)
{
    struct ctx *c = ud;
    c->rep = NULL;
    pconn_close(c);
    uv_close((uv_handle_t *)&c->listener, handle_closed);
    uv_close((uv_handle_t *)&c->tick, handle_closed);
    wal_close(c->rw, wal_closed, c);
}

static int collect(void *ud, int argc, const struct slice *argv)
{
    struct buf *b = ud;
    for (int i = 0; i < argc; i++)
        buf_printf(b, "%s%.*s", i ? " " : "", (int)argv[i].len, argv[i].p);
    buf_append(b, "\n", 1);
    return 0;
}

static int cmp_line(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *dataset(struct db *db)
{
    struct buf b;
    buf_init(&b);
    persist_foreach_record(db, 0, collect, &b);
    buf_append(&b, "", 1);
    char *lines[1024];
    size_t n = 0;
    for (char *p = b.p; *p;) {
        char *nl = strchr(p, '\n');
        *nl = '\0';
        lines[n++] = p;
        p = nl + 1;
    }
    qsort(lines, n, sizeof(lines[0]), cmp_line);
    struct buf out;
    buf_init(&out);
    for (size_t i = 0; i < n; i++)
        buf_printf(&out, "%s\n", lines[i]);
    buf_append(&out, "", 1);
    buf_free(&b);
    return out.p;
}

static void test_replica_follows(void **state)
{
    (void)state;
    static struct ctx c;
    memset(&c, 0, sizeof(c));
    assert_int_equal(uv_loop_init(&c.loop), 0);
    c.loop.data = &c;
    char err[256];
    struct wal_recovery rep;

    c.pdir = tu_mkdtemp();
    struct wal_options po = {.fsync = WAL_FSYNC_NO, .snapshot_in_process = true};
    assert_int_equal(wal_open(c.pdir, &po, NULL, &c.pw, err, sizeof(err)), 0);
    c.pdb = db_new(NULL, seed);
    assert_int_equal(wal_recover(c.pw, NULL, NULL, NULL, &rep, err, sizeof(err)), 0);
    primary_write(&c, 150);

    c.rdir = tu_mkdtemp();
    struct wal_options ro = {.fsync = WAL_FSYNC_ALWAYS,
                             .snapshot_in_process = true,
                             .on_durable = on_r_durable,
                             .ud = &c};
    assert_int_equal(wal_open(c.rdir, &ro, &c.loop, &c.rw, err, sizeof(err)), 0);
    c.rdb = db_new(NULL, seed);
    assert_int_equal(
        wal_recover(c.rw, persist_snapshot_load, persist_wal_apply, c.rdb, &rep, err, sizeof(err)),
        0);

    uv_tcp_init(&c.loop, &c.listener);
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", 0, &addr);
    assert_int_equal(uv_tcp_bind(&c.listener, (const struct sockaddr *)&addr, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&c.listener, 8, on_conn), 0);
    struct repl_replica_opts opts;
    memset(&opts, 0, sizeof(opts));
    int len = sizeof(opts.primary);
    uv_tcp_getsockname(&c.listener, (struct sockaddr *)&opts.primary, &len);
    opts.node = "replica-t";
    opts.secret = "pw";
    opts.retry_ms = 20;
    c.rep = repl_replica_new(&c.loop, c.rw, c.rdb, c.rdir, &opts);
    repl_replica_start(c.rep);

    uv_timer_init(&c.loop, &c.tick);
    c.tick.data = &c;
    c.deadline_ms = clock_now_ms() + 20000;
    uv_timer_start(&c.tick, on_tick, 5, 5);
    uv_run(&c.loop, UV_RUN_DEFAULT);
    assert_true(c.done);
    assert_int_equal(uv_loop_close(&c.loop), 0);

    wal_close(c.pw, NULL, NULL);
    db_free(c.pdb);
    db_free(c.rdb);
    tu_rmtree(c.pdir);
    tu_rmtree(c.rdir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replica_follows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
