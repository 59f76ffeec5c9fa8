/* SPDX-License-Identifier: MIT */
/* Unit tests for store/repl_wal.c: a primary and a replica, each a real write-ahead log (in
 * synchronous mode) and keyspace in its own directory, joined by the replication code without
 * sockets: REPLSYNC built from the replica's log, parsed by the RESP parser, answered by the
 * primary's session, the stream read from the primary's log and fed to the replica's link.
 * Checks that the replica ends with the primary's exact dataset and log: from empty, after a
 * restart (partial resync, no snapshot), after divergence (the discarded records audited), and
 * after the primary compacted its log (full resync by snapshot). */
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

#include "base/buf.h"
#include "proto/resp.h"
#include "proto/walrec.h"
#include "store/persist.h"
#include "store/repl_wal.h"
#include "store/snapshot.h"
#include "store/termhist.h"
#include "testutil.h"

static const uint8_t seed[16] = {7, 7, 7};

struct node {
    char *dir;
    struct wal *w;
    struct db *db;
};

static void node_open(struct node *n)
{
    char err[256];
    struct wal_options opt = {
        .fsync = WAL_FSYNC_ALWAYS, .segment_bytes = 4096, .snapshot_in_process = true};
    assert_int_equal(wal_open(n->dir, &opt, NULL, &n->w, err, sizeof(err)), 0);
    n->db = db_new(NULL, seed);
    struct wal_recovery rep;
    if (wal_recover(n->w, persist_snapshot_load, persist_wal_apply, n->db, &rep, err,
                    sizeof(err)) != 0)
        fail_msg("recover: %s", err);
}

static void node_close(struct node *n)
{
    wal_close(n->w, NULL, NULL);
    db_free(n->db);
    n->w = NULL;
    n->db = NULL;
}

/* Writes record i of a workload in term: a mix of SET, HSET and DEL. */
static void node_write(struct node *n, uint64_t term, unsigned i)
{
    char k[32], v[32];
    struct slice argv[4];
    size_t argc;
    snprintf(k, sizeof(k), "k%u", i % 37);
    snprintf(v, sizeof(v), "v%u-%" PRIu64, i, term);
    if (i % 7 == 3) {
        argv[0] = SLICE_LIT("DEL");
        argv[1] = slice_cstr(k);
        argc = 2;
    } else if (i % 5 == 1) {
        argv[0] = SLICE_LIT("HSET");
        argv[1] = SLICE_LIT("h");
        argv[2] = slice_cstr(k);
        argv[3] = slice_cstr(v);
        argc = 4;
    } else {
        argv[0] = SLICE_LIT("SET");
        argv[1] = slice_cstr(k);
        argv[2] = slice_cstr(v);
        argc = 3;
    }
    char err[256];
    assert_int_equal(persist_apply(n->db, (int)argc, argv, err, sizeof(err)), 0);
    assert_int_equal(wal_append(n->w, term, argc, argv, NULL), 0);
    assert_int_equal(wal_commit(n->w), 0);
}

