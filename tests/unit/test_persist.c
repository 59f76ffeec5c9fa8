/* SPDX-License-Identifier: MIT */
/* Unit tests for store/persist.c's bridges with the write-ahead log: a workload runs through the
 * command layer with a minimal persist_ops over wal_append/wal_commit (the log in synchronous
 * mode), a snapshot is taken halfway with persist_snapshot_iterate, more writes follow, and a
 * fresh db recovered with persist_snapshot_load + persist_wal_apply holds the same dataset. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "store/cmd.h"
#include "store/db.h"
#include "store/persist.h"
#include "store/snapshot.h"
#include "store/wal.h"
#include "testutil.h"

static const uint8_t seed[16] = {5, 5, 5};

/* The whole adapter from persist_ops to the log, for a single node in term 1. */
static uint64_t wal_ops_append(void *ud, int argc, const struct slice *argv)
{
    uint64_t lsn = 0;
    assert_int_equal(wal_append(ud, 1, (size_t)argc, argv, &lsn), 0);
    return lsn;
}

static void wal_ops_flush(void *ud)
{
    assert_int_equal(wal_commit(ud), 0);
}

static const struct persist_ops wal_ops = {NULL, wal_ops_append, wal_ops_flush, NULL,
                                           NULL, NULL,           NULL};

struct lines {
    char *v[512];
    int n;
};

static void add_line(struct lines *l, int argc, const struct slice *argv)
{
    struct buf b;
    buf_init(&b);
    for (int i = 0; i < argc; i++)
        buf_printf(&b, "%s%.*s", i ? " " : "", (int)argv[i].len, argv[i].p);
    buf_append(&b, "", 1);
    assert_true(l->n < 512);
    l->v[l->n++] = b.p;
}

/* One line per record, except one per field for HSET: a table hash lists its fields in an
 * order that depends on its insertion history. */
