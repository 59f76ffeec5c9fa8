/* SPDX-License-Identifier: MIT */
/* Unit tests for store/termhist.c: the boundaries found when advancing to a new snapshot equal
 * a linear scan of random logs; term_at answers exactly the known range; the cap drops the
 * oldest pairs; the file image round-trips, and every torn, bit-flipped or structurally wrong
 * image (CRC fixed up so the structural checks are reached) is refused; load fails safe
 * (missing, corrupt, torn or stale file: unknown below the snapshot, never a wrong term). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/crc32c.h"
#include "base/endian.h"
#include "base/err.h"
#include "store/termhist.h"
#include "testutil.h"

#define MAXLSN 5000

static uint64_t terms[MAXLSN + 1]; /* the simulated log: term by lsn */
static int lookups_fail_at = -1;   /* term_at fails at this call (-1: never) */
static int lookups;

static int log_term_at(void *ud, uint64_t lsn, uint64_t *term)
{
    (void)ud;
    if (lookups++ == lookups_fail_at)
        return -EIO;
    if (lsn > MAXLSN)
        return -ENOENT;
    *term = terms[lsn];
    return 0;
}

static uint64_t rng = 0x1234567;

static uint64_t rnd(uint64_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return n ? rng % n : 0;
}

/* Fills terms[1..n] with a random non-decreasing sequence starting at term t0. */
static void random_log(uint64_t n, uint64_t t0)
{
    uint64_t t = t0;
    terms[0] = 0;
    for (uint64_t lsn = 1; lsn <= n; lsn++) {
        if (rnd(10) == 0)
            t += 1 + rnd(3);
        terms[lsn] = t;
    }
}

/* Every lsn of the known range answers its real term; outside it, -ENOENT. */
static void check_against_log(const struct termhist *h)
{
    for (uint64_t lsn = 0; lsn <= h->snap_lsn + 2 && lsn <= MAXLSN; lsn++) {
        uint64_t t = 99999;
        int rc = termhist_term_at(h, lsn, &t);
        if (lsn < h->from_lsn || lsn > h->snap_lsn) {
            assert_int_equal(rc, -ENOENT);
        } else {
            assert_int_equal(rc, 0);
            assert_int_equal(t, terms[lsn]);
        }
    }
}

static void test_advance_matches_the_log(void **state)
{
    (void)state;
    for (int it = 0; it < 300; it++) {
        uint64_t n = 1 + rnd(1000);
        random_log(n, rnd(3));
        struct termhist h;
        termhist_init(&h);
        /* Several compactions, each advancing to a random later lsn. */
        uint64_t at = 0;
        while (at < n) {
            at += 1 + rnd(n - at);
            assert_int_equal(termhist_advance(&h, at, terms[at], log_term_at, NULL), 0);
            assert_int_equal(h.snap_lsn, at);
            assert_int_equal(termhist_known_lsn(&h), 0);
            check_against_log(&h);
        }
        /* And the same from a history that was unknown below some snapshot. */
        uint64_t s = rnd(n + 1);
        termhist_reset_unknown(&h, s, terms[s]);
        if (s > 0 && terms[s] > 0)
            assert_int_equal(termhist_known_lsn(&h), s);
        assert_int_equal(termhist_advance(&h, n, terms[n], log_term_at, NULL), 0);
        if (s == 0 || terms[s] > 0)
            check_against_log(&h);
        termhist_free(&h);
    }
}

static void test_advance_failures_reset_to_unknown(void **state)
{
    (void)state;
    random_log(500, 1);
    terms[500] = terms[499] + 1;
    struct termhist h;
    termhist_init(&h);
    /* A lookup error at each possible call: the history is unknown at the new snapshot. */
    for (int k = 0;; k++) {
        termhist_reset_unknown(&h, 0, 0);
        lookups = 0;
        lookups_fail_at = k;
        int rc = termhist_advance(&h, 500, terms[500], log_term_at, NULL);
        lookups_fail_at = -1;
        if (rc == 0)
            break;
        assert_int_equal(rc, -EIO);
        assert_int_equal(h.snap_lsn, 500);
        assert_int_equal(termhist_known_lsn(&h), 500);
        check_against_log(&h);
    }
    /* A log that contradicts the snapshot's term, or goes below the history's. */
    termhist_free(&h);
    assert_int_equal(termhist_advance(&h, 100, terms[100] + 1, log_term_at, NULL), TD_ECORRUPT);
    assert_int_equal(termhist_known_lsn(&h), 100);
    termhist_reset_unknown(&h, 100, terms[500] + 5);
    assert_int_equal(termhist_advance(&h, 200, terms[200], log_term_at, NULL), TD_ECORRUPT);
    assert_int_equal(termhist_advance(&h, 150, terms[150], log_term_at, NULL), TD_ECORRUPT);
    termhist_free(&h);
}

