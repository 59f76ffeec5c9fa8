/* SPDX-License-Identifier: MIT */
/* Unit tests for store/wal.c.
 *
 * The workload is deterministic by lsn: record <lsn> is "SET k<lsn % 7> v<lsn>xxx..." in term
 * 1 + lsn / 25, so the state after any lsn L has a closed form and any recovery can be checked
 * exactly: the replayed records must be the expected ones, in order, and the state (snapshot
 * items + records) must equal state(L). The central invariant, checked after every injected
 * fault and simulated crash: recovery yields exactly a prefix 1..L with
 * durable-reported <= L <= attempted. */
#include "testutil.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <inttypes.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "base/err.h"
#include "base/fsio.h"
#include "base/log.h"
#include "store/termhist.h"
#include "store/wal.h"

#define NKEYS 7

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
    fsio_fault_clear();
    tu_rmtree(dir);
    return 0;
}

/* ---- the deterministic workload ---- */

static uint64_t term_of(uint64_t lsn)
{
    return 1 + lsn / 25;
}

static size_t key_of(uint64_t lsn, char *out)
{
    return (size_t)snprintf(out, 16, "k%" PRIu64, lsn % NKEYS);
}

static size_t val_of(uint64_t lsn, char *out)
{
    int n = snprintf(out, 128, "v%" PRIu64, lsn);
    size_t pad = (size_t)(lsn * 31 % 40);
    memset(out + n, 'x', pad);
    return (size_t)n + pad;
}

static int append_op(struct wal *w, uint64_t lsn_expected)
{
    char k[16], v[128];
    struct slice argv[3] = {SLICE_LIT("SET"), slice_of(k, key_of(lsn_expected, k)),
                            slice_of(v, val_of(lsn_expected, v))};
    uint64_t lsn = 0;
    int r = wal_append(w, term_of(lsn_expected), 3, argv, &lsn);
    if (r == 0)
        assert_int_equal(lsn, lsn_expected);
    return r;
}

/* The state a server would hold: value of each key, rebuilt by recovery. */
struct kv {
    bool has[NKEYS];
    char val[NKEYS][128];
    size_t len[NKEYS];
    uint64_t next_lsn; /* next record recovery must see; 0 = any */
    uint64_t last_applied;
    int bad;
};

static void kv_expect(struct kv *kv, uint64_t upto)
{
    memset(kv, 0, sizeof(*kv));
    for (uint64_t lsn = upto > 50 ? upto - 50 : 1; lsn <= upto; lsn++) {
        size_t j = lsn % NKEYS;
        kv->has[j] = true;
        kv->len[j] = val_of(lsn, kv->val[j]);
    }
}

static bool kv_equal(const struct kv *a, const struct kv *b)
{
    for (size_t j = 0; j < NKEYS; j++) {
        if (a->has[j] != b->has[j])
            return false;
        if (a->has[j] && (a->len[j] != b->len[j] || memcmp(a->val[j], b->val[j], a->len[j])))
            return false;
    }
    return true;
}

static int load_item(void *ud, const struct snapshot_item *it)
{
    struct kv *kv = ud;
    if (it->type != SNAPSHOT_TYPE_STRING || it->nvals != 1 || it->key.len < 2) {
        kv->bad++;
        return 0;
    }
    size_t j = (size_t)(it->key.p[1] - '0');
    if (j >= NKEYS) {
        kv->bad++;
        return 0;
    }
    kv->has[j] = true;
    kv->len[j] = it->vals[0].len;
    memcpy(kv->val[j], it->vals[0].p, it->vals[0].len);
    return 0;
}

static int apply_rec(void *ud, uint64_t lsn, uint64_t term, size_t argc, const struct slice *argv)
{
    struct kv *kv = ud;
    if (kv->next_lsn && lsn != kv->next_lsn)
        kv->bad++;
    kv->next_lsn = lsn + 1;
    kv->last_applied = lsn;
    char k[16], v[128];
    size_t kl = key_of(lsn, k), vl = val_of(lsn, v);
    if (argc != 3 || term != term_of(lsn) || !slice_eq(argv[0], SLICE_LIT("SET")) ||
        !slice_eq(argv[1], slice_of(k, kl)) || !slice_eq(argv[2], slice_of(v, vl))) {
        kv->bad++;
        return 0;
    }
    size_t j = lsn % NKEYS;
    kv->has[j] = true;
    kv->len[j] = vl;
    memcpy(kv->val[j], v, vl);
    return 0;
}

/* Snapshot iteration: the live state is state(last appended lsn). */
struct live {
    uint64_t lsn;
};

static int dump_state(void *ud, struct snapshot_writer *sw)
{
    struct live *lv = ud;
    struct kv kv;
    kv_expect(&kv, lv->lsn);
    for (size_t j = 0; j < NKEYS; j++) {
        if (!kv.has[j])
            continue;
        char k[16];
        size_t kl = key_of(j, k);
        struct slice v = slice_of(kv.val[j], kv.len[j]);
        int r = snapshot_put(sw, SNAPSHOT_TYPE_STRING, 0, slice_of(k, kl), 1, &v);
        if (r != 0)
            return r;
    }
    return 0;
}

struct track {
    uint64_t durable_max;
    uint64_t attempted;
    int errors;
    int durable_calls;
};

static void on_durable(void *ud, uint64_t lsn)
{
    struct track *t = ud;
    /* Durable lsn only grows. */
    assert_true(lsn > t->durable_max);
    t->durable_max = lsn;
    t->durable_calls++;
}

static void on_error(void *ud, int err)
{
    struct track *t = ud;
    (void)err;
    t->errors++;
}

/* Opens and recovers dir, checking the recovered state. Returns the wal (NULL on failure)
 * and the recovered last lsn in *last. */
static struct wal *open_recover(const struct wal_options *o, uv_loop_t *loop, uint64_t *last,
                                struct wal_recovery *rep_out, int *rc)
{
    struct wal *w = NULL;
    char err[1024];
    int r = wal_open(dir, o, loop, &w, err, sizeof(err));
    if (r != 0) {
        if (rc)
            *rc = r;
        return NULL;
    }
    struct kv kv;
    memset(&kv, 0, sizeof(kv));
    struct wal_recovery rep;
    r = wal_recover(w, load_item, apply_rec, &kv, &rep, err, sizeof(err));
    if (rc)
        *rc = r;
    if (rep_out)
        *rep_out = rep;
    if (r != 0) {
        wal_close(w, NULL, NULL);
        return NULL;
    }
    struct kv want;
    kv_expect(&want, rep.last_lsn);
    if (kv.bad || !kv_equal(&kv, &want))
        fail_msg("recovered state differs from state(%" PRIu64 ") (bad=%d)", rep.last_lsn, kv.bad);
    if (kv.last_applied)
        assert_int_equal(kv.last_applied, rep.last_lsn);
    assert_int_equal(wal_last_lsn(w), rep.last_lsn);
    *last = rep.last_lsn;
    return w;
}

/* Preallocation for every log opened through opts() (the fault loops run with and without). */
static uint64_t prealloc_bytes;

static struct wal_options opts(enum wal_fsync mode, struct track *t)
{
    struct wal_options o;
    memset(&o, 0, sizeof(o));
    o.fsync = mode;
    o.prealloc_bytes = prealloc_bytes;
    o.on_durable = on_durable;
    o.on_error = on_error;
    o.ud = t;
    return o;
}

static int count_files(const char *prefix)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "ls %s | grep -c '^%s' 2>/dev/null", dir, prefix);
    FILE *f = popen(cmd, "r");
    int n = 0;
    if (fscanf(f, "%d", &n) != 1)
        n = 0;
    pclose(f);
    return n;
}

static void seg_file(char *out, size_t n, uint64_t first)
{
    snprintf(out, n, "%s/wal-%020" PRIu64 ".log", dir, first);
}

/* ---- basic behaviour, synchronous mode ---- */

static void test_append_recover(void **state)
{
    (void)state;
    struct track t = {0};
    struct wal_options o = opts(WAL_FSYNC_ALWAYS, &t);
    uint64_t last;
    struct wal *w = open_recover(&o, NULL, &last, NULL, NULL);
    assert_non_null(w);
    assert_int_equal(last, 0);
    for (uint64_t lsn = 1; lsn <= 100; lsn++) {
        assert_int_equal(append_op(w, lsn), 0);
        if (lsn % 3 == 0) {
            assert_int_equal(wal_commit(w), 0);
            assert_int_equal(t.durable_max, lsn); /* synchronous mode: durable on return */
        }
    }
    assert_int_equal(wal_durable_lsn(w), 99);
    assert_int_equal(wal_last_term(w), term_of(100));
    wal_close(w, NULL, NULL); /* flushes lsn 100 */
    w = open_recover(&o, NULL, &last, NULL, NULL);
    assert_int_equal(last, 100);
    /* Appends continue after the recovered log. */
    assert_int_equal(append_op(w, 101), 0);
    wal_close(w, NULL, NULL);
    w = open_recover(&o, NULL, &last, NULL, NULL);
    assert_int_equal(last, 101);
    wal_close(w, NULL, NULL);
    assert_int_equal(count_files("wal-"), 1);
}

static void test_dir_lock(void **state)
{
    (void)state;
    struct track t = {0};
    struct wal_options o = opts(WAL_FSYNC_NO, &t);
    struct wal *a, *b;
    char err[512];
    assert_int_equal(wal_open(dir, &o, NULL, &a, err, sizeof(err)), 0);
    assert_int_equal(wal_open(dir, &o, NULL, &b, err, sizeof(err)), -EWOULDBLOCK);
    assert_non_null(strstr(err, "in use"));
    wal_close(a, NULL, NULL);
    assert_int_equal(wal_open(dir, &o, NULL, &b, err, sizeof(err)), 0);
    wal_close(b, NULL, NULL);
}

