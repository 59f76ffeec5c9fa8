/* SPDX-License-Identifier: MIT */
/* Unit tests for store/snapshot.c: round trip of strings and hashes with expiry, streaming
 * items, and every truncation / bit flip / write fault detected. */
#include "testutil.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/err.h"
#include "base/fsio.h"
#include "store/snapshot.h"

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

#define NKEYS 50

/* Writes NKEYS items: even keys are strings, odd keys hashes of (i % 4) fields. */
static int write_items(const char *path, uint64_t lsn, uint64_t term)
{
    struct snapshot_writer *w;
    int r = snapshot_writer_open(path, lsn, term, &w);
    if (r < 0)
        return r;
    for (int i = 0; i < NKEYS && r == 0; i++) {
        char key[32], val[64];
        int kl = snprintf(key, sizeof(key), "key:%d", i);
        if (i % 2 == 0) {
            int vl = snprintf(val, sizeof(val), "value-%d", i * 7);
            struct slice v = slice_of(val, (size_t)vl);
            r = snapshot_put(w, SNAPSHOT_TYPE_STRING, i % 3 ? 0 : 1700000000000ull + (uint64_t)i,
                             slice_of(key, (size_t)kl), 1, &v);
        } else {
            size_t nf = (size_t)(i % 4);
            r = snapshot_item_begin(w, SNAPSHOT_TYPE_HASH, 0, slice_of(key, (size_t)kl), nf * 2);
            for (size_t f = 0; f < nf && r == 0; f++) {
                char fb[16], vb[16];
                int fl = snprintf(fb, sizeof(fb), "f%zu", f);
                int vl = snprintf(vb, sizeof(vb), "v%zu-%d", f, i);
                snapshot_item_val(w, slice_of(fb, (size_t)fl));
                r = snapshot_item_val(w, slice_of(vb, (size_t)vl));
            }
        }
    }
    if (r != 0) {
        snapshot_writer_abort(w);
        return r;
    }
    struct snapshot_info info;
    r = snapshot_writer_finish(w, &info);
    if (r == 0) {
        assert_int_equal(info.items, NKEYS);
        assert_int_equal((long)info.bytes, tu_size(path));
    }
    return r;
}

struct seen {
    int n;
    int bad;
};

static int check_item(void *ud, const struct snapshot_item *it)
{
    struct seen *s = ud;
    int i = s->n++;
    char key[32], val[64];
    int kl = snprintf(key, sizeof(key), "key:%d", i);
    if (!slice_eq(it->key, slice_of(key, (size_t)kl)))
        s->bad++;
    if (i % 2 == 0) {
        int vl = snprintf(val, sizeof(val), "value-%d", i * 7);
        if (it->type != SNAPSHOT_TYPE_STRING || it->nvals != 1 ||
            !slice_eq(it->vals[0], slice_of(val, (size_t)vl)) ||
            it->expire_ms != (i % 3 ? 0 : 1700000000000ull + (uint64_t)i))
            s->bad++;
    } else {
        size_t nf = (size_t)(i % 4);
        if (it->type != SNAPSHOT_TYPE_HASH || it->nvals != nf * 2)
            s->bad++;
        for (size_t f = 0; f < nf && f * 2 + 1 < it->nvals; f++) {
            char vb[16];
            int vl = snprintf(vb, sizeof(vb), "v%zu-%d", f, i);
            if (!slice_eq(it->vals[f * 2 + 1], slice_of(vb, (size_t)vl)))
                s->bad++;
        }
    }
    return 0;
}

static void test_round_trip(void **state)
{
    (void)state;
    char p[512];
    snprintf(p, sizeof(p), "%s/s.snap", dir);
    assert_int_equal(write_items(p, 1234, 5), 0);
    struct seen s = {0, 0};
    struct snapshot_info info;
    char err[256];
    assert_int_equal(snapshot_load(p, check_item, &s, &info, err, sizeof(err)), 0);
    assert_int_equal(s.n, NKEYS);
    assert_int_equal(s.bad, 0);
    assert_int_equal(info.lsn, 1234);
    assert_int_equal(info.term, 5);
    assert_int_equal(info.items, NKEYS);
    struct snapshot_info hi;
    assert_int_equal(snapshot_read_header(p, &hi), 0);
    assert_int_equal(hi.lsn, 1234);
    /* A load callback can stop the load. */
    assert_int_equal(snapshot_load(p, NULL, NULL, NULL, NULL, 0), 0);
}

static int stop_fn(void *ud, const struct snapshot_item *it)
{
    (void)ud;
    (void)it;
    return -ECANCELED;
}