static void test_cap_drops_the_oldest(void **state)
{
    (void)state;
    for (uint64_t lsn = 0; lsn <= MAXLSN; lsn++)
        terms[lsn] = lsn; /* a new term per record */
    struct termhist h;
    termhist_init(&h);
    assert_int_equal(termhist_advance(&h, MAXLSN, MAXLSN, log_term_at, NULL), 0);
    if (MAXLSN > TERMHIST_MAX) {
        assert_int_equal(h.n, TERMHIST_MAX);
        assert_int_equal(termhist_known_lsn(&h), MAXLSN - TERMHIST_MAX + 1);
    }
    check_against_log(&h);
    termhist_free(&h);
    /* In steps: old pairs are kept while they fit, then the oldest of old + new go. */
    termhist_init(&h);
    assert_int_equal(termhist_advance(&h, 10, 10, log_term_at, NULL), 0);
    assert_int_equal(termhist_advance(&h, 50, 50, log_term_at, NULL), 0);
    assert_int_equal(h.n, 50);
    assert_int_equal(termhist_known_lsn(&h), 0);
    assert_int_equal(termhist_advance(&h, 3000, 3000, log_term_at, NULL), 0);
    assert_int_equal(termhist_advance(&h, MAXLSN, MAXLSN, log_term_at, NULL), 0);
    if (MAXLSN > TERMHIST_MAX) {
        assert_int_equal(h.n, TERMHIST_MAX);
        assert_int_equal(termhist_known_lsn(&h), MAXLSN - TERMHIST_MAX + 1);
    }
    check_against_log(&h);
    termhist_free(&h);
}

static void fix_crc(struct buf *b)
{
    le_put32(b->p + b->len - 4, crc32c(b->p, b->len - 4));
}

static struct termhist sample(void)
{
    struct termhist h;
    termhist_init(&h);
    random_log(400, 1);
    terms[400] = terms[399] + 2;
    assert_int_equal(termhist_advance(&h, 400, terms[400], log_term_at, NULL), 0);
    assert_true(h.n >= 3);
    return h;
}

