/* SPDX-License-Identifier: MIT */
/* Unit tests for store/keyspace.c and base/siphash.c: lookups during incremental rehashing in
 * both directions, the SCAN guarantee across resizes, expiry with a fake clock (lazy and active),
 * memory accounting back to zero, in-place and relocating updates, packed and table hashes,
 * glob matching, and the SipHash reference vectors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/siphash.h"
#include "store/keyspace.h"

static const uint8_t seed[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

static struct slice key_n(char *buf, size_t len, int i)
{
    int n = snprintf(buf, len, "key:%08d", i);
    return slice_of(buf, (size_t)n);
}

static void test_siphash_vectors(void **state)
{
    (void)state;
    uint8_t k[16], m[64];
    for (int i = 0; i < 16; i++)
        k[i] = (uint8_t)i;
    for (int i = 0; i < 64; i++)
        m[i] = (uint8_t)i;
    /* Reference SipHash-2-4 outputs for key 00..0f and message 00..(len-1). */
    assert_true(siphash24(k, m, 0) == 0x726fdb47dd0e0e31ULL);
    assert_true(siphash24(k, m, 15) == 0xa129ca6149be45e5ULL);
    /* The 1-3 variant differs and depends on every input byte and on the key. */
    assert_true(siphash13(k, m, 15) != siphash24(k, m, 15));
    uint64_t a = siphash13(k, m, 16);
    m[7] ^= 1;
    assert_true(siphash13(k, m, 16) != a);
    m[7] ^= 1;
    k[3] ^= 1;
    assert_true(siphash13(k, m, 16) != a);
}

static void test_basic(void **state)
{
    (void)state;
    struct keyspace *ks = keyspace_new(seed);
    assert_null(keyspace_find(ks, SLICE_LIT("a"), 0));
    struct kentry *e = keyspace_set_str(ks, SLICE_LIT("a"), SLICE_LIT("1"), KEYSPACE_NO_EXPIRE);
    assert_int_equal(kentry_type(e), KEYSPACE_STRING);
    assert_true(slice_eq(kentry_key(e), SLICE_LIT("a")));
    assert_true(slice_eq(kentry_str(e), SLICE_LIT("1")));
    assert_true(kentry_expire(e) == KEYSPACE_NO_EXPIRE);
    /* Overwrite with a long value (wide layout), then back. */
    char big[1000];
    memset(big, 'x', sizeof(big));
    e = keyspace_set_str(ks, SLICE_LIT("a"), slice_of(big, sizeof(big)), KEYSPACE_NO_EXPIRE);
    assert_int_equal(kentry_str(e).len, 1000);
    e = keyspace_find(ks, SLICE_LIT("a"), 0);
    assert_int_equal(kentry_str(e).len, 1000);
    e = keyspace_set_str(ks, SLICE_LIT("a"), SLICE_LIT("22"), KEYSPACE_NO_EXPIRE);
    assert_true(slice_eq(kentry_str(keyspace_find(ks, SLICE_LIT("a"), 0)), SLICE_LIT("22")));
    /* Append: in place, across the narrow/wide boundary, and geometric growth. */
    for (int i = 0; i < 300; i++)
        e = keyspace_append(ks, SLICE_LIT("a"), SLICE_LIT("y"));
    assert_int_equal(kentry_str(e).len, 302);
    assert_memory_equal(kentry_str(e).p, "22yyy", 5);
    assert_int_equal(keyspace_size(ks), 1);
    assert_int_equal(keyspace_del(ks, SLICE_LIT("a")), 1);
    assert_int_equal(keyspace_del(ks, SLICE_LIT("a")), 0);
    assert_int_equal(keyspace_size(ks), 0);
    keyspace_free(ks);
}