static int collect_lsn(void *ud, const struct walrec *rec);

static void test_rotation_and_snapshot(void **state)
{
    (void)state;
    struct track t = {0};
    struct wal_options o = opts(WAL_FSYNC_ALWAYS, &t);
    o.segment_bytes = 1024;
    uint64_t last;
    struct wal *w = open_recover(&o, NULL, &last, NULL, NULL);
    for (uint64_t lsn = 1; lsn <= 200; lsn++) {
        assert_int_equal(append_op(w, lsn), 0);
        assert_int_equal(wal_commit(w), 0);
    }
    int segs = count_files("wal-");
    assert_true(segs > 10);
    struct wal_stats st;
    wal_get_stats(w, &st);
    assert_int_equal(st.segments, (uint64_t)segs);
    /* Every segment name is the lsn of its first record. */
    char p[512];
    seg_file(p, sizeof(p), 1);
    assert_true(tu_size(p) > 0);
    assert_int_equal(wal_first_lsn(w), 1);
    /* Snapshot at 200; old segments go once the log has rotated past it. */
    struct live lv = {200};
    assert_true(wal_snapshot_due(w, 1000, 100));
    assert_int_equal(wal_snapshot_start(w, dump_state, &lv, NULL, NULL), 0);
    assert_false(wal_snapshot_due(w, 1000, 100));
    snprintf(p, sizeof(p), "%s/snap-%020d.snap", dir, 200);
    assert_true(tu_size(p) > 0);
    for (uint64_t lsn = 201; lsn <= 210; lsn++) {
        assert_int_equal(append_op(w, lsn), 0);
        lv.lsn = lsn;
        assert_int_equal(wal_commit(w), 0);
    }
    assert_true(count_files("wal-") <= 2);
    assert_true(wal_first_lsn(w) > 100);
    wal_get_stats(w, &st);
    assert_int_equal(st.snapshot_lsn, 200);
    assert_int_equal(st.snapshots, 1);
    assert_int_equal(st.last_snapshot_status, 0);
    wal_close(w, NULL, NULL);
    struct wal_recovery rep;
    w = open_recover(&o, NULL, &last, &rep, NULL);
    assert_int_equal(last, 210);
    assert_int_equal(rep.snapshot_lsn, 200);
    assert_int_equal(rep.snapshot_items, NKEYS);
    assert_int_equal(rep.records, 10);
    assert_string_equal(rep.warning, "");
    /* A second snapshot (the blocking form) replaces the first. It covers every record of the
     * current segment (nothing was appended after it), so that segment goes too: no log is left
     * behind the snapshot, and the records before it are compacted for readers. */
    lv.lsn = 210;
    assert_int_equal(count_files("wal-"), 1);
    assert_int_equal(wal_snapshot_save(w, dump_state, &lv), 0);
    assert_int_equal(count_files("snap-"), 1);
    assert_int_equal(count_files("wal-"), 0);
    wal_get_stats(w, &st);
    assert_int_equal(st.segments, 0);
    assert_int_equal(st.log_bytes, 0);
    assert_int_equal(wal_first_lsn(w), 211);
    assert_int_equal(wal_read(w, 205, 1 << 20, collect_lsn, NULL), -ENOENT);
    assert_int_equal(wal_read(w, 211, 1 << 20, collect_lsn, NULL), 0);
    uint64_t term;
    assert_int_equal(wal_term_at(w, 210, &term), 0);
    assert_int_equal(term, term_of(210));
    assert_int_equal(wal_term_at(w, 209, &term), -ENOENT);
    wal_close(w, NULL, NULL);
    w = open_recover(&o, NULL, &last, &rep, NULL);
    assert_int_equal(last, 210);
    assert_int_equal(rep.snapshot_lsn, 210);
    assert_int_equal(rep.records, 0);
    assert_int_equal(append_op(w, 211), 0);
    wal_close(w, NULL, NULL);
    seg_file(p, sizeof(p), 211);
    assert_true(tu_size(p) > 0);
    w = open_recover(&o, NULL, &last, &rep, NULL);
    assert_int_equal(last, 211);
    /* Records appended before a snapshot but not yet written when it ends: the segment stays
     * until they are written, then goes. */
    assert_int_equal(append_op(w, 212), 0);
    assert_int_equal(append_op(w, 213), 0);
    lv.lsn = 213;
    assert_int_equal(wal_snapshot_save(w, dump_state, &lv), 0);
    assert_int_equal(count_files("wal-"), 1);
    assert_int_equal(wal_commit(w), 0);
    assert_int_equal(count_files("wal-"), 0);
    assert_int_equal(t.durable_max, 213);
    /* A record after the snapshot opens a new segment named after it. */
    assert_int_equal(append_op(w, 214), 0);
    assert_int_equal(wal_commit(w), 0);
    assert_int_equal(count_files("wal-"), 1);
    assert_int_equal(wal_first_lsn(w), 214);
    wal_close(w, NULL, NULL);
    w = open_recover(&o, NULL, &last, &rep, NULL);
    assert_int_equal(last, 214);
    assert_int_equal(rep.snapshot_lsn, 213);
    assert_int_equal(rep.records, 1);
    wal_close(w, NULL, NULL);
}

static void test_torn_tail_truncated(void **state)
{
    (void)state;
    struct track t = {0};
    struct wal_options o = opts(WAL_FSYNC_ALWAYS, &t);
    uint64_t last;
    struct wal *w = open_recover(&o, NULL, &last, NULL, NULL);
    for (uint64_t lsn = 1; lsn <= 20; lsn++)
        append_op(w, lsn);
    wal_close(w, NULL, NULL);
    char p[512];
    seg_file(p, sizeof(p), 1);
    long good = tu_size(p);
    size_t n;
    char *c = tu_read(p, &n);
    /* Cut inside the last record at every byte: always back to 19 records with a warning. */
    long last_start = 0;
    {
        struct walrec_scan sc;
        walrec_scan(c, n, 1, 0, NULL, NULL, &sc);
        assert_int_equal(sc.nrecords, 20);
        walrec_scan(c, n - 1, 1, 0, NULL, NULL, &sc);
        last_start = (long)sc.good_len;
    }
    for (long cut = last_start + 1; cut < good; cut += 7) {
        tu_write(p, c, (size_t)cut);
        t.durable_max = 0; /* the test itself destroys durable records */
        struct wal_recovery rep;
        w = open_recover(&o, NULL, &last, &rep, NULL);
        assert_non_null(w);
        assert_int_equal(last, 19);
        assert_int_equal(rep.truncated_bytes, (uint64_t)(cut - last_start));
        assert_non_null(strstr(rep.warning, "torn log tail truncated"));
        wal_close(w, NULL, NULL);
        assert_int_equal(tu_size(p), last_start);
    }
    /* A flipped bit in the last record: same. */
    c[n - 3] ^= 1;
    tu_write(p, c, n);
    t.durable_max = 0;
    struct wal_recovery rep;
    w = open_recover(&o, NULL, &last, &rep, NULL);
    assert_int_equal(last, 19);
    assert_true(rep.warning[0] != '\0');
    /* The cut bytes were kept. */
    snprintf(p, sizeof(p), "%s/torn-19.bin", dir);
    assert_int_equal(tu_size(p), good - last_start);
    /* The log continues from there and a second recovery is clean. */
    assert_int_equal(append_op(w, 20), 0);
    wal_close(w, NULL, NULL);
    w = open_recover(&o, NULL, &last, &rep, NULL);
    assert_int_equal(last, 20);
    assert_string_equal(rep.warning, "");
    wal_close(w, NULL, NULL);
    free(c);
}

static void test_corrupt_middle_refuses(void **state)
{
    (void)state;
    struct track t = {0};
    struct wal_options o = opts(WAL_FSYNC_ALWAYS, &t);
    uint64_t last;
    struct wal *w = open_recover(&o, NULL, &last, NULL, NULL);
    for (uint64_t lsn = 1; lsn <= 20; lsn++)
        append_op(w, lsn);
    wal_close(w, NULL, NULL);
    char p[512];
    seg_file(p, sizeof(p), 1);
    size_t n;
    char *c = tu_read(p, &n);
    c[200] ^= 0x40; /* inside an early record */
    tu_write(p, c, n);
    char err[1024];
    struct wal *w2;
    struct kv kv;
    memset(&kv, 0, sizeof(kv));
    for (int i = 0; i < 2; i++) {
        assert_int_equal(wal_open(dir, &o, NULL, &w2, err, sizeof(err)), 0);
        int r = wal_recover(w2, load_item, apply_rec, &kv, NULL, err, sizeof(err));
        assert_int_equal(r, TD_ECORRUPT);
        assert_non_null(strstr(err, "refusing to start"));
        assert_non_null(strstr(err, "wal-00000000000000000001.log"));
        wal_close(w2, NULL, NULL);
        /* Refusing changes nothing on disk. */
        assert_int_equal(tu_size(p), (long)n);
    }
    /* Repair cuts the log at the damage and keeps the rest aside. */
    o.repair = true;
    struct wal_recovery rep;
    w = open_recover(&o, NULL, &last, &rep, NULL);
    assert_non_null(w);
    assert_true(last < 20);
    assert_non_null(strstr(rep.warning, "corrupt"));
    wal_close(w, NULL, NULL);
    free(c);
}

