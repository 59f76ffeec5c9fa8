/* SPDX-License-Identifier: MIT */
/* Unit tests for coord/arbiter_core.c: revisions, transactions (compare then write, atomic),
 * leases (ids, TTL, keepalive, revoke and expiry deleting keys, ENOLEASE), reads by prefix,
 * limits, and the state file (round trip, full TTL on load, monotonic revisions, corruption
 * refused). A fake clock: every call takes now_ms. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/crc32c.h"
#include "base/err.h"
#include "coord/arbiter_core.h"

static struct dcs_put put(const char *k, const char *v, uint64_t lease)
{
    return (struct dcs_put){slice_cstr(k), slice_cstr(v), lease, false};
}

static struct dcs_put del(const char *k)
{
    return (struct dcs_put){slice_cstr(k), {NULL, 0}, 0, true};
}

static struct dcs_cmp cmp(const char *k, uint64_t rev)
{
    return (struct dcs_cmp){slice_cstr(k), rev};
}

/* Value of k, or NULL when absent (static buffer). */
static const char *val(const struct arbiter_core *c, const char *k)
{
    static char b[256];
    struct dcs_kv kv;
    if (!arbiter_core_get(c, slice_cstr(k), &kv))
        return NULL;
    memcpy(b, kv.value.p, kv.value.len);
    b[kv.value.len] = '\0';
    return b;
}

static uint64_t modrev(const struct arbiter_core *c, const char *k)
{
    struct dcs_kv kv;
    return arbiter_core_get(c, slice_cstr(k), &kv) ? kv.rev : 0;
}

struct changes {
    int n;
    uint64_t last_rev;
    char last_key[64];
};

static void on_change(void *ud, struct slice key, uint64_t rev)
{
    struct changes *ch = ud;
    ch->n++;
    ch->last_rev = rev;
    snprintf(ch->last_key, sizeof(ch->last_key), "%.*s", (int)key.len, key.p);
}

static void test_txn_put_bumps_one_revision(void **state)
{
    (void)state;
    struct arbiter_core *c = arbiter_core_new(NULL);
    struct changes ch = {0};
    arbiter_core_set_hook(c, on_change, &ch);
    assert_int_equal(arbiter_core_rev(c), 0);
    struct dcs_put p[2] = {put("/a", "1", 0), put("/b", "2", 0)};
    uint64_t rev = 0;
    assert_int_equal(arbiter_core_txn(c, 0, NULL, 0, p, 2, &rev), 0);
    assert_int_equal(rev, 1);
    assert_int_equal(arbiter_core_rev(c), 1);
    assert_int_equal(modrev(c, "/a"), 1);
    assert_int_equal(modrev(c, "/b"), 1);
    assert_int_equal(ch.n, 2);
    assert_int_equal(ch.last_rev, 1);
    /* Overwrite one key: only it moves. */
    p[0] = put("/a", "3", 0);
    assert_int_equal(arbiter_core_txn(c, 0, NULL, 0, p, 1, &rev), 0);
    assert_int_equal(rev, 2);
    assert_int_equal(modrev(c, "/a"), 2);
    assert_int_equal(modrev(c, "/b"), 1);
    assert_string_equal(val(c, "/a"), "3");
    /* Deleting an absent key changes nothing and bumps nothing. */
    p[0] = del("/zz");
    assert_int_equal(arbiter_core_txn(c, 0, NULL, 0, p, 1, &rev), 0);
    assert_int_equal(rev, 2);
    assert_int_equal(ch.n, 3);
    /* Delete a present key. */
    p[0] = del("/b");
    assert_int_equal(arbiter_core_txn(c, 0, NULL, 0, p, 1, &rev), 0);
    assert_int_equal(rev, 3);
    assert_null(val(c, "/b"));
    assert_string_equal(ch.last_key, "/b");
    arbiter_core_free(c);
}