static void test_rehash_insert_delete(void **state)
{
    (void)state;
    struct keyspace *ks = keyspace_new(seed);
    char b[32];
    const int n = 20000;
    int saw_rehash = 0;
    for (int i = 0; i < n; i++) {
        keyspace_set_str(ks, key_n(b, sizeof(b), i), key_n(b, sizeof(b), i), KEYSPACE_NO_EXPIRE);
        if (keyspace_is_rehashing(ks)) {
            saw_rehash++;
            /* Every key inserted so far is found while the table is split in two. */
            if (i % 997 == 0)
                for (int j = 0; j <= i; j++)
                    assert_non_null(keyspace_find(ks, key_n(b, sizeof(b), j), 0));
        }
    }
    assert_true(saw_rehash > 0);
    assert_int_equal(keyspace_size(ks), n);
    /* Delete three quarters, shrink, and delete more while the shrink is in progress. */
    for (int i = 0; i < n; i++)
        if (i % 4 != 0)
            assert_int_equal(keyspace_del(ks, key_n(b, sizeof(b), i)), 1);
    while (keyspace_rehash(ks, 100))
        ;
    uint64_t before = keyspace_buckets(ks);
    for (int i = 0; i < n; i += 4)
        if (i % 8 == 0)
            assert_int_equal(keyspace_del(ks, key_n(b, sizeof(b), i)), 1);
    keyspace_maybe_shrink(ks);
    assert_true(keyspace_is_rehashing(ks));
    for (int i = 4; i < n; i += 8) {
        assert_non_null(keyspace_find(ks, key_n(b, sizeof(b), i), 0));
        if (i % 64 == 4)
            assert_int_equal(keyspace_del(ks, key_n(b, sizeof(b), i)), 1);
    }
    while (keyspace_rehash(ks, 10))
        ;
    assert_true(keyspace_buckets(ks) < before);
    uint64_t left = 0;
    for (int i = 0; i < n; i++) {
        struct kentry *e = keyspace_find(ks, key_n(b, sizeof(b), i), 0);
        bool want = i % 8 == 4 && i % 64 != 4;
        assert_int_equal(e != NULL, want);
        left += want;
    }
    assert_int_equal(keyspace_size(ks), left);
    keyspace_free(ks);
}

/* keyspace_reserve sizes the table once: no resize or rehash while the reserved number of keys
 * is loaded; on a table that holds keys it completes the move at once and keeps them all; it is
 * only a hint (smaller than the table: nothing changes). */
static void test_reserve(void **state)
{
    (void)state;
    struct keyspace *ks = keyspace_new(seed);
    char b[32];
    keyspace_reserve(ks, 5000);
    uint64_t buckets = keyspace_buckets(ks);
    assert_true(buckets >= 5000);
    size_t mem = keyspace_mem(ks);
    for (int i = 0; i < 5000; i++) {
        keyspace_set_str(ks, key_n(b, sizeof(b), i), key_n(b, sizeof(b), i), KEYSPACE_NO_EXPIRE);
        assert_false(keyspace_is_rehashing(ks));
    }
    assert_int_equal(keyspace_buckets(ks), buckets);
    assert_true(keyspace_mem(ks) > mem);
    keyspace_reserve(ks, 100); /* smaller: ignored */
    assert_int_equal(keyspace_buckets(ks), buckets);
    keyspace_reserve(ks, 40000); /* with keys in it: moved at once */
    assert_false(keyspace_is_rehashing(ks));
    assert_true(keyspace_buckets(ks) >= 40000);
    assert_int_equal(keyspace_size(ks), 5000);
    for (int i = 0; i < 5000; i++)
        assert_non_null(keyspace_find(ks, key_n(b, sizeof(b), i), 0));
    keyspace_free(ks);
}

/* The count comes from a snapshot (disk or a primary): a huge one is capped, never an
 * allocation the size of memory (a hint of 2^40 used to ask for 8 TiB and abort the load). */
static void test_reserve_capped(void **state)
{
    (void)state;
    struct keyspace *ks = keyspace_new(seed);
    keyspace_reserve(ks, UINT64_MAX);
    assert_true(keyspace_buckets(ks) <= KEYSPACE_RESERVE_MAX);
    assert_true(keyspace_mem(ks) <= KEYSPACE_RESERVE_MAX * sizeof(void *) + 4096);
    keyspace_reserve(ks, UINT64_C(1) << 40);
    assert_true(keyspace_buckets(ks) <= KEYSPACE_RESERVE_MAX);
    char b[32];
    keyspace_set_str(ks, key_n(b, sizeof(b), 1), key_n(b, sizeof(b), 1), KEYSPACE_NO_EXPIRE);
    assert_non_null(keyspace_find(ks, key_n(b, sizeof(b), 1), 0));
    keyspace_free(ks);
}

struct seen {
    unsigned char *hit;
    int n;
};

static int mark_seen(void *ud, const struct kentry *e)
{
    struct seen *s = ud;
    struct slice k = kentry_key(e);
    int i = (int)strtol(k.p + 4, NULL, 10);
    assert_true(i >= 0 && i < s->n);
    s->hit[i] = 1;
    return 0;
}

/* Keys present for the whole iteration are returned even when the table grows or shrinks
 * between steps. */