static void test_image(void **state)
{
    (void)state;
    struct termhist h = sample(), g;
    termhist_init(&g);
    struct buf b;
    buf_init(&b);
    termhist_encode(&h, &b);
    assert_int_equal(b.len, 36 + 16 * h.n + 4);
    assert_int_equal(termhist_decode(b.p, b.len, &g), 0);
    assert_int_equal(g.snap_lsn, h.snap_lsn);
    assert_int_equal(g.snap_term, h.snap_term);
    assert_int_equal(g.from_lsn, h.from_lsn);
    assert_int_equal(g.n, h.n);
    assert_memory_equal(g.v, h.v, h.n * sizeof(h.v[0]));

    /* Every truncation, every extension and every bit flip is refused; g is untouched. */
    for (size_t k = 0; k < b.len; k++)
        assert_int_equal(termhist_decode(b.p, k, &g), TD_ECORRUPT);
    buf_append(&b, "", 1);
    assert_int_equal(termhist_decode(b.p, b.len, &g), TD_ECORRUPT);
    b.len--;
    for (size_t k = 0; k < b.len * 8; k++) {
        b.p[k / 8] ^= (char)(1u << (k % 8));
        assert_int_equal(termhist_decode(b.p, b.len, &g), TD_ECORRUPT);
        b.p[k / 8] ^= (char)(1u << (k % 8));
    }
    assert_int_equal(g.n, h.n);

    /* Structural checks behind a valid CRC. */
    struct {
        size_t off;
        uint64_t val;
    } bad[] = {
        {24, h.snap_lsn + 1},          /* from_lsn beyond the snapshot */
        {24, 5},                       /* from_lsn > 0 but the first pair starts elsewhere */
        {16, h.snap_term + 1},         /* the last pair's term is not the snapshot's */
        {36, 0},                       /* term 0 */
        {36 + 8, 0},                   /* first lsn 0 */
        {36 + 16, h.v[0].term},        /* terms not ascending */
        {36 + 16 + 8, h.v[0].first_lsn}, /* lsns not ascending */
        {36 + 16 * (h.n - 1) + 8, h.snap_lsn + 1}, /* a pair beyond the snapshot */
        {8, 0},                        /* no snapshot but pairs */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct buf c;
        buf_init(&c);
        buf_append(&c, b.p, b.len);
        le_put64(c.p + bad[i].off, bad[i].val);
        fix_crc(&c);
        if (termhist_decode(c.p, c.len, &g) != TD_ECORRUPT)
            fail_msg("bad image %zu accepted", i);
        buf_free(&c);
    }
    /* A count that does not match the length. */
    le_put32(b.p + 32, (uint32_t)h.n + 1);
    fix_crc(&b);
    assert_int_equal(termhist_decode(b.p, b.len, &g), TD_ECORRUPT);
    buf_free(&b);

    /* The empty history round-trips too. */
    struct termhist e;
    termhist_init(&e);
    buf_init(&b);
    termhist_encode(&e, &b);
    assert_int_equal(termhist_decode(b.p, b.len, &g), 0);
    assert_int_equal(g.n, 0);
    assert_int_equal(g.snap_lsn, 0);
    buf_free(&b);
    termhist_free(&g);
    termhist_free(&h);
}

static void test_file_fails_safe(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp();
    struct termhist h = sample(), g;
    termhist_init(&g);
    uint64_t t;

    /* Missing: unknown below the snapshot (a data directory from before the file). */
    assert_int_equal(termhist_load(dir, 400, h.snap_term, &g), -ENOENT);
    assert_int_equal(termhist_known_lsn(&g), 400);
    assert_int_equal(termhist_term_at(&g, 400, &t), 0);
    assert_int_equal(t, h.snap_term);
    assert_int_equal(termhist_term_at(&g, 399, &t), -ENOENT);

    /* Saved and loaded for its snapshot. */
    assert_int_equal(termhist_save(dir, &h), 0);
    assert_int_equal(termhist_load(dir, 400, h.snap_term, &g), 0);
    assert_int_equal(termhist_known_lsn(&g), 0);
    check_against_log(&g);

    /* For another snapshot (a crash between a snapshot and its history, or an installed
     * snapshot): stale, unknown. */
    assert_int_equal(termhist_load(dir, 401, h.snap_term, &g), -ESTALE);
    assert_int_equal(termhist_known_lsn(&g), 401);
    assert_int_equal(termhist_load(dir, 400, h.snap_term + 1, &g), -ESTALE);
    assert_int_equal(termhist_known_lsn(&g), 400);

    /* Torn at every length, and garbage: corrupt, unknown. */
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, TERMHIST_FILE);
    size_t n;
    char *img = tu_read(path, &n);
    for (size_t k = 0; k < n; k += 7) {
        tu_write(path, img, k);
        assert_int_equal(termhist_load(dir, 400, h.snap_term, &g), TD_ECORRUPT);
        assert_int_equal(termhist_known_lsn(&g), 400);
    }
    img[n / 2] ^= 0x40;
    tu_write(path, img, n);
    assert_int_equal(termhist_load(dir, 400, h.snap_term, &g), TD_ECORRUPT);
    assert_int_equal(termhist_known_lsn(&g), 400);
    free(img);

    /* Removed: missing again; removing twice is fine. */
    assert_int_equal(termhist_remove(dir), 0);
    assert_int_equal(termhist_remove(dir), 0);
    assert_int_equal(termhist_load(dir, 400, h.snap_term, &g), -ENOENT);

    termhist_free(&g);
    termhist_free(&h);
    tu_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_advance_matches_the_log),
        cmocka_unit_test(test_advance_failures_reset_to_unknown),
        cmocka_unit_test(test_cap_drops_the_oldest),
        cmocka_unit_test(test_image),
        cmocka_unit_test(test_file_fails_safe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