static void test_txn_compare(void **state)
{
    (void)state;
    struct arbiter_core *c = arbiter_core_new(NULL);
    uint64_t rev = 0;
    /* rev 0 means absent: create-if-absent succeeds once. */
    struct dcs_cmp k0 = cmp("/leader", 0);
    struct dcs_put p = put("/leader", "db1", 0);
    assert_int_equal(arbiter_core_txn(c, 0, &k0, 1, &p, 1, &rev), 0);
    assert_int_equal(rev, 1);
    p = put("/leader", "db2", 0);
    assert_int_equal(arbiter_core_txn(c, 0, &k0, 1, &p, 1, &rev), DCS_ECOMPARE);
    assert_int_equal(rev, 1);
    assert_string_equal(val(c, "/leader"), "db1");
    /* Compare on the mod revision. */
    struct dcs_cmp k1 = cmp("/leader", 1);
    assert_int_equal(arbiter_core_txn(c, 0, &k1, 1, &p, 1, &rev), 0);
    assert_int_equal(rev, 2);
    assert_string_equal(val(c, "/leader"), "db2");
    assert_int_equal(arbiter_core_txn(c, 0, &k1, 1, &p, 1, &rev), DCS_ECOMPARE);
    arbiter_core_free(c);
}

static void test_txn_atomic(void **state)
{
    (void)state;
    struct arbiter_core *c = arbiter_core_new(NULL);
    uint64_t rev = 0;
    struct dcs_put p0 = put("/term", "1", 0);
    assert_int_equal(arbiter_core_txn(c, 0, NULL, 0, &p0, 1, &rev), 0);
    /* Two compares, the second fails: no write at all. */
    struct dcs_cmp k[2] = {cmp("/term", 1), cmp("/leader", 5)};
    struct dcs_put p[2] = {put("/term", "2", 0), put("/leader", "x", 0)};
    assert_int_equal(arbiter_core_txn(c, 0, k, 2, p, 2, &rev), DCS_ECOMPARE);
    assert_string_equal(val(c, "/term"), "1");
    assert_null(val(c, "/leader"));
    assert_int_equal(arbiter_core_rev(c), 1);
    /* A put on an unknown lease fails the whole txn, earlier puts included. */
    k[1] = cmp("/leader", 0);
    p[1] = put("/leader", "x", 99);
    assert_int_equal(arbiter_core_txn(c, 0, k, 2, p, 2, &rev), DCS_ENOLEASE);
    assert_string_equal(val(c, "/term"), "1");
    assert_null(val(c, "/leader"));
    assert_int_equal(arbiter_core_rev(c), 1);
    /* A duplicate key in one transaction is refused. */
    p[1] = put("/term", "3", 0);
    assert_int_equal(arbiter_core_txn(c, 0, NULL, 0, p, 2, &rev), -EINVAL);
    /* Empty key refused. */
    struct dcs_put e = put("", "v", 0);
    assert_int_equal(arbiter_core_txn(c, 0, NULL, 0, &e, 1, &rev), -EINVAL);
    assert_string_equal(val(c, "/term"), "1");
    /* Compares only: succeeds without a write. */
    k[1] = cmp("/leader", 0);
    assert_int_equal(arbiter_core_txn(c, 0, k, 2, NULL, 0, &rev), 0);
    assert_int_equal(rev, 1);
    arbiter_core_free(c);
}

