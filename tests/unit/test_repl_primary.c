/* SPDX-License-Identifier: MIT */
/* Unit tests for store/repl_primary.c with store/repl_replica.c over loopback TCP, one loop: the
 * test plays the server (accepts, reads the REPLSYNC command, hands the socket's fd and the bytes
 * over to the primary shell). The primary has compacted its log, so the replica gets a full
 * resync by snapshot (sent in pieces), then the log; more writes stream live; the replica's
 * acks make WAIT's count and the sync-commit point reach the primary's last lsn; INFO lists it;
 * the datasets are identical; everything closes with uv_loop_close() == 0. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "base/buf.h"
#include "base/clock.h"
#include "base/err.h"
#include "proto/resp.h"
#include "store/persist.h"
#include "store/repl_primary.h"
#include "store/repl_replica.h"
#include "testutil.h"

static const uint8_t seed[16] = {3, 1, 4};

struct ctx {
    uv_loop_t loop;
    char *pdir, *rdir;
    struct wal *pw, *rw;
    struct db *pdb, *rdb;
    struct repl_primary *prim;
    struct repl_replica *rep;
    uv_tcp_t listener;
    uv_tcp_t accepted;
    bool accepting;
    struct buf in;
    struct resp_parser rp;
    unsigned written;
    uv_timer_t tick;
    int phase;
    uint64_t deadline_ms;
    int closes;
};

static void primary_write(struct ctx *c, unsigned count)
{
    for (unsigned k = 0; k < count; k++, c->written++) {
        char key[32], val[64];
        snprintf(key, sizeof(key), "key:%u", c->written % 3500);
        snprintf(val, sizeof(val), "value-%u-%0*u", c->written, 20, c->written);
        struct slice argv[3] = {SLICE_LIT("SET"), slice_cstr(key), slice_cstr(val)};
        char err[128];
        assert_int_equal(persist_apply(c->pdb, 3, argv, err, sizeof(err)), 0);
        assert_int_equal(wal_append(c->pw, 2, 3, argv, NULL), 0);
    }
    assert_int_equal(wal_commit(c->pw), 0);
    if (c->prim)
        repl_primary_notify(c->prim);
}

static void accepted_closed(uv_handle_t *h)
{
    (void)h;
}

static void a_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    struct ctx *c = h->loop->data;
    (void)hint;
    buf_reserve(&c->in, 4096);
    b->base = c->in.p + c->in.len;
    b->len = c->in.cap - c->in.len;
}

/* The "server": reads the first command and hands the connection over. */
static void a_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct ctx *c = s->loop->data;
    (void)b;
    assert_true(n >= 0);
    c->in.len += (size_t)n;
    ssize_t r = resp_parse(&c->rp, c->in.p, c->in.len);
    if (r == TD_EINCOMPLETE)
        return;
    assert_true(r > 0);
    if (slice_eq_nocase(c->rp.argv[0], SLICE_LIT("AUTH"))) {
        /* A replica with a secret authenticates first, as with a primary's --requirepass. */
        assert_true(c->rp.argc == 2 && slice_eq(c->rp.argv[1], SLICE_LIT("s3")));
        uv_buf_t ok = uv_buf_init("+OK\r\n", 5);
        assert_int_equal(uv_try_write(s, &ok, 1), 5);
        buf_consume(&c->in, (size_t)r);
        r = resp_parse(&c->rp, c->in.p, c->in.len);
        if (r == TD_EINCOMPLETE)
            return;
        assert_true(r > 0);
    }
    assert_true(slice_eq_nocase(c->rp.argv[0], SLICE_LIT("REPLSYNC")));
    uv_os_fd_t fd;
    assert_int_equal(uv_fileno((uv_handle_t *)s, &fd), 0);
    int dupfd = dup(fd);
    assert_true(dupfd >= 0);
    uv_read_stop(s);
    uv_close((uv_handle_t *)s, accepted_closed);
    c->accepting = false;
    assert_int_equal(repl_primary_attach(c->prim, dupfd, c->in.p, c->in.len), 0);
    c->in.len = 0;
}

static void on_conn(uv_stream_t *l, int status)
{
    struct ctx *c = l->loop->data;
    assert_int_equal(status, 0);
    assert_false(c->accepting);
    uv_tcp_init(&c->loop, &c->accepted);
    assert_int_equal(uv_accept(l, (uv_stream_t *)&c->accepted), 0);
    c->accepting = true;
    assert_int_equal(uv_read_start((uv_stream_t *)&c->accepted, a_alloc, a_read), 0);
}

static void on_r_durable(void *ud, uint64_t lsn)
{
    struct ctx *c = ud;
    if (c->rep)
        repl_replica_on_durable(c->rep, lsn);
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
    char **lines = calloc(4096, sizeof(char *));
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
    free(lines);
    return out.p;
}

static void handle_closed(uv_handle_t *h)
{
    (void)h;
}

