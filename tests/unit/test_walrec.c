/* SPDX-License-Identifier: MIT */
/* Unit tests for proto/walrec.c: round trips, every single-bit flip and every truncation
 * detected, and the segment scan's verdicts (clean, torn tail, corruption in the middle,
 * sequence breaks). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/err.h"
#include "proto/walrec.h"

static uint64_t rng = 0x1234567;

static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Encodes records lsn first..first+n-1 with small random argvs into out; returns the offsets
 * of each record start in offs (n + 1 entries, the last is out->len). */
static void make_log(struct buf *out, uint64_t first, size_t n, uint64_t term, size_t *offs)
{
    char val[64];
    for (size_t i = 0; i < n; i++) {
        size_t vl = (size_t)(next_rand() % sizeof(val));
        for (size_t k = 0; k < vl; k++)
            val[k] = (char)next_rand();
        struct slice argv[3] = {SLICE_LIT("SET"), SLICE_LIT("key"), slice_of(val, vl)};
        offs[i] = out->len;
        walrec_encode(out, first + i, term, 3, argv);
    }
    offs[n] = out->len;
}

static void test_round_trip(void **state)
{
    (void)state;
    for (int iter = 0; iter < 200; iter++) {
        size_t argc = (size_t)(next_rand() % 6);
        struct slice argv[6];
        char store[6][300];
        for (size_t i = 0; i < argc; i++) {
            size_t len = (size_t)(next_rand() % 300);
            for (size_t k = 0; k < len; k++)
                store[i][k] = (char)next_rand();
            argv[i] = slice_of(store[i], len);
        }
        uint64_t lsn = 1 + next_rand() % 1000000, term = next_rand() % 50;
        struct buf b;
        buf_init(&b);
        buf_append(&b, "junk", 4); /* encoding appends */
        size_t n = walrec_encode(&b, lsn, term, argc, argv);
        assert_int_equal(n, walrec_size(argc, argv));
        assert_int_equal(b.len, 4 + n);
        struct walrec rec;
        assert_int_equal(walrec_decode(b.p + 4, n, &rec), (ssize_t)n);
        assert_int_equal(rec.lsn, lsn);
        assert_int_equal(rec.term, term);
        assert_int_equal(rec.argc, argc);
        assert_ptr_equal(rec.raw.p, b.p + 4);
        assert_int_equal(rec.raw.len, n);
        struct slice out[6];
        walrec_argv(&rec, out);
        for (size_t i = 0; i < argc; i++) {
            assert_int_equal(out[i].len, argv[i].len);
            if (argv[i].len)
                assert_memory_equal(out[i].p, argv[i].p, argv[i].len);
        }
        /* Trailing bytes are not consumed. */
        buf_append(&b, "more", 4);
        assert_int_equal(walrec_decode(b.p + 4, n + 4, &rec), (ssize_t)n);
        buf_free(&b);
    }
}

static void test_every_truncation_is_incomplete(void **state)
{
    (void)state;
    struct slice argv[2] = {SLICE_LIT("DEL"), SLICE_LIT("some-key")};
    struct buf b;
    buf_init(&b);
    size_t n = walrec_encode(&b, 7, 3, 2, argv);
    struct walrec rec;
    for (size_t k = 0; k < n; k++)
        assert_int_equal(walrec_decode(b.p, k, &rec), TD_EINCOMPLETE);
    assert_int_equal(walrec_decode(b.p, n, &rec), (ssize_t)n);
    /* Something that cannot start a record is corrupt as soon as that shows. */
    assert_int_equal(walrec_decode("X", 1, &rec), TD_ECORRUPT);
    assert_int_equal(walrec_decode("TWRX", 4, &rec), TD_ECORRUPT);
    buf_free(&b);
}