static void test_scan_across_resizes(void **state)
{
    (void)state;
    char b[32];
    for (int grow = 0; grow <= 1; grow++) {
        struct keyspace *ks = keyspace_new(seed);
        const int base = 3000, extra = 30000;
        for (int i = 0; i < base; i++)
            keyspace_set_str(ks, key_n(b, sizeof(b), i), SLICE_LIT("v"), KEYSPACE_NO_EXPIRE);
        if (!grow)
            for (int i = base; i < base + extra; i++)
                keyspace_set_str(ks, key_n(b, sizeof(b), i), SLICE_LIT("v"), KEYSPACE_NO_EXPIRE);
        while (keyspace_rehash(ks, 100))
            ;
        struct seen s = {calloc((size_t)(base + extra), 1), base + extra};
        uint64_t cursor = 0;
        int step = 0, next = base;
        do {
            cursor = keyspace_scan(ks, cursor, mark_seen, &s);
            step++;
            if (grow && next < base + extra) {
                for (int k = 0; k < 200; k++, next++)
                    keyspace_set_str(ks, key_n(b, sizeof(b), next), SLICE_LIT("v"),
                                     KEYSPACE_NO_EXPIRE);
            } else if (!grow && step % 3 == 0) {
                for (int k = 0; k < 300 && next < base + extra; k++, next++)
                    keyspace_del(ks, key_n(b, sizeof(b), next));
                keyspace_maybe_shrink(ks);
                keyspace_rehash(ks, 3);
            }
        } while (cursor != 0);
        for (int i = 0; i < base; i++)
            assert_int_equal(s.hit[i], 1);
        free(s.hit);
        keyspace_free(ks);
    }
}

struct expired_log {
    int n;
    char last[32];
};

static void on_expired(void *ud, struct slice key)
{
    struct expired_log *l = ud;
    l->n++;
    snprintf(l->last, sizeof(l->last), "%.*s", (int)key.len, key.p);
}

static void test_expiry_fake_clock(void **state)
{
    (void)state;
    struct keyspace *ks = keyspace_new(seed);
    struct expired_log log = {0, ""};
    keyspace_set_expired_hook(ks, on_expired, &log);
    keyspace_set_str(ks, SLICE_LIT("t"), SLICE_LIT("v"), 1000);
    assert_int_equal(keyspace_expires(ks), 1);
    /* Alive up to and including its time, as in Redis (expired when now > when). */
    assert_non_null(keyspace_find(ks, SLICE_LIT("t"), 999));
    assert_non_null(keyspace_find(ks, SLICE_LIT("t"), 1000));
    /* now 0: replay mode, never expires. */
    assert_non_null(keyspace_find(ks, SLICE_LIT("t"), 0));
    assert_null(keyspace_find(ks, SLICE_LIT("t"), 1001));
    assert_int_equal(log.n, 1);
    assert_string_equal(log.last, "t");
    assert_int_equal(keyspace_expires(ks), 0);
    assert_int_equal(keyspace_size(ks), 0);
    /* Set, keep and remove TTLs. */
    keyspace_set_str(ks, SLICE_LIT("k"), SLICE_LIT("v"), 5000);
    keyspace_set_str(ks, SLICE_LIT("k"), SLICE_LIT("w"), KEYSPACE_KEEP_TTL);
    assert_true(kentry_expire(keyspace_find(ks, SLICE_LIT("k"), 1)) == 5000);
    keyspace_set_str(ks, SLICE_LIT("k"), SLICE_LIT("w"), KEYSPACE_NO_EXPIRE);
    assert_true(kentry_expire(keyspace_find(ks, SLICE_LIT("k"), 1)) == KEYSPACE_NO_EXPIRE);
    assert_int_equal(keyspace_expires(ks), 0);
    assert_true(keyspace_set_expire(ks, SLICE_LIT("k"), 7000));
    assert_int_equal(keyspace_expires(ks), 1);
    assert_true(keyspace_set_expire(ks, SLICE_LIT("k"), 8000));
    assert_true(kentry_expire(keyspace_find(ks, SLICE_LIT("k"), 1)) == 8000);
    assert_true(keyspace_set_expire(ks, SLICE_LIT("k"), KEYSPACE_NO_EXPIRE));
    assert_int_equal(keyspace_expires(ks), 0);
    assert_false(keyspace_set_expire(ks, SLICE_LIT("missing"), 1));
    keyspace_del(ks, SLICE_LIT("k"));
    /* Active expiry: 1000 keys, half with a TTL at 100; a sweep at 101 removes exactly them. */
    char b[32];
    for (int i = 0; i < 1000; i++)
        keyspace_set_str(ks, key_n(b, sizeof(b), i), SLICE_LIT("v"),
                         i % 2 ? 100 : KEYSPACE_NO_EXPIRE);
    assert_int_equal(keyspace_expires(ks), 500);
    log.n = 0;
    bool wrapped;
    assert_int_equal(keyspace_expire_cycle(ks, 100, 1u << 20, &wrapped), 0);
    uint64_t removed = 0;
    for (int round = 0; round < 1000 && keyspace_expires(ks) > 0; round++)
        removed += keyspace_expire_cycle(ks, 101, 16, &wrapped);
    assert_int_equal(removed, 500);
    assert_int_equal(log.n, 500);
    assert_int_equal(keyspace_size(ks), 500);
    assert_int_equal(keyspace_expired_total(ks), 501);
    keyspace_free(ks);
}