static void one_closed(void *ud)
{
    struct ctx *c = ud;
    c->closes++;
    if (c->closes == 2)
        wal_close(c->rw, NULL, NULL);
}

static void on_tick(uv_timer_t *t)
{
    struct ctx *c = t->data;
    if (clock_now_ms() > c->deadline_ms)
        fail_msg("timeout in phase %d", c->phase);
    uint64_t last = wal_last_lsn(c->pw);
    bool caught_up = repl_primary_count_acked(c->prim, last) == 1;
    if (c->phase == 0 && caught_up) {
        assert_int_equal(repl_primary_full_syncs(c->prim), 1);
        primary_write(c, 300); /* streamed live */
        c->phase = 1;
    } else if (c->phase == 1 && caught_up) {
        struct repl_commit_in in = {1, false, last, 0, false, 0, NULL};
        struct repl_commit out;
        repl_primary_commit(c->prim, &in, &out);
        if (out.commit_lsn != last)
            return; /* the in-sync probe needs one more tick */
        assert_false(out.degraded);
        struct buf info;
        buf_init(&info);
        repl_primary_info(c->prim, clock_now_ms(), &info);
        buf_append(&info, "", 1);
        assert_non_null(strstr(info.p, "connected_slaves:1\r\n"));
        assert_non_null(strstr(info.p, "state=online"));
        assert_non_null(strstr(info.p, "name=replica-p"));
        buf_free(&info);
        struct repl_replica_info ri;
        repl_replica_get_info(c->rep, &ri);
        assert_int_equal(ri.full_syncs, 1);
        assert_int_equal(ri.applied_lsn, last);
        char *a = dataset(c->pdb), *b = dataset(c->rdb);
        assert_string_equal(a, b);
        free(a);
        free(b);
        c->phase = 2;
        uv_timer_stop(&c->tick);
        uv_close((uv_handle_t *)&c->tick, handle_closed);
        uv_close((uv_handle_t *)&c->listener, handle_closed);
        struct repl_replica *r = c->rep;
        c->rep = NULL;
        repl_replica_close(r, one_closed, c);
        repl_primary_close(c->prim, one_closed, c);
    }
}

static void test_primary_full_then_stream(void **state)
{
    (void)state;
    static struct ctx c;
    memset(&c, 0, sizeof(c));
    assert_int_equal(uv_loop_init(&c.loop), 0);
    c.loop.data = &c;
    char err[256];
    struct wal_recovery rep;
    buf_init(&c.in);
    struct resp_limits lim = {1u << 20, 1024, 4096, false};
    resp_parser_init(&c.rp, &lim);

    /* The primary: 3000 records, compacted at 2000 (large enough for many snapshot chunks). */
    c.pdir = tu_mkdtemp();
    struct wal_options po = {.fsync = WAL_FSYNC_NO, .snapshot_in_process = true};
    assert_int_equal(wal_open(c.pdir, &po, NULL, &c.pw, err, sizeof(err)), 0);
    c.pdb = db_new(NULL, seed);
    assert_int_equal(wal_recover(c.pw, NULL, NULL, NULL, &rep, err, sizeof(err)), 0);
    primary_write(&c, 2000);
    assert_int_equal(wal_snapshot_save(c.pw, persist_snapshot_iterate, c.pdb), 0);
    primary_write(&c, 1000);

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

    struct repl_primary_opts popts = {c.pdir, "s3", 2, 20, 500, NULL, NULL, NULL, NULL};
    c.prim = repl_primary_new(&c.loop, c.pw, &popts);

    uv_tcp_init(&c.loop, &c.listener);
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", 0, &addr);
    assert_int_equal(uv_tcp_bind(&c.listener, (const struct sockaddr *)&addr, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&c.listener, 8, on_conn), 0);
    struct repl_replica_opts opts;
    memset(&opts, 0, sizeof(opts));
    int len = sizeof(opts.primary);
    uv_tcp_getsockname(&c.listener, (struct sockaddr *)&opts.primary, &len);
    opts.node = "replica-p";
    opts.secret = "s3";
    opts.retry_ms = 20;
    c.rep = repl_replica_new(&c.loop, c.rw, c.rdb, c.rdir, &opts);
    repl_replica_start(c.rep);

    uv_timer_init(&c.loop, &c.tick);
    c.tick.data = &c;
    c.deadline_ms = clock_now_ms() + 20000;
    uv_timer_start(&c.tick, on_tick, 5, 5);
    uv_run(&c.loop, UV_RUN_DEFAULT);
    assert_int_equal(c.closes, 2);
    assert_int_equal(uv_loop_close(&c.loop), 0);

    resp_parser_free(&c.rp);
    buf_free(&c.in);
    wal_close(c.pw, NULL, NULL);
    db_free(c.pdb);
    db_free(c.rdb);
    tu_rmtree(c.pdir);
    tu_rmtree(c.rdir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_primary_full_then_stream),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
