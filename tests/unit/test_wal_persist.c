/* SPDX-License-Identifier: MIT */
/* Unit tests for store/wal_persist.c, the persistence layer over the real log on a real loop:
 * which LSN releases held replies per fsync mode (always: after fdatasync; everysec/no: once
 * written, before the once-a-second fdatasync), SAVE and the unsaved-changes counter, the
 * automatic snapshot rule (and segments it removes), INFO fields, and a reopen that recovers
 * snapshot + log tail into a fresh db. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <uv.h>

#include "base/log.h"
#include "store/cmd.h"
#include "store/db.h"
#include "store/keyspace.h"
#include "store/persist.h"
#include "store/wal.h"
#include "store/wal_persist.h"
#include "testutil.h"

static const uint8_t seed[16] = {9, 9};
static char *dir;

static int setup(void **state)
{
    (void)state;
    dir = tu_mkdtemp();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tu_rmtree(dir);
    return 0;
}

/* A db driven through the command layer, as the server would, plus what the layer reported. */
struct rig {
    uv_loop_t loop;
    struct db *db;
    struct wal_persist *wp;
    struct cmd_env env;
    struct buf out;
    struct session s;
    uint64_t released; /* highest lsn handed to the server's durable callback */
    int released_calls;
    bool closed;
    struct wal_recovery rep;
};

static void on_released(void *ctx, uint64_t lsn)
{
    struct rig *r = ctx;
    assert_true(lsn > r->released);
    r->released = lsn;
    r->released_calls++;
}

static void rig_open(struct rig *r, const struct wal_persist_config *cfg)
{
    memset(r, 0, sizeof(*r));
    uv_loop_init(&r->loop);
    r->db = db_new(NULL, seed);
    char err[512];
    int rc = wal_persist_open(dir, cfg, &r->loop, r->db, &r->wp, &r->rep, err, sizeof(err));
    if (rc != 0)
        fail_msg("wal_persist_open: %s", err);
    db_set_persist(r->db, &wal_persist_ops, r->wp);
    wal_persist_ops.bind(r->wp, on_released, r);
    cmd_env_init(&r->env, r->db);
    buf_init(&r->out);
    r->s = (struct session){.id = 1, .authed = true, .out = &r->out};
}

static void closed_cb(void *ud)
{
    ((struct rig *)ud)->closed = true;
}

static void rig_close(struct rig *r)
{
    wal_persist_close(r->wp, closed_cb, r);
    uv_run(&r->loop, UV_RUN_DEFAULT);
    assert_true(r->closed);
    assert_int_equal(uv_loop_close(&r->loop), 0);
    buf_free(&r->out);
    cmd_session_free(&r->s);
    cmd_env_free(&r->env);
    db_free(r->db);
}

/* Runs one space-separated command; returns its reply. */
static const char *run(struct rig *r, const char *cmd)
{
    char copy[256];
    snprintf(copy, sizeof(copy), "%s", cmd);
    struct slice argv[16];
    int argc = 0;
    for (char *p = copy; *p && argc < 16;) {
        char *sp = strchr(p, ' ');
        if (sp)
            *sp = '\0';
        argv[argc++] = slice_cstr(p);
        if (!sp)
            break;
        p = sp + 1;
    }
    r->out.len = 0;
    r->db->now_ms = (int64_t)1700000000000;
    cmd_exec(&r->env, &r->s, argc, argv);
    buf_append(&r->out, "", 1);
    r->out.len--;
    return r->out.p;
}

static void info(struct rig *r, struct buf *o)
{
    o->len = 0;
    wal_persist_ops.info(r->wp, o);
    buf_append(o, "", 1);
}

static void deadline_cb(uv_timer_t *t)
{
    uv_stop(t->loop);
}

/* Runs the loop until r->released >= lsn or 5 s passed (a ref'd timer keeps it going). */
static void wait_released(struct rig *r, uint64_t lsn)
{
    uv_timer_t t;
    uv_timer_init(&r->loop, &t);
    uv_timer_start(&t, deadline_cb, 5000, 0);
    while (r->released < lsn && uv_run(&r->loop, UV_RUN_ONCE))
        ;
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&r->loop, UV_RUN_NOWAIT);
}

static struct wal_persist_config config(enum wal_fsync mode)
{
    struct wal_persist_config c;
    memset(&c, 0, sizeof(c));
    c.fsync = mode;
    c.snapshot_min_bytes = 64 << 20;
    c.snapshot_growth_pct = 100;
    return c;
}

/* everysec and no: released as soon as written, long before the fdatasync. */
static void test_release_on_write(void **state)
{
    (void)state;
    enum wal_fsync modes[] = {WAL_FSYNC_EVERYSEC, WAL_FSYNC_NO};
    for (int m = 0; m < 2; m++) {
        struct wal_persist_config cfg = config(modes[m]);
        struct rig r;
        rig_open(&r, &cfg);
        assert_string_equal(run(&r, "SET a 1"), "+OK\r\n");
        assert_string_equal(run(&r, "INCR n"), ":1\r\n");
        wal_persist_ops.flush(r.wp);
        assert_int_equal(r.released, 0); /* not before the write */
        uint64_t t0 = uv_now(&r.loop);
        wait_released(&r, 2);
        assert_int_equal(r.released, 2);
        struct wal *w = wal_persist_wal(r.wp);
        assert_int_equal(wal_written_lsn(w), 2);
        assert_true(wal_durable_lsn(w) < 2);
        assert_true(uv_now(&r.loop) - t0 < 900);
        rig_close(&r);
        tu_rmtree(dir);
        dir = tu_mkdtemp();
    }
}

