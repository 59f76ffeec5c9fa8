/* SPDX-License-Identifier: MIT */
/* Unit tests for coord/cluster.c: coordinator value texts round-trip through the parser, and
 * unreadable values err on the safe side. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "coord/cluster.h"

#define P "/tandem/c1/"

static void parse(struct cluster_view *v, const struct dcs_kv *kv, size_t n)
{
    struct dcs_result r = {.op = DCS_OP_READ, .rev = 50, .kvs = kv, .nkvs = n};
    cluster_parse(v, P, &r);
}

static void test_values_round_trip(void **state)
{
    (void)state;
    char leader[CLUSTER_VALUE_MAX], term[32], sync[CLUSTER_VALUE_MAX], member[CLUSTER_VALUE_MAX];
    struct cluster_names s = {0};
    cluster_names_add(&s, "db2");
    cluster_names_add(&s, "db3");
    cluster_names_add(&s, "db2"); /* a set */
    assert_int_equal(s.n, 2);
    cluster_leader_value(leader, sizeof(leader), "db1", 7, "127.0.0.1:7001");
    assert_string_equal(leader, "name=db1 term=7 addr=127.0.0.1:7001");
    cluster_term_value(term, sizeof(term), 7);
    cluster_set_value(sync, sizeof(sync), "db1", 7, &s);
    assert_string_equal(sync, "leader=db1 term=7 members=db2,db3");
    struct cluster_member m = {
        .addr = "127.0.0.1:7002", .lsn = 42, .last_term = 6, .priority = 100, .healthy = true};
    cluster_member_value(member, sizeof(member), &m, "replica", 7, "db1");
    struct dcs_kv kv[] = {
        {SLICE_LIT(P "leader"), slice_cstr(leader), 10, 5},
        {SLICE_LIT(P "term"), slice_cstr(term), 10, 0},
        {SLICE_LIT(P "sync"), slice_cstr(sync), 11, 0},
        {SLICE_LIT(P "failsafe"), SLICE_LIT("leader=db1 term=7 members="), 12, 0},
        {SLICE_LIT(P "members/db2"), slice_cstr(member), 13, 6},
        {SLICE_LIT("/tandem/c2/leader"), slice_cstr(leader), 14, 5}, /* another cluster */
        {SLICE_LIT(P "unknown"), SLICE_LIT("x"), 15, 0},
    };
    struct cluster_view v;
    parse(&v, kv, 7);
    assert_int_equal(v.rev, 50);
    assert_string_equal(v.leader, "db1");
    assert_string_equal(v.leader_addr, "127.0.0.1:7001");
    assert_int_equal(v.leader_term, 7);
    assert_int_equal(v.leader_rev, 10);
    assert_int_equal(v.leader_lease, 5);
    assert_int_equal(v.term, 7);
    assert_int_equal(v.sync.rev, 11);
    assert_string_equal(v.sync.leader, "db1");
    assert_true(cluster_names_same(&v.sync.members, &s));
    assert_int_equal(v.failsafe.rev, 12);
    assert_int_equal(v.failsafe.members.n, 0);
    assert_int_equal(v.nmembers, 1);
    const struct cluster_member *p = cluster_member_find(&v, "db2");
    assert_non_null(p);
    assert_int_equal(p->lsn, 42);
    assert_int_equal(p->last_term, 6);
    assert_int_equal(p->priority, 100);
    assert_true(p->healthy);
    assert_string_equal(p->addr, "127.0.0.1:7002");
    assert_null(cluster_member_find(&v, "db9"));
}

static void test_unreadable_values_are_safe(void **state)
{
    (void)state;
    struct dcs_kv kv[] = {
        {SLICE_LIT(P "leader"), SLICE_LIT("name=db 1 term=3"), 10, 5},
        {SLICE_LIT(P "term"), SLICE_LIT("term=18446744073709551616"), 11, 0},
        {SLICE_LIT(P "sync"), SLICE_LIT("leader=db1 term=3 members=a,,b"), 12, 0},
        {SLICE_LIT(P "failsafe"), SLICE_LIT("leader=db1 members=a"), 13, 0},
        {SLICE_LIT(P "members/db2"), SLICE_LIT("lsn=1 lterm=1 healthy=1 prio=4294967296 addr=x"),
         14, 0},
        {SLICE_LIT(P "members/db 3"), SLICE_LIT("lsn=1 lterm=1 healthy=1 prio=1 addr=x"), 15, 0},
        {SLICE_LIT(P "members/db4"), SLICE_LIT("lsn=1 lterm=1 healthy=1 prio=1 addr=x"), 16, 0},
        {SLICE_LIT(P "members/db4"), SLICE_LIT("lsn=9 lterm=9 healthy=1 prio=1 addr=x"), 17, 0},
    };
    struct cluster_view v;
    parse(&v, kv, 8);
    /* The leader key exists (blocks elections) but names nobody. */
    assert_int_equal(v.leader_rev, 10);
    assert_string_equal(v.leader, "");
    assert_int_equal(v.term_rev, 11);
    assert_int_equal(v.term, 0);
    /* Present but unreadable sets: nobody listed, no leader. */
    assert_int_equal(v.sync.rev, 12);
    assert_string_equal(v.sync.leader, "");
    assert_int_equal(v.sync.members.n, 0);
    assert_int_equal(v.failsafe.rev, 13);
    assert_int_equal(v.failsafe.members.n, 0);
    /* Bad members skipped; a repeated key counts once. */
    assert_int_equal(v.nmembers, 1);
    assert_int_equal(v.members[0].lsn, 1);
}

static void test_names(void **state)
{
    (void)state;
    assert_true(cluster_name_valid("db-1.a_b:7000", 13));
    assert_false(cluster_name_valid("", 0));
    assert_false(cluster_name_valid("a b", 3));
    char big[80];
    memset(big, 'a', sizeof(big));
    assert_false(cluster_name_valid(big, 64));
    assert_true(cluster_name_valid(big, 63));
    struct cluster_names a = {0}, b = {0};
    cluster_names_add(&a, "x");
    cluster_names_add(&a, "y");
    cluster_names_add(&b, "y");
    assert_false(cluster_names_same(&a, &b));
    cluster_names_union(&b, &a);
    assert_true(cluster_names_same(&a, &b)); /* order does not matter */
    cluster_names_del(&b, "x");
    cluster_names_del(&b, "nope");
    assert_int_equal(b.n, 1);
    char out[CLUSTER_VALUE_MAX];
    cluster_names_join(&a, out, sizeof(out));
    assert_string_equal(out, "x,y");
    for (int i = 0; i < 20; i++) { /* full: extra names are dropped, never overflow */
        char n[8];
        snprintf(n, sizeof(n), "n%d", i);
        cluster_names_add(&a, n);
    }
    assert_int_equal(a.n, CLUSTER_MAX_MEMBERS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values_round_trip),
        cmocka_unit_test(test_unreadable_values_are_safe),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