static void test_empty_and_stop(void **state)
{
    (void)state;
    char p[512];
    snprintf(p, sizeof(p), "%s/e.snap", dir);
    struct snapshot_writer *w;
    assert_int_equal(snapshot_writer_open(p, 0, 0, &w), 0);
    assert_int_equal(snapshot_writer_finish(w, NULL), 0);
    struct snapshot_info info;
    assert_int_equal(snapshot_load(p, NULL, NULL, &info, NULL, 0), 0);
    assert_int_equal(info.items, 0);
    snprintf(p, sizeof(p), "%s/s.snap", dir);
    assert_int_equal(write_items(p, 1, 1), 0);
    assert_int_equal(snapshot_load(p, stop_fn, NULL, NULL, NULL, 0), -ECANCELED);
}

/* The end marker is appended wherever the last item left the write buffer, including a few bytes
 * short of its capacity (a regression: the frame header was counted before room was made for it,
 * writing past the buffer). One item of every key length from 1 to 300 moves that point across
 * the buffer's doubling boundaries; each file must load back with its item. */
static void test_end_marker_at_every_buffer_fill(void **state)
{
    (void)state;
    char p[512];
    snprintf(p, sizeof(p), "%s/m.snap", dir);
    char key[300];
    memset(key, 'k', sizeof(key));
    for (size_t kl = 1; kl <= sizeof(key); kl++) {
        struct snapshot_writer *w;
        assert_int_equal(snapshot_writer_open(p, kl, 1, &w), 0);
        struct slice v = SLICE_LIT("v");
        assert_int_equal(snapshot_put(w, SNAPSHOT_TYPE_STRING, 0, slice_of(key, kl), 1, &v), 0);
        struct snapshot_info info;
        assert_int_equal(snapshot_writer_finish(w, &info), 0);
        assert_int_equal(info.bytes, SNAPSHOT_HEADER_SIZE + 8 + 1 + 8 + 4 + kl + 4 + 4 + 1 + 8 + 9);
        assert_int_equal(snapshot_load(p, NULL, NULL, &info, NULL, 0), 0);
        assert_int_equal(info.items, 1);
        assert_int_equal(info.lsn, kl);
    }
}

static void test_every_truncation_and_flip(void **state)
{
    (void)state;
    char p[512], q[512];
    snprintf(p, sizeof(p), "%s/s.snap", dir);
    snprintf(q, sizeof(q), "%s/bad.snap", dir);
    assert_int_equal(write_items(p, 77, 2), 0);
    size_t n;
    char *c = tu_read(p, &n);
    char err[256];
    for (size_t cut = 0; cut < n; cut++) {
        tu_write(q, c, cut);
        err[0] = '\0';
        assert_int_equal(snapshot_load(q, NULL, NULL, NULL, err, sizeof(err)), TD_ECORRUPT);
        assert_non_null(strstr(err, "bad.snap"));
    }
    /* Trailing bytes after the end marker. */
    tu_write(q, c, n);
    tu_append(q, "x", 1);
    assert_int_equal(snapshot_load(q, NULL, NULL, NULL, NULL, 0), TD_ECORRUPT);
    for (size_t byte = 0; byte < n; byte++) {
        c[byte] ^= 0x04;
        tu_write(q, c, n);
        assert_int_equal(snapshot_load(q, NULL, NULL, NULL, NULL, 0), TD_ECORRUPT);
        c[byte] ^= 0x04;
    }
    free(c);
}

static void test_write_faults(void **state)
{
    (void)state;
    char p[512];
    snprintf(p, sizeof(p), "%s/f.snap", dir);
    for (int persistent = 0; persistent < 2; persistent++) {
        for (uint64_t at = 1;; at++) {
            struct fsio_fault f = {.at = at, .persistent = persistent};
            fsio_fault_set(&f);
            int r = write_items(p, 9, 9);
            bool fired = fsio_fault_fired();
            fsio_fault_clear();
            if (!fired) {
                assert_int_equal(r, 0);
                break;
            }
            assert_int_equal(r, -EIO);
        }
    }
    /* Short writes are absorbed. */
    struct fsio_fault f = {.at = 1, .kind = FSIO_FAULT_SHORT_WRITE, .persistent = true};
    fsio_fault_set(&f);
    assert_int_equal(write_items(p, 9, 9), 0);
    fsio_fault_clear();
    struct seen s = {0, 0};
    assert_int_equal(snapshot_load(p, check_item, &s, NULL, NULL, 0), 0);
    assert_int_equal(s.bad, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_and_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_end_marker_at_every_buffer_fill, setup, teardown),
        cmocka_unit_test_setup_teardown(test_every_truncation_and_flip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_faults, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