static void test_every_bit_flip_is_corrupt(void **state)
{
    (void)state;
    struct slice argv[3] = {SLICE_LIT("SET"), SLICE_LIT("k"), SLICE_LIT("value-bytes")};
    struct buf b;
    buf_init(&b);
    size_t n = walrec_encode(&b, 42, 9, 3, argv);
    struct walrec rec;
    for (size_t byte = 0; byte < n; byte++) {
        for (int bit = 0; bit < 8; bit++) {
            b.p[byte] ^= (char)(1 << bit);
            ssize_t r = walrec_decode(b.p, n, &rec);
            if (r != TD_ECORRUPT)
                fail_msg("flip of byte %zu bit %d gave %zd", byte, bit, r);
            b.p[byte] ^= (char)(1 << bit);
        }
    }
    assert_int_equal(walrec_decode(b.p, n, &rec), (ssize_t)n);
    buf_free(&b);
}

static void test_structural_checks(void **state)
{
    (void)state;
    /* argc 0 is a valid no-op record. */
    struct buf b;
    buf_init(&b);
    size_t n = walrec_encode(&b, 1, 1, 0, NULL);
    struct walrec rec;
    assert_int_equal(walrec_decode(b.p, n, &rec), (ssize_t)n);
    assert_int_equal(rec.argc, 0);
    buf_free(&b);
}

static void test_scan_clean_and_torn(void **state)
{
    (void)state;
    size_t offs[21];
    struct buf b;
    buf_init(&b);
    make_log(&b, 100, 20, 4, offs);
    struct walrec_scan sc;
    assert_int_equal(walrec_scan(b.p, b.len, 100, 0, NULL, NULL, &sc), 0);
    assert_int_equal(sc.status, WALREC_SCAN_CLEAN);
    assert_int_equal(sc.nrecords, 20);
    assert_int_equal(sc.first_lsn, 100);
    assert_int_equal(sc.last_lsn, 119);
    assert_int_equal(sc.last_term, 4);
    assert_int_equal(sc.good_len, b.len);
    /* A cut at every byte: torn, and the valid prefix ends at the last whole record. */
    size_t rec = 0;
    for (size_t cut = 0; cut < b.len; cut++) {
        while (offs[rec + 1] <= cut)
            rec++;
        walrec_scan(b.p, cut, 100, 0, NULL, NULL, &sc);
        if (cut == offs[rec]) {
            assert_int_equal(sc.status, WALREC_SCAN_CLEAN);
        } else {
            assert_int_equal(sc.status, WALREC_SCAN_TORN);
            assert_int_equal(sc.reason, TD_EINCOMPLETE);
        }
        assert_int_equal(sc.good_len, offs[rec]);
        assert_int_equal(sc.nrecords, rec);
    }
    /* Garbage after the last record: torn. */
    buf_append(&b, "\x01\x02garbage that is not a record at all..........", 48);
    walrec_scan(b.p, b.len, 100, 0, NULL, NULL, &sc);
    assert_int_equal(sc.status, WALREC_SCAN_TORN);
    assert_int_equal(sc.reason, TD_ECORRUPT);
    assert_int_equal(sc.good_len, offs[20]);
    buf_free(&b);
}

static void test_scan_flip_tail_vs_middle(void **state)
{
    (void)state;
    size_t offs[11];
    struct buf b;
    buf_init(&b);
    make_log(&b, 1, 10, 1, offs);
    struct walrec_scan sc;
    for (size_t byte = 0; byte < b.len; byte++) {
        b.p[byte] ^= 0x10;
        walrec_scan(b.p, b.len, 1, 0, NULL, NULL, &sc);
        size_t rec = 0;
        while (offs[rec + 1] <= byte)
            rec++;
        assert_int_equal(sc.good_len, offs[rec]);
        if (rec == 9) {
            /* The last record: nothing valid follows, a torn tail. */
            assert_int_equal(sc.status, WALREC_SCAN_TORN);
        } else {
            assert_int_equal(sc.status, WALREC_SCAN_CORRUPT);
            assert_false(sc.seq_break);
            assert_int_equal(sc.next_valid, offs[rec + 1]);
            assert_int_equal(sc.next_lsn, rec + 2);
        }
        b.p[byte] ^= 0x10;
    }
    buf_free(&b);
}

