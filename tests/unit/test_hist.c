/* SPDX-License-Identifier: MIT */
/* Unit tests for harness/hist.c: bucket layout, bounded relative error, percentiles, merge. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>

#include "harness/hist.h"

static struct hist *new_hist(void)
{
    struct hist *h = malloc(sizeof(*h));
    assert_non_null(h);
    hist_init(h);
    return h;
}

static void test_small_values_exact(void **state)
{
    (void)state;
    for (uint64_t v = 0; v < HIST_SUB_COUNT; v++) {
        assert_int_equal(hist_bucket_of(v), v);
        assert_int_equal(hist_bucket_high(hist_bucket_of(v)), v);
    }
}

static void test_buckets_cover_and_bound_error(void **state)
{
    (void)state;
    /* every value lies in its bucket, buckets are monotonic and contiguous, and the bucket's
     * upper bound exceeds the value by less than 1/HIST_SUB_COUNT of it */
    unsigned prev = 0;
    for (uint64_t v = 1; v < ((uint64_t)1 << 24); v = v + 1 + v / 97) {
        unsigned b = hist_bucket_of(v);
        assert_true(b >= prev);
        assert_true(b < HIST_NBUCKETS);
        uint64_t hi = hist_bucket_high(b);
        assert_true(hi >= v);
        assert_true((double)(hi - v) <= (double)v / HIST_SUB_COUNT);
        if (b > 0)
            assert_true(hist_bucket_high(b - 1) < v);
        prev = b;
    }
    /* powers of two start new sub-bucket groups */
    assert_int_equal(hist_bucket_of(128), 128);
    assert_int_equal(hist_bucket_of(255), 255);
    assert_int_equal(hist_bucket_of(256), 256);
    assert_int_equal(hist_bucket_of(257), 256);
    assert_int_equal(hist_bucket_high(256), 257);
    /* huge values are clamped into the last bucket */
    assert_int_equal(hist_bucket_of(UINT64_MAX), HIST_NBUCKETS - 1);
    assert_int_equal(hist_bucket_of((uint64_t)1 << 40), HIST_NBUCKETS - 1);
}

static void test_percentiles(void **state)
{
    (void)state;
    struct hist *h = new_hist();
    assert_int_equal(hist_percentile(h, 50), 0);
    assert_true(hist_mean(h) == 0.0);
    /* 1..1000 microseconds, once each */
    for (uint64_t v = 1; v <= 1000; v++)
        hist_record(h, v);
    assert_int_equal(h->count, 1000);
    assert_int_equal(h->min, 1);
    assert_int_equal(h->max, 1000);
    uint64_t p50 = hist_percentile(h, 50);
    uint64_t p99 = hist_percentile(h, 99);
    assert_true(p50 >= 500 && p50 <= 500 + 500 / HIST_SUB_COUNT);
    assert_true(p99 >= 990 && p99 <= 990 + 990 / HIST_SUB_COUNT);
    assert_int_equal(hist_percentile(h, 100), 1000);
    assert_int_equal(hist_percentile(h, 0), 1);
    assert_true(hist_mean(h) > 500.49 && hist_mean(h) < 500.51);
    free(h);
}

static void test_percentile_skewed(void **state)
{
    (void)state;
    struct hist *h = new_hist();
    /* 99 fast requests and one slow one: p50 and p99 stay fast, max is the slow one */
    for (int i = 0; i < 99; i++)
        hist_record(h, 200);
    hist_record(h, 2000000);
    assert_int_equal(hist_percentile(h, 50), 200);
    assert_int_equal(hist_percentile(h, 99), 200);
    assert_int_equal(hist_percentile(h, 99.5), 2000000);
    assert_int_equal(hist_percentile(h, 100), 2000000);
    free(h);
}

static void test_single_value_clamped(void **state)
{
    (void)state;
    struct hist *h = new_hist();
    hist_record(h, 1000); /* bucket spans 1000..1003: the report must not exceed max */
    assert_int_equal(hist_percentile(h, 50), 1000);
    assert_int_equal(hist_percentile(h, 99), 1000);
    free(h);
}

static void test_merge(void **state)
{
    (void)state;
    struct hist *a = new_hist(), *b = new_hist(), *all = new_hist();
    for (uint64_t v = 10; v < 5000; v += 7) {
        hist_record(v % 2 ? a : b, v);
        hist_record(all, v);
    }
    struct hist *m = new_hist();
    hist_merge(m, a);
    hist_merge(m, b);
    struct hist *empty = new_hist();
    hist_merge(m, empty); /* merging an empty histogram changes nothing */
    free(empty);
    assert_int_equal(m->count, all->count);
    assert_int_equal(m->min, all->min);
    assert_int_equal(m->max, all->max);
    assert_int_equal(m->sum, all->sum);
    for (double q = 1; q <= 100; q += 7)
        assert_int_equal(hist_percentile(m, q), hist_percentile(all, q));
    free(a);
    free(b);
    free(all);
    free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_small_values_exact),
        cmocka_unit_test(test_buckets_cover_and_bound_error),
        cmocka_unit_test(test_percentiles),
        cmocka_unit_test(test_percentile_skewed),
        cmocka_unit_test(test_single_value_clamped),
        cmocka_unit_test(test_merge),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