static void test_lease_ids_and_keepalive(void **state)
{
    (void)state;
    struct arbiter_core *c = arbiter_core_new(NULL);
    uint64_t a, b, ttl;
    assert_int_equal(arbiter_core_grant(c, 1000, 0, &a), -EINVAL);
    assert_int_equal(arbiter_core_grant(c, 1000, 2000, &a), 0);
    assert_int_equal(arbiter_core_grant(c, 1000, 2000, &b), 0);
    assert_true(a != 0 && b != 0 && a != b);
    assert_int_equal(arbiter_core_rev(c), 0); /* grants write no key */
    assert_int_equal(arbiter_core_next_expiry(c), 3000);
    /* Keepalive restarts the TTL from now. */
    assert_int_equal(arbiter_core_keepalive(c, 2500, a, &ttl), 0);
    assert_int_equal(ttl, 2000);
    uint64_t rem;
    assert_int_equal(arbiter_core_lease_ttl(c, 2600, a, &rem), 0);
    assert_int_equal(rem, 1900);
    assert_int_equal(arbiter_core_next_expiry(c), 3000); /* b */
    /* Exactly at the instant the lease is gone, even before expire() collects it. */
    assert_int_equal(arbiter_core_keepalive(c, 3000, b, &ttl), DCS_ENOLEASE);
    assert_int_equal(arbiter_core_keepalive(c, 2999, 77, &ttl), DCS_ENOLEASE);
    assert_int_equal(arbiter_core_keepalive(c, 2999, 0, &ttl), DCS_ENOLEASE);
    /* Revoked ids are never handed out again. */
    assert_int_equal(arbiter_core_revoke(c, 2600, a), 0);
    assert_int_equal(arbiter_core_revoke(c, 2600, a), DCS_ENOLEASE);
    assert_int_equal(arbiter_core_keepalive(c, 2600, a, &ttl), DCS_ENOLEASE);
    uint64_t d;
    assert_int_equal(arbiter_core_grant(c, 2600, 100, &d), 0);
    assert_true(d > b);
    arbiter_core_free(c);
}

static void test_expiry_deletes_keys(void **state)
{
    (void)state;
    struct arbiter_core *c = arbiter_core_new(NULL);
    struct changes ch = {0};
    arbiter_core_set_hook(c, on_change, &ch);
    uint64_t l1, l2, rev;
    assert_int_equal(arbiter_core_grant(c, 0, 1000, &l1), 0);
    assert_int_equal(arbiter_core_grant(c, 0, 5000, &l2), 0);
    struct dcs_put p[3] = {put("/leader", "db1", l1), put("/members/db1", "x", l1),
                           put("/members/db2", "y", l2)};
    assert_int_equal(arbiter_core_txn(c, 0, NULL, 0, p, 3, &rev), 0);
    struct dcs_put t = put("/term", "7", 0);
    assert_int_equal(arbiter_core_txn(c, 0, NULL, 0, &t, 1, &rev), 0);
    assert_int_equal(rev, 2);
    /* Not yet. */
    assert_int_equal(arbiter_core_expire(c, 999, NULL, NULL), 0);
    assert_int_equal(arbiter_core_nkeys(c), 4);
    /* l1 expires: both its keys go, at one new revision. */
    ch.n = 0;
    assert_int_equal(arbiter_core_expire(c, 1000, NULL, NULL), 1);
    assert_int_equal(arbiter_core_rev(c), 3);
    assert_int_equal(ch.n, 2);
    assert_int_equal(ch.last_rev, 3);
    assert_null(val(c, "/leader"));
    assert_null(val(c, "/members/db1"));
    assert_string_equal(val(c, "/members/db2"), "y");
    assert_string_equal(val(c, "/term"), "7");
    assert_int_equal(arbiter_core_nleases(c), 1);
    assert_int_equal(arbiter_core_next_expiry(c), 5000);
    /* A put on an expired lease: ENOLEASE. */
    struct dcs_put q = put("/leader", "db1", l1);
    assert_int_equal(arbiter_core_txn(c, 1000, NULL, 0, &q, 1, &rev), DCS_ENOLEASE);
    /* Re-putting a key with lease 0 detaches it: it survives its old lease. */
    q = put("/members/db2", "z", 0);
    assert_int_equal(arbiter_core_txn(c, 1000, NULL, 0, &q, 1, &rev), 0);
    assert_int_equal(arbiter_core_expire(c, 5000, NULL, NULL), 1);
    assert_string_equal(val(c, "/members/db2"), "z");
    assert_int_equal(arbiter_core_rev(c), 4); /* a lease without keys expires silently */
    assert_int_equal(arbiter_core_next_expiry(c), UINT64_MAX);
    arbiter_core_free(c);
}