static void test_corrupt_earlier_segment_refuses(void **state)
{
    (void)state;
    struct track t = {0};
    struct wal_options o = opts(WAL_FSYNC_ALWAYS, &t);
    o.segment_bytes = 600;
    uint64_t last;
    struct wal *w = open_recover(&o, NULL, &last, NULL, NULL);
    for (uint64_t lsn = 1; lsn <= 40; lsn++) {
        append_op(w, lsn);
        wal_commit(w);
    }
    wal_close(w, NULL, NULL);
    assert_true(count_files("wal-") >= 3);
    /* Cut the tail of the first segment: its "torn tail" is followed by valid segments. */
    char p[512];
    seg_file(p, sizeof(p), 1);
    size_t n;
    char *c = tu_read(p, &n);
    tu_write(p, c, n - 5);
    free(c);
    char err[1024];
    struct wal *w2;
    struct kv kv;
    memset(&kv, 0, sizeof(kv));
    assert_int_equal(wal_open(dir, &o, NULL, &w2, err, sizeof(err)), 0);
    assert_int_equal(wal_recover(w2, load_item, apply_rec, &kv, NULL, err, sizeof(err)),
                     TD_ECORRUPT);
    assert_non_null(strstr(err, "refusing to start"));
    wal_close(w2, NULL, NULL);
    /* A missing segment in the middle is a gap. */
    memset(&kv, 0, sizeof(kv));
    unlink(p);
    assert_int_equal(wal_open(dir, &o, NULL, &w2, err, sizeof(err)), 0);
    assert_int_equal(wal_recover(w2, load_item, apply_rec, &kv, NULL, err, sizeof(err)),
                     TD_ECORRUPT);
    assert_non_null(strstr(err, "missing"));
    wal_close(w2, NULL, NULL);
}

static void test_damaged_snapshot_refuses(void **state)
{
    (void)state;
    struct track t = {0};
    struct wal_options o = opts(WAL_FSYNC_ALWAYS, &t);
    uint64_t last;
    struct wal *w = open_recover(&o, NULL, &last, NULL, NULL);
    for (uint64_t lsn = 1; lsn <= 10; lsn++)
        append_op(w, lsn);
    struct live lv = {10};
    assert_int_equal(wal_snapshot_start(w, dump_state, &lv, NULL, NULL), 0);
    wal_close(w, NULL, NULL);
    char p[512];
    snprintf(p, sizeof(p), "%s/snap-%020d.snap", dir, 10);
    size_t n;
    char *c = tu_read(p, &n);
    c[n / 2] ^= 1;
    tu_write(p, c, n);
    free(c);
    int rc = 0;
    assert_null(open_recover(&o, NULL, &last, NULL, &rc));
    assert_int_equal(rc, TD_ECORRUPT);
}

static int collect_lsn(void *ud, const struct walrec *rec)
{
    uint64_t *v = ud;
    v[++v[0]] = rec->lsn;
    return 0;
}

static void test_read_term_truncate(void **state)
{
    (void)state;
    struct track t = {0};
    struct wal_options o = opts(WAL_FSYNC_ALWAYS, &t);
    o.segment_bytes = 700;
    uint64_t last;
    struct wal *w = open_recover(&o, NULL, &last, NULL, NULL);
    for (uint64_t lsn = 1; lsn <= 60; lsn++) {
        append_op(w, lsn);
        wal_commit(w);
    }
    uint64_t got[80];
    got[0] = 0;
    assert_int_equal(wal_read(w, 10, 1 << 20, collect_lsn, got), 51);
    for (uint64_t i = 1; i <= 51; i++)
        assert_int_equal(got[i], 9 + i);
    got[0] = 0;
    assert_int_equal(wal_read(w, 55, 1, collect_lsn, got), 1); /* at least one record */
    assert_int_equal(got[1], 55);
    assert_int_equal(wal_read(w, 61, 1 << 20, collect_lsn, got), 0);
    uint64_t term;
    assert_int_equal(wal_term_at(w, 30, &term), 0);
    assert_int_equal(term, term_of(30));
    assert_int_equal(wal_term_at(w, 0, &term), 0);
    assert_int_equal(term, 0);
    assert_int_equal(wal_term_at(w, 61, &term), -ENOENT);
    /* Busy while something is buffered. */
    append_op(w, 61);
    assert_int_equal(wal_term_at(w, 61, &term), 0);
    assert_int_equal(wal_truncate_after(w, 45, NULL), -EBUSY);
    wal_commit(w);
    /* Cut after 45: 16 records go to discarded-<term of 46>.log. */
    uint64_t nd = 0;
    assert_int_equal(wal_truncate_after(w, 45, &nd), 0);
    assert_int_equal(nd, 16);
    t.durable_max = 45; /* a truncation is the one thing that moves durable backwards */
    assert_int_equal(wal_last_lsn(w), 45);
    assert_int_equal(wal_last_term(w), term_of(45));
    char p[512];
    snprintf(p, sizeof(p), "%s/discarded-%" PRIu64 ".log", dir, term_of(46));
    size_t n;
    char *c = tu_read(p, &n);
    struct walrec_scan sc;
    walrec_scan(c, n, 46, 0, NULL, NULL, &sc);
    assert_int_equal(sc.status, WALREC_SCAN_CLEAN);
    assert_int_equal(sc.nrecords, 16);
    free(c);
    /* The log goes on from 46 and recovers as 1..47. */
    assert_int_equal(append_op(w, 46), 0);
    assert_int_equal(append_op(w, 47), 0);
    wal_close(w, NULL, NULL);
    w = open_recover(&o, NULL, &last, NULL, NULL);
    assert_int_equal(last, 47);
    /* Compaction: reads from before the log's start say ENOENT. */
    struct live lv = {47};
    wal_snapshot_start(w, dump_state, &lv, NULL, NULL);
    for (uint64_t lsn = 48; lsn <= 60; lsn++) {
        append_op(w, lsn);
        wal_commit(w);
    }
    assert_true(wal_first_lsn(w) > 1);
    assert_int_equal(wal_read(w, 1, 1 << 20, collect_lsn, got), -ENOENT);
    assert_int_equal(wal_term_at(w, 47, &term), 0);
    assert_int_equal(term, term_of(47));
    assert_int_equal(wal_truncate_after(w, 10, NULL), -ERANGE);
    wal_close(w, NULL, NULL);
}

/* ---- wal_read starts at remembered positions ---- */

#define POS_BIG_LSN 700 /* one record larger than wal_read's read piece */

static size_t pos_val(uint64_t lsn, int gen, char *out, size_t cap)
{
    size_t n = lsn == POS_BIG_LSN ? 600u << 10 : 1500 + (size_t)(lsn * 7 % 700) + (size_t)gen * 13;
    assert_true(n <= cap);
    int h = snprintf(out, cap, "v%d:%" PRIu64 ":", gen, lsn);
    memset(out + h, 'a' + (int)((lsn + (uint64_t)gen) % 26), n - (size_t)h);
    return n;
}

static void pos_append(struct wal *w, uint64_t lsn, uint64_t term, int gen, char *vbuf)
{
    struct slice argv[3] = {SLICE_LIT("SET"), SLICE_LIT("k"), {vbuf, 0}};
    argv[2].len = pos_val(lsn, gen, vbuf, 1u << 20);
    uint64_t got = 0;
    assert_int_equal(wal_append(w, term, 3, argv, &got), 0);
    assert_int_equal(got, lsn);
}

struct pos_check {
    uint64_t next;
    int gen_from; /* records above this lsn carry generation 1 */
    uint64_t count;
    char *vbuf;
};

static int pos_check_rec(void *ud, const struct walrec *rec)
{
    struct pos_check *c = ud;
    assert_int_equal(rec->lsn, c->next);
    struct slice argv[3];
    assert_int_equal(rec->argc, 3);
    walrec_argv(rec, argv);
    size_t n = pos_val(rec->lsn, rec->lsn > (uint64_t)c->gen_from ? 1 : 0, c->vbuf, 1u << 20);
    assert_int_equal(argv[2].len, n);
    assert_memory_equal(argv[2].p, c->vbuf, n);
    c->next++;
    c->count++;
    return 0;
}

/* Reads from lsns in a scrambled order with several budgets; every read returns the right
 * records, consecutive from its first lsn. */
static void pos_read_all(struct wal *w, uint64_t last, int gen_from, char *vbuf)
{
    static const size_t budgets[] = {1, 10000, 300000, 1u << 20};
    for (uint64_t k = 0; k < 150; k++) {
        uint64_t from = 1 + (k * 7919 + 13) % last;
        struct pos_check c = {from, gen_from, 0, vbuf};
        int64_t n = wal_read(w, from, budgets[k % 4], pos_check_rec, &c);
        assert_true(n >= 1);
        assert_int_equal((uint64_t)n, c.count);
    }
}

static uint64_t pos_term(uint64_t lsn, uint64_t cut)
{
    return lsn > cut ? 3 : lsn > 600 ? 2 : 1;
}

static int pos_apply(void *ud, uint64_t lsn, uint64_t term, size_t argc, const struct slice *argv)
{
    (void)ud;
    (void)lsn;
    (void)term;
    (void)argc;
    (void)argv;
    return 0;
}