static int collect(void *ud, int argc, const struct slice *argv)
{
    struct lines *l = ud;
    if (slice_eq(argv[0], SLICE_LIT("HSET"))) {
        for (int i = 2; i + 1 < argc; i += 2) {
            struct slice one[4] = {argv[0], argv[1], argv[i], argv[i + 1]};
            add_line(l, 4, one);
        }
        return 0;
    }
    add_line(l, argc, argv);
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The dataset as sorted record lines, for comparing two dbs. */
static void dataset(struct db *db, struct lines *l)
{
    l->n = 0;
    persist_foreach_record(db, 0, collect, l);
    qsort(l->v, (size_t)l->n, sizeof(l->v[0]), cmp_str);
}

static void lines_free(struct lines *l)
{
    for (int i = 0; i < l->n; i++)
        free(l->v[i]);
    l->n = 0;
}

static void run(struct cmd_env *env, struct session *s, const char *cmd)
{
    char copy[512];
    snprintf(copy, sizeof(copy), "%s", cmd);
    struct slice argv[32];
    int argc = 0;
    for (char *p = copy; *p;) {
        char *sp = strchr(p, ' ');
        if (sp)
            *sp = '\0';
        argv[argc++] = slice_cstr(p);
        if (!sp)
            break;
        p = sp + 1;
    }
    s->out->len = 0;
    cmd_exec(env, s, argc, argv);
    assert_true(s->out->len > 0 && s->out->p[0] != '-');
}

static void test_log_snapshot_recover(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp();
    char err[256];
    struct wal_options opt = {.fsync = WAL_FSYNC_NO, .snapshot_in_process = true};
    struct wal *w;
    assert_int_equal(wal_open(dir, &opt, NULL, &w, err, sizeof(err)), 0);
    struct wal_recovery rep;
    assert_int_equal(wal_recover(w, NULL, NULL, NULL, &rep, err, sizeof(err)), 0);

    struct db *db = db_new(NULL, seed);
    db->now_ms = 1700000000000;
    db_set_persist(db, &wal_ops, w);
    struct cmd_env env;
    cmd_env_init(&env, db);
    struct buf out;
    buf_init(&out);
    struct session s = {.id = 1, .authed = true, .out = &out};
    const char *before[] = {"SET a 1",        "SET b 2 EX 100", "INCR b",         "APPEND a xyz",
                            "HSET h f 1 g 2", "HINCRBY h f 41", "MSET m1 x m2 y", "DEL m1",
                            "EXPIRE m2 1000", "SETNX s 1"};
    for (size_t i = 0; i < sizeof(before) / sizeof(before[0]); i++)
        run(&env, &s, before[i]);
    /* A hash big enough for the table representation, with a TTL. */
    char cmd[64];
    for (int i = 0; i < 200; i++) {
        snprintf(cmd, sizeof(cmd), "HSET big f%d v%d", i, i);
        run(&env, &s, cmd);
    }
    run(&env, &s, "PEXPIREAT big 1800000000000");
    wal_commit(w);
    assert_int_equal(wal_snapshot_save(w, persist_snapshot_iterate, db), 0);
    const char *after[] = {
        "SET a 2", "HDEL h g", "PERSIST b", "GETDEL s", "HSET big f1 changed", "SET t v PX 10"};
    for (size_t i = 0; i < sizeof(after) / sizeof(after[0]); i++)
        run(&env, &s, after[i]);
    db->now_ms += 20;
    run(&env, &s, "EXISTS t"); /* lazily expired: logged as DEL */
    wal_commit(w);
    uint64_t last = wal_last_lsn(w);
    wal_close(w, NULL, NULL);

    struct db *back = db_new(NULL, seed);
    assert_int_equal(wal_open(dir, &opt, NULL, &w, err, sizeof(err)), 0);
    assert_int_equal(
        wal_recover(w, persist_snapshot_load, persist_wal_apply, back, &rep, err, sizeof(err)), 0);
    assert_true(rep.snapshot_items > 0);
    assert_true(rep.records > 0);
    assert_true(rep.last_lsn == last);
    struct lines a, b;
    dataset(db, &a);
    dataset(back, &b);
    assert_int_equal(a.n, b.n);
    for (int i = 0; i < a.n; i++)
        assert_string_equal(a.v[i], b.v[i]);
    assert_int_equal(keyspace_expires(back->ks), keyspace_expires(db->ks));
    lines_free(&a);
    lines_free(&b);
    wal_close(w, NULL, NULL);

    buf_free(&out);
    cmd_session_free(&s);
    cmd_env_free(&env);
    db_free(db);
    db_free(back);
    tu_rmtree(dir);
}

static void test_bridge_errors(void **state)
{
    (void)state;
    struct db *db = db_new(NULL, seed);
    struct slice none[1];
    assert_int_equal(persist_wal_apply(db, 1, 1, 0, none), 0); /* a no-op record */
    struct slice get[2] = {SLICE_LIT("GET"), SLICE_LIT("k")};
    assert_int_equal(persist_wal_apply(db, 2, 1, 2, get), -EINVAL);
    struct slice v[3] = {SLICE_LIT("a"), SLICE_LIT("b"), SLICE_LIT("c")};
    struct snapshot_item it = {SNAPSHOT_TYPE_STRING, 0, SLICE_LIT("k"), 2, v};
    assert_int_equal(persist_snapshot_load(db, &it), TD_ECORRUPT);
    it.type = SNAPSHOT_TYPE_HASH;
    it.nvals = 3;
    assert_int_equal(persist_snapshot_load(db, &it), TD_ECORRUPT);
    it.type = 77;
    assert_int_equal(persist_snapshot_load(db, &it), TD_ECORRUPT);
    /* Hints: "keys" sizes the table, another name is ignored, a malformed count is corrupt. */
    struct slice n[1] = {SLICE_LIT("3000")};
    struct snapshot_item hint = {SNAPSHOT_TYPE_HINT, 0, SLICE_LIT("keys"), 1, n};
    assert_int_equal(persist_snapshot_load(db, &hint), 0);
    assert_true(keyspace_buckets(db->ks) >= 3000);
    assert_int_equal(keyspace_size(db->ks), 0);
    hint.key = SLICE_LIT("future");
    assert_int_equal(persist_snapshot_load(db, &hint), 0);
    hint.key = SLICE_LIT("keys");
    n[0] = SLICE_LIT("-1");
    assert_int_equal(persist_snapshot_load(db, &hint), TD_ECORRUPT);
    n[0] = SLICE_LIT("x");
    assert_int_equal(persist_snapshot_load(db, &hint), TD_ECORRUPT);
    hint.nvals = 0;
    assert_int_equal(persist_snapshot_load(db, &hint), TD_ECORRUPT);
    struct slice rec[3] = {SLICE_LIT("SET"), SLICE_LIT("k"), SLICE_LIT("v")};
    struct snapshot_item argv_item = {SNAPSHOT_TYPE_ARGV, 0, SLICE_LIT(""), 3, rec};
    assert_int_equal(persist_snapshot_load(db, &argv_item), 0);
    assert_int_equal(keyspace_size(db->ks), 1);
    db_free(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_log_snapshot_recover),
        cmocka_unit_test(test_bridge_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