static void test_revoke_deletes_keys(void **state)
{
    (void)state;
    struct arbiter_core *c = arbiter_core_new(NULL);
    uint64_t l, rev;
    assert_int_equal(arbiter_core_grant(c, 0, 1000, &l), 0);
    struct dcs_put p = put("/leader", "db1", l);
    assert_int_equal(arbiter_core_txn(c, 0, NULL, 0, &p, 1, &rev), 0);
    assert_int_equal(arbiter_core_revoke(c, 10, l), 0);
    assert_null(val(c, "/leader"));
    assert_int_equal(arbiter_core_rev(c), 2);
    arbiter_core_free(c);
}

static void test_range(void **state)
{
    (void)state;
    struct arbiter_core *c = arbiter_core_new(NULL);
    uint64_t rev;
    struct dcs_put p[4] = {put("/t/a/x", "1", 0), put("/t/b", "2", 0), put("/t/a", "3", 0),
                           put("/u", "4", 0)};
    assert_int_equal(arbiter_core_txn(c, 0, NULL, 0, p, 4, &rev), 0);
    size_t first;
    assert_int_equal(arbiter_core_range(c, slice_cstr("/t/a"), &first), 2);
    struct dcs_kv kv;
    arbiter_core_at(c, first, &kv);
    assert_true(slice_eq(kv.key, slice_cstr("/t/a")));
    arbiter_core_at(c, first + 1, &kv);
    assert_true(slice_eq(kv.key, slice_cstr("/t/a/x")));
    assert_int_equal(arbiter_core_range(c, slice_cstr("/t/"), &first), 3);
    assert_int_equal(arbiter_core_range(c, slice_cstr(""), &first), 4);
    assert_int_equal(first, 0);
    assert_int_equal(arbiter_core_range(c, slice_cstr("/v"), &first), 0);
    arbiter_core_free(c);
}

static void test_limits(void **state)
{
    (void)state;
    struct arbiter_limits lim;
    arbiter_limits_defaults(&lim);
    lim.max_keys = 2;
    lim.max_key_bytes = 8;
    lim.max_value_bytes = 4;
    lim.max_leases = 1;
    lim.max_txn_ops = 3;
    lim.max_ttl_ms = 10000;
    struct arbiter_core *c = arbiter_core_new(&lim);
    uint64_t rev, l;
    struct dcs_put p[4] = {put("/a", "1", 0), put("/b", "2", 0), put("/c", "3", 0),
                           put("/d", "4", 0)};
    assert_int_equal(arbiter_core_txn(c, 0, NULL, 0, p, 4, &rev), TD_ETOO_BIG);
    assert_int_equal(arbiter_core_txn(c, 0, NULL, 0, p, 3, &rev), TD_ETOO_BIG);
    assert_int_equal(arbiter_core_nkeys(c), 0);
    assert_int_equal(arbiter_core_txn(c, 0, NULL, 0, p, 2, &rev), 0);
    /* Replace one and delete one in the same txn: stays within the limit. */
    struct dcs_put q[2] = {del("/a"), put("/c", "3", 0)};
    assert_int_equal(arbiter_core_txn(c, 0, NULL, 0, q, 2, &rev), 0);
    struct dcs_put big = put("/a", "12345", 0);
    assert_int_equal(arbiter_core_txn(c, 0, NULL, 0, &big, 1, &rev), TD_ETOO_BIG);
    struct dcs_put longkey = put("/123456789", "1", 0);
    assert_int_equal(arbiter_core_txn(c, 0, NULL, 0, &longkey, 1, &rev), TD_ETOO_BIG);
    assert_int_equal(arbiter_core_grant(c, 0, 10001, &l), -EINVAL);
    assert_int_equal(arbiter_core_grant(c, 0, 100, &l), 0);
    assert_int_equal(arbiter_core_grant(c, 0, 100, &l), TD_ETOO_BIG);
    arbiter_core_free(c);
}