/* The dataset as one sorted text, for comparing two dbs. */
static int collect(void *ud, int argc, const struct slice *argv)
{
    struct buf *b = ud;
    if (slice_eq(argv[0], SLICE_LIT("HSET"))) {
        for (int i = 2; i + 1 < argc; i += 2)
            buf_printf(b, "HSET %.*s %.*s %.*s\n", (int)argv[1].len, argv[1].p, (int)argv[i].len,
                       argv[i].p, (int)argv[i + 1].len, argv[i + 1].p);
        return 0;
    }
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
    char *lines[4096];
    size_t n = 0;
    for (char *p = b.p; *p;) {
        char *nl = strchr(p, '\n');
        *nl = '\0';
        assert_true(n < 4096);
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

static int gather(void *ud, const struct walrec *rec)
{
    buf_append(ud, rec->raw.p, rec->raw.len);
    return 0;
}

/* The raw records of w from lsn on. */
static void records_from(struct wal *w, uint64_t lsn, struct buf *out)
{
    for (;;) {
        int64_t n = wal_read(w, lsn, 1u << 16, gather, out);
        assert_true(n >= 0);
        if (n == 0)
            return;
        lsn += (uint64_t)n;
    }
}

static void assert_same(struct node *p, struct node *r)
{
    char *a = dataset(p->db), *b = dataset(r->db);
    assert_string_equal(a, b);
    assert_true(strlen(a) > 0);
    free(a);
    free(b);
    assert_int_equal(wal_last_lsn(p->w), wal_last_lsn(r->w));
    assert_int_equal(wal_last_term(p->w), wal_last_term(r->w));
    struct wal_stats ps, rs;
    wal_get_stats(p->w, &ps);
    wal_get_stats(r->w, &rs);
    uint64_t from = (ps.snapshot_lsn > rs.snapshot_lsn ? ps.snapshot_lsn : rs.snapshot_lsn) + 1;
    struct buf x, y;
    buf_init(&x);
    buf_init(&y);
    records_from(p->w, from, &x);
    records_from(r->w, from, &y);
    assert_int_equal(x.len, y.len);
    assert_memory_equal(x.p, y.p, x.len);
    buf_free(&x);
    buf_free(&y);
}

/* One (re)join of replica r to primary p in pterm: returns the answer's kind. */
static enum replmsg_answer_kind sync_once(struct node *p, uint64_t pterm, struct node *r,
                                          struct repl_wal_sink *sink)
{
    /* Replica -> primary: REPLSYNC over RESP. */
    struct replmsg_hello h;
    assert_int_equal(repl_wal_hello(r->w, SLICE_LIT("r1"), SLICE_LIT("pw"), &h), 0);
    struct buf wire;
    buf_init(&wire);
    replmsg_hello_encode(&wire, &h);
    struct resp_limits lim = {1u << 20, 1024, 4096, false};
    struct resp_parser rp;
    resp_parser_init(&rp, &lim);
    assert_int_equal(resp_parse(&rp, wire.p, wire.len), (ssize_t)wire.len);
    struct replmsg_hello got;
    const char *why;
    assert_int_equal(replmsg_hello_parse(rp.argc, rp.argv, &got, &why), 0);

    /* Primary: answer and stream. */
    struct repl_session s;
    repl_session_init(&s);
    struct repl_log_view v;
    repl_wal_view(p->w, pterm, &v);
    struct replmsg_answer a;
    struct repl_term_verdict tv;
    struct buf stream;
    buf_init(&stream);
    assert_int_equal(repl_session_hello(&s, &got, SLICE_LIT("pw"), &v, &a, &tv), 0);
    assert_int_equal(tv.action, REPL_TERM_OK);
    replmsg_answer_encode(&stream, &a);
    if (a.kind == REPLMSG_FULL) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/snap-%020" PRIu64 ".snap", p->dir, a.lsn);
        assert_int_equal(repl_wal_snapshot_frames(path, 1000, &stream), 0);
        repl_session_snapshot_sent(&s);
    }
    while (repl_wal_fill(p->w, &s, &stream, 700) > 0)
        replmsg_frame_heartbeat(&stream, pterm, s.acked_lsn, wal_last_lsn(p->w));
    resp_parser_free(&rp);

    /* Replica: feed everything, make it durable, acknowledge. */
    struct repl_link link;
    repl_link_init(&link, sink->term, wal_last_lsn(r->w), &repl_wal_sink_ops, sink);
    ssize_t used = repl_link_feed(&link, stream.p, stream.len);
    if (used < 0)
        fail_msg("link failed: %s (%s)", link.err, sink->err);
    assert_int_equal(used, (ssize_t)stream.len);
    assert_int_equal(link.state, REPL_LINK_STREAMING);
    assert_int_equal(wal_commit(r->w), 0);
    assert_int_equal(repl_session_ack(&s, wal_durable_lsn(r->w), sink->term, pterm, 1, &tv), 0);
    assert_int_equal(s.acked_lsn, wal_last_lsn(p->w));
    buf_free(&stream);
    buf_free(&wire);
    return a.kind;
}

static void test_repl_end_to_end(void **state)
{
    (void)state;
    struct node p = {tu_mkdtemp(), NULL, NULL}, r = {tu_mkdtemp(), NULL, NULL};
    node_open(&p);
    node_open(&r);
    struct repl_wal_sink sink;
    repl_wal_sink_init(&sink, r.w, r.db, r.dir);

    /* From empty. */
    for (unsigned i = 0; i < 200; i++)
        node_write(&p, 1, i);
    assert_int_equal(sync_once(&p, 1, &r, &sink), REPLMSG_CONTINUE);
    assert_same(&p, &r);
    assert_int_equal(sink.term, 1);

    /* More writes, then the replica restarts: a partial resync, no snapshot. */
    for (unsigned i = 200; i < 260; i++)
        node_write(&p, 1, i);
    repl_wal_sink_free(&sink);
    node_close(&r);
    node_open(&r);
    repl_wal_sink_init(&sink, r.w, r.db, r.dir);
    assert_int_equal(sync_once(&p, 1, &r, &sink), REPLMSG_CONTINUE);
    assert_int_equal(sink.full_syncs, 0);
    assert_same(&p, &r);

    /* Divergence: the replica (an old primary) wrote 10 records in term 1 that never reached
     * the new primary, which writes in term 2. */
    uint64_t common = wal_last_lsn(p.w);
    for (unsigned i = 1000; i < 1010; i++)
        node_write(&r, 1, i);
    for (unsigned i = 260; i < 300; i++)
        node_write(&p, 2, i);
    assert_int_equal(sync_once(&p, 2, &r, &sink), REPLMSG_TRUNCATE);
    assert_int_equal(sink.discarded, 10);
    assert_int_equal(sink.term, 2);
    assert_same(&p, &r);
    /* The audit file holds exactly those records. */
    char path[4096];
    snprintf(path, sizeof(path), "%s/discarded-1.log", r.dir);
    size_t n;
    char *c = tu_read(path, &n);
    struct walrec_scan sc;
    walrec_scan(c, n, common + 1, 0, NULL, NULL, &sc);
    assert_int_equal(sc.status, WALREC_SCAN_CLEAN);
    assert_int_equal(sc.nrecords, 10);
    assert_int_equal(sc.first_lsn, common + 1);
    free(c);

    /* The primary compacts; a new replica gets the snapshot, then the log. */
    assert_int_equal(wal_snapshot_save(p.w, persist_snapshot_iterate, p.db), 0);
    for (unsigned i = 300; i < 340; i++)
        node_write(&p, 2, i);
    struct node r2 = {tu_mkdtemp(), NULL, NULL};
    node_open(&r2);
    struct repl_wal_sink sink2;
    repl_wal_sink_init(&sink2, r2.w, r2.db, r2.dir);
    assert_int_equal(sync_once(&p, 2, &r2, &sink2), REPLMSG_FULL);
    assert_int_equal(sink2.full_syncs, 1);
    assert_same(&p, &r2);
    /* And it restarts from its installed snapshot + log. */
    for (unsigned i = 340; i < 350; i++)
        node_write(&p, 2, i);
    repl_wal_sink_free(&sink2);
    node_close(&r2);
    node_open(&r2);
    repl_wal_sink_init(&sink2, r2.w, r2.db, r2.dir);
    assert_int_equal(sync_once(&p, 2, &r2, &sink2), REPLMSG_CONTINUE);
    assert_same(&p, &r2);

    repl_wal_sink_free(&sink2);
    repl_wal_sink_free(&sink);
    node_close(&r2);
    node_close(&r);
    node_close(&p);
    tu_rmtree(r2.dir);
    tu_rmtree(r.dir);
    tu_rmtree(p.dir);
}

static uint64_t snap_lsn_of(struct node *n)
{
    struct wal_stats st;
    wal_get_stats(n->w, &st);
    return st.snapshot_lsn;
}

static int count_items(void *ud, const struct snapshot_item *it)
{
    (void)it;
    (*(uint64_t *)ud)++;
    return 0;
}

/* An old primary r diverged, compacted (its divergent records partly folded into its snapshot)
 * and wrote more; the new primary p compacted too. p proves the common prefix from its kept
 * term boundaries and answers FULL with it: r keeps its snapshot as the audit of the folded
 * records (a hard link), audits its log tail as records, then installs p's snapshot. With the
 * boundaries gone (an old data directory, or a damaged file) the same FULL is unproven and
 * audits nothing, as before. A lagging replica's FULL audits nothing either. */
static void test_full_resync_audit(void **state)
{
    (void)state;
    for (int variant = 0; variant < 3; variant++) {
        struct node p = {tu_mkdtemp(), NULL, NULL}, r = {tu_mkdtemp(), NULL, NULL};
        node_open(&p);
        node_open(&r);
        struct repl_wal_sink sink;
        repl_wal_sink_init(&sink, r.w, r.db, r.dir);
        for (unsigned i = 0; i < 50; i++)
            node_write(&p, 1, i);
        assert_int_equal(sync_once(&p, 1, &r, &sink), REPLMSG_CONTINUE);
        uint64_t common = wal_last_lsn(p.w);
        /* r goes on alone in term 1 and compacts; p moves to term 2 and compacts. */
        for (unsigned i = 2000; i < 2020; i++)
            node_write(&r, 1, i);
        assert_int_equal(wal_snapshot_save(r.w, persist_snapshot_iterate, r.db), 0);
        uint64_t rsnap = snap_lsn_of(&r);
        for (unsigned i = 2020; i < 2025; i++)
            node_write(&r, 1, i);
        uint64_t rlast = wal_last_lsn(r.w);
        for (unsigned i = 50; i < 90; i++)
            node_write(&p, 2, i);
        assert_int_equal(wal_snapshot_save(p.w, persist_snapshot_iterate, p.db), 0);
        for (unsigned i = 90; i < 95; i++)
            node_write(&p, 2, i);
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", p.dir, TERMHIST_FILE);
        if (variant == 1) {
            assert_int_equal(unlink(path), 0); /* a data directory from before the file */
        } else if (variant == 2) {
            size_t n;
            char *img = tu_read(path, &n);
            img[n - 1] ^= 1; /* damaged: ignored */
            tu_write(path, img, n);
            free(img);
        }
        node_close(&p);
        node_open(&p);

        uint64_t before = sink.discarded;
        assert_int_equal(sync_once(&p, 2, &r, &sink), REPLMSG_FULL);
        assert_same(&p, &r);
        char kept[4096];
        snprintf(kept, sizeof(kept), "%s/discarded-1-%" PRIu64 ".snap", r.dir, rsnap);
        if (variant != 0) {
            assert_int_equal(sink.discarded, before);
            assert_int_equal(tu_size(kept), -1);
        } else {
            /* 20 folded into the snapshot, 5 cut from the log. */
            assert_int_equal(sink.discarded - before, rlast - common);
            assert_int_equal(sink.full_audited, rlast - common);
            assert_non_null(strstr(sink.audit, "discarded-1-"));
            /* The kept snapshot loads, and holds the 20 folded records' state. */
            uint64_t items = 0;
            struct snapshot_info info;
            char err[256];
            assert_int_equal(snapshot_load(kept, count_items, &items, &info, err, sizeof(err)), 0);
            assert_int_equal(info.lsn, rsnap);
            assert_true(items > 0);
            /* The log tail as records, exactly. */
            snprintf(path, sizeof(path), "%s/discarded-1.log", r.dir);
            size_t n;
            char *c = tu_read(path, &n);
            struct walrec_scan sc;
            walrec_scan(c, n, rsnap + 1, 0, NULL, NULL, &sc);
            assert_int_equal(sc.status, WALREC_SCAN_CLEAN);
            assert_int_equal(sc.nrecords, rlast - rsnap);
            free(c);
            snprintf(path, sizeof(path), "%s/discarded-1.txt", r.dir);
            c = tu_read(path, &n);
            char want[200];
            snprintf(want, sizeof(want), "# lsn=%" PRIu64 "..%" PRIu64 " term<=1 folded into",
                     common + 1, rsnap);
            assert_non_null(strstr(c, want));
            free(c);
        }

        /* A lagging replica behind p's snapshot: FULL, proven, nothing audited. */
        struct node r2 = {tu_mkdtemp(), NULL, NULL};
        node_open(&r2);
        for (unsigned i = 0; i < 10; i++)
            node_write(&r2, 1, i); /* the same first 10 records as p's */
        struct repl_wal_sink sink2;
        repl_wal_sink_init(&sink2, r2.w, r2.db, r2.dir);
        assert_int_equal(sync_once(&p, 2, &r2, &sink2), REPLMSG_FULL);
        assert_int_equal(sink2.discarded, 0);
        assert_same(&p, &r2);
        snprintf(path, sizeof(path), "%s/discarded-1.log", r2.dir);
        assert_int_equal(tu_size(path), -1);

        repl_wal_sink_free(&sink2);
        repl_wal_sink_free(&sink);
        node_close(&r2);
        node_close(&r);
        node_close(&p);
        tu_rmtree(r2.dir);
        tu_rmtree(r.dir);
        tu_rmtree(p.dir);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_repl_end_to_end),
        cmocka_unit_test(test_full_resync_audit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