static void test_read_resumes_at_known_positions(void **state)
{
    (void)state;
    struct wal_options o = opts(WAL_FSYNC_NO, NULL);
    o.on_durable = NULL;
    o.on_error = NULL;
    o.segment_bytes = 1u << 20;
    o.prealloc_bytes = 256u << 10;
    struct wal *w = NULL;
    char err[512];
    assert_int_equal(wal_open(dir, &o, NULL, &w, err, sizeof(err)), 0);
    struct wal_recovery rep;
    assert_int_equal(wal_recover(w, NULL, pos_apply, NULL, &rep, err, sizeof(err)), 0);
    char *vbuf = malloc(1u << 20);
    assert_non_null(vbuf);
    const uint64_t last = 1200, none = UINT64_MAX;
    for (uint64_t lsn = 1; lsn <= last; lsn++) {
        pos_append(w, lsn, pos_term(lsn, none), 0, vbuf);
        if (lsn % 16 == 0 || lsn == last)
            assert_int_equal(wal_commit(w), 0);
    }
    struct wal_stats st;
    wal_get_stats(w, &st);
    assert_true(st.segments >= 3);
    pos_read_all(w, last, (int)last, vbuf);
    for (uint64_t lsn = 1; lsn < last; lsn += 37) {
        uint64_t term = 0;
        assert_int_equal(wal_term_at(w, lsn, &term), 0);
        assert_int_equal(term, pos_term(lsn, none));
    }
    /* A read from the middle of the first segment starts at a remembered position, not at the
     * segment's first byte: damage in record 1 does not stop it (it did when every read
     * scanned the segment from its start). */
    char p[512];
    seg_file(p, sizeof(p), 1);
    size_t n;
    char *c = tu_read(p, &n);
    c[100] ^= 1;
    tu_write(p, c, n);
    struct pos_check chk = {400, (int)last, 0, vbuf};
    assert_true(wal_read(w, 400, 1000, pos_check_rec, &chk) >= 1);
    c[100] ^= 1;
    tu_write(p, c, n);
    free(c);
    /* After a truncation the bytes behind remembered positions change: cut after 900, append
     * 901..1100 of another size in term 3, and every read still returns the right records. */
    uint64_t nd = 0;
    assert_int_equal(wal_truncate_after(w, 900, &nd), 0);
    assert_int_equal(nd, last - 900);
    for (uint64_t lsn = 901; lsn <= 1100; lsn++) {
        pos_append(w, lsn, 3, 1, vbuf);
        if (lsn % 16 == 0 || lsn == 1100)
            assert_int_equal(wal_commit(w), 0);
    }
    pos_read_all(w, 1100, 900, vbuf);
    for (uint64_t lsn = 1; lsn < 1100; lsn += 29) {
        uint64_t term = 0;
        assert_int_equal(wal_term_at(w, lsn, &term), 0);
        assert_int_equal(term, pos_term(lsn, 900));
    }
    free(vbuf);
    wal_close(w, NULL, NULL);
}

/* A reader that goes on where the last wal_read stopped (a replica's stream) reads from the
 * remembered offset: in small steps, across segments, with padding, interleaved with appends
 * and after a truncation, it sees every record once, in order. */
static void test_read_continues(void **state)
{
    (void)state;
    struct track t = {0};
    prealloc_bytes = 4096;
    struct wal_options o = opts(WAL_FSYNC_ALWAYS, &t);
    o.segment_bytes = 700;
    uint64_t last;
    struct wal *w = open_recover(&o, NULL, &last, NULL, NULL);
    static uint64_t got[400];
    got[0] = 0;
    uint64_t next = 1, lsn = 0;
    for (int round = 0; round < 30; round++) {
        for (int k = 0; k < 7; k++) {
            append_op(w, ++lsn);
            wal_commit(w);
        }
        for (;;) {
            int64_t n = wal_read(w, next, (size_t)(round % 3) * 40, collect_lsn, got);
            assert_true(n >= 0);
            if (n == 0)
                break;
            next += (uint64_t)n;
        }
        assert_int_equal(next, lsn + 1);
    }
    for (uint64_t i = 1; i <= lsn; i++)
        assert_int_equal(got[i], i);
    /* After a truncation the reader goes on from the cut. */
    assert_int_equal(wal_truncate_after(w, lsn - 10, NULL), 0);
    t.durable_max = lsn - 10;
    lsn -= 10;
    append_op(w, ++lsn);
    wal_commit(w);
    got[0] = 0;
    assert_int_equal(wal_read(w, lsn, 1000, collect_lsn, got), 1);
    assert_int_equal(got[1], lsn);
    wal_close(w, NULL, NULL);
    prealloc_bytes = 0;
}

/* With preallocation the segments end in zero padding: the audit of a truncation holds the
 * discarded records back to back, no padding (it used to copy the segments' zeros). */
static void test_truncate_audit_without_padding(void **state)
{
    (void)state;
    struct track t = {0};
    prealloc_bytes = 4096;
    struct wal_options o = opts(WAL_FSYNC_ALWAYS, &t);
    o.segment_bytes = 700;
    uint64_t last;
    struct wal *w = open_recover(&o, NULL, &last, NULL, NULL);
    for (uint64_t lsn = 1; lsn <= 60; lsn++) {
        append_op(w, lsn);
        wal_commit(w);
    }
    uint64_t nd = 0;
    assert_int_equal(wal_truncate_after(w, 45, &nd), 0);
    assert_int_equal(nd, 15);
    t.durable_max = 45;
    char p[512];
    snprintf(p, sizeof(p), "%s/discarded-%" PRIu64 ".log", dir, term_of(46));
    size_t n;
    char *c = tu_read(p, &n);
    struct walrec_scan sc;
    walrec_scan(c, n, 46, 0, NULL, NULL, &sc);
    assert_int_equal(sc.status, WALREC_SCAN_CLEAN);
    assert_int_equal(sc.nrecords, 15);
    assert_int_equal(sc.good_len, n);
    free(c);
    /* The text twin: one line per discarded record, lsn and term first, then the arguments. */
    snprintf(p, sizeof(p), "%s/discarded-%" PRIu64 ".txt", dir, term_of(46));
    c = tu_read(p, &n);
    size_t lines = 0;
    for (size_t i = 0; i < n; i++)
        lines += c[i] == '\n';
    assert_int_equal(lines, 15);
    char k[16], first[64];
    snprintf(first, sizeof(first), "lsn=46 term=%" PRIu64 " SET %.*s ", term_of(46),
             (int)key_of(46, k), k);
    assert_memory_equal(c, first, strlen(first));
    assert_null(memchr(c, '\0', n));
    free(c);
    wal_close(w, NULL, NULL);
    w = open_recover(&o, NULL, &last, NULL, NULL);
    assert_int_equal(last, 45);
    wal_close(w, NULL, NULL);
    prealloc_bytes = 0;
}

/* Term boundaries kept across compaction: written with each snapshot, read back at open,
 * extended by the next snapshot; a damaged file is ignored (unknown below the snapshot) and
 * the next snapshot starts from there. Then the audit before a full resync: the snapshot kept
 * by hard link (same inode, no copy) for the records folded into it, the log tail audited as a
 * truncation, nothing twice, nothing on a busy log. */
static void check_history(struct wal *w, uint64_t known, uint64_t upto)
{
    const struct termhist *th = wal_term_history(w);
    assert_int_equal(th->snap_lsn, upto);
    assert_int_equal(termhist_known_lsn(th), known);
    for (uint64_t lsn = known ? known : 1; lsn <= upto; lsn++) {
        uint64_t t;
        assert_int_equal(termhist_term_at(th, lsn, &t), 0);
        assert_int_equal(t, term_of(lsn));
    }
    uint64_t t;
    if (known > 0)
        assert_int_equal(termhist_term_at(th, known - 1, &t), -ENOENT);
}

static void test_term_history_and_full_audit(void **state)
{
    (void)state;
    struct track t = {0};
    struct wal_options o = opts(WAL_FSYNC_ALWAYS, &t);
    o.segment_bytes = 700;
    uint64_t last;
    struct wal *w = open_recover(&o, NULL, &last, NULL, NULL);
    check_history(w, 0, 0);
    for (uint64_t lsn = 1; lsn <= 60; lsn++)
        append_op(w, lsn);
    wal_commit(w);
    struct live lv = {60};
    assert_int_equal(wal_snapshot_save(w, dump_state, &lv), 0);
    check_history(w, 0, 60);
    wal_close(w, NULL, NULL);
    t.durable_max = 0;
    w = open_recover(&o, NULL, &last, NULL, NULL);
    check_history(w, 0, 60); /* read back from DIR/term-history */
    for (uint64_t lsn = 61; lsn <= 70; lsn++)
        append_op(w, lsn);
    wal_commit(w);
    lv.lsn = 70;
    assert_int_equal(wal_snapshot_save(w, dump_state, &lv), 0);
    check_history(w, 0, 70);
    wal_close(w, NULL, NULL);

    /* Damaged: ignored with a warning, only the snapshot's term is known. */
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", dir, TERMHIST_FILE);
    size_t n;
    char *img = tu_read(p, &n);
    img[20] ^= 1;
    tu_write(p, img, n);
    free(img);
    t.durable_max = 0;
    w = open_recover(&o, NULL, &last, NULL, NULL);
    check_history(w, 70, 70);
    for (uint64_t lsn = 71; lsn <= 80; lsn++)
        append_op(w, lsn);
    wal_commit(w);
    lv.lsn = 80;
    assert_int_equal(wal_snapshot_save(w, dump_state, &lv), 0);
    check_history(w, 70, 80); /* the new boundaries are added from there */
    for (uint64_t lsn = 81; lsn <= 90; lsn++)
        append_op(w, lsn);
    wal_commit(w);

    /* The audit before a full resync (as repl_core_full_audit plans it for common 75): the
     * snapshot kept for 76..80, then the log after 80 cut and audited as a truncation. */
    bool again = true;
    char kept[512], snap[512], where[600];
    assert_int_equal(wal_keep_snapshot_audit(w, 80, &again, where, sizeof(where)), -ERANGE);
    assert_int_equal(count_files("discarded-"), 0);
    assert_int_equal(wal_keep_snapshot_audit(w, 75, &again, where, sizeof(where)), 0);
    assert_false(again);
    snprintf(kept, sizeof(kept), "%s/discarded-%" PRIu64 "-80.snap", dir, term_of(80));
    assert_string_equal(where, kept);
    snprintf(snap, sizeof(snap), "%s/snap-%020d.snap", dir, 80);
    struct stat a, b;
    assert_int_equal(stat(kept, &a), 0);
    assert_int_equal(stat(snap, &b), 0);
    assert_true(a.st_ino == b.st_ino && a.st_dev == b.st_dev); /* a second name, no copy */
    uint64_t nd = 0;
    assert_int_equal(wal_truncate_after(w, 80, &nd), 0);
    assert_int_equal(nd, 10);
    assert_int_equal(wal_last_lsn(w), 80);
    snprintf(p, sizeof(p), "%s/discarded-%" PRIu64 ".log", dir, term_of(81));
    char *c = tu_read(p, &n);
    struct walrec_scan sc;
    walrec_scan(c, n, 81, 0, NULL, NULL, &sc);
    assert_int_equal(sc.status, WALREC_SCAN_CLEAN);
    assert_int_equal(sc.nrecords, 10);
    free(c);
    snprintf(p, sizeof(p), "%s/discarded-%" PRIu64 ".txt", dir, term_of(80));
    c = tu_read(p, &n);
    char want[128];
    snprintf(want, sizeof(want), "# lsn=76..80 term<=%" PRIu64 " folded into the snapshot kept as "
             "discarded-%" PRIu64 "-80.snap\n", term_of(80), term_of(80));
    assert_non_null(strstr(c, want));
    free(c);
    long txt_size = (long)n;
    /* Again (an attempt that did not finish): the same audit, nothing added. */
    assert_int_equal(wal_keep_snapshot_audit(w, 75, &again, NULL, 0), 0);
    assert_true(again);
    assert_int_equal(tu_size(p), txt_size);
    /* A busy log refuses before anything is kept. */
    append_op(w, 81);
    assert_int_equal(wal_keep_snapshot_audit(w, 70, &again, NULL, 0), -EBUSY);
    wal_commit(w);
    wal_close(w, NULL, NULL);
}