static struct arbiter_core *populated(uint64_t now, uint64_t *l1, uint64_t *l2)
{
    struct arbiter_core *c = arbiter_core_new(NULL);
    uint64_t rev, gone;
    assert_int_equal(arbiter_core_grant(c, now, 1000, &gone), 0);
    assert_int_equal(arbiter_core_grant(c, now, 2000, l1), 0);
    assert_int_equal(arbiter_core_grant(c, now, 3000, l2), 0);
    assert_int_equal(arbiter_core_revoke(c, now, gone), 0);
    struct dcs_put p[3] = {put("/c/leader", "name=db1 term=3", *l1), put("/c/term", "3", 0),
                           put("/c/members/db2", "", *l2)};
    assert_int_equal(arbiter_core_txn(c, now, NULL, 0, p, 3, &rev), 0);
    struct dcs_put t = put("/c/term", "4", 0);
    assert_int_equal(arbiter_core_txn(c, now, NULL, 0, &t, 1, &rev), 0);
    return c;
}

static void test_save_load_round_trip(void **state)
{
    (void)state;
    uint64_t l1, l2;
    struct arbiter_core *c = populated(100, &l1, &l2);
    struct buf b;
    buf_init(&b);
    arbiter_core_save(c, &b);
    /* Load at a much later instant (another process's clock): full TTLs from there. */
    struct arbiter_core *d = arbiter_core_new(NULL);
    assert_int_equal(arbiter_core_load(d, b.p, b.len, 50000), 0);
    assert_int_equal(arbiter_core_rev(d), arbiter_core_rev(c));
    assert_int_equal(arbiter_core_nkeys(d), 3);
    assert_string_equal(val(d, "/c/leader"), "name=db1 term=3");
    assert_string_equal(val(d, "/c/term"), "4");
    assert_string_equal(val(d, "/c/members/db2"), "");
    assert_int_equal(modrev(d, "/c/term"), 2);
    struct dcs_kv kv;
    assert_true(arbiter_core_get(d, slice_cstr("/c/leader"), &kv));
    assert_int_equal(kv.lease, l1);
    uint64_t rem;
    assert_int_equal(arbiter_core_lease_ttl(d, 50000, l1, &rem), 0);
    assert_int_equal(rem, 2000);
    assert_int_equal(arbiter_core_lease_ttl(d, 50000, l2, &rem), 0);
    assert_int_equal(rem, 3000);
    assert_int_equal(arbiter_core_next_expiry(d), 52000);
    /* Not early: nothing expires before load instant + TTL ... */
    assert_int_equal(arbiter_core_expire(d, 51999, NULL, NULL), 0);
    assert_non_null(val(d, "/c/leader"));
    /* ... and then it does. */
    assert_int_equal(arbiter_core_expire(d, 52000, NULL, NULL), 1);
    assert_null(val(d, "/c/leader"));
    /* Revisions continue upward; lease ids are not reused (the revoked one included). */
    uint64_t rev_before = arbiter_core_rev(c), l3;
    assert_true(arbiter_core_rev(d) > rev_before);
    assert_int_equal(arbiter_core_grant(d, 52000, 10, &l3), 0);
    assert_true(l3 > l2);
    struct dcs_put p = put("/c/x", "1", 0);
    uint64_t rev;
    assert_int_equal(arbiter_core_txn(d, 52000, NULL, 0, &p, 1, &rev), 0);
    assert_true(rev > arbiter_core_rev(c));
    /* A second round trip keeps it all. */
    buf_free(&b);
    arbiter_core_save(d, &b);
    struct arbiter_core *e = arbiter_core_new(NULL);
    assert_int_equal(arbiter_core_load(e, b.p, b.len, 0), 0);
    assert_int_equal(arbiter_core_rev(e), rev);
    uint64_t l4;
    assert_int_equal(arbiter_core_grant(e, 0, 10, &l4), 0);
    assert_true(l4 > l3);
    buf_free(&b);
    arbiter_core_free(c);
    arbiter_core_free(d);
    arbiter_core_free(e);
}