/* always: released only once fdatasynced. */
static void test_release_on_sync(void **state)
{
    (void)state;
    struct wal_persist_config cfg = config(WAL_FSYNC_ALWAYS);
    struct rig r;
    rig_open(&r, &cfg);
    run(&r, "SET a 1");
    run(&r, "HSET h f v");
    wal_persist_ops.flush(r.wp);
    wait_released(&r, 2);
    assert_int_equal(r.released, 2);
    assert_int_equal(wal_durable_lsn(wal_persist_wal(r.wp)), 2);
    struct buf o;
    buf_init(&o);
    info(&r, &o);
    assert_non_null(strstr(o.p, "aof_enabled:1\r\n"));
    assert_non_null(strstr(o.p, "tandem_fsync:always\r\n"));
    assert_non_null(strstr(o.p, "tandem_durable_lsn:2\r\n"));
    assert_non_null(strstr(o.p, "tandem_term:1\r\n"));
    buf_free(&o);
    rig_close(&r);
}

/* SAVE writes a snapshot, resets the unsaved-changes counter; a reopen loads it plus the tail,
 * with TTLs kept as absolute times. */
static void test_save_and_recover(void **state)
{
    (void)state;
    struct wal_persist_config cfg = config(WAL_FSYNC_EVERYSEC);
    struct rig r;
    rig_open(&r, &cfg);
    run(&r, "SET a 1");
    run(&r, "SET t v PX 100000");
    assert_int_equal(r.db->dirty, 2);
    char err[128];
    assert_int_equal(wal_persist_ops.save(r.wp, err, sizeof(err)), 0);
    assert_int_equal(r.db->dirty, 0);
    run(&r, "SET b 2");
    run(&r, "DEL a");
    struct buf o;
    buf_init(&o);
    info(&r, &o);
    assert_non_null(strstr(o.p, "tandem_snapshot_lsn:2\r\n"));
    assert_non_null(strstr(o.p, "rdb_saves:1\r\n"));
    rig_close(&r);

    rig_open(&r, &cfg);
    assert_int_equal(r.rep.snapshot_lsn, 2);
    assert_int_equal(r.rep.snapshot_items, 3); /* the key-count hint, then the keys */
    assert_int_equal(wal_persist_snapshot_keys(r.wp), 2);
    assert_int_equal(r.rep.records, 2);
    assert_int_equal(r.rep.last_lsn, 4);
    assert_int_equal(r.db->dirty, 0);
    assert_int_equal(keyspace_size(r.db->ks), 2);
    assert_string_equal(run(&r, "EXISTS a"), ":0\r\n");
    assert_string_equal(run(&r, "GET b"), "$1\r\n2\r\n");
    assert_string_equal(run(&r, "PTTL t"), ":100000\r\n"); /* same now_ms: same remaining */
    info(&r, &o);
    assert_non_null(strstr(o.p, "tandem_recovered_snapshot_lsn:2\r\n"));
    assert_non_null(strstr(o.p, "rdb_last_load_keys_loaded:2\r\n"));
    buf_free(&o);
    rig_close(&r);
}

/* The automatic rule: a snapshot starts once the log grew past min bytes and pct% of the last
 * snapshot, not before; it removes the segments it covers. */