static void test_install_snapshot(void **state)
{
    (void)state;
    struct track t = {0};
    struct wal_options o = opts(WAL_FSYNC_ALWAYS, &t);
    uint64_t last;
    struct wal *w = open_recover(&o, NULL, &last, NULL, NULL);
    for (uint64_t lsn = 1; lsn <= 5; lsn++)
        append_op(w, lsn);
    wal_commit(w);
    /* A snapshot "received from a primary" at lsn 90. */
    char p[512];
    snprintf(p, sizeof(p), "%s/incoming.partial", dir);
    struct snapshot_writer *sw;
    assert_int_equal(snapshot_writer_open(p, 90, term_of(90), &sw), 0);
    struct live lv = {90};
    assert_int_equal(dump_state(&lv, sw), 0);
    assert_int_equal(snapshot_writer_finish(sw, NULL), 0);
    assert_int_equal(wal_install_snapshot(w, p), 0);
    assert_int_equal(wal_last_lsn(w), 90);
    assert_int_equal(append_op(w, 91), 0);
    wal_close(w, NULL, NULL);
    w = open_recover(&o, NULL, &last, NULL, NULL);
    assert_int_equal(last, 91);
    wal_close(w, NULL, NULL);
    assert_int_equal(count_files("snap-"), 1);
}

/* ---- fault injection: the prefix invariant ---- */

/* Three sessions of open/recover/append(with snapshots)/close against one directory, under
 * whatever fault plan is installed. Returns the number of records attempted. */
static void faulty_sessions(struct track *t, enum wal_fsync mode, uint64_t seg_bytes)
{
    for (int session = 0; session < 3; session++) {
        struct wal_options o = opts(mode, t);
        o.segment_bytes = seg_bytes;
        uint64_t last;
        int rc = 0;
        struct wal *w = open_recover(&o, NULL, &last, NULL, &rc);
        if (w == NULL)
            continue;
        if (last < t->durable_max)
            fail_msg("session %d recovered lsn %" PRIu64 " < durable %" PRIu64, session, last,
                     t->durable_max);
        assert_true(last <= t->attempted);
        struct live lv = {last};
        uint64_t lsn = last + 1;
        for (int batch = 0; batch < 8; batch++) {
            int r = 0;
            for (int k = 0; k <= batch % 4 && r == 0; k++, lsn++) {
                r = append_op(w, lsn);
                if (r == 0) {
                    lv.lsn = lsn;
                    if (lsn > t->attempted)
                        t->attempted = lsn;
                }
            }
            if (r == 0)
                r = wal_commit(w);
            if (r != 0)
                break;
            if (batch == 3 + session % 2)
                wal_snapshot_start(w, dump_state, &lv, NULL, NULL);
        }
        wal_close(w, NULL, NULL);
    }
}

/* After the faults: with faults cleared, recovery must succeed and give a prefix that holds
 * every record reported durable. */
static void check_final(struct track *t, const char *what, uint64_t n)
{
    fsio_fault_clear();
    struct track t2 = {0};
    struct wal_options o = opts(WAL_FSYNC_ALWAYS, &t2);
    uint64_t last;
    int rc = 0;
    struct wal *w = open_recover(&o, NULL, &last, NULL, &rc);
    if (w == NULL)
        fail_msg("%s at call %" PRIu64 ": final recovery failed: %s", what, n, td_strerror(rc));
    if (last < t->durable_max || last > t->attempted)
        fail_msg("%s at call %" PRIu64 ": recovered lsn %" PRIu64 ", durable %" PRIu64
                 ", attempted %" PRIu64,
                 what, n, last, t->durable_max, t->attempted);
    wal_close(w, NULL, NULL);
}

static void clean_dir(void)
{
    tu_rmtree(dir);
    dir = tu_mkdtemp();
}

/* The log module reports each injected failure at error level: stderr goes to /dev/null while
 * faults run (the checks print through cmocka). Returns the descriptor stderr_on restores. */
static int stderr_off(void)
{
    fflush(stderr);
    int saved = dup(2), devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 2);
    close(devnull);
    return saved;
}

static void stderr_on(int saved)
{
    dup2(saved, 2);
    close(saved);
}

static void fault_loop(enum fsio_fault_kind kind, bool persistent, enum fsio_crash crash,
                       enum wal_fsync mode, const char *what)
{
    uint64_t runs = 0;
    for (uint64_t n = 1;; n++) {
        clean_dir();
        struct track t = {0};
        struct fsio_fault f = {
            .at = n, .kind = kind, .persistent = persistent, .crash = crash, .seed = n * 7919};
        int saved = stderr_off();
        fsio_fault_set(&f);
        faulty_sessions(&t, mode, 900);
        bool fired = fsio_fault_fired();
        stderr_on(saved);
        check_final(&t, what, n);
        runs++;
        if (!fired)
            break;
    }
    printf("%s: %" PRIu64 " runs, fault at every call until the workload completed\n", what, runs);
    assert_true(runs > 50);
}

/* A snapshot that fails at any sync, including the directory fsync after its rename, leaves
 * no snapshot file of its lsn behind, and the log still recovers every record. */
static void test_failed_snapshot_leaves_no_file(void **state)
{
    (void)state;
    int failed = 0;
    for (uint64_t n = 1;; n++) {
        clean_dir();
        struct track t = {0};
        struct wal_options o = opts(WAL_FSYNC_ALWAYS, &t);
        uint64_t last;
        struct wal *w = open_recover(&o, NULL, &last, NULL, NULL);
        for (uint64_t lsn = 1; lsn <= 20; lsn++)
            assert_int_equal(append_op(w, lsn), 0);
        assert_int_equal(wal_commit(w), 0);
        struct live lv = {0};
        lv.lsn = 20;
        struct fsio_fault f = {.at = n, .ops = 1u << FSIO_OP_SYNC};
        int saved = stderr_off();
        fsio_fault_set(&f);
        int rc = wal_snapshot_save(w, dump_state, &lv);
        bool fired = fsio_fault_fired();
        fsio_fault_clear();
        stderr_on(saved);
        if (!fired) {
            assert_int_equal(rc, 0);
            assert_int_equal(count_files("snap-"), 1);
            wal_close(w, NULL, NULL);
            break;
        }
        if (rc != 0) {
            failed++;
            assert_int_equal(count_files("snap-"), 0);
        }
        wal_close(w, NULL, NULL);
        w = open_recover(&o, NULL, &last, NULL, NULL);
        assert_int_equal(last, 20);
        wal_close(w, NULL, NULL);
    }
    assert_true(failed >= 2); /* the snapshot file's fsync and the directory's */
}

static void test_fault_error_once(void **state)
{
    (void)state;
    fault_loop(FSIO_FAULT_ERROR, false, 0, WAL_FSYNC_ALWAYS, "error once");
}

static void test_fault_error_persistent(void **state)
{
    (void)state;
    fault_loop(FSIO_FAULT_ERROR, true, 0, WAL_FSYNC_ALWAYS, "error persistent");
}

static void test_fault_short_write(void **state)
{
    (void)state;
    fault_loop(FSIO_FAULT_SHORT_WRITE, true, 0, WAL_FSYNC_EVERYSEC, "short writes");
}

static void test_crash_drop(void **state)
{
    (void)state;
    fault_loop(FSIO_FAULT_CRASH, false, FSIO_CRASH_DROP, WAL_FSYNC_ALWAYS, "crash drop");
}

static void test_crash_tear(void **state)
{
    (void)state;
    fault_loop(FSIO_FAULT_CRASH, false, FSIO_CRASH_TEAR, WAL_FSYNC_ALWAYS, "crash tear");
}

static void test_crash_garbage(void **state)
{
    (void)state;
    fault_loop(FSIO_FAULT_CRASH, false, FSIO_CRASH_GARBAGE, WAL_FSYNC_ALWAYS, "crash garbage");
}