static void test_scan_sequence(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b);
    walrec_encode(&b, 5, 1, 0, NULL);
    size_t second = b.len;
    walrec_encode(&b, 7, 1, 0, NULL); /* gap */
    struct walrec_scan sc;
    walrec_scan(b.p, b.len, 5, 0, NULL, NULL, &sc);
    assert_int_equal(sc.status, WALREC_SCAN_CORRUPT);
    assert_true(sc.seq_break);
    assert_int_equal(sc.good_len, second);
    assert_int_equal(sc.next_lsn, 7);
    /* First record must match the expected lsn. */
    walrec_scan(b.p, b.len, 4, 0, NULL, NULL, &sc);
    assert_int_equal(sc.status, WALREC_SCAN_CORRUPT);
    assert_int_equal(sc.good_len, 0);
    /* Terms never go backwards. */
    b.len = 0;
    walrec_encode(&b, 1, 3, 0, NULL);
    walrec_encode(&b, 2, 2, 0, NULL);
    walrec_scan(b.p, b.len, 1, 0, NULL, NULL, &sc);
    assert_int_equal(sc.status, WALREC_SCAN_CORRUPT);
    assert_true(sc.seq_break);
    walrec_scan(b.p, b.len, 1, 4, NULL, NULL, &sc); /* min_term above the first */
    assert_int_equal(sc.status, WALREC_SCAN_CORRUPT);
    assert_int_equal(sc.good_len, 0);
    buf_free(&b);
}

/* A value that is itself an encoded record: a torn write of it must read as a torn tail, not
 * as "a valid record follows" (the intact header's length is trusted). */
static void test_scan_embedded_record_in_torn_payload(void **state)
{
    (void)state;
    struct buf inner, b;
    buf_init(&inner);
    buf_init(&b);
    walrec_encode(&inner, 3, 1, 0, NULL);
    walrec_encode(&b, 1, 1, 0, NULL);
    size_t start = b.len;
    char pad[100];
    memset(pad, 'p', sizeof(pad));
    struct slice argv[3] = {SLICE_LIT("SET"), slice_of(inner.p, inner.len), slice_of(pad, 100)};
    walrec_encode(&b, 2, 1, 3, argv);
    struct walrec_scan sc;
    /* Cut inside the padding, after the embedded record. */
    walrec_scan(b.p, b.len - 50, 1, 0, NULL, NULL, &sc);
    assert_int_equal(sc.status, WALREC_SCAN_TORN);
    assert_int_equal(sc.good_len, start);
    /* The embedded record is found when scanning without the trusted header. */
    assert_true(walrec_find_valid(b.p, b.len, start + 1) > 0);
    buf_free(&inner);
    buf_free(&b);
}

struct collect {
    uint64_t lsns[64];
    size_t n;
    int stop_at;
};

static int collect_fn(void *ud, const struct walrec *rec)
{
    struct collect *c = ud;
    c->lsns[c->n++] = rec->lsn;
    return (int)c->n == c->stop_at ? -99 : 0;
}

static void test_scan_callback(void **state)
{
    (void)state;
    size_t offs[6];
    struct buf b;
    buf_init(&b);
    make_log(&b, 10, 5, 2, offs);
    struct collect c = {.stop_at = -1};
    struct walrec_scan sc;
    assert_int_equal(walrec_scan(b.p, b.len, 0, 0, collect_fn, &c, &sc), 0);
    assert_int_equal(c.n, 5);
    assert_int_equal(c.lsns[4], 14);
    struct collect d = {.stop_at = 2};
    assert_int_equal(walrec_scan(b.p, b.len, 0, 0, collect_fn, &d, &sc), -99);
    assert_int_equal(d.n, 2);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_every_truncation_is_incomplete),
        cmocka_unit_test(test_every_bit_flip_is_corrupt),
        cmocka_unit_test(test_structural_checks),
        cmocka_unit_test(test_scan_clean_and_torn),
        cmocka_unit_test(test_scan_flip_tail_vs_middle),
        cmocka_unit_test(test_scan_sequence),
        cmocka_unit_test(test_scan_embedded_record_in_torn_payload),
        cmocka_unit_test(test_scan_callback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