static void test_load_rejects_corruption(void **state)
{
    (void)state;
    uint64_t l1, l2;
    struct arbiter_core *c = populated(0, &l1, &l2);
    struct buf b;
    buf_init(&b);
    arbiter_core_save(c, &b);
    struct arbiter_core *d = arbiter_core_new(NULL);
    struct dcs_put p = put("/mine", "1", 0);
    uint64_t rev;
    assert_int_equal(arbiter_core_txn(d, 0, NULL, 0, &p, 1, &rev), 0);
    /* Every single bit flip is caught, and leaves d as it was. */
    for (size_t i = 0; i < b.len; i++) {
        for (int bit = 0; bit < 8; bit += 3) {
            b.p[i] ^= (char)(1 << bit);
            assert_int_equal(arbiter_core_load(d, b.p, b.len, 0), TD_ECORRUPT);
            b.p[i] ^= (char)(1 << bit);
        }
    }
    /* Every truncation too, and trailing garbage. */
    for (size_t n = 0; n < b.len; n++)
        assert_int_equal(arbiter_core_load(d, b.p, n, 0), TD_ECORRUPT);
    buf_append(&b, "x", 1);
    assert_int_equal(arbiter_core_load(d, b.p, b.len, 0), TD_ECORRUPT);
    assert_string_equal(val(d, "/mine"), "1");
    assert_int_equal(arbiter_core_nkeys(d), 1);
    /* A well-formed file (right CRC) that breaks an invariant is refused too: a key names a
     * lease that is not in the file. */
    buf_free(&b);
    arbiter_core_free(c);
    c = arbiter_core_new(NULL);
    uint64_t l;
    assert_int_equal(arbiter_core_grant(c, 0, 1000, &l), 0);
    p = put("/k", "v", l);
    assert_int_equal(arbiter_core_txn(c, 0, NULL, 0, &p, 1, &rev), 0);
    arbiter_core_save(c, &b);
    /* The key's lease id: 8 bytes before the key "/k" and the value "v", before the CRC. */
    size_t key_lease_off = b.len - 4 - 3 - 8;
    b.p[key_lease_off] = 9;
    /* Recompute the CRC so only the invariant is wrong. */
    uint32_t crc = crc32c(b.p, b.len - 4);
    for (int i = 0; i < 4; i++)
        b.p[b.len - 4 + i] = (char)(crc >> (8 * i));
    assert_int_equal(arbiter_core_load(d, b.p, b.len, 0), TD_ECORRUPT);
    b.p[key_lease_off] = (char)l;
    crc = crc32c(b.p, b.len - 4);
    for (int i = 0; i < 4; i++)
        b.p[b.len - 4 + i] = (char)(crc >> (8 * i));
    assert_int_equal(arbiter_core_load(d, b.p, b.len, 0), 0);
    assert_string_equal(val(d, "/k"), "v");
    buf_free(&b);
    arbiter_core_free(c);
    arbiter_core_free(d);
}

static void test_empty_state_round_trip(void **state)
{
    (void)state;
    struct arbiter_core *c = arbiter_core_new(NULL);
    struct buf b;
    buf_init(&b);
    arbiter_core_save(c, &b);
    struct arbiter_core *d = arbiter_core_new(NULL);
    assert_int_equal(arbiter_core_load(d, b.p, b.len, 0), 0);
    assert_int_equal(arbiter_core_rev(d), 0);
    uint64_t l;
    assert_int_equal(arbiter_core_grant(d, 0, 10, &l), 0);
    assert_int_equal(l, 1);
    buf_free(&b);
    arbiter_core_free(c);
    arbiter_core_free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_txn_put_bumps_one_revision),
        cmocka_unit_test(test_txn_compare),
        cmocka_unit_test(test_txn_atomic),
        cmocka_unit_test(test_lease_ids_and_keepalive),
        cmocka_unit_test(test_expiry_deletes_keys),
        cmocka_unit_test(test_revoke_deletes_keys),
        cmocka_unit_test(test_range),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_save_load_round_trip),
        cmocka_unit_test(test_load_rejects_corruption),
        cmocka_unit_test(test_empty_state_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