static void test_crash_tear_fsync_no(void **state)
{
    (void)state;
    /* fsync=no: nothing is reported durable except at rotation/close, the invariant is then
     * only "a clean prefix". */
    fault_loop(FSIO_FAULT_CRASH, false, FSIO_CRASH_TEAR, WAL_FSYNC_NO, "crash tear, fsync=no");
}

/* With preallocation every segment ends in zero padding: the same crash and error loops must
 * recover exactly a prefix holding every durable record, and never take the padding for a torn
 * tail when nothing was torn. */
static void test_prealloc_faults(void **state)
{
    (void)state;
    prealloc_bytes = 700;
    fault_loop(FSIO_FAULT_CRASH, false, FSIO_CRASH_TEAR, WAL_FSYNC_ALWAYS, "prealloc crash tear");
    fault_loop(FSIO_FAULT_CRASH, false, FSIO_CRASH_GARBAGE, WAL_FSYNC_ALWAYS,
               "prealloc crash garbage");
    fault_loop(FSIO_FAULT_ERROR, false, 0, WAL_FSYNC_ALWAYS, "prealloc error once");
    prealloc_bytes = 0;
}

static void test_prealloc_padding_is_not_damage(void **state)
{
    (void)state;
    struct track t = {0};
    prealloc_bytes = 4096;
    struct wal_options o = opts(WAL_FSYNC_ALWAYS, &t);
    o.segment_bytes = 2000;
    uint64_t last;
    struct wal *w = open_recover(&o, NULL, &last, NULL, NULL);
    for (uint64_t lsn = 1; lsn <= 100; lsn++) {
        assert_int_equal(append_op(w, lsn), 0);
        if (lsn % 3 == 0)
            assert_int_equal(wal_commit(w), 0);
    }
    wal_close(w, NULL, NULL);
    /* Every segment is longer than its records: zero padding. */
    char p[512];
    seg_file(p, sizeof(p), 1);
    size_t n;
    char *c = tu_read(p, &n);
    struct walrec_scan sc;
    walrec_scan(c, n, 1, 0, NULL, NULL, &sc);
    assert_true(sc.good_len < n && n >= 4096);
    for (size_t i = sc.good_len; i < n; i++)
        assert_int_equal(c[i], 0);
    free(c);
    assert_true(count_files("wal-") > 3);
    /* Recovery: no truncation, no warning, and appends continue at the end of the records. */
    for (int round = 0; round < 2; round++) {
        struct wal_recovery rep;
        w = open_recover(&o, NULL, &last, &rep, NULL);
        assert_int_equal(last, 100 + 10 * (uint64_t)round);
        assert_int_equal(rep.truncated_bytes, 0);
        assert_string_equal(rep.warning, "");
        for (uint64_t lsn = last + 1; lsn <= last + 10; lsn++)
            assert_int_equal(append_op(w, lsn), 0);
        assert_int_equal(wal_commit(w), 0);
        wal_close(w, NULL, NULL);
    }
    assert_int_equal(count_files("torn-"), 0);
    prealloc_bytes = 0;
}

/* ---- with a libuv loop: group commit off the loop thread, everysec, fork snapshots ---- */

struct loop_ctx {
    struct wal *w;
    uv_idle_t idle;
    uint64_t next, target;
    uint64_t commit_calls;
    struct track t;
    bool closed;
    int snap_status;
    int snap_done;
    uint64_t snap_lsn;
    struct live lv;
};

static void idle_cb(uv_idle_t *h)
{
    struct loop_ctx *c = h->data;
    if (c->next <= c->target) {
        /* One "loop iteration" of a busy server: a few writes, then one commit. */
        for (int k = 0; k < 3 && c->next <= c->target; k++) {
            assert_int_equal(append_op(c->w, c->next), 0);
            c->lv.lsn = c->next;
            c->next++;
        }
        assert_int_equal(wal_commit(c->w), 0);
        c->commit_calls++;
    }
    if (c->t.durable_max >= c->target)
        uv_idle_stop(h);
}

static void closed_cb(void *ud)
{
    ((struct loop_ctx *)ud)->closed = true;
}

static void idle_closed(uv_handle_t *h)
{
    (void)h;
}

static void test_loop_group_commit(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct loop_ctx c;
    memset(&c, 0, sizeof(c));
    struct wal_options o = opts(WAL_FSYNC_ALWAYS, &c.t);
    o.segment_bytes = 16 << 10;
    uint64_t last;
    c.w = open_recover(&o, &loop, &last, NULL, NULL);
    assert_non_null(c.w);
    c.next = 1;
    c.target = 3000;
    uv_idle_init(&loop, &c.idle);
    c.idle.data = &c;
    uv_idle_start(&c.idle, idle_cb);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(c.t.durable_max, 3000);
    struct wal_stats st;
    wal_get_stats(c.w, &st);
    /* Group commit: fewer write+fdatasync jobs than commit calls, every one synced. */
    printf("group commit: %" PRIu64 " commit calls, %" PRIu64 " jobs, %d durable callbacks\n",
           c.commit_calls, st.commits, c.t.durable_calls);
    assert_true(st.commits <= c.commit_calls);
    assert_true(st.syncs >= st.commits);
    assert_int_equal(st.durable_lsn, 3000);
    assert_true(st.segments > 3);
    wal_close(c.w, closed_cb, &c);
    uv_close((uv_handle_t *)&c.idle, idle_closed);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_true(c.closed);
    assert_int_equal(uv_loop_close(&loop), 0);
    struct wal *w = open_recover(&o, NULL, &last, NULL, NULL);
    assert_int_equal(last, 3000);
    wal_close(w, NULL, NULL);
}

static void deadline_cb(uv_timer_t *t)
{
    uv_stop(t->loop);
}