static void test_automatic_snapshot(void **state)
{
    (void)state;
    struct wal_persist_config cfg = config(WAL_FSYNC_NO);
    cfg.segment_bytes = 4096;
    cfg.snapshot_min_bytes = 16384;
    cfg.snapshot_growth_pct = 100;
    cfg.check_interval_ms = 1;
    cfg.snapshot_in_process = true;
    struct rig r;
    rig_open(&r, &cfg);
    wal_persist_start(r.wp);
    struct wal *w = wal_persist_wal(r.wp);
    char cmd[128];
    struct wal_stats st;
    int i = 0;
    /* Below the threshold: no snapshot however long the timer runs. */
    for (; i < 100; i++) {
        snprintf(cmd, sizeof(cmd), "SET key:%d value-%d-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", i % 50,
                 i);
        run(&r, cmd);
    }
    wal_persist_ops.flush(r.wp);
    wait_released(&r, 100);
    for (int k = 0; k < 20; k++)
        uv_run(&r.loop, UV_RUN_ONCE);
    wal_get_stats(w, &st);
    assert_true(st.log_bytes < 16384);
    assert_int_equal(st.snapshots, 0);
    /* Past it. */
    for (; i < 400; i++) {
        snprintf(cmd, sizeof(cmd), "SET key:%d value-%d-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", i % 50,
                 i);
        run(&r, cmd);
        if (i % 10 == 0)
            wal_persist_ops.flush(r.wp);
    }
    wal_persist_ops.flush(r.wp);
    wait_released(&r, 400);
    uv_timer_t t;
    uv_timer_init(&r.loop, &t);
    uv_timer_start(&t, deadline_cb, 5000, 0);
    do {
        uv_run(&r.loop, UV_RUN_ONCE);
        wal_get_stats(w, &st);
    } while (st.snapshots == 0 && uv_is_active((uv_handle_t *)&t));
    uv_close((uv_handle_t *)&t, NULL);
    assert_int_equal(st.snapshots, 1);
    assert_int_equal(st.last_snapshot_status, 0);
    assert_true(st.snapshot_lsn >= 200);
    assert_true(st.segments <= 2); /* the covered ones were removed */
    assert_int_equal(r.db->dirty, 400 - st.snapshot_lsn);
    /* Right after it, the log is small again relative to the snapshot: no second one. */
    for (int k = 0; k < 20; k++)
        uv_run(&r.loop, UV_RUN_NOWAIT);
    wal_get_stats(w, &st);
    assert_int_equal(st.snapshots, 1);
    struct buf o;
    buf_init(&o);
    info(&r, &o);
    assert_non_null(strstr(o.p, "tandem_snapshots_automatic:1\r\n"));
    buf_free(&o);
    rig_close(&r);

    rig_open(&r, &cfg);
    assert_true(r.rep.snapshot_lsn >= 200);
    assert_int_equal(r.rep.last_lsn, 400);
    assert_int_equal(keyspace_size(r.db->ks), 50);
    assert_string_equal(run(&r, "GET key:49"),
                        "$42\r\nvalue-399-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n");
    rig_close(&r);
}

/* BGSAVE forks a snapshot and replies at once, refuses a second one while it runs (Redis's
 * replies), and LASTSAVE moves from the start time to the snapshot's end; a reopen loads it. */
static void test_bgsave_and_lastsave(void **state)
{
    (void)state;
    struct wal_persist_config cfg = config(WAL_FSYNC_ALWAYS);
    struct rig r;
    rig_open(&r, &cfg);
    int64_t now_s = (int64_t)time(NULL);
    long long start_s = strtoll(run(&r, "LASTSAVE") + 1, NULL, 10);
    assert_true(start_s >= now_s - 2 && start_s <= now_s + 2);
    run(&r, "SET a 1");
    run(&r, "HSET h f v");
    wal_persist_ops.flush(r.wp);
    wait_released(&r, 2);
    assert_string_equal(run(&r, "BGSAVE foo"), "-ERR syntax error\r\n");
    assert_string_equal(run(&r, "BGSAVE SCHEDULE x"), "-ERR syntax error\r\n");
    assert_string_equal(run(&r, "BGSAVE"), "+Background saving started\r\n");
    /* The child is reaped by a loop timer: until the loop runs it counts as running. */
    assert_string_equal(run(&r, "BGSAVE"), "-ERR Background save already in progress\r\n");
    assert_string_equal(run(&r, "BGSAVE SCHEDULE"), "-ERR Background save already in progress\r\n");
    struct wal *w = wal_persist_wal(r.wp);
    struct wal_stats st;
    uv_timer_t t;
    uv_timer_init(&r.loop, &t);
    uv_timer_start(&t, deadline_cb, 5000, 0);
    do {
        uv_run(&r.loop, UV_RUN_ONCE);
        wal_get_stats(w, &st);
    } while (st.snapshots == 0 && uv_is_active((uv_handle_t *)&t));
    uv_close((uv_handle_t *)&t, NULL);
    assert_int_equal(st.snapshots, 1);
    assert_int_equal(st.last_snapshot_status, 0);
    assert_int_equal(st.snapshot_lsn, 2);
    assert_int_equal(r.db->dirty, 0);
    assert_int_equal(st.segments, 0); /* the snapshot covers the whole log */
    long long last_s = strtoll(run(&r, "LASTSAVE") + 1, NULL, 10);
    assert_true(last_s >= start_s);
    int64_t snap_s = (int64_t)(st.last_snapshot_wall_ms / 1000);
    assert_true(last_s >= snap_s - 1 && last_s <= snap_s + 1);
    struct buf o;
    buf_init(&o);
    info(&r, &o);
    assert_non_null(strstr(o.p, "rdb_saves:1\r\n"));
    assert_non_null(strstr(o.p, "rdb_bgsave_in_progress:0\r\n"));
    buf_free(&o);
    rig_close(&r);

    rig_open(&r, &cfg);
    assert_int_equal(r.rep.snapshot_lsn, 2);
    assert_int_equal(r.rep.records, 0);
    assert_string_equal(run(&r, "GET a"), "$1\r\n1\r\n");
    assert_string_equal(run(&r, "HGET h f"), "$1\r\nv\r\n");
    rig_close(&r);
}

int main(void)
{
    log_set_level(LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_release_on_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_release_on_sync, setup, teardown),
        cmocka_unit_test_setup_teardown(test_save_and_recover, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bgsave_and_lastsave, setup, teardown),
        cmocka_unit_test_setup_teardown(test_automatic_snapshot, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