static void test_memory_accounting(void **state)
{
    (void)state;
    struct keyspace *ks = keyspace_new(seed);
    assert_int_equal(keyspace_mem(ks), 0);
    char b[32], v[200];
    memset(v, 'v', sizeof(v));
    for (int i = 0; i < 5000; i++) {
        keyspace_set_str(ks, key_n(b, sizeof(b), i), slice_of(v, (size_t)(i % 200)),
                         i % 3 ? KEYSPACE_NO_EXPIRE : 5);
        if (i % 7 == 0)
            keyspace_append(ks, key_n(b, sizeof(b), i), slice_of(v, 100));
        if (i % 11 == 0)
            keyspace_set_expire(ks, key_n(b, sizeof(b), i), 77);
    }
    for (int i = 0; i < 50; i++) {
        struct kentry *e = keyspace_add_hash(ks, key_n(b, sizeof(b), 100000 + i));
        for (int f = 0; f < i * 5; f++)
            khash_set(ks, kentry_hash(e), key_n(b, sizeof(b), f), slice_of(v, (size_t)(f % 90)));
    }
    size_t mem = keyspace_mem(ks);
    /* At least the bytes stored (keys of 12 bytes and values) and the table. */
    assert_true(mem > 5000 * (12 + 99) + keyspace_buckets(ks) * 8);
    for (int i = 0; i < 5000; i++)
        keyspace_del(ks, key_n(b, sizeof(b), i));
    for (int i = 0; i < 50; i += 2)
        keyspace_del(ks, key_n(b, sizeof(b), 100000 + i));
    assert_true(keyspace_mem(ks) < mem);
    keyspace_flush(ks);
    assert_int_equal(keyspace_mem(ks), 0);
    assert_int_equal(keyspace_size(ks), 0);
    assert_int_equal(keyspace_expires(ks), 0);
    keyspace_free(ks);
}

struct collect {
    char buf[4096];
    size_t len;
    int n;
};

static void collect_field(void *ud, struct slice f, struct slice v)
{
    struct collect *c = ud;
    c->len += (size_t)snprintf(c->buf + c->len, sizeof(c->buf) - c->len, "%.*s=%.*s,", (int)f.len,
                               f.p, (int)v.len, v.p);
    c->n++;
}