static void test_loop_everysec(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct loop_ctx c;
    memset(&c, 0, sizeof(c));
    struct wal_options o = opts(WAL_FSYNC_EVERYSEC, &c.t);
    uint64_t last;
    c.w = open_recover(&o, &loop, &last, NULL, NULL);
    for (uint64_t lsn = 1; lsn <= 10; lsn++)
        append_op(c.w, lsn);
    assert_int_equal(wal_commit(c.w), 0);
    uv_timer_t deadline;
    uv_timer_init(&loop, &deadline);
    uv_timer_start(&deadline, deadline_cb, 5000, 0);
    uint64_t t0 = uv_now(&loop);
    while (wal_durable_lsn(c.w) < 10 && uv_run(&loop, UV_RUN_ONCE))
        ;
    uint64_t waited = uv_now(&loop) - t0;
    assert_int_equal(wal_written_lsn(c.w), 10);
    assert_int_equal(wal_durable_lsn(c.w), 10);
    assert_int_equal(c.t.durable_max, 10);
    printf("everysec: durable after %" PRIu64 " ms\n", waited);
    assert_true(waited <= 2500);
    uv_close((uv_handle_t *)&deadline, NULL);
    wal_close(c.w, closed_cb, &c);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_true(c.closed);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---- on_written: the lsn handed to write(2), the release point for fsync=everysec/no ---- */

struct written_ctx {
    struct wal *w;
    uint64_t written_max, durable_max;
    int written_calls, durable_calls;
    uint64_t durable_at_written; /* durable lsn when on_written last ran */
    uint64_t on_disk_at_written; /* records in the segment file when on_written last ran */
    bool closed;
};

/* Counts the records the first segment file holds right now. */
static uint64_t records_on_disk(void)
{
    char p[512];
    seg_file(p, sizeof(p), 1);
    size_t n;
    char *c = tu_read(p, &n);
    struct walrec_scan sc;
    walrec_scan(c, n, 1, 0, NULL, NULL, &sc);
    free(c);
    return sc.nrecords;
}

static void wr_written(void *ud, uint64_t lsn)
{
    struct written_ctx *c = ud;
    /* Only grows, never runs behind the durable lsn, and the records are in the file. */
    assert_true(lsn > c->written_max);
    assert_true(lsn >= c->durable_max);
    c->written_max = lsn;
    c->written_calls++;
    c->durable_at_written = wal_durable_lsn(c->w);
    c->on_disk_at_written = records_on_disk();
}

static void wr_durable(void *ud, uint64_t lsn)
{
    struct written_ctx *c = ud;
    assert_true(lsn > c->durable_max);
    /* Reported written first. */
    assert_true(lsn <= c->written_max);
    c->durable_max = lsn;
    c->durable_calls++;
}

static void wr_closed(void *ud)
{
    ((struct written_ctx *)ud)->closed = true;
}

static struct wal_options written_opts(enum wal_fsync mode, struct written_ctx *c)
{
    struct wal_options o;
    memset(&o, 0, sizeof(o));
    o.fsync = mode;
    o.on_written = wr_written;
    o.on_durable = wr_durable;
    o.ud = c;
    return o;
}

/* Opens an empty log whose callbacks point at c (c->w is set before any can run). */
static void written_open(const struct wal_options *o, uv_loop_t *loop, struct written_ctx *c)
{
    char err[256];
    assert_int_equal(wal_open(dir, o, loop, &c->w, err, sizeof(err)), 0);
    assert_int_equal(wal_recover(c->w, NULL, NULL, NULL, NULL, err, sizeof(err)), 0);
}

/* everysec: each batch is reported written once write(2) returned -- before the once-a-second
 * fdatasync, never before the bytes are in the file. */
static void test_written_everysec_before_sync(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct written_ctx c;
    memset(&c, 0, sizeof(c));
    struct wal_options o = written_opts(WAL_FSYNC_EVERYSEC, &c);
    written_open(&o, &loop, &c);
    for (uint64_t lsn = 1; lsn <= 10; lsn++)
        append_op(c.w, lsn);
    assert_int_equal(wal_commit(c.w), 0);
    /* The first batch creates the first segment, which runs on the thread pool: nothing is
     * reported from inside wal_commit. */
    assert_int_equal(c.written_calls, 0);
    uint64_t t0 = uv_now(&loop);
    while (c.written_max < 10 && uv_run(&loop, UV_RUN_ONCE))
        ;
    uv_update_time(&loop);
    assert_int_equal(c.written_max, 10);
    assert_int_equal(c.written_calls, 1);
    assert_int_equal(c.on_disk_at_written, 10);
    assert_int_equal(wal_written_lsn(c.w), 10);
    assert_true(c.durable_at_written < 10);
    assert_int_equal(c.durable_calls, 0);
    assert_true(uv_now(&loop) - t0 < 900);
    /* A plain write into the open segment runs inline: reported from inside wal_commit, with
     * the bytes already in the file. */
    for (uint64_t lsn = 11; lsn <= 12; lsn++)
        append_op(c.w, lsn);
    assert_int_equal(wal_commit(c.w), 0);
    assert_int_equal(c.written_calls, 2);
    assert_int_equal(c.written_max, 12);
    assert_int_equal(c.on_disk_at_written, 12);
    /* Then the timer's sync job makes it durable, without another written report (a ref'd
     * timer keeps the loop running: the log's own sync timer does not). Writes go on while
     * that job runs. */
    uv_timer_t deadline;
    uv_timer_init(&loop, &deadline);
    uv_timer_start(&deadline, deadline_cb, 5000, 0);
    uint64_t next = 13;
    while (c.durable_max < 12 && uv_run(&loop, UV_RUN_ONCE)) {
        if (next < 40) {
            append_op(c.w, next++);
            assert_int_equal(wal_commit(c.w), 0);
            assert_int_equal(c.written_max, next - 1);
        }
    }
    uv_close((uv_handle_t *)&deadline, NULL);
    assert_true(wal_durable_lsn(c.w) >= 12);
    assert_int_equal(wal_written_lsn(c.w), next - 1);
    wal_close(c.w, wr_closed, &c);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_true(c.closed);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void wr_error(void *ud, int err)
{
    struct written_ctx *c = ud;
    c->durable_calls += 1000; /* recorded apart from the durable count */
    (void)err;
}

/* everysec: a failed fdatasync in the sync job, and a failed inline write, each break the log
 * for good, are reported once through on_error, and never advance the durable lsn. */
static void test_everysec_sync_and_write_errors(void **state)
{
    (void)state;
    for (int which = 0; which < 2; which++) {
        uv_loop_t loop;
        uv_loop_init(&loop);
        struct written_ctx c;
        memset(&c, 0, sizeof(c));
        struct wal_options o = written_opts(WAL_FSYNC_EVERYSEC, &c);
        o.on_error = wr_error;
        written_open(&o, &loop, &c);
        append_op(c.w, 1);
        assert_int_equal(wal_commit(c.w), 0);
        while (c.written_max < 1 && uv_run(&loop, UV_RUN_ONCE))
            ;
        struct fsio_fault f = {.at = 1, .ops = 1u << (which == 0 ? FSIO_OP_SYNC : FSIO_OP_WRITE)};
        fsio_fault_set(&f);
        append_op(c.w, 2);
        int rc = wal_commit(c.w);
        uv_timer_t deadline;
        uv_timer_init(&loop, &deadline);
        if (which == 0) {
            /* The write succeeds inline; the timer's sync job fails. */
            assert_int_equal(rc, 0);
            assert_int_equal(c.written_max, 2);
            uv_timer_start(&deadline, deadline_cb, 5000, 0);
            while (c.durable_calls < 1000 && uv_run(&loop, UV_RUN_ONCE))
                ;
        } else {
            /* The inline write fails inside wal_commit. */
            assert_int_equal(rc, -EIO);
            assert_int_equal(c.written_max, 1);
        }
        uv_close((uv_handle_t *)&deadline, NULL);
        fsio_fault_clear();
        assert_int_equal(c.durable_calls, 1000); /* one error, no durable report */
        assert_int_equal(wal_durable_lsn(c.w), 0);
        assert_int_equal(wal_append(c.w, 1, 0, NULL, NULL), -EIO);
        struct wal_stats st;
        wal_get_stats(c.w, &st);
        assert_int_equal(st.io_error, -EIO);
        wal_close(c.w, wr_closed, &c);
        uv_run(&loop, UV_RUN_DEFAULT);
        assert_true(c.closed);
        assert_int_equal(uv_loop_close(&loop), 0);
        tu_rmtree(dir);
        dir = tu_mkdtemp();
    }
}

/* always: written and durable advance together, written reported first; in synchronous mode
 * (no loop) both are reported from inside wal_commit. */
static void test_written_always_and_sync_mode(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct written_ctx c;
    memset(&c, 0, sizeof(c));
    struct wal_options o = written_opts(WAL_FSYNC_ALWAYS, &c);
    written_open(&o, &loop, &c);
    for (uint64_t lsn = 1; lsn <= 5; lsn++)
        append_op(c.w, lsn);
    assert_int_equal(wal_commit(c.w), 0);
    while (c.durable_max < 5 && uv_run(&loop, UV_RUN_ONCE))
        ;
    assert_int_equal(c.written_max, 5);
    assert_int_equal(c.durable_max, 5);
    assert_int_equal(c.on_disk_at_written, 5);
    wal_close(c.w, wr_closed, &c);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_true(c.closed);
    assert_int_equal(uv_loop_close(&loop), 0);

    memset(&c, 0, sizeof(c));
    o = written_opts(WAL_FSYNC_NO, &c);
    written_open(&o, NULL, &c);
    for (uint64_t lsn = 6; lsn <= 8; lsn++)
        append_op(c.w, lsn);
    assert_int_equal(wal_commit(c.w), 0);
    assert_int_equal(c.written_max, 8);
    assert_int_equal(c.on_disk_at_written, 8);
    assert_int_equal(c.durable_calls, 0); /* fsync=no: the kernel decides */
    wal_close(c.w, wr_closed, &c);
    assert_true(c.closed);
    assert_int_equal(c.durable_max, 8); /* close syncs */
}

/* fsync=always gathering: after a sync, the next batch starts once as many records as the synced
 * batch held are buffered, or after gather_ms; a close during gathering still writes them. */
static void test_always_gathers_the_next_batch(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct written_ctx c;
    memset(&c, 0, sizeof(c));
    struct wal_options o = written_opts(WAL_FSYNC_ALWAYS, &c);
    o.gather_ms = 50;
    o.gather_min_sync_us = 0;
    written_open(&o, &loop, &c);
    struct wal_stats st;
    for (uint64_t lsn = 1; lsn <= 10; lsn++)
        append_op(c.w, lsn);
    assert_int_equal(wal_commit(c.w), 0);
    while (c.durable_max < 10 && uv_run(&loop, UV_RUN_ONCE))
        ;
    wal_get_stats(c.w, &st);
    assert_int_equal(st.commits, 1);
    /* Half of the batch came back: held. */
    for (uint64_t lsn = 11; lsn <= 15; lsn++)
        append_op(c.w, lsn);
    assert_int_equal(wal_commit(c.w), 0);
    uv_run(&loop, UV_RUN_NOWAIT);
    wal_get_stats(c.w, &st);
    assert_int_equal(st.commits, 1);
    assert_int_equal(st.written_lsn, 10);
    /* All of it: dispatched at once, one fdatasync for the ten. */
    for (uint64_t lsn = 16; lsn <= 20; lsn++)
        append_op(c.w, lsn);
    assert_int_equal(wal_commit(c.w), 0);
    uint64_t t0 = uv_now(&loop);
    while (c.durable_max < 20 && uv_run(&loop, UV_RUN_ONCE))
        ;
    uv_update_time(&loop);
    assert_true(uv_now(&loop) - t0 < 45);
    wal_get_stats(c.w, &st);
    assert_int_equal(st.commits, 2);
    /* Fewer come back: they go after gather_ms. */
    for (uint64_t lsn = 21; lsn <= 23; lsn++)
        append_op(c.w, lsn);
    assert_int_equal(wal_commit(c.w), 0);
    t0 = uv_now(&loop);
    while (c.durable_max < 23 && uv_run(&loop, UV_RUN_ONCE))
        ;
    uv_update_time(&loop);
    assert_int_equal(c.durable_max, 23);
    assert_true(uv_now(&loop) - t0 >= 40);
    /* Closing while gathering writes what waits. */
    append_op(c.w, 24);
    assert_int_equal(wal_commit(c.w), 0);
    wal_get_stats(c.w, &st);
    assert_int_equal(st.written_lsn, 23);
    wal_close(c.w, wr_closed, &c);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_true(c.closed);
    assert_int_equal(c.durable_max, 24);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void poll_noop(uv_poll_t *h, int status, int events)
{
    (void)h;
    (void)status;
    (void)events;
}

/* fsync=always with sync_inline_when_idle: a batch committed while the loop has no event
 * waiting is written and fdatasynced inside wal_commit; one that opens a segment, or committed
 * while an event is ready (a readable socket here), goes to the thread pool. Without the option,
 * or when the last fdatasync took sync_inline_max_us or more, every sync goes to the pool. */
static void test_always_syncs_inline_when_idle(void **state)
{
    (void)state;
    for (int variant = 0; variant < 3; variant++) {
        int on = variant == 0;
        uv_loop_t loop;
        uv_loop_init(&loop);
        struct written_ctx c;
        memset(&c, 0, sizeof(c));
        struct wal_options o = written_opts(WAL_FSYNC_ALWAYS, &c);
        o.sync_inline_when_idle = variant != 1;
        if (variant == 2)
            o.sync_inline_max_us = 1; /* every fdatasync is slower than 1 us: pool */
        written_open(&o, &loop, &c);
        struct wal_stats st;
        /* The first batch opens the first segment: pool. */
        for (uint64_t lsn = 1; lsn <= 5; lsn++)
            append_op(c.w, lsn);
        assert_int_equal(wal_commit(c.w), 0);
        assert_int_equal(c.durable_max, 0);
        while (c.durable_max < 5 && uv_run(&loop, UV_RUN_ONCE))
            ;
        /* Nothing waits for the loop: inline (with the option). */
        for (uint64_t lsn = 6; lsn <= 8; lsn++)
            append_op(c.w, lsn);
        assert_int_equal(wal_commit(c.w), 0);
        assert_int_equal(c.durable_max, on ? 8 : 5);
        assert_int_equal(c.on_disk_at_written, on ? 8 : 5);
        while (c.durable_max < 8 && uv_run(&loop, UV_RUN_ONCE))
            ;
        wal_get_stats(c.w, &st);
        assert_int_equal(st.inline_syncs, on ? 1 : 0);
        assert_int_equal(st.syncs, 2);
        /* A readable socket is waiting for the loop: pool. */
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
        uv_poll_t ph;
        uv_poll_init(&loop, &ph, sv[0]);
        uv_poll_start(&ph, UV_READABLE, poll_noop);
        assert_int_equal(write(sv[1], "x", 1), 1);
        uv_run(&loop, UV_RUN_NOWAIT); /* registers the socket with epoll; it stays readable */
        for (uint64_t lsn = 9; lsn <= 10; lsn++)
            append_op(c.w, lsn);
        assert_int_equal(wal_commit(c.w), 0);
        assert_int_equal(c.durable_max, 8);
        uv_close((uv_handle_t *)&ph, NULL);
        while (c.durable_max < 10 && uv_run(&loop, UV_RUN_ONCE))
            ;
        wal_get_stats(c.w, &st);
        assert_int_equal(st.inline_syncs, on ? 1 : 0);
        assert_int_equal(st.durable_lsn, 10);
        wal_close(c.w, wr_closed, &c);
        uv_run(&loop, UV_RUN_DEFAULT);
        assert_true(c.closed);
        assert_int_equal(uv_loop_close(&loop), 0);
        close(sv[0]);
        close(sv[1]);
        tu_rmtree(dir);
        dir = tu_mkdtemp();
    }
}

static int ready_fd = -1; /* written to by inline_written_cb when >= 0 */

static void inline_written_cb(void *ud, uint64_t lsn)
{
    wr_written(ud, lsn);
    if (ready_fd >= 0)
        assert_int_equal(write(ready_fd, "x", 1), 1);
}

/* Gathering after a sync on the loop thread: the next batch waits for as many records as the
 * synced batch held plus one per descriptor that became ready during the sync (requests the
 * loop could not read yet). Here a socket turns readable while the batch is written. */
static void test_inline_sync_gathers_waiting_clients(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct written_ctx c;
    memset(&c, 0, sizeof(c));
    struct wal_options o = written_opts(WAL_FSYNC_ALWAYS, &c);
    o.on_written = inline_written_cb;
    o.sync_inline_when_idle = true;
    o.gather_ms = 5000;
    o.gather_min_sync_us = 0;
    written_open(&o, &loop, &c);
    /* The first batch opens the segment (pool); then the next gathers for 2 records. */
    for (uint64_t lsn = 1; lsn <= 2; lsn++)
        append_op(c.w, lsn);
    assert_int_equal(wal_commit(c.w), 0);
    while (c.durable_max < 2 && uv_run(&loop, UV_RUN_ONCE))
        ;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    uv_poll_t ph;
    uv_poll_init(&loop, &ph, sv[0]);
    uv_poll_start(&ph, UV_READABLE, poll_noop);
    uv_run(&loop, UV_RUN_NOWAIT); /* registers the (still quiet) socket with epoll */
    /* Two records: the gathered batch goes, inline (nothing ready); while it is written the
     * socket turns readable. */
    ready_fd = sv[1];
    for (uint64_t lsn = 3; lsn <= 4; lsn++)
        append_op(c.w, lsn);
    assert_int_equal(wal_commit(c.w), 0);
    ready_fd = -1;
    assert_int_equal(c.durable_max, 4);
    struct wal_stats st;
    wal_get_stats(c.w, &st);
    assert_int_equal(st.inline_syncs, 1);
    /* Target: 2 records synced + 1 ready socket. Two come back: held. */
    for (uint64_t lsn = 5; lsn <= 6; lsn++)
        append_op(c.w, lsn);
    assert_int_equal(wal_commit(c.w), 0);
    wal_get_stats(c.w, &st);
    assert_int_equal(st.written_lsn, 4);
    assert_true(st.pending_bytes > 0); /* still buffered, not handed to a job */
    /* The waiting client's record: the batch goes (to the pool: the socket is readable). */
    append_op(c.w, 7);
    assert_int_equal(wal_commit(c.w), 0);
    while (c.durable_max < 7 && uv_run(&loop, UV_RUN_ONCE))
        ;
    wal_get_stats(c.w, &st);
    assert_int_equal(st.inline_syncs, 1);
    assert_int_equal(st.durable_lsn, 7);
    uv_close((uv_handle_t *)&ph, NULL);
    wal_close(c.w, wr_closed, &c);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_true(c.closed);
    assert_int_equal(c.durable_max, 7);
    assert_int_equal(uv_loop_close(&loop), 0);
    close(sv[0]);
    close(sv[1]);
}

static void snap_done(void *ud, int status, uint64_t lsn)
{
    struct loop_ctx *c = ud;
    c->snap_status = status;
    c->snap_done++;
    assert_int_equal(lsn, c->snap_lsn);
}

static void test_loop_fork_snapshot(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct loop_ctx c;
    memset(&c, 0, sizeof(c));
    struct wal_options o = opts(WAL_FSYNC_ALWAYS, &c.t);
    o.segment_bytes = 2048;
    uint64_t last;
    c.w = open_recover(&o, &loop, &last, NULL, NULL);
    c.next = 1;
    c.target = 300;
    uv_idle_init(&loop, &c.idle);
    c.idle.data = &c;
    uv_idle_start(&c.idle, idle_cb);
    uv_run(&loop, UV_RUN_DEFAULT);
    int before = count_files("wal-");
    assert_true(before > 5);
    c.snap_lsn = 300;
    assert_int_equal(wal_snapshot_start(c.w, dump_state, &c.lv, snap_done, &c), 0);
    assert_true(wal_snapshot_running(c.w));
    assert_int_equal(wal_snapshot_start(c.w, dump_state, &c.lv, snap_done, &c), -EBUSY);
    assert_int_equal(wal_snapshot_save(c.w, dump_state, &c.lv), -EBUSY);
    /* Keep writing while the child works: the next record opens a new segment. */
    c.target = 320;
    uv_idle_start(&c.idle, idle_cb);
    while (c.snap_done == 0 && uv_run(&loop, UV_RUN_ONCE))
        ;
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(c.snap_done, 1);
    assert_int_equal(c.snap_status, 0);
    assert_true(count_files("wal-") <= 2);
    check_history(c.w, 0, 300); /* written by the child, read back by the parent */
    wal_close(c.w, closed_cb, &c);
    uv_close((uv_handle_t *)&c.idle, idle_closed);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    struct wal_recovery rep;
    struct wal *w = open_recover(&o, NULL, &last, &rep, NULL);
    assert_int_equal(last, 320);
    assert_int_equal(rep.snapshot_lsn, 300);
    check_history(w, 0, 300);
    wal_close(w, NULL, NULL);
}

static void test_loop_close_with_running_child(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct loop_ctx c;
    memset(&c, 0, sizeof(c));
    struct wal_options o = opts(WAL_FSYNC_NO, &c.t);
    uint64_t last;
    c.w = open_recover(&o, &loop, &last, NULL, NULL);
    for (uint64_t lsn = 1; lsn <= 50; lsn++)
        append_op(c.w, lsn);
    c.lv.lsn = 50;
    c.snap_lsn = 50;
    assert_int_equal(wal_snapshot_start(c.w, dump_state, &c.lv, snap_done, &c), 0);
    /* Closing right away: the child is stopped, done is called with -ECANCELED (or the child
     * already finished), and everything appended is flushed. */
    wal_close(c.w, closed_cb, &c);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_true(c.closed);
    assert_int_equal(c.snap_done, 1);
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_int_equal(c.t.durable_max, 50);
    assert_int_equal(count_files("snap-"), c.snap_status == 0 ? 1 : 0);
    struct wal *w = open_recover(&o, NULL, &last, NULL, NULL);
    assert_int_equal(last, 50);
    wal_close(w, NULL, NULL);
}

int main(void)
{
    log_set_level(LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_append_recover, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dir_lock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation_and_snapshot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_term_history_and_full_audit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_tail_truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_middle_refuses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_earlier_segment_refuses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_snapshot_refuses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_term_truncate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_install_snapshot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_resumes_at_known_positions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fault_error_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fault_error_persistent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fault_short_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_drop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_tear, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_garbage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_tear_fsync_no, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prealloc_padding_is_not_damage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prealloc_faults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncate_audit_without_padding, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_continues, setup, teardown),
        cmocka_unit_test_setup_teardown(test_loop_group_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_loop_everysec, setup, teardown),
        cmocka_unit_test_setup_teardown(test_written_everysec_before_sync, setup, teardown),
        cmocka_unit_test_setup_teardown(test_written_always_and_sync_mode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_everysec_sync_and_write_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_always_gathers_the_next_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_always_syncs_inline_when_idle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inline_sync_gathers_waiting_clients, setup, teardown),
        cmocka_unit_test_setup_teardown(test_loop_fork_snapshot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_loop_close_with_running_child, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_snapshot_leaves_no_file, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
