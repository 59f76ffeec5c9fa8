/* SPDX-License-Identifier: MIT */
/* Unit tests for store/watch.c: watching, touching and clearing keys, idempotent WATCH, many
 * keys and watchers (the table grows and everything stays reachable), touching keys nobody
 * watches, FLUSHALL's touch_all, and that a cleared watcher leaves nothing behind (ASan). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/watch.h"

static const uint8_t seed[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

static void test_add_touch_clear(void **state)
{
    (void)state;
    struct watch *t = watch_new(seed);
    struct watcher a = {0}, b = {0};
    watch_add(t, &a, SLICE_LIT("x"));
    watch_add(t, &a, SLICE_LIT("y"));
    watch_add(t, &b, SLICE_LIT("y"));
    assert_int_equal(watch_keys(t), 2);
    watch_touch(t, SLICE_LIT("z")); /* nobody watches z */
    assert_false(a.dirty);
    assert_false(b.dirty);
    watch_touch(t, SLICE_LIT("x"));
    assert_true(a.dirty);
    assert_false(b.dirty);
    watch_touch(t, SLICE_LIT("y"));
    assert_true(b.dirty);
    watch_clear(&a);
    assert_false(a.dirty);
    assert_null(a.table);
    assert_int_equal(watch_keys(t), 1); /* x went with a; y stays for b */
    b.dirty = false;
    watch_touch(t, SLICE_LIT("x"));
    assert_false(b.dirty);
    watch_clear(&b);
    assert_int_equal(watch_keys(t), 0);
    watch_clear(&b); /* nothing watched: a no-op */
    watch_touch(t, SLICE_LIT("y"));
    assert_false(b.dirty);
    watch_free(t);
}

static void test_idempotent_and_binary_keys(void **state)
{
    (void)state;
    struct watch *t = watch_new(seed);
    struct watcher a = {0};
    for (int i = 0; i < 3; i++)
        watch_add(t, &a, SLICE_LIT("k"));
    watch_add(t, &a, slice_of("a\0b", 3));
    watch_add(t, &a, slice_of("", 0));
    assert_int_equal(a.nlinks, 3);
    assert_int_equal(watch_keys(t), 3);
    watch_touch(t, slice_of("a\0c", 3));
    assert_false(a.dirty);
    watch_touch(t, slice_of("a", 1));
    assert_false(a.dirty);
    watch_touch(t, slice_of("", 0));
    assert_true(a.dirty);
    watch_clear(&a);
    assert_int_equal(watch_keys(t), 0);
    watch_free(t);
}

static void test_many_keys_and_watchers(void **state)
{
    (void)state;
    enum { NW = 50, NK = 2000 };
    struct watch *t = watch_new(seed);
    struct watcher *w = calloc(NW, sizeof(*w));
    char key[32];
    /* Watcher i watches every key k with k % NW == i, plus the shared key "hot". */
    for (int k = 0; k < NK; k++) {
        int n = snprintf(key, sizeof(key), "key:%d", k);
        watch_add(t, &w[k % NW], slice_of(key, (size_t)n));
    }
    for (int i = 0; i < NW; i++)
        watch_add(t, &w[i], SLICE_LIT("hot"));
    assert_int_equal(watch_keys(t), NK + 1);
    assert_true(watch_buckets(t) >= NK);
    for (int k = 0; k < NK; k += 7) {
        int n = snprintf(key, sizeof(key), "key:%d", k);
        watch_touch(t, slice_of(key, (size_t)n));
    }
    for (int i = 0; i < NW; i++) {
        bool expect = false;
        for (int k = i; k < NK; k += NW)
            expect = expect || k % 7 == 0;
        assert_int_equal(w[i].dirty, expect);
    }
    for (int i = 0; i < NW; i++)
        w[i].dirty = false;
    watch_touch(t, SLICE_LIT("hot"));
    for (int i = 0; i < NW; i++)
        assert_true(w[i].dirty);
    for (int i = 0; i < NW; i += 2)
        watch_clear(&w[i]);
    assert_int_equal(watch_keys(t), NK / 2 + 1);
    for (int i = 1; i < NW; i += 2)
        watch_clear(&w[i]);
    assert_int_equal(watch_keys(t), 0);
    /* The grown table is given back once empty, and works again. */
    assert_int_equal(watch_buckets(t), 0);
    watch_add(t, &w[0], SLICE_LIT("again"));
    watch_touch(t, SLICE_LIT("again"));
    assert_true(w[0].dirty);
    watch_clear(&w[0]);
    free(w);
    watch_free(t);
}

static void test_touch_all(void **state)
{
    (void)state;
    struct watch *t = watch_new(seed);
    struct watcher a = {0}, b = {0}, c = {0};
    watch_touch_all(t); /* empty table */
    watch_add(t, &a, SLICE_LIT("x"));
    watch_add(t, &b, SLICE_LIT("y"));
    watch_touch_all(t);
    assert_true(a.dirty);
    assert_true(b.dirty);
    assert_false(c.dirty); /* watches nothing */
    watch_clear(&a);
    watch_clear(&b);
    watch_free(t);
}

static bool is_y(void *ud, struct slice key)
{
    (*(int *)ud)++;
    return slice_eq(key, SLICE_LIT("y"));
}

static void test_touch_if(void **state)
{
    (void)state;
    struct watch *t = watch_new(seed);
    struct watcher a = {0}, b = {0};
    int calls = 0;
    watch_touch_if(t, is_y, &calls);
    assert_int_equal(calls, 0);
    watch_add(t, &a, SLICE_LIT("x"));
    watch_add(t, &b, SLICE_LIT("y"));
    watch_add(t, &b, SLICE_LIT("x"));
    watch_touch_if(t, is_y, &calls);
    assert_int_equal(calls, 2); /* once per watched key */
    assert_false(a.dirty);
    assert_true(b.dirty);
    watch_clear(&a);
    watch_clear(&b);
    watch_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_touch_clear),
        cmocka_unit_test(test_idempotent_and_binary_keys),
        cmocka_unit_test(test_many_keys_and_watchers),
        cmocka_unit_test(test_touch_all),
        cmocka_unit_test(test_touch_if),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