static void test_hashes(void **state)
{
    (void)state;
    struct keyspace *ks = keyspace_new(seed);
    struct kentry *e = keyspace_add_hash(ks, SLICE_LIT("h"));
    struct khash *h = kentry_hash(e);
    assert_int_equal(kentry_type(e), KEYSPACE_HASH);
    assert_int_equal(khash_set(ks, h, SLICE_LIT("b"), SLICE_LIT("1")), 1);
    assert_int_equal(khash_set(ks, h, SLICE_LIT("a"), SLICE_LIT("2")), 1);
    assert_int_equal(khash_set(ks, h, SLICE_LIT("b"), SLICE_LIT("333")), 0);
    assert_int_equal(khash_set(ks, h, SLICE_LIT("c"), SLICE_LIT("")), 1);
    struct collect c = {"", 0, 0};
    khash_foreach(h, collect_field, &c);
    /* Packed hashes keep insertion order, as Redis's listpack does. */
    assert_string_equal(c.buf, "b=333,a=2,c=,");
    assert_true(khash_del(ks, h, SLICE_LIT("a")));
    assert_false(khash_del(ks, h, SLICE_LIT("a")));
    struct slice v;
    assert_true(khash_get(ks, h, SLICE_LIT("b"), &v) && slice_eq(v, SLICE_LIT("333")));
    assert_false(khash_get(ks, h, SLICE_LIT("a"), &v));
    assert_true(khash_is_packed(h));
    /* A long value converts to a table; everything stays readable. */
    char big[100];
    memset(big, 'z', sizeof(big));
    assert_int_equal(khash_set(ks, h, SLICE_LIT("big"), slice_of(big, sizeof(big))), 1);
    assert_false(khash_is_packed(h));
    assert_int_equal(khash_len(h), 3);
    assert_true(khash_get(ks, h, SLICE_LIT("b"), &v) && slice_eq(v, SLICE_LIT("333")));
    assert_true(khash_get(ks, h, SLICE_LIT("big"), &v) && v.len == 100);
    /* Many fields: a second hash converts by count, at 129. */
    struct khash *h2 = kentry_hash(keyspace_add_hash(ks, SLICE_LIT("h2")));
    char f[32];
    for (int i = 0; i < KEYSPACE_HASH_PACKED_ENTRIES; i++)
        khash_set(ks, h2, key_n(f, sizeof(f), i), SLICE_LIT("x"));
    assert_true(khash_is_packed(h2));
    khash_set(ks, h2, SLICE_LIT("one-more"), SLICE_LIT("x"));
    assert_false(khash_is_packed(h2));
    for (int i = 0; i < 2000; i++)
        khash_set(ks, h2, key_n(f, sizeof(f), i), SLICE_LIT("y"));
    assert_int_equal(khash_len(h2), 2001);
    for (int i = 0; i < 2000; i += 2)
        assert_true(khash_del(ks, h2, key_n(f, sizeof(f), i)));
    for (int i = 0; i < 2000; i++)
        assert_int_equal(khash_get(ks, h2, key_n(f, sizeof(f), i), &v), i % 2 == 1);
    /* Moving a hash entry to add a TTL keeps its contents. */
    assert_true(keyspace_set_expire(ks, SLICE_LIT("h2"), 123));
    h2 = kentry_hash(keyspace_find(ks, SLICE_LIT("h2"), 0));
    assert_int_equal(khash_len(h2), 1001);
    keyspace_flush(ks);
    assert_int_equal(keyspace_mem(ks), 0);
    keyspace_free(ks);
}

static bool gm(const char *p, const char *s)
{
    return keyspace_glob_match(slice_cstr(p), slice_cstr(s), false);
}

static void test_glob(void **state)
{
    (void)state;
    assert_true(gm("*", ""));
    assert_true(gm("*", "abc"));
    assert_true(gm("a*c", "abbbc"));
    assert_false(gm("a*c", "abbbd"));
    assert_true(gm("h?llo", "hello"));
    assert_false(gm("h?llo", "hllo"));
    assert_true(gm("h[ae]llo", "hallo"));
    assert_false(gm("h[ae]llo", "hillo"));
    assert_true(gm("h[^e]llo", "hallo"));
    assert_false(gm("h[^e]llo", "hello"));
    assert_true(gm("h[a-b]llo", "hbllo"));
    assert_true(gm("h[b-a]llo", "hallo"));
    assert_true(gm("h\\*llo", "h*llo"));
    assert_false(gm("h\\*llo", "hallo"));
    assert_true(gm("*a*b*c*", "xxaxxbxxcxx"));
    assert_false(gm("*a*b*c*", "xxaxxcxxbxx"));
    assert_true(gm("user:*:name", "user:42:name"));
    assert_true(gm("[abc", "a"));
    assert_true(keyspace_glob_match(SLICE_LIT("HELLO*"), SLICE_LIT("hello world"), true));
    assert_false(gm("HELLO*", "hello world"));
    /* Pathological pattern stays fast (no exponential backtracking). */
    char s[4001], p[64];
    memset(s, 'a', 4000);
    s[4000] = '\0';
    snprintf(p, sizeof(p), "*a*a*a*a*a*a*a*a*a*b");
    assert_false(gm(p, s));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_siphash_vectors),
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_rehash_insert_delete),
        cmocka_unit_test(test_reserve),
        cmocka_unit_test(test_reserve_capped),
        cmocka_unit_test(test_scan_across_resizes),
        cmocka_unit_test(test_expiry_fake_clock),
        cmocka_unit_test(test_memory_accounting),
        cmocka_unit_test(test_hashes),
        cmocka_unit_test(test_glob),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
